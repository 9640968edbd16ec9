/*
 * fail_alloc.h — an rk_allocator for allocation-failure walks: it fails
 * exactly the Nth allocation (malloc, calloc or realloc) once armed, and
 * counts the blocks it handed out and that are not freed yet.
 *
 * Each block carries a small header, so every block must be freed through
 * this allocator: install it (rk_set_allocator(&rk_test_fail_allocator))
 * before any redkit call, or only while no redkit memory is live, as
 * rk_set_allocator() asks. tests/client/nomem_test.c has a stricter one of its
 * own, which also catches foreign pointers and bad arguments.
 *
 * The live count is atomic (redkit may allocate from several threads);
 * arming and the call count are not: arm and walk from one thread, with
 * no other redkit call in flight.
 */
#ifndef RK_TEST_FAIL_ALLOC_H
#define RK_TEST_FAIL_ALLOC_H

#include <stdbool.h>

#include <redkit/redkit.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The allocator; user is unused (NULL). */
extern const rk_allocator rk_test_fail_allocator;

/*
 * Count allocations from zero again and fail the fail_at-th one (1-based;
 * 0 = fail none, and count none).
 */
void rk_test_fail_arm(long fail_at);

/* Fail nothing more, keeping what rk_test_fail_hit() says. */
void rk_test_fail_disarm(void);

/* The armed fail_at (0 when disarmed), for messages. */
long rk_test_fail_at(void);

/* True once the armed failure has been injected. */
bool rk_test_fail_hit(void);

/* Blocks allocated through the allocator and not freed yet. */
long rk_test_fail_live(void);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_FAIL_ALLOC_H */
