/*
 * fetch_decide_test.c — the decisions of rk_cache_fetch() (hit, early
 * refresh, stale, wait, compute) as pure functions, with time moved by
 * hand: no server, no clock, no sleeping. Every boundary is checked one
 * millisecond either side, and the extremes of int64 are fed in to show
 * that no arithmetic overflows (UBSan would say so in the sanitizer
 * build).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include <redkit/cache.h>

#include "fetch_decide.h"
#include "value.h"

#define T0 1700000000000LL /* some instant, Unix ms */

static const rk__fetch_policy no_early = {.stale_ms = 0, .beta = -1};

static rk__value_meta meta_at(int64_t exp, uint32_t compute_ms)
{
    return (rk__value_meta){.expires_at_ms = exp, .compute_ms = compute_ms};
}

/* A value expiring at T0 + 1000: fresh up to T0 + 999, expired from T0 +
 * 1000 on, and stale in between only with a window. */
static void test_fresh_until_expiry(void **state)
{
    (void)state;
    rk__value_meta m = meta_at(T0 + 1000, 10);
    assert_int_equal(rk__fetch_classify(&m, true, T0, &no_early, 0), RK__FETCH_FRESH);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 999, &no_early, 0), RK__FETCH_FRESH);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 1000, &no_early, 0), RK__FETCH_EXPIRED);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 5000, &no_early, 0), RK__FETCH_EXPIRED);

    /* Without META, or with no expiry (RK_TTL_NONE): fresh forever. */
    assert_int_equal(rk__fetch_classify(&m, false, INT64_MAX, &no_early, 0), RK__FETCH_FRESH);
    rk__value_meta never = meta_at(0, 10);
    assert_int_equal(rk__fetch_classify(&never, true, INT64_MAX, &no_early, 0.5), RK__FETCH_FRESH);
}

static void test_stale_window(void **state)
{
    (void)state;
    rk__value_meta m = meta_at(T0 + 1000, 10);
    rk__fetch_policy p = {.stale_ms = 500, .beta = -1};
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 999, &p, 0), RK__FETCH_FRESH);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 1000, &p, 0), RK__FETCH_STALE);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 1499, &p, 0), RK__FETCH_STALE);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 1500, &p, 0), RK__FETCH_EXPIRED);

    assert_true(rk__fetch_within_stale(T0, T0, 1));
    assert_false(rk__fetch_within_stale(T0, T0 + 1, 1));
    assert_false(rk__fetch_within_stale(T0, T0, 0)); /* no window */
    /* A clock far behind the expiry (an odd stored value): within. */
    assert_true(rk__fetch_within_stale(T0, T0 - 1000000, 1));
}

/* XFetch: with compute_ms = 100 and beta = 1, a draw u refreshes from
 * expiry + 100 * ln(u) on: u = 1 never before expiry, u = 1/e from 100 ms
 * before. */
static void test_early_refresh(void **state)
{
    (void)state;
    rk__value_meta m = meta_at(T0 + 1000, 100);
    rk__fetch_policy p = {.stale_ms = 0, .beta = 0}; /* 0 = 1.0 */
    double u = exp(-1.0);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 899, &p, u), RK__FETCH_FRESH);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 901, &p, u), RK__FETCH_EARLY);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 999, &p, 1.0), RK__FETCH_FRESH);
    /* No draw (u = 0): never early. */
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 999, &p, 0), RK__FETCH_FRESH);
    /* beta 2 doubles the lead; negative beta turns it off. */
    p.beta = 2;
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 801, &p, u), RK__FETCH_EARLY);
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 799, &p, u), RK__FETCH_FRESH);
    p.beta = -1;
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 999, &p, 1e-300), RK__FETCH_FRESH);
    /* Past expiry, early does not apply: stale or expired. */
    p = (rk__fetch_policy){.stale_ms = 10, .beta = 1};
    assert_int_equal(rk__fetch_classify(&m, true, T0 + 1000, &p, u), RK__FETCH_STALE);

    /* The XFetch test itself: out-of-range draws and no expiry are false. */
    assert_false(rk__xfetch_early(T0, T0 + 1, 1000, 1, 0));
    assert_false(rk__xfetch_early(T0, T0 + 1, 1000, 1, 1.5));
    assert_false(rk__xfetch_early(T0, T0 + 1, 1000, 1, NAN));
    assert_false(rk__xfetch_early(T0, 0, 1000, 1, 0.5));
    assert_false(rk__xfetch_early(T0, -5, 1000, 1, 0.5));
    assert_true(rk__xfetch_early(T0, T0 + 1, 1000, 1, 0.5));
}

