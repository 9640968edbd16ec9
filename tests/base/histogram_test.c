/*
 * histogram_test.c — the latency histogram on its own (src/base/histogram.c):
 * bucket boundaries, quantiles against a sorted-array reference, the
 * power-of-two counts the Prometheus text uses, and exact counting under
 * concurrent recording. Pure unit tests: no server, no clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"

/* A deterministic generator (splitmix64), so a failure replays exactly. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static rk__hist *new_hist(void)
{
    rk__hist *h = malloc(sizeof *h);
    assert_non_null(h);
    rk__hist_init(h);
    return h;
}

static void test_small_values_have_exact_buckets(void **state)
{
    (void)state;
    /* 0..15 µs: one bucket per microsecond. */
    for (uint64_t us = 0; us < 16; us++) {
        assert_int_equal(rk__hist_index(us), us);
        assert_int_equal(rk__hist_lower((unsigned)us), us);
        assert_int_equal(rk__hist_upper((unsigned)us), us);
    }
    /* Then two per bucket: 16-17, 18-19, ... */
    assert_int_equal(rk__hist_index(16), 16);
    assert_int_equal(rk__hist_index(17), 16);
    assert_int_equal(rk__hist_index(18), 17);
    assert_int_equal(rk__hist_index(31), 23);
    assert_int_equal(rk__hist_index(32), 24);
    /* A typical loopback round trip: 64..127 µs in buckets of 8. */
    assert_int_equal(rk__hist_lower(rk__hist_index(100)), 96);
    assert_int_equal(rk__hist_upper(rk__hist_index(100)), 103);
}

/* Every bucket: contiguous with the next, its bounds map back to it, and
 * it is never wider than 1/8 of its lower bound (the precision promised). */
static void test_buckets_tile_the_range(void **state)
{
    (void)state;
    assert_int_equal(RK__HIST_FINITE, 192);
    assert_int_equal(rk__hist_lower(0), 0);
    for (unsigned i = 0; i < RK__HIST_FINITE; i++) {
        uint64_t lo = rk__hist_lower(i), hi = rk__hist_upper(i);
        assert_true(lo <= hi);
        assert_int_equal(rk__hist_index(lo), i);
        assert_int_equal(rk__hist_index(hi), i);
        assert_int_equal(rk__hist_index(hi + 1), i + 1);
        if (i + 1 < RK__HIST_FINITE) assert_int_equal(rk__hist_lower(i + 1), hi + 1);
        if (lo >= 8) assert_true((hi - lo + 1) * 8 <= lo);
    }
    /* The last finite bucket ends just below 2^26 µs (67 s); beyond is
     * the overflow bucket, however large. */
    assert_int_equal(rk__hist_upper(RK__HIST_FINITE - 1), ((uint64_t)1 << 26) - 1);
    assert_int_equal(rk__hist_index((uint64_t)1 << 26), RK__HIST_FINITE);
    assert_int_equal(rk__hist_index(UINT64_MAX), RK__HIST_FINITE);
    assert_int_equal(rk__hist_upper(RK__HIST_FINITE), UINT64_MAX);
}

static void test_record_and_snapshot(void **state)
{
    (void)state;
    rk__hist *h = new_hist();
    rk__hist_snap *s = malloc(sizeof *s);
    assert_non_null(s);

    rk__hist_snapshot(h, s);
    assert_int_equal(s->count, 0);
    assert_int_equal(rk__hist_quantile(s, 500000), 0);

    rk__hist_record(h, 999);         /* 0.999 µs -> bucket 0 */
    rk__hist_record(h, 1000);        /* 1 µs */
    rk__hist_record(h, 64999);       /* 64.999 µs -> bucket of 64 */
    rk__hist_record(h, -5);          /* a clock oddity counts as 0 */
    rk__hist_record(h, 120000000000); /* 120 s: overflow */
    rk__hist_snapshot(h, s);
    assert_int_equal(s->count, 5);
    assert_int_equal(s->buckets[0], 2);
    assert_int_equal(s->buckets[1], 1);
    assert_int_equal(s->buckets[rk__hist_index(64)], 1);
    assert_int_equal(s->buckets[RK__HIST_FINITE], 1);
    assert_int_equal(s->sum_ns, 999 + 1000 + 64999 + 0 + 120000000000ull);
    assert_int_equal(s->max_ns, 120000000000ull);
    /* The top quantile lands in the overflow bucket: reported as the max. */
    assert_int_equal(rk__hist_quantile(s, 1000000), 120000000);
    assert_int_equal(rk__hist_quantile(s, 500000), 1);

    free(s);
    free(h);
}

