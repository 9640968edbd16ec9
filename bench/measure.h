/*
 * measure.h — the timing the bench programs share: a monotonic clock in
 * nanoseconds, and nearest-rank percentiles of latency samples. Header-only
 * (static functions), since each bench program is built on its own.
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

#endif /* RK_BENCH_MEASURE_H */