/* Extreme clocks and expiries: no overflow, sensible answers. */
static void test_extremes(void **state)
{
    (void)state;
    const int64_t max_exp = RK__VALUE_EXPIRY_MAX;
    rk__fetch_policy p = {.stale_ms = INT64_MAX, .beta = 1};
    rk__value_meta m = meta_at(max_exp, UINT32_MAX);
    assert_int_equal(rk__fetch_classify(&m, true, INT64_MIN, &p, 1e-300), RK__FETCH_FRESH);
    assert_int_equal(rk__fetch_classify(&m, true, INT64_MAX, &p, 0.5), RK__FETCH_STALE);
    m = meta_at(1, 0);
    assert_int_equal(rk__fetch_classify(&m, true, INT64_MAX, &p, 0.5), RK__FETCH_STALE);
    p.stale_ms = 1;
    assert_int_equal(rk__fetch_classify(&m, true, INT64_MAX, &p, 0.5), RK__FETCH_EXPIRED);
    assert_false(rk__fetch_within_stale(INT64_MIN, INT64_MAX, INT64_MAX));
    assert_true(rk__fetch_within_stale(INT64_MAX, INT64_MIN, 1));

    assert_int_equal(rk__ms_sub_sat(INT64_MAX, -1), INT64_MAX);
    assert_int_equal(rk__ms_sub_sat(INT64_MIN, 1), INT64_MIN);
    assert_int_equal(rk__ms_sub_sat(INT64_MIN, INT64_MIN), 0);
    assert_int_equal(rk__ms_sub_sat(5, 7), -2);
}

/* A computed value's META block: expiry = now + TTL on the clock given,
 * saturating; compute time rounded up, at least 1 ms. */
static void test_new_meta(void **state)
{
    (void)state;
    rk__value_meta m = rk__fetch_new_meta(T0, 60000, 1);
    assert_int_equal(m.expires_at_ms, T0 + 60000);
    assert_int_equal(m.compute_ms, 1);
    m = rk__fetch_new_meta(T0, 60000, 2500000); /* 2.5 ms */
    assert_int_equal(m.compute_ms, 3);
    m = rk__fetch_new_meta(T0, 60000, 0);
    assert_int_equal(m.compute_ms, 1);
    m = rk__fetch_new_meta(T0, 60000, -5); /* cannot happen on a monotonic clock */
    assert_int_equal(m.compute_ms, 1);
    m = rk__fetch_new_meta(T0, 60000, INT64_MAX);
    assert_int_equal(m.compute_ms, UINT32_MAX);
    m = rk__fetch_new_meta(T0, RK_TTL_NONE, 1000000);
    assert_int_equal(m.expires_at_ms, 0);
    m = rk__fetch_new_meta(T0, (int64_t)1 << 62, 1);
    assert_int_equal(m.expires_at_ms, RK__VALUE_EXPIRY_MAX);
    m = rk__fetch_new_meta(INT64_MAX, 1, 1);
    assert_int_equal(m.expires_at_ms, RK__VALUE_EXPIRY_MAX);
    m = rk__fetch_new_meta(INT64_MIN, 1000, 1); /* never 0, which means "no expiry" */
    assert_true(m.expires_at_ms > 0);
    /* Whatever the writer's clock, the block parses back. */
    unsigned char hdr[RK__VALUE_HEADER_MAX];
    rk__value_view v;
    size_t n = rk__value_encode_header(RK__V_BYTES, RK__VF_META, &m, hdr);
    assert_int_equal(rk__value_parse(hdr, n, false, &v), RK_OK);
}

static void test_redis_ttl(void **state)
{
    (void)state;
    const int64_t max = (int64_t)1 << 62;
    assert_int_equal(rk__fetch_redis_ttl(1000, 500, true), 1500);
    assert_int_equal(rk__fetch_redis_ttl(1000, 500, false), 1000); /* raw: no stale window */
    assert_int_equal(rk__fetch_redis_ttl(1000, 0, true), 1000);
    assert_int_equal(rk__fetch_redis_ttl(RK_TTL_NONE, 500, true), RK_TTL_NONE);
    assert_int_equal(rk__fetch_redis_ttl(max, max, true), max);
    assert_int_equal(rk__fetch_redis_ttl(max - 1, 1, true), max);
}

