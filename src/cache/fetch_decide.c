/*
 * fetch_decide.c — the pure decisions of rk_cache_fetch() (see
 * fetch_decide.h for why they live apart from the calls that act on them).
 * No clock, no randomness, no state: every input is a parameter.
 */
#include <math.h>

#include <redkit/cache.h>

#include "fetch_decide.h"

int64_t rk__ms_sub_sat(int64_t a, int64_t b)
{
    if (b < 0 && a > INT64_MAX + b) return INT64_MAX;
    if (b > 0 && a < INT64_MIN + b) return INT64_MIN;
    return a - b;
}

bool rk__xfetch_early(int64_t now_ms, int64_t expires_at_ms, uint32_t compute_ms, double beta, double u)
{
    if (expires_at_ms <= 0 || beta < 0 || !(u > 0) || u > 1) return false;
    if (beta == 0) beta = 1.0;
    /* -ln(u) is exponentially distributed with mean 1: the refresh starts,
     * on average, delta * beta before expiry, for each reader that draws.
     * In doubles: no overflow, whatever the inputs. */
    return (double)now_ms - (double)compute_ms * beta * log(u) >= (double)expires_at_ms;
}

rk__fetch_vstate rk__fetch_classify(const rk__value_meta *meta, bool has_meta, int64_t now_ms,
                                    const rk__fetch_policy *p, double u)
{
    if (!has_meta || meta->expires_at_ms == 0) return RK__FETCH_FRESH;
    int64_t exp = meta->expires_at_ms;
    if (now_ms < exp) {
        if (u > 0 && p->beta >= 0 && rk__xfetch_early(now_ms, exp, meta->compute_ms, p->beta, u))
            return RK__FETCH_EARLY;
        return RK__FETCH_FRESH;
    }
    return rk__fetch_within_stale(exp, now_ms, p->stale_ms) ? RK__FETCH_STALE : RK__FETCH_EXPIRED;
}

bool rk__fetch_within_stale(int64_t expires_at_ms, int64_t now_ms, int64_t stale_ms)
{
    return stale_ms > 0 && rk__ms_sub_sat(now_ms, expires_at_ms) < stale_ms;
}

rk__fetch_step rk__fetch_lead_step(bool present, rk__fetch_vstate s, bool acquired, bool waited_out)
{
    /* Someone else's value: take it, unless it is only stale and the lock
     * is ours, in which case we refresh it. (An early state cannot come
     * from a read without a draw; it counts as fresh.) */
    if (present && (s == RK__FETCH_FRESH || s == RK__FETCH_EARLY || (s == RK__FETCH_STALE && !acquired)))
        return RK__FETCH_TAKE;
    /* Ours, or the holder overran lock_ms in all: compute. */
    if (acquired || waited_out) return RK__FETCH_COMPUTE;
    return RK__FETCH_POLL;
}

bool rk__fetch_refreshed_meanwhile(const rk__value_meta *cur, const rk__value_meta *now_meta, rk__fetch_vstate now_state)
{
    return now_meta->expires_at_ms != cur->expires_at_ms && now_state == RK__FETCH_FRESH;
}

rk__value_meta rk__fetch_new_meta(int64_t now_ms, int64_t fresh_ttl_ms, int64_t took_ns)
{
    rk__value_meta m = {0};
    if (fresh_ttl_ms != RK_TTL_NONE) {
        if (fresh_ttl_ms < 0) fresh_ttl_ms = 0; /* callers check TTLs; a pure function still must not wrap */
        if (now_ms < 1) now_ms = 1; /* 0 would mean "no expiry" */
        m.expires_at_ms = now_ms >= RK__VALUE_EXPIRY_MAX - fresh_ttl_ms ? RK__VALUE_EXPIRY_MAX : now_ms + fresh_ttl_ms;
    }
    if (took_ns < 0) took_ns = 0;
    int64_t ms = took_ns / 1000000 + (took_ns % 1000000 != 0);
    m.compute_ms = ms < 1 ? 1 : ms > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    return m;
}

int64_t rk__fetch_redis_ttl(int64_t fresh_ttl_ms, int64_t stale_ms, bool has_meta)
{
    if (fresh_ttl_ms == RK_TTL_NONE || !has_meta || stale_ms <= 0) return fresh_ttl_ms;
    const int64_t max = (int64_t)1 << 62;
    return fresh_ttl_ms >= max - stale_ms ? max : fresh_ttl_ms + stale_ms;
}

int rk__fetch_next_delay(int delay_ms)
{
    if (delay_ms < RK__FETCH_POLL_FIRST_MS) return RK__FETCH_POLL_FIRST_MS;
    return delay_ms >= RK__FETCH_POLL_MAX_MS / 2 ? RK__FETCH_POLL_MAX_MS : delay_ms * 2;
}

int64_t rk__fetch_sleep_ns(int delay_ms, uint64_t draw, int64_t left_ns)
{
    if (delay_ms < 1) delay_ms = 1;
    int64_t half = (int64_t)delay_ms * 1000000 / 2;
    /* Jitter in [d/2, d]: pollers of several processes spread out. */
    int64_t sleep_ns = half + (int64_t)(draw % (uint64_t)(half + 1));
    if (sleep_ns > left_ns) sleep_ns = left_ns > 0 ? left_ns : 0;
    return sleep_ns;
}

int64_t rk__fetch_max_rounds(int64_t lock_ms)
{
    if (lock_ms < 0) lock_ms = 0;
    return lock_ms / (RK__FETCH_POLL_FIRST_MS / 2) + 8;
}