static void test_rank(void **state)
{
    (void)state;
    assert_int_equal(rk__hist_rank(0, 500000), 0);
    assert_int_equal(rk__hist_rank(1, 1), 1);
    assert_int_equal(rk__hist_rank(1000, 999000), 999); /* exactly, no float rounding */
    assert_int_equal(rk__hist_rank(1000, 990000), 990);
    assert_int_equal(rk__hist_rank(1001, 500000), 501);
    assert_int_equal(rk__hist_rank(10, 1000000), 10);
    assert_int_equal(rk__hist_rank(UINT64_MAX, 1000000), UINT64_MAX); /* no overflow */
    assert_int_equal(rk__hist_rank(3000000, 999000), 2997000);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* n durations (ns) drawn by gen, recorded, then every quantile checked
 * against the nearest-rank value of the sorted array: same bucket, and
 * within the bucket's half width (6.25 %) of it. */
static void check_against_reference(uint64_t (*gen)(void), size_t n)
{
    rk__hist *h = new_hist();
    rk__hist_snap *s = malloc(sizeof *s);
    uint64_t *us = malloc(n * sizeof *us);
    assert_non_null(s);
    assert_non_null(us);
    uint64_t sum = 0, max = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t ns = gen();
        rk__hist_record(h, (int64_t)ns);
        us[i] = ns / 1000;
        sum += ns;
        if (ns > max) max = ns;
    }
    qsort(us, n, sizeof *us, cmp_u64);
    rk__hist_snapshot(h, s);
    assert_int_equal(s->count, n);
    assert_int_equal(s->sum_ns, sum);
    assert_int_equal(s->max_ns, max);

    static const uint32_t ppms[] = {1, 100000, 250000, 500000, 900000, 990000, 999000, 999900, 1000000};
    for (size_t q = 0; q < sizeof ppms / sizeof ppms[0]; q++) {
        uint64_t rank = rk__hist_rank(n, ppms[q]);
        uint64_t want = us[rank - 1];
        uint64_t got = rk__hist_quantile(s, ppms[q]);
        unsigned b = rk__hist_index(want);
        if (b == RK__HIST_FINITE) {
            assert_int_equal(got, max / 1000);
            continue;
        }
        assert_int_equal(rk__hist_index(got), b);
        uint64_t half = (rk__hist_upper(b) - rk__hist_lower(b) + 1) / 2;
        uint64_t diff = got > want ? got - want : want - got;
        assert_true(diff <= half);
        if (want >= 8) assert_true(diff * 16 <= want); /* 6.25 % */
        assert_true(got <= max / 1000);
    }

    /* The power-of-two counts are exact. */
    for (unsigned bits = 0; bits <= RK__HIST_MAX_BITS; bits++) {
        uint64_t below = 0;
        while (below < n && us[below] < ((uint64_t)1 << bits)) below++;
        assert_int_equal(rk__hist_count_below_pow2(s, bits), below);
    }
    free(us);
    free(s);
    free(h);
}

/* Round trips: mostly 40..140 µs, a tail to 50 ms. */
static uint64_t gen_round_trips(void)
{
    uint64_t r = rng();
    if (r % 100 == 0) return 1000000 + rng() % 49000000;
    return 40000 + rng() % 100000;
}

/* Log-uniform over 1 ns .. 100 s: every bucket gets visitors. */
static uint64_t gen_log_uniform(void)
{
    unsigned bits = (unsigned)(rng() % 37);
    return ((uint64_t)1 << bits) + rng() % ((uint64_t)1 << bits);
}

/* Few distinct values: quantiles must hit them, not their neighbours. */
static uint64_t gen_discrete(void)
{
    static const uint64_t v[] = {3000, 3000, 3000, 250000, 7000000};
    return v[rng() % 5];
}

static void test_quantiles_match_sorted_reference(void **state)
{
    (void)state;
    rng_state = 42;
    check_against_reference(gen_round_trips, 100000);
    check_against_reference(gen_log_uniform, 50000);
    check_against_reference(gen_discrete, 999);
    check_against_reference(gen_round_trips, 1);
    check_against_reference(gen_log_uniform, 7);
}

#define THREADS 4
#define PER_THREAD 200000

static void *recorder(void *arg)
{
    rk__hist *h = arg;
    for (int i = 0; i < PER_THREAD; i++) rk__hist_record(h, (int64_t)(i % 1000) * 1000 + 500);
    return NULL;
}

/* Relaxed atomics still count every event exactly. */
static void test_concurrent_recording_is_exact(void **state)
{
    (void)state;
    rk__hist *h = new_hist();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, recorder, h), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    rk__hist_snap *s = malloc(sizeof *s);
    assert_non_null(s);
    rk__hist_snapshot(h, s);
    assert_int_equal(s->count, (uint64_t)THREADS * PER_THREAD);
    uint64_t per_thread_sum = 0;
    for (int i = 0; i < PER_THREAD; i++) per_thread_sum += (uint64_t)(i % 1000) * 1000 + 500;
    assert_int_equal(s->sum_ns, per_thread_sum * THREADS);
    assert_int_equal(s->max_ns, 999500);
    /* Each microsecond value 0..7 was recorded THREADS * PER_THREAD / 1000 times. */
    for (unsigned us = 0; us < 8; us++) assert_int_equal(s->buckets[us], (uint64_t)THREADS * PER_THREAD / 1000);
    free(s);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values_have_exact_buckets),
        cmocka_unit_test(test_buckets_tile_the_range),
        cmocka_unit_test(test_record_and_snapshot),
        cmocka_unit_test(test_rank),
        cmocka_unit_test(test_quantiles_match_sorted_reference),
        cmocka_unit_test(test_concurrent_recording_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
