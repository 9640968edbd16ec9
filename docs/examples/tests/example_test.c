/*
 * example_test.c — the shape of an integration test (docs/testing.md):
 * a private redis-server per test group, started by the fixture in
 * tests/support/redis_server.h, and a real redkit client against it.
 *
 * Copied to tests/<module>_test.c it is picked up by CMake's glob and
 * becomes one CTest test. It is kept here, apart from the other examples,
 * because it also needs cmocka, hiredis and tests/support.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>

#include <redkit/redkit.h>

#include "redis_server.h"

static int group_setup(void **state)
{
    rk_test_server *server = rk_test_server_start(NULL); /* or {"--requirepass", "pw", NULL} */
    *state = server;
    return server ? 0 : -1;
}

static int group_teardown(void **state)
{
    rk_test_server_stop(*state);
    return 0;
}

static void test_set_then_get(void **state)
{
    rk_test_server *server = *state;
    rk_client *client;
    rk_cache *cache;
    char *value;

    assert_int_equal(rk_client_new_url(rk_test_server_url(server), &client), RK_OK);
    assert_int_equal(rk_cache_new(client, NULL, &cache), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(cache, "k", &value), RK_OK);
    assert_string_equal(value, "v");
    rk_free(value);
    rk_cache_free(cache);
    rk_client_free(client);
}

static void test_server_paused_times_out(void **state)
{
    rk_test_server *server = *state;
    rk_client *client;

    assert_int_equal(rk_client_new(&(rk_client_options){ .url = rk_test_server_url(server),
                                                          .command_timeout_ms = 100 },
                                   &client),
                     RK_OK);
    assert_int_equal(rk_client_ping(client), RK_OK);
    assert_true(rk_test_server_signal(server, SIGSTOP)); /* fault tier */
    assert_int_equal(rk_client_ping(client), RK_ERR_TIMEOUT);
    assert_true(rk_test_server_signal(server, SIGCONT));
    assert_int_equal(rk_client_ping(client), RK_OK); /* a fresh connection */
    rk_client_free(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_then_get),
        cmocka_unit_test(test_server_paused_times_out),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
