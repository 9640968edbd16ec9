/*
 * limiter_fault_test.c — what a limiter does when Redis cannot answer:
 * fail open, fail closed and the local limiter, with the server killed
 * and with it paused (SIGSTOP), each answering within the check's
 * deadline and saying which path it took; never a refusal caused by a
 * Redis error unless fail-closed was chosen.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>

#include <redkit/redkit.h>

#include "ratelimit.h"
#include "support/clock.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

#define TIMEOUT_MS 300
/* How far past its deadline a check may return on this busy machine: the
 * bound that proves "no hang", not a speed measurement. */
#define SLACK_MS 1500

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                       .client_options = {.key_prefix = "app",
                                                                          .connect_timeout_ms = 300,
                                                                          .command_timeout_ms = 2000}});
}

static int64_t fake_now_us;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now_us;
}

static rk_limiter *limiter_new(rk_limit_failure_policy policy)
{
    static const rk_limit limits[] = {
        {.name = "minute", .limit = 3, .period_ms = 60000},
        {.name = "hour", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 100, .period_ms = 3600000},
    };
    rk_limiter *l = NULL;
    assert_int_equal(rk_limiter_new(client,
                                    &(rk_limiter_options){.limits = limits, .nlimits = 2,
                                                          .failure_policy = policy, .timeout_ms = TIMEOUT_MS},
                                    &l),
                     RK_OK);
    rk__limiter_local_clock(l, fake_clock, NULL);
    return l;
}

/* Check once; assert it returned within the deadline; return the result. */
static rk_limit_result timed_check(rk_limiter *l, const char *key)
{
    rk_limit_result r;
    int64_t t = rk_test_now_ms();
    assert_int_equal(rk_limiter_check(l, key, 1, &r), RK_OK);
    int64_t took = rk_test_now_ms() - t;
    if (took > TIMEOUT_MS + SLACK_MS) fail_msg("check took %lld ms (deadline %d ms)", (long long)took, TIMEOUT_MS);
    return r;
}

static void policies_while_down(void)
{
    rk_limiter *open = limiter_new(RK_LIMIT_FAIL_OPEN), *closed = limiter_new(RK_LIMIT_FAIL_CLOSED),
               *local = limiter_new(RK_LIMIT_FAIL_LOCAL);
    for (int i = 0; i < 5; i++) {
        rk_limit_result r = timed_check(open, "u");
        assert_true(r.allowed);
        assert_int_equal(r.path, RK_LIMIT_PATH_FAIL_OPEN);
        assert_true(rk_status_is_error(r.redis_status));
        r = timed_check(closed, "u");
        assert_false(r.allowed);
        assert_int_equal(r.path, RK_LIMIT_PATH_FAIL_CLOSED);
        assert_int_equal(r.retry_after_ms, 1000);
        assert_true(rk_status_is_error(r.redis_status));
    }
    /* The local limiter applies the same limits, in process memory. */
    fake_now_us = 1000000;
    int allowed = 0;
    for (int i = 0; i < 6; i++) {
        rk_limit_result r = timed_check(local, "u");
        assert_int_equal(r.path, RK_LIMIT_PATH_LOCAL);
        if (r.allowed) allowed++;
        if (!r.allowed) {
            assert_string_equal(r.decided_name, "minute");
            assert_int_equal(r.retry_after_ms, 20000);
        }
    }
    assert_int_equal(allowed, 3);
    fake_now_us += 20000000; /* one emission interval: one more */
    assert_true(timed_check(local, "u").allowed);
    assert_false(timed_check(local, "u").allowed);

    rk_limiter_metrics m;
    assert_int_equal(rk_limiter_metrics_get(open, &m), RK_OK);
    assert_int_equal(m.fail_open, 5);
    assert_int_equal(m.allowed, 5);
    assert_int_equal(rk_limiter_metrics_get(closed, &m), RK_OK);
    assert_int_equal(m.fail_closed, 5);
    assert_int_equal(m.limited, 5);
    assert_int_equal(rk_limiter_metrics_get(local, &m), RK_OK);
    assert_int_equal(m.local_decisions, 8);
    /* Writes that need Redis say so, whatever the policy. */
    assert_true(rk_status_is_error(rk_limiter_penalty(local, "u", 1, NULL)));
    rk_limiter_free(open);
    rk_limiter_free(closed);
    rk_limiter_free(local);
}

static void test_server_killed(void **state)
{
    (void)state;
    /* Up: every policy answers from Redis. */
    rk_limiter *l = limiter_new(RK_LIMIT_FAIL_CLOSED);
    rk_limit_result r = timed_check(l, "up");
    assert_true(r.allowed);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    rk_limiter_free(l);

    assert_true(rk_test_server_signal(server, SIGKILL));
    policies_while_down();
    assert_true(rk_test_server_restart(server, NULL));
    assert_true(rk_test_client_recovers(client, 10000));
    l = limiter_new(RK_LIMIT_FAIL_LOCAL);
    r = timed_check(l, "up");
    assert_true(r.allowed);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    rk_limiter_free(l);
}

static void test_server_paused(void **state)
{
    (void)state;
    rk_limiter *l = limiter_new(RK_LIMIT_FAIL_OPEN);
    assert_int_equal(timed_check(l, "p").path, RK_LIMIT_PATH_REDIS);
    rk_limiter_free(l);
    assert_true(rk_test_server_signal(server, SIGSTOP));
    policies_while_down();
    assert_true(rk_test_server_signal(server, SIGCONT));
    assert_true(rk_test_client_recovers(client, 10000));
    l = limiter_new(RK_LIMIT_FAIL_OPEN);
    rk_limit_result r = timed_check(l, "p2");
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    assert_true(r.allowed);
    rk_limiter_free(l);
}

/* Lease taken by the local limiter, returned locally. */
static void test_local_leases(void **state)
{
    (void)state;
    rk_limit lim = {.algorithm = RK_LIMIT_CONCURRENCY, .limit = 1, .period_ms = 60000};
    rk_limiter *l = NULL;
    assert_int_equal(rk_limiter_new(client,
                                    &(rk_limiter_options){.limits = &lim, .nlimits = 1,
                                                          .failure_policy = RK_LIMIT_FAIL_LOCAL,
                                                          .timeout_ms = TIMEOUT_MS},
                                    &l),
                     RK_OK);
    fake_now_us = 5000000;
    rk__limiter_local_clock(l, fake_clock, NULL);
    assert_true(rk_test_server_signal(server, SIGKILL));
    rk_limit_result a = timed_check(l, "j");
    assert_true(a.allowed);
    assert_int_equal(a.path, RK_LIMIT_PATH_LOCAL);
    assert_int_equal(strlen(a.lease), RK_LEASE_ID_BYTES);
    assert_false(timed_check(l, "j").allowed);
    assert_int_equal(rk_limiter_release(l, "j", a.lease), RK_OK);
    assert_true(timed_check(l, "j").allowed);
    assert_true(rk_test_server_restart(server, NULL));
    assert_true(rk_test_client_recovers(client, 10000));
    rk_limiter_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_server_killed, rk_test_group_flush),
        cmocka_unit_test_setup(test_server_paused, rk_test_group_flush),
        cmocka_unit_test_setup(test_local_leases, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
