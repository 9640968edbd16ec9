/*
 * near_nomem_test.c — every allocation failure on the near cache's paths
 * of rk_cache, one at a time, against a private redis-server.
 *
 * The allocator (support/fail_alloc.h) fails exactly the Nth allocation,
 * and the same scenario runs for N = 1, 2, ... until a run completes
 * without reaching N: a read that fills (placeholder, GET + PTTL, the
 * entry), a read answered from process memory (the copy, the reply), a
 * write (forgotten before and after) and its read back. For every N each
 * call returns its normal status or RK_ERR_NOMEM (a read may also be
 * answered from Redis instead of memory), outputs are NULL after a
 * failure, and once the handles are freed no block is live.
 *
 * The near cache's tracking thread allocates too (a reply to its PING
 * once a second): a failure injected there makes it reconnect and flush,
 * which a read then sees as a miss — allowed above, and why the scenario
 * does not count on hits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

#include "cache.h"
#include "near.h"
#include "support/clock.h"
#include "support/fail_alloc.h"
#include "support/redis_server.h"

#define MAX_N 2000

static rk_test_server *server;

static int group_setup(void **state)
{
    (void)state;
    if (rk_set_allocator(&rk_test_fail_allocator) != RK_OK) return -1;
    server = rk_test_server_start(NULL);
    return server ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rk_test_server_stop(server);
    return rk_set_allocator(NULL) == RK_OK ? 0 : -1;
}

static void read_back(rk_cache *c, const char *key, const char *want)
{
    char *v = (char *)1;
    rk_status st = rk_cache_get_str(c, key, &v);
    if (st == RK_OK) {
        assert_string_equal(v, want);
        rk_free(v);
    } else {
        assert_int_equal(st, RK_ERR_NOMEM);
        assert_null(v);
    }
}

static void test_walk(void **state)
{
    (void)state;
    long n = 1;
    for (; n <= MAX_N; n++) {
        rk_client *client;
        rk_cache *c;
        assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(server)}, &client), RK_OK);
        assert_int_equal(rk_cache_new(client, &(rk_cache_options){.near_cache = true}, &c), RK_OK);
        for (int i = 0; i < 500 && !rk__near_is_live(c->near); i++) rk_test_sleep_ms(10);
        assert_int_equal(rk_cache_set_str(c, "held", "h", NULL), RK_OK);

        rk_test_fail_arm(n);
        read_back(c, "held", "h"); /* fills */
        read_back(c, "held", "h"); /* from memory, or Redis again */
        rk_status st = rk_cache_set_str(c, "w", "x", NULL);
        assert_true(st == RK_OK || st == RK_ERR_NOMEM);
        if (st == RK_OK) read_back(c, "w", "x");
        bool hit = rk_test_fail_hit();
        rk_test_fail_disarm();

        rk_cache_free(c);
        rk_client_free(client);
        assert_int_equal(rk_test_fail_live(), 0);
        if (!hit) break;
    }
    printf("near cache allocation walk: %ld allocation points\n", n - 1);
    assert_true(n > 5);     /* the scenario allocates */
    assert_true(n <= MAX_N); /* and the walk ended */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