/* A leader of a missing key, round by round. */
static void test_lead_step(void **state)
{
    (void)state;
    /* Nothing there: compute once the lock is ours or the wait is over,
     * else poll. */
    assert_int_equal(rk__fetch_lead_step(false, RK__FETCH_EXPIRED, true, false), RK__FETCH_COMPUTE);
    assert_int_equal(rk__fetch_lead_step(false, RK__FETCH_EXPIRED, false, false), RK__FETCH_POLL);
    assert_int_equal(rk__fetch_lead_step(false, RK__FETCH_EXPIRED, false, true), RK__FETCH_COMPUTE);
    /* Another's fresh value: take it, lock or not. */
    assert_int_equal(rk__fetch_lead_step(true, RK__FETCH_FRESH, false, false), RK__FETCH_TAKE);
    assert_int_equal(rk__fetch_lead_step(true, RK__FETCH_FRESH, true, false), RK__FETCH_TAKE);
    /* Stale: taken while someone else holds the lock, refreshed when we do. */
    assert_int_equal(rk__fetch_lead_step(true, RK__FETCH_STALE, false, false), RK__FETCH_TAKE);
    assert_int_equal(rk__fetch_lead_step(true, RK__FETCH_STALE, true, false), RK__FETCH_COMPUTE);
    /* Expired counts as absent. */
    assert_int_equal(rk__fetch_lead_step(true, RK__FETCH_EXPIRED, false, false), RK__FETCH_POLL);
    assert_int_equal(rk__fetch_lead_step(true, RK__FETCH_EXPIRED, true, false), RK__FETCH_COMPUTE);
}

static void test_refreshed_meanwhile(void **state)
{
    (void)state;
    rk__value_meta cur = meta_at(T0, 5), same = meta_at(T0, 5), newer = meta_at(T0 + 60000, 5);
    assert_false(rk__fetch_refreshed_meanwhile(&cur, &same, RK__FETCH_FRESH));
    assert_true(rk__fetch_refreshed_meanwhile(&cur, &newer, RK__FETCH_FRESH));
    assert_false(rk__fetch_refreshed_meanwhile(&cur, &newer, RK__FETCH_STALE));
}

/* Polling: 5, 10, 20, 40, 50, 50 ms; each sleep in [d/2, d], cut to the
 * time left, never negative. */
static void test_poll_schedule(void **state)
{
    (void)state;
    int d = RK__FETCH_POLL_FIRST_MS;
    const int want[] = {10, 20, 40, 50, 50};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        d = rk__fetch_next_delay(d);
        assert_int_equal(d, want[i]);
    }
    assert_int_equal(rk__fetch_next_delay(0), RK__FETCH_POLL_FIRST_MS);
    assert_int_equal(rk__fetch_next_delay(INT32_MAX), RK__FETCH_POLL_MAX_MS);
    const uint64_t draws[] = {0, 1, 2499999, 2500000, 2500001, UINT64_MAX};
    for (size_t i = 0; i < sizeof draws / sizeof draws[0]; i++) {
        int64_t s = rk__fetch_sleep_ns(5, draws[i], INT64_MAX);
        assert_true(s >= 2500000 && s <= 5000000);
    }
    assert_int_equal(rk__fetch_sleep_ns(5, 0, 1000), 1000);
    assert_int_equal(rk__fetch_sleep_ns(5, 0, -7), 0);
    assert_int_equal(rk__fetch_sleep_ns(50, UINT64_MAX, INT64_MIN), 0);
    /* Rounds: bounded even for lock_ms 0, and proportional to it. */
    assert_true(rk__fetch_max_rounds(0) >= 1);
    assert_true(rk__fetch_max_rounds(10000) >= 10000 / RK__FETCH_POLL_FIRST_MS);
    assert_true(rk__fetch_max_rounds(-1) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_until_expiry),
        cmocka_unit_test(test_stale_window),
        cmocka_unit_test(test_early_refresh),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_new_meta),
        cmocka_unit_test(test_redis_ttl),
        cmocka_unit_test(test_lead_step),
        cmocka_unit_test(test_refreshed_meanwhile),
        cmocka_unit_test(test_poll_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
