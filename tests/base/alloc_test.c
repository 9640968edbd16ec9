/*
 * alloc_test.c — rk_malloc, rk_strdup and rk_strndup: memory a program
 * allocates through redkit's allocator and frees with rk_free(), so its
 * own values and the cache's have one owner rule. No server.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <redkit/redkit.h>

#include "support/fail_alloc.h"

static int setup(void **state)
{
    (void)state;
    return rk_set_allocator(&rk_test_fail_allocator) == RK_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rk_set_allocator(NULL) == RK_OK ? 0 : -1;
}

static void test_copies_and_frees(void **state)
{
    (void)state;
    long live = rk_test_fail_live();
    char *s = rk_strdup("hello");
    assert_non_null(s);
    assert_string_equal(s, "hello");
    char *n = rk_strndup("a\0b", 3); /* bytes, NULs included */
    assert_non_null(n);
    assert_memory_equal(n, "a\0b", 4);
    void *m = rk_malloc(0); /* a unique pointer, freed like any other */
    assert_non_null(m);
    void *big = rk_malloc(1000);
    assert_non_null(big);
    memset(big, 7, 1000);
    /* Every block came from the allocator rk_free() frees through. */
    assert_int_equal(rk_test_fail_live(), live + 4);
    rk_free(s);
    rk_free(n);
    rk_free(m);
    rk_free(big);
    assert_int_equal(rk_test_fail_live(), live);
}

static void test_bad_input_and_no_memory(void **state)
{
    (void)state;
    assert_null(rk_strdup(NULL));
    assert_null(rk_strndup(NULL, 3));
    assert_null(rk_strndup("x", SIZE_MAX)); /* len + 1 would wrap */
    rk_test_fail_arm(1);
    assert_null(rk_malloc(16));
    rk_test_fail_arm(1);
    assert_null(rk_strdup("x"));
    rk_test_fail_arm(1);
    assert_null(rk_strndup("xy", 2));
    rk_test_fail_disarm();
    assert_true(rk_test_fail_hit());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies_and_frees),
        cmocka_unit_test(test_bad_input_and_no_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
