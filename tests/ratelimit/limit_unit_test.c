/*
 * limit_unit_test.c — the pure parts of rk_limiter, without a server: the
 * algorithms of the local limiter with a hand-moved clock (rk__rl_eval),
 * the bounded table, header rendering byte for byte, IP-address keys, and
 * the options a limiter refuses, and an allocation-failure walk. The limiter here sits on a client that
 * never connects (rk_client_new opens no connection).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

#include "ratelimit.h"
#include "support/fail_alloc.h"

static rk_client *offline_client(void)
{
    rk_client *c = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = "redis://127.0.0.1:1"}, &c), RK_OK);
    return c;
}

static rk__limit_cfg cfg_of(rk_client *c, rk_limit lim)
{
    rk_limiter *l = NULL;
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = &lim, .nlimits = 1}, &l), RK_OK);
    rk__limit_cfg cfg = l->cfg[0];
    rk_limiter_free(l);
    return cfg;
}

/* Run n checks of cost 1 at now; return how many were allowed (state
 * committed as the limiter would). */
static int run(const rk__limit_cfg *cfg, rk__rl_cell *cell, int n, int64_t now)
{
    int allowed = 0;
    for (int i = 0; i < n; i++) {
        rk_limit_state s;
        rk__rl_cell next;
        if (rk__rl_eval(cfg, cell, RK__OP_CHECK, 1, now, &s, &next)) {
            *cell = next;
            allowed++;
        }
    }
    return allowed;
}

static void test_local_exact_counts(void **state)
{
    (void)state;
    rk_client *c = offline_client();
    const rk_limit_algorithm algos[] = {RK_LIMIT_GCRA, RK_LIMIT_SLIDING_WINDOW, RK_LIMIT_FIXED_WINDOW,
                                        RK_LIMIT_TOKEN_BUCKET};
    const int64_t t0 = 1700000000000000; /* a multiple of the period */
    for (size_t a = 0; a < 4; a++) {
        rk__limit_cfg cfg = cfg_of(c, (rk_limit){.algorithm = algos[a], .limit = 5, .period_ms = 10000});
        rk__rl_cell cell = {0};
        assert_int_equal(run(&cfg, &cell, 20, t0), 5);
        assert_int_equal(run(&cfg, &cell, 20, t0 + 1000), 0);
        /* Two periods later everything has drained, whatever the algorithm. */
        assert_int_equal(run(&cfg, &cell, 20, t0 + 20000000), 5);
    }
    /* Concurrency: 3 in flight, a release frees one. */
    rk__limit_cfg cc = cfg_of(c, (rk_limit){.algorithm = RK_LIMIT_CONCURRENCY, .limit = 3, .period_ms = 1000});
    rk__rl_cell cell = {0};
    assert_int_equal(run(&cc, &cell, 10, t0), 3);
    rk_limit_state s;
    rk__rl_cell next;
    rk__rl_eval(&cc, &cell, RK__OP_RELEASE, 0, t0, &s, &next);
    cell = next;
    assert_int_equal(run(&cc, &cell, 10, t0), 1);
    /* ... and leases lapse after the lease timeout. */
    assert_int_equal(run(&cc, &cell, 10, t0 + 1000000), 3);
    rk_client_free(c);
}

/* GCRA against its formula: T = 100 ms, tau = 1 s (limit 10 per second). */
static void test_local_gcra_formula(void **state)
{
    (void)state;
    rk_client *c = offline_client();
    rk__limit_cfg cfg = cfg_of(c, (rk_limit){.limit = 10, .period_ms = 1000});
    assert_int_equal(cfg.p1, 100000);
    assert_int_equal(cfg.p2, 1000000);
    assert_int_equal(cfg.quota, 10);
    rk__rl_cell cell = {0}, next;
    rk_limit_state s;
    const int64_t t0 = 5000000;
    for (int i = 1; i <= 10; i++) {
        assert_true(rk__rl_eval(&cfg, &cell, RK__OP_CHECK, 1, t0, &s, &next));
        cell = next;
        assert_int_equal(s.remaining, 10 - i);
        assert_int_equal(s.reset_ms, 100 * i);
    }
    assert_false(rk__rl_eval(&cfg, &cell, RK__OP_CHECK, 1, t0, &s, &next));
    assert_int_equal(s.retry_after_ms, 100);
    assert_int_equal(s.reset_ms, 1000);
    rk_client_free(c);
}

