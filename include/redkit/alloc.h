/*
 * redkit/alloc.h — route redkit's heap memory through your own allocator.
 *
 * Every allocation redkit makes for itself (handles, copies of options and
 * keys, connections, reply trees, values returned to the caller) goes
 * through one internal funnel. By default that funnel is the C library's
 * malloc/calloc/realloc/free; rk_set_allocator() points it at a
 * process-wide set of functions of your own: an arena, a counting or
 * limiting allocator, jemalloc, or a test hook that fails on purpose.
 *
 *     static void *my_malloc(size_t n, void *user) { return arena_alloc(user, n); }
 *     ...
 *     rk_allocator a = {my_malloc, my_calloc, my_realloc, my_free, &arena};
 *     if (rk_set_allocator(&a) != RK_OK) abort();
 *     // only now: rk_client_new(), ...
 *
 * What is NOT covered: with the hiredis 0.14 that Debian ships, hiredis's
 * own internal allocations — the protocol reader's input buffer and its
 * state, and the encoded form of each command while it is being sent — go
 * straight to libc malloc/free. hiredis 0.14 has no allocator hook; these
 * buffers are short-lived or per connection and are freed by hiredis with
 * the matching libc free(), so the two heaps are never mixed. Memory the
 * C library allocates on redkit's behalf (getaddrinfo(), thread-local
 * storage) is not covered either. Every reply tree and every byte redkit
 * hands to the caller does come from your allocator.
 */
#ifndef REDKIT_ALLOC_H
#define REDKIT_ALLOC_H

#include "common.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * rk_allocator — the four functions redkit allocates with, and a pointer
 * passed to each as its last argument.
 *
 * The functions must behave like their C library namesakes:
 *
 *   malloc(size, user)       a block of at least size bytes aligned for any
 *                            type (alignof(max_align_t)), or NULL on failure.
 *   calloc(n, size, user)    n * size zeroed bytes, same alignment, or NULL.
 *   realloc(ptr, size, user) resize ptr, keeping its contents up to the
 *                            smaller size; may move it. realloc(NULL, size)
 *                            must act as malloc(size). On failure return
 *                            NULL and leave ptr valid and unchanged.
 *   free(ptr, user)          release a block from any of the three above.
 *
 * redkit never passes a size of 0 (a zero-byte request is asked for as one
 * byte, so NULL always means failure), never passes free() a NULL pointer,
 * and checks n * size for overflow before calling calloc(). Any function
 * may fail at any time: every redkit call that allocates reports it as
 * RK_ERR_NOMEM and leaves nothing behind.
 *
 * rk_client and the module handles are shared between threads, so the
 * functions are called concurrently from every thread that calls redkit:
 * they must be thread-safe. They must not call redkit.
 *
 * user is passed through untouched; redkit never dereferences it. It may
 * be NULL.
 */
typedef struct rk_allocator {
    void *(*malloc)(size_t size, void *user);
    void *(*calloc)(size_t n, size_t size, void *user);
    void *(*realloc)(void *ptr, size_t size, void *user);
    void (*free)(void *ptr, void *user);
    void *user;
} rk_allocator;

/*
 * rk_set_allocator — make a the allocator for all of redkit's memory in
 * this process, or restore the C library's with a == NULL.
 *
 * The struct is copied; the functions and whatever user points to must
 * stay usable until the allocator is replaced or the process ends.
 *
 * Call it once, at start-up, from one thread, before any other redkit call.
 * It is not thread-safe against concurrent redkit calls, and memory must
 * be freed by the allocator that allocated it: replacing the allocator
 * later is only correct once every redkit handle (rk_client, rk_cache,
 * ...), reply and buffer that redkit returned has been freed.
 *
 * Returns RK_OK, or RK_ERR_INVALID (with rk_last_error() saying which
 * function is missing) if a is not NULL and any of its four functions is
 * NULL; the allocator in use is then unchanged.
 */
RK_EXPORT rk_status rk_set_allocator(const rk_allocator *a);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_ALLOC_H */
