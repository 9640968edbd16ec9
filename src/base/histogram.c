/*
 * histogram.c — the log-linear latency histogram (layout and rationale in
 * histogram.h).
 *
 * The index is computed, not searched: the position of the highest set bit
 * picks the power of two, the next three bits the sub-bucket. For a
 * duration v >= 8 µs whose highest bit is p, shift = p - 3 and the bucket
 * is shift * 8 + (v >> shift); v >> shift lies in 8..15, so consecutive
 * powers of two take consecutive runs of 8 buckets. Below 8 µs shift is 0
 * and the same formula gives v itself.
 */
#include "histogram.h"

void rk__hist_init(rk__hist *h)
{
    for (unsigned i = 0; i < RK__HIST_BUCKETS; i++) atomic_init(&h->buckets[i], 0);
    atomic_init(&h->sum_ns, 0);
    atomic_init(&h->max_ns, 0);
}

unsigned rk__hist_index(uint64_t us)
{
    if (us >> RK__HIST_MAX_BITS) return RK__HIST_FINITE; /* overflow */
    if (us < RK__HIST_SUB) return (unsigned)us;
    unsigned p = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = p - RK__HIST_SUB_BITS;
    return shift * RK__HIST_SUB + (unsigned)(us >> shift);
}

uint64_t rk__hist_lower(unsigned i)
{
    if (i >= RK__HIST_FINITE) return (uint64_t)1 << RK__HIST_MAX_BITS;
    if (i < RK__HIST_SUB) return i;
    unsigned shift = i / RK__HIST_SUB - 1;
    return (uint64_t)(RK__HIST_SUB + i % RK__HIST_SUB) << shift;
}

uint64_t rk__hist_upper(unsigned i)
{
    if (i >= RK__HIST_FINITE) return UINT64_MAX;
    if (i < RK__HIST_SUB) return i;
    unsigned shift = i / RK__HIST_SUB - 1;
    return rk__hist_lower(i) + ((uint64_t)1 << shift) - 1;
}

void rk__hist_record(rk__hist *h, int64_t ns)
{
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;
    atomic_fetch_add_explicit(&h->buckets[rk__hist_index(v / 1000)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, v, memory_order_relaxed);
    /* A new maximum is rare after the first few requests, so this is
     * almost always one plain load. Each failed exchange means another
     * thread raised the maximum meanwhile; the bound only guards against
     * a pathological storm of ever-larger values, where losing one
     * update of a statistic is acceptable. */
    uint64_t max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
    for (int tries = 0; v > max && tries < 64; tries++)
        if (atomic_compare_exchange_weak_explicit(&h->max_ns, &max, v, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
}

void rk__hist_snapshot(const rk__hist *h, rk__hist_snap *out)
{
    out->count = 0;
    for (unsigned i = 0; i < RK__HIST_BUCKETS; i++) {
        out->buckets[i] = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        out->count += out->buckets[i];
    }
    out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    out->max_ns = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
}

uint64_t rk__hist_rank(uint64_t count, uint32_t ppm)
{
    if (count == 0) return 0;
    if (ppm > 1000000) ppm = 1000000;
    /* ceil(count * ppm / 10^6) without overflowing 64 bits. */
    uint64_t whole = count / 1000000, part = count % 1000000;
    uint64_t rank = whole * ppm + (part * ppm + 999999) / 1000000;
    return rank < 1 ? 1 : rank > count ? count : rank;
}

uint64_t rk__hist_quantile(const rk__hist_snap *s, uint32_t ppm)
{
    uint64_t rank = rk__hist_rank(s->count, ppm);
    if (rank == 0) return 0;
    uint64_t max_us = s->max_ns / 1000, seen = 0;
    for (unsigned i = 0; i < RK__HIST_BUCKETS; i++) {
        seen += s->buckets[i];
        if (seen < rank) continue;
        if (i >= RK__HIST_FINITE) return max_us;
        uint64_t lo = rk__hist_lower(i), mid = lo + (rk__hist_upper(i) - lo) / 2;
        /* The maximum was read a moment apart from the buckets: never
         * report a quantile above it, nor below the bucket it names. */
        return mid > max_us && max_us >= lo ? max_us : mid;
    }
    return max_us;
}

uint64_t rk__hist_count_below_pow2(const rk__hist_snap *s, unsigned bits)
{
    if (bits > RK__HIST_MAX_BITS) bits = RK__HIST_MAX_BITS;
    unsigned end = rk__hist_index((uint64_t)1 << bits);
    uint64_t n = 0;
    for (unsigned i = 0; i < end; i++) n += s->buckets[i];
    return n;
}
