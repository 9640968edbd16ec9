/*
 * measure.h — the timing the bench programs share: a monotonic clock in
 * nanoseconds, nearest-rank percentiles of latency samples, and rounds in
 * which contenders take turns, summed up by their median round.
 * Header-only (static functions), since each bench program is built on its
 * own.
 */
#ifndef RK_BENCH_MEASURE_H
#define RK_BENCH_MEASURE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline int64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int bench_cmp_ns(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

    return (a > b) - (a < b);
}

/* Sort n latency samples in place, ready for bench_percentile(). */
static inline void bench_sort(int64_t *v, size_t n)
{
    qsort(v, n, sizeof v[0], bench_cmp_ns);
}

/* Nearest-rank percentile p (0..1) of the sorted v[0..n-1]. */
static inline int64_t bench_percentile(const int64_t *v, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n + 0.999999);

    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

/* ---- rounds of contenders taking turns ------------------------------------ */

/* Most contenders bench_measure_round() takes, and most rounds
 * bench_median_round() takes. */
#define BENCH_MAX_IMPLS 8
#define BENCH_MAX_ROUNDS 16

/* What one round measured for one contender: steps (requests, or batches)
 * per second over the time its own steps took, and the p50 and p99 of one
 * step. */
typedef struct bench_result {
    double per_s;
    double p50_us, p99_us;
} bench_result;

/* Step n of contender impl (a request, or a batch): 0 on success, -1 after
 * printing what went wrong. */
typedef int (*bench_step_fn)(void *ctx, size_t impl, size_t n);

/*
 * One measured round of n_impls (1..BENCH_MAX_IMPLS) contenders. Each first does `warmup`
 * untimed steps; then they take turns every `block` steps, the first of
 * each turn rotating (starting from `round`), until each has done `count`:
 * a slow drift of the machine (another process, the CPU clock) then weighs
 * on all of them alike instead of on whichever ran during it. Each step
 * is timed into lat_ns[impl][n] (count entries each, sorted afterwards);
 * out[impl] gets per_s = count over the time the contender's own blocks
 * took, and p50/p99. A failed step ends the program (exit status 2).
 */
static inline void bench_measure_round(bench_step_fn step, void *ctx, size_t n_impls, size_t warmup,
                                       size_t count, size_t block, size_t round, int64_t *const *lat_ns,
                                       bench_result *out)
{
    int64_t busy_ns[BENCH_MAX_IMPLS] = { 0 };

    for (size_t i = 0; i < n_impls; i++)
        for (size_t n = 0; n < warmup; n++)
            if (step(ctx, i, n) != 0)
                exit(2);

    for (size_t done = 0, turn = round; done < count; done += block, turn++) {
        size_t end = done + block < count ? done + block : count;

        for (size_t j = 0; j < n_impls; j++) {
            size_t i = (j + turn) % n_impls;
            int64_t start = bench_now_ns(), t0 = start, t1;

            for (size_t n = done; n < end; n++, t0 = t1) {
                if (step(ctx, i, n) != 0)
                    exit(2);
                t1 = bench_now_ns();
                lat_ns[i][n] = t1 - t0;
            }
            busy_ns[i] += t0 - start;
        }
    }

    for (size_t i = 0; i < n_impls; i++) {
        bench_sort(lat_ns[i], count);
        out[i].per_s = (double)count * 1e9 / (double)busy_ns[i];
        out[i].p50_us = (double)bench_percentile(lat_ns[i], count, 0.50) / 1000.0;
        out[i].p99_us = (double)bench_percentile(lat_ns[i], count, 0.99) / 1000.0;
    }
}

/*
 * The round whose throughput is the median of the n (1..BENCH_MAX_ROUNDS)
 * measured, with the spread of all rounds' per_s around it, as a fraction
 * of the median: (max - min) / median.
 */
static inline bench_result bench_median_round(const bench_result *rounds, size_t n, double *spread)
{
    size_t idx[BENCH_MAX_ROUNDS];

    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t i = 1; i < n; i++) /* insertion sort by per_s */
        for (size_t j = i; j > 0 && rounds[idx[j]].per_s < rounds[idx[j - 1]].per_s; j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    *spread = (rounds[idx[n - 1]].per_s - rounds[idx[0]].per_s) / rounds[idx[n / 2]].per_s;
    return rounds[idx[n / 2]];
}

#endif /* RK_BENCH_MEASURE_H */