/* Cloudflare's example: 42 in the previous minute, 18 in this one, 15 s
 * in: 42 * 45/60 + 18 = 49.5. */
static void test_local_cloudflare_example(void **state)
{
    (void)state;
    rk_client *c = offline_client();
    rk__limit_cfg cfg = cfg_of(c, (rk_limit){.algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 50,
                                             .period_ms = 60000});
    const int64_t win = 1000, now = win * 60000000 + 15000000;
    rk__rl_cell cell = {.set = true, .a = (double)win, .b = 18, .c = 42}, next;
    rk_limit_state s;
    assert_false(rk__rl_eval(&cfg, &cell, RK__OP_PEEK, 0, now, &s, &next));
    assert_true(s.used == 49.5);
    assert_int_equal(s.remaining, 0);
    rk_client_free(c);
}

static void test_table_bounded(void **state)
{
    (void)state;
    rk__rl_table t;
    assert_int_equal(rk__rl_table_init(&t, 64, sizeof(int64_t)), RK_OK);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        int64_t *v = rk__rl_table_get(&t, key, (size_t)n, true, NULL);
        assert_non_null(v);
        *v = i;
        assert_true(t.count <= t.cap);
    }
    assert_true(t.cap <= 64);
    /* The last key is there, with its value. */
    int n = snprintf(key, sizeof key, "k%d", 9999);
    int64_t *v = rk__rl_table_get(&t, key, (size_t)n, false, NULL);
    assert_non_null(v);
    assert_int_equal(*v, 9999);
    rk__rl_table_remove(&t, key, (size_t)n);
    assert_null(rk__rl_table_get(&t, key, (size_t)n, false, NULL));
    rk__rl_table_destroy(&t);
}

