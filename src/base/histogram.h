/*
 * histogram.h — a lock-free latency histogram with log-linear buckets.
 *
 * Every request a client sends is timed and counted here, so recording
 * must cost next to nothing beside a round trip of tens of microseconds:
 * one bucket index computed with a count-leading-zeros, two relaxed atomic
 * additions, and a relaxed load (plus, rarely, a compare-and-swap) for the
 * maximum. No lock, no allocation, no system call.
 *
 * The layout is the one HdrHistogram made popular, at a coarse precision:
 * durations are counted in whole microseconds; 0..7 µs get one bucket each,
 * and every power of two from 8 µs up is split into RK__HIST_SUB (8) equal
 * sub-buckets. A bucket is therefore never wider than 1/8 of its lower
 * bound: any percentile read from it is within 6.25 % of the true value
 * (the bucket's midpoint is reported). 192 buckets reach 2^26 µs (67 s),
 * beyond every timeout redkit allows in practice; a last overflow bucket
 * takes anything longer. The whole histogram is 1.5 KiB.
 *
 * Relaxed atomics: each counter is exact, but a snapshot taken while
 * requests are being recorded is not one instant — the total of the buckets
 * and the sum may disagree by the few requests in flight. The snapshot's
 * count is the total of its buckets, so buckets and count always agree.
 *
 * Tests: tests/base/histogram_test.c (boundaries, percentiles against a sorted
 * array, concurrent recording).
 */
#ifndef RK_SRC_HISTOGRAM_H
#define RK_SRC_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>

#define RK__HIST_SUB_BITS 3
#define RK__HIST_SUB (1u << RK__HIST_SUB_BITS)      /* sub-buckets per power of two */
#define RK__HIST_MAX_BITS 26                          /* 2^26 µs = 67 s */
/* Buckets below 2^RK__HIST_MAX_BITS µs, then one overflow bucket. */
#define RK__HIST_FINITE ((RK__HIST_MAX_BITS - RK__HIST_SUB_BITS + 1) * RK__HIST_SUB)
#define RK__HIST_BUCKETS (RK__HIST_FINITE + 1)

typedef struct rk__hist {
    _Atomic uint64_t buckets[RK__HIST_BUCKETS];
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t max_ns;
} rk__hist;

/* A copy of a histogram, to compute figures from. */
typedef struct rk__hist_snap {
    uint64_t buckets[RK__HIST_BUCKETS];
    uint64_t count;   /* the total of buckets[] */
    uint64_t sum_ns;
    uint64_t max_ns;
} rk__hist_snap;

/* Zero a histogram (a zeroed struct is also a valid empty one). */
void rk__hist_init(rk__hist *h);

/* Count one duration in nanoseconds (negative counts as 0). Thread-safe. */
void rk__hist_record(rk__hist *h, int64_t ns);

/* Copy h into *out. Thread-safe against concurrent rk__hist_record(). */
void rk__hist_snapshot(const rk__hist *h, rk__hist_snap *out);

/* The bucket of a duration of us microseconds. */
unsigned rk__hist_index(uint64_t us);

/* The smallest duration (µs) counted in bucket i, and the largest. The
 * overflow bucket's upper bound is UINT64_MAX. */
uint64_t rk__hist_lower(unsigned i);
uint64_t rk__hist_upper(unsigned i);

/* The quantile of ppm parts per million (500000 = p50, 999000 = p99.9;
 * 1..1000000) in µs, by nearest rank: the midpoint of the bucket that
 * holds the ceil(count * ppm / 10^6)-th smallest duration, never more than
 * the maximum recorded. Integer arithmetic, so p99.9 of 1000 durations is
 * exactly the 999th. 0 when the histogram is empty. */
uint64_t rk__hist_quantile(const rk__hist_snap *s, uint32_t ppm);

/* The rank rk__hist_quantile() looks for (1..count; 0 when count is 0). */
uint64_t rk__hist_rank(uint64_t count, uint32_t ppm);

/* How many recorded durations were below 2^bits µs (bits 0..26): the
 * cumulative count at a power-of-two boundary, which is always a bucket
 * boundary, so the figure is exact. */
uint64_t rk__hist_count_below_pow2(const rk__hist_snap *s, unsigned bits);

#endif
