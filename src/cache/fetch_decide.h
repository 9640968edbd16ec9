/*
 * fetch_decide.h — the decisions of rk_cache_fetch(), as pure functions of
 * (the stored value's META block, now, the call's options): is a value
 * fresh, due for an early refresh, stale or expired; may a stale value be
 * served to this caller; does a poller take what it read, compute, or
 * poll again, and for how long does it sleep; what expiry and Redis TTL
 * does a computed value get.
 *
 * cache_fetch.c does the talking (Redis, the flights, the callback) and
 * asks these functions what to do; they read no clock, draw no random
 * number and touch no state, so tests/cache/fetch_decide_test.c moves
 * time by hand and checks every boundary (the same design as curl's
 * lib/ratelimit.c, which takes "now" as a parameter).
 *
 * Times are Unix milliseconds on the server's clock (see
 * rk__fetch_server_now_ms() in fetch_state.h), so that the expiry a
 * writer stores and the "now" a reader compares it with come from one
 * clock whatever the hosts' own clocks say. All arithmetic saturates: an
 * expiry read from Redis is bounded by value.c, but "now" is whatever the
 * caller passes.
 */
#ifndef RK_SRC_FETCH_DECIDE_H
#define RK_SRC_FETCH_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "value.h"

/* Where a stored value stands for one call. */
typedef enum rk__fetch_vstate {
    RK__FETCH_FRESH,   /* serve it */
    RK__FETCH_EARLY,   /* fresh, but this caller won the XFetch draw: refresh it */
    RK__FETCH_STALE,   /* past its fresh life, within this call's stale window */
    RK__FETCH_EXPIRED  /* past both: as if absent */
} rk__fetch_vstate;

/* The options of one call that the decisions depend on. */
typedef struct rk__fetch_policy {
    int64_t stale_ms;  /* serve-stale window; 0 = none */
    double beta;       /* XFetch; 0 = 1.0; negative = no early refresh */
} rk__fetch_policy;

/* a - b, saturating at INT64_MIN / INT64_MAX. */
int64_t rk__ms_sub_sat(int64_t a, int64_t b);

/* The XFetch test (Vattani, Chierichetti, Lowenstein, VLDB 2015): should a
 * reader at now_ms refresh a value whose logical expiry is expires_at_ms
 * and whose computation took compute_ms? True when
 *     now_ms - compute_ms * beta * ln(u) >= expires_at_ms,
 * u being the reader's uniform draw in (0, 1]. beta 0 means 1.0; a
 * negative beta, no expiry (0) or u outside (0, 1] give false. */
bool rk__xfetch_early(int64_t now_ms, int64_t expires_at_ms, uint32_t compute_ms, double beta, double u);

/*
 * Classify a stored value at now_ms. has_meta false (raw mode, plain sets)
 * or an expiry of 0 (RK_TTL_NONE) = always fresh. u is this reader's
 * XFetch draw in (0, 1], or 0 for "no draw" (a value read again inside
 * one call is never made early a second time).
 */
rk__fetch_vstate rk__fetch_classify(const rk__value_meta *meta, bool has_meta, int64_t now_ms,
                                    const rk__fetch_policy *p, double u);

/* May a value that expired at expires_at_ms be served at now_ms as stale
 * to a caller whose window is stale_ms? (False without a window.) */
bool rk__fetch_within_stale(int64_t expires_at_ms, int64_t now_ms, int64_t stale_ms);

/* What a caller leading a missing key does with one lock-and-read round:
 * take the value it read, compute it, or poll again. */
typedef enum rk__fetch_step {
    RK__FETCH_TAKE,     /* someone else's value (maybe stale): serve it */
    RK__FETCH_COMPUTE,  /* the lock is ours, or the wait is over */
    RK__FETCH_POLL      /* another process computes: sleep and read again */
} rk__fetch_step;

/* present: a value was read, in state s; acquired: this caller now holds
 * the Redis lock; waited_out: the wait budget (lock_ms) or the round
 * bound is spent. A stale value is taken unless the lock is ours (then it
 * is refreshed); an expired one counts as absent. */
rk__fetch_step rk__fetch_lead_step(bool present, rk__fetch_vstate s, bool acquired, bool waited_out);

/* A value read during a refresh: was it refreshed by someone else since
 * the caller read cur (a different expiry stamp, and fresh now)? */
bool rk__fetch_refreshed_meanwhile(const rk__value_meta *cur, const rk__value_meta *now_meta, rk__fetch_vstate now_state);

/* The META block of a value computed at now_ms that took took_ns, with a
 * fresh life of fresh_ttl_ms (RK_TTL_NONE = no expiry, 0 in the block).
 * The expiry saturates at RK__VALUE_EXPIRY_MAX; compute_ms is at least 1
 * (so that even a cheap value can be refreshed early) and at most
 * UINT32_MAX. */
rk__value_meta rk__fetch_new_meta(int64_t now_ms, int64_t fresh_ttl_ms, int64_t took_ns);

/* The Redis TTL of a stored computed value: the fresh TTL plus the stale
 * window when the value carries its META block (typed mode), saturating
 * at 2^62; RK_TTL_NONE stays RK_TTL_NONE. */
int64_t rk__fetch_redis_ttl(int64_t fresh_ttl_ms, int64_t stale_ms, bool has_meta);

/* Polling for another process's computation: the delay after delay_ms
 * (doubling from RK__FETCH_POLL_FIRST_MS up to RK__FETCH_POLL_MAX_MS),
 * and the sleep for delay_ms given a random draw and the time left:
 * jittered in [delay/2, delay], never past the time left, never negative. */
#define RK__FETCH_POLL_FIRST_MS 5
#define RK__FETCH_POLL_MAX_MS 50
int rk__fetch_next_delay(int delay_ms);
int64_t rk__fetch_sleep_ns(int delay_ms, uint64_t draw, int64_t left_ns);

/* The bound on poll rounds for a wait of lock_ms: each round sleeps at
 * least RK__FETCH_POLL_FIRST_MS / 2, so the budget bounds the count; the
 * constant is the bound in case the clock misbehaves. */
int64_t rk__fetch_max_rounds(int64_t lock_ms);

#endif