static void test_headers_byte_for_byte(void **state)
{
    (void)state;
    rk_client *c = offline_client();
    rk_limit limits[] = {{.name = "burst", .limit = 100, .period_ms = 60000},
                         {.name = "daily", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 1000, .period_ms = 86400000},
                         {.name = "inflight", .algorithm = RK_LIMIT_CONCURRENCY, .limit = 20, .period_ms = 30000}};
    rk_limiter *l = NULL;
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = limits, .nlimits = 3}, &l), RK_OK);

    rk_limit_result r = {.allowed = true, .limit = 100, .remaining = 50, .reset_ms = 29001, .nlimits = 3,
                         .limits = {{.allowed = true, .limit = 100, .remaining = 50, .reset_ms = 29001},
                                    {.allowed = true, .limit = 1000, .remaining = 700, .reset_ms = 3600000},
                                    {.allowed = true, .limit = 20, .remaining = 19, .reset_ms = 30000}}};
    char buf[512];
    size_t need = 0;
    assert_int_equal(rk_limit_headers(l, &r, 0, buf, sizeof buf, &need), RK_OK);
    const char *want =
        "RateLimit-Policy: \"burst\";q=100;w=60, \"daily\";q=1000;w=86400, "
        "\"inflight\";q=20;qu=\"concurrent-requests\"\r\n"
        "RateLimit: \"burst\";r=50;t=30, \"daily\";r=700;t=3600, \"inflight\";r=19;t=30\r\n"
        "X-RateLimit-Limit: 100\r\n"
        "X-RateLimit-Remaining: 50\r\n"
        "X-RateLimit-Reset: 30\r\n";
    assert_string_equal(buf, want);
    assert_int_equal(need, strlen(want));

    /* A refusal by the daily limit: t is its retry-after, Retry-After
     * follows it. */
    r.allowed = false;
    r.decided_by = 1;
    r.limit = 1000;
    r.remaining = 0;
    r.reset_ms = 3600000;
    r.retry_after_ms = 1500;
    r.limits[1] = (rk_limit_state){.allowed = false, .limit = 1000, .remaining = 0, .reset_ms = 3600000,
                                   .retry_after_ms = 1500};
    assert_int_equal(rk_limit_headers(l, &r, RK_LIMIT_HEADERS_IETF | RK_LIMIT_HEADERS_RETRY_AFTER, buf, sizeof buf,
                                      &need),
                     RK_OK);
    assert_string_equal(buf, "RateLimit-Policy: \"burst\";q=100;w=60, \"daily\";q=1000;w=86400, "
                             "\"inflight\";q=20;qu=\"concurrent-requests\"\r\n"
                             "RateLimit: \"burst\";r=50;t=30, \"daily\";r=0;t=2, \"inflight\";r=19;t=30\r\n"
                             "Retry-After: 2\r\n");
    assert_int_equal(rk_limit_headers(l, &r, RK_LIMIT_HEADERS_LEGACY, buf, sizeof buf, NULL), RK_OK);
    assert_string_equal(buf, "X-RateLimit-Limit: 1000\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 3600\r\n");

    /* Too small: the size needed, and an empty buffer. */
    size_t full = 0;
    assert_int_equal(rk_limit_headers(l, &r, 0, buf, sizeof buf, &full), RK_OK);
    char small[16];
    assert_int_equal(rk_limit_headers(l, &r, 0, small, sizeof small, &need), RK_ERR_TOO_LARGE);
    assert_int_equal(need, full);
    assert_string_equal(small, "");
    assert_int_equal(rk_limit_headers(l, &r, 0, NULL, 0, &need), RK_ERR_TOO_LARGE);
    assert_int_equal(need, full);
    assert_int_equal(rk_limit_headers(l, &r, 0, buf, full, NULL), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_limit_headers(l, &r, 0, buf, full + 1, NULL), RK_OK);

    /* Fail-closed: no state, a policy and a Retry-After of one second. */
    rk_limit_result fc = {.allowed = false, .path = RK_LIMIT_PATH_FAIL_CLOSED, .retry_after_ms = 1000,
                          .reset_ms = 1000};
    assert_int_equal(rk_limit_headers(l, &fc, RK_LIMIT_HEADERS_LEGACY | RK_LIMIT_HEADERS_RETRY_AFTER, buf,
                                      sizeof buf, NULL),
                     RK_OK);
    assert_string_equal(buf, "Retry-After: 1\r\n");

    /* A result that cannot be this limiter's. */
    rk_limit_result bad = {.nlimits = 5};
    assert_int_equal(rk_limit_headers(l, &bad, 0, buf, sizeof buf, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_limit_headers(NULL, &r, 0, buf, sizeof buf, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_limit_headers(l, NULL, 0, buf, sizeof buf, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_limit_headers(l, &r, 0, NULL, 10, NULL), RK_ERR_INVALID);
    rk_limiter_free(l);
    rk_client_free(c);
}

static void test_ip_keys(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(rk_limiter_ip_key("192.0.2.7", 0, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "ip4:192.0.2.7");
    assert_int_equal(rk_limiter_ip_key("::ffff:192.0.2.7", 0, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "ip4:192.0.2.7");
    /* Default /56: addresses inside one /56 share a key. */
    assert_int_equal(rk_limiter_ip_key("2001:db8:abcd:12ff:1:2:3:4", 0, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "ip6:2001:db8:abcd:1200::/56");
    assert_int_equal(rk_limiter_ip_key("2001:DB8:ABCD:1234::99", 0, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "ip6:2001:db8:abcd:1200::/56");
    assert_int_equal(rk_limiter_ip_key("2001:db8:abcd:1234::99", 64, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "ip6:2001:db8:abcd:1234::/64");
    assert_int_equal(rk_limiter_ip_key("2001:db8::1", 128, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "ip6:2001:db8::1/128");
    assert_int_equal(rk_limiter_ip_key("2001:db8::1", 1, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "ip6:::/1");
    /* Garbage. */
    const char *bad[] = {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "2001:db8:::1", "2001:db8::g", "fe80::1%eth0",
                         " 1.2.3.4", "::1::", "1.2.3.4/24", "localhost"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(rk_limiter_ip_key(bad[i], 0, buf, sizeof buf), RK_ERR_INVALID);
        /* The address, possibly hostile, is not echoed. */
        if (bad[i][0]) assert_null(strstr(rk_last_error(), bad[i]));
    }
    assert_int_equal(rk_limiter_ip_key(NULL, 0, buf, sizeof buf), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_ip_key("::1", 129, buf, sizeof buf), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_ip_key("::1", -1, buf, sizeof buf), RK_ERR_INVALID);
    char tiny[8];
    assert_int_equal(rk_limiter_ip_key("192.0.2.7", 0, tiny, sizeof tiny), RK_ERR_TOO_LARGE);
}

static void test_bad_options(void **state)
{
    (void)state;
    rk_client *c = offline_client();
    rk_limiter *l = (rk_limiter *)1;
    rk_limit one = {.limit = 1, .period_ms = 1000};
#define BAD(...)                                                                                    \
    do {                                                                                            \
        rk_limit lim_[] = {__VA_ARGS__};                                                            \
        assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = lim_,                    \
                                                                 .nlimits = sizeof lim_ / sizeof *lim_}, \
                                        &l),                                                        \
                         RK_ERR_INVALID);                                                           \
        assert_null(l);                                                                             \
    } while (0)
    BAD({.limit = 0, .period_ms = 1000});
    BAD({.limit = 1, .period_ms = 0});
    BAD({.limit = -5, .period_ms = 1000});
    BAD({.limit = 1, .period_ms = -1});
    BAD({.limit = (int64_t)1 << 41, .period_ms = 1000});
    BAD({.limit = 1, .period_ms = 1000, .burst = -7});
    BAD({.limit = 1, .period_ms = 1000, .algorithm = (rk_limit_algorithm)9});
    BAD({.name = "", .limit = 1, .period_ms = 1000});
    BAD({.name = "a b", .limit = 1, .period_ms = 1000});
    BAD({.name = "a\"b", .limit = 1, .period_ms = 1000});
    BAD({.name = "x", .limit = 1, .period_ms = 1000}, {.name = "x", .limit = 2, .period_ms = 1000});
    BAD({.limit = 2000000, .period_ms = 1}); /* more than one per microsecond */
#undef BAD
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = &one, .nlimits = 0}, &l), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = &one, .nlimits = 9}, &l), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = NULL, .nlimits = 1}, &l), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_new(c, NULL, &l), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_new(NULL, &(rk_limiter_options){.limits = &one, .nlimits = 1}, &l),
                     RK_ERR_INVALID);
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = &one, .nlimits = 1}, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.ns = "a:b", .limits = &one, .nlimits = 1}, &l),
                     RK_ERR_INVALID);
    assert_int_equal(rk_limiter_new(c, &(rk_limiter_options){.limits = &one, .nlimits = 1, .timeout_ms = -1}, &l),
                     RK_ERR_INVALID);
    assert_int_equal(
        rk_limiter_new(c, &(rk_limiter_options){.limits = &one, .nlimits = 1, .failure_policy = 7}, &l),
        RK_ERR_INVALID);
    rk_limiter_metrics m;
    assert_int_equal(rk_limiter_metrics_get(NULL, &m), RK_ERR_INVALID);
    rk_limiter_free(NULL);
    rk_client_free(c);
}

