/*
 * status_test.c — the contract of rk_strerror() and rk_last_error() that
 * every example relies on when it prints both in one call:
 * rk_strerror(), rk_status_is_*() and rk_version() never change the last
 * error, so argument evaluation order does not matter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

static void test_strerror_keeps_last_error(void **state)
{
    (void)state;
    rk_client *client = NULL;
    /* A failing call sets the message: a URL with a bad scheme. */
    assert_int_equal(rk_client_new_url("nope://127.0.0.1", &client), RK_ERR_INVALID);
    assert_null(client);
    char before[512];
    snprintf(before, sizeof before, "%s", rk_last_error());
    assert_true(before[0] != '\0');

    for (int st = -2; st <= 20; st++) {
        assert_non_null(rk_strerror((rk_status)st));
        (void)rk_status_is_error((rk_status)st);
        (void)rk_status_is_miss((rk_status)st);
        (void)rk_status_is_retryable((rk_status)st);
    }
    assert_non_null(rk_version());
    assert_string_equal(rk_last_error(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_keeps_last_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