/* Every allocation of new, of a check with a long key (keys on the heap)
 * and of the local limiter (Redis unreachable), failed in turn: each call
 * gives RK_ERR_NOMEM or succeeds, and nothing leaks. Runs first, while
 * no redkit memory is live (fail_alloc.h). */
static void test_nomem_walk(void **state)
{
    (void)state;
    char key[1500];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    rk_limit lim = {.limit = 3, .period_ms = 60000};
    rk_set_allocator(&rk_test_fail_allocator);
    long live = rk_test_fail_live();
    bool done = false;
    for (long n = 1; n < 500 && !done; n++) {
        rk_test_fail_arm(n);
        rk_client *c = NULL;
        rk_status st = rk_client_new(&(rk_client_options){.url = "redis://127.0.0.1:1", .connect_timeout_ms = 100,
                                                          .command_timeout_ms = 200},
                                     &c);
        if (st == RK_OK) {
            rk_limiter *l = NULL;
            st = rk_limiter_new(c,
                                &(rk_limiter_options){.limits = &lim, .nlimits = 1,
                                                      .failure_policy = RK_LIMIT_FAIL_LOCAL, .max_key_bytes = 2000},
                                &l);
            if (st == RK_OK) {
                rk_limit_result r;
                st = rk_limiter_check(l, key, 1, &r);
                if (st == RK_OK) assert_int_equal(r.path, RK_LIMIT_PATH_LOCAL);
                rk_limiter_free(l);
            } else {
                assert_null(l);
            }
            rk_client_free(c);
        }
        assert_true(st == RK_OK || st == RK_ERR_NOMEM);
        done = !rk_test_fail_hit();
        rk_test_fail_disarm();
        assert_int_equal(rk_test_fail_live(), live);
    }
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nomem_walk),
        cmocka_unit_test(test_local_exact_counts),   cmocka_unit_test(test_local_gcra_formula),
        cmocka_unit_test(test_local_cloudflare_example), cmocka_unit_test(test_table_bounded),
        cmocka_unit_test(test_headers_byte_for_byte), cmocka_unit_test(test_ip_keys),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
