/*
 * fetch_state.h — what an rk_cache keeps for rk_cache_fetch() between
 * calls (fetch_state.c), created and freed with the handle:
 *
 *   - the computations in flight in this process: a table of keys, each
 *     with its leader, its waiters and, once done, the outcome they share
 *     (single-flight);
 *   - this process's copies of the values it fetched, served while Redis
 *     is unreachable: bounded in entries and in bytes, the oldest evicted
 *     first, forgotten when the handle deletes a key, invalidates a tag or
 *     clears its namespace;
 *   - the clocks and the random source a fetch uses.
 *
 * cache_fetch.c owns one call, from the first read to the store; whatever
 * outlives a call lives here, behind these functions, each table under its
 * own mutex, so that a call never holds a lock while it talks to Redis or
 * runs a compute callback.
 */
#ifndef RK_SRC_FETCH_STATE_H
#define RK_SRC_FETCH_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/status.h>

#include "error.h"
#include "value.h"

/* Redis adds a TTL to its clock and refuses a sum that overflows: every
 * TTL, and every expiry computed from one, stays at or below 2^62 ms
 * (146 million years, so "never" in practice). */
#define RK__MAX_TTL_MS ((int64_t)1 << 62)

/* a + b for a, b >= 0, saturating at RK__MAX_TTL_MS: a TTL plus a stale
 * window, or an instant plus a duration, can each be near the maximum. */
static inline int64_t rk__ms_add(int64_t a, int64_t b)
{
    return a >= RK__MAX_TTL_MS - b ? RK__MAX_TTL_MS : a + b;
}

/* ---- clocks and randomness ---------------------------------------------- */

/* A fast, well-spread (not secret) 64-bit draw from a per-thread
 * generator, reseeded after fork(). */
uint64_t rk__fetch_rng_next(void);

/* Uniform in (0, 1]: never 0, whose logarithm is -inf. */
double rk__fetch_rng_unit(void);

/*
 * The server's clock. A value's logical expiry is shared by every process
 * that reads it, so it must not depend on the clock of the host that
 * wrote it: a writer whose clock was 2 minutes behind once stored values
 * that readers with the right clock found expired. Expiries are therefore
 * written and compared on Redis's clock, estimated per handle as the
 * local wall clock plus an offset measured with TIME: in the same round
 * trip as the fetch lock (every writer takes it before computing), and
 * with the first read of a handle and then at most once per
 * RK__FETCH_CLOCK_REFRESH_MS, so the hit path stays one GET. The
 * offset's error is at most half a round trip. Until a first sample
 * (or when TIME is refused, say by an ACL), the offset is 0: the local
 * clock, as before.
 */
#define RK__FETCH_CLOCK_REFRESH_MS 60000

/* Now on the server's clock, as this handle estimates it (Unix ms). */
int64_t rk__fetch_server_now_ms(struct rk__fetch_state *fs);

/* True when the handle's estimate should be (re)measured. */
bool rk__fetch_clock_due(struct rk__fetch_state *fs);

/* Take one sample: server_ms is the server's TIME reply (Unix ms),
 * sent_local_ms the local wall clock (skew included) when the request
 * was sent, received_local_ms when the reply came. */
void rk__fetch_clock_sample(struct rk__fetch_state *fs, int64_t server_ms, int64_t sent_local_ms,
                            int64_t received_local_ms);

/* The local wall clock as this handle sees it: rk__wall_ms() plus the
 * test skew (0 outside tests). */
int64_t rk__fetch_local_ms(struct rk__fetch_state *fs);

/* Test hook: make this handle's host clock off by skew_ms (negative =
 * behind), to show that a writer's wrong clock does not reach the
 * expiries it stores. */
void rk__fetch_set_clock_skew(struct rk__fetch_state *fs, int64_t skew_ms);

/* ---- outcomes ------------------------------------------------------------ */

/* What one call ends with, and what a flight hands to its waiters. */
typedef struct rk__fetch_outcome {
    rk_status st;
    char *data;              /* RK_OK: the value, NUL-terminated, owned */
    size_t len;
    rk__value_meta meta;     /* its META block, when has_meta */
    bool has_meta;
    bool from_copy;          /* served from this process's copies */
    bool stale, degraded, computed, early, waited;
    bool compute_failed;     /* st is the compute callback's own failure
                                (RK_ERR_SOURCE): counted in compute_errors,
                                not errors[st] */
    rk_status source_status; /* the status the callback failed with, else
                                RK_OK (kept when a stale value replaces
                                the failure) */
    rk_status replaced;      /* RK_OK served in place of this failure of
                                the computation (else RK_OK): a waiter that
                                cannot take a stale value gets it instead */
    char msg[RK__ERRMSG_MAX]; /* errors, and why a value is stale or degraded */
    char replaced_msg[RK__ERRMSG_MAX]; /* the failure's message, with replaced */
} rk__fetch_outcome;

/* ---- the per-handle state ------------------------------------------------ */

struct rk__fetch_state;

/* The prefix of the handle's fetch locks, "<prefix>:<ns>#lock:", valid as
 * long as the handle; *len is its length. */
const char *rk__fetch_lock_head(const struct rk__fetch_state *fs, size_t *len);

/* ---- in-flight computations ---------------------------------------------- */

typedef struct rk__flight rk__flight;

/*
 * Lead the computation of key, or join the one in progress (when join is
 * true). On RK_OK *fl is the flight and *leader says which; with join
 * false and someone else leading, *fl is NULL. A thread that leads the key
 * already (a fetch from its own compute callback) is refused with
 * RK_ERR_INVALID when it would join: it would wait for itself. Also
 * RK_ERR_NOMEM. Every flight obtained is given back exactly once, with
 * rk__flight_finish() (leader) or rk__flight_wait() (waiter).
 */
rk_status rk__flight_enter(struct rk__fetch_state *fs, const char *key, size_t klen, bool join, rk__flight **fl,
                           bool *leader);

/* The leader's end: take the flight out of the table (later callers start
 * afresh) and hand a copy of *o to its waiters; o stays the leader's. */
void rk__flight_finish(struct rk__fetch_state *fs, rk__flight *f, const rk__fetch_outcome *o);

/* A waiter's end: wait until the flight is done or until deadline_ns
 * (CLOCK_MONOTONIC). Returns true with the shared outcome in *o (its data
 * a copy of the waiter's own, or RK_ERR_NOMEM), false on timeout (*o
 * untouched). */
bool rk__flight_wait(struct rk__fetch_state *fs, rk__flight *f, int64_t deadline_ns, rk__fetch_outcome *o);

/* ---- this process's copies ----------------------------------------------- */

/*
 * A copy must never outlive the value it copies: a value a call read may
 * be deleted before the call keeps its copy. So a call takes a mark before
 * its first read, and its copy is kept only if its key was not forgotten
 * since (nor everything, nor more keys than the table remembers): a call
 * that lost that race simply keeps no copy this time.
 */
uint64_t rk__copies_mark(struct rk__fetch_state *fs);

/* Keep a copy of the value of o (RK_OK, with its META block), served
 * within stale_ms past its logical expiry while Redis is down. A hit on
 * the same stored value (the same META stamp: expiry, computation time
 * and length) only widens the copy's stale window. The table's bounds are
 * kept by evicting the oldest copies; a value that alone would exceed the
 * byte budget is not kept (and an older copy of the key is dropped). mark
 * is the call's, from rk__copies_mark(). Best effort: without memory,
 * nothing is kept. */
void rk__copies_put(struct rk__fetch_state *fs, const char *key, size_t klen, const rk__fetch_outcome *o,
                    int64_t stale_ms, uint64_t mark);

/* A kept value of key inside its stale window (also the caller's window,
 * stale_ms) and not forgotten, into o (data, len, meta, has_meta, stale).
 * Returns false when there is none. */
bool rk__copies_get(struct rk__fetch_state *fs, const char *key, size_t klen, int64_t now_ms, int64_t stale_ms,
                    rk__fetch_outcome *o);

/* Forget the copy of key (Redis said there is no value, or the handle
 * deleted it): calls in progress that read key before will keep no copy
 * of it. mark (may be NULL) is the calling fetch's own: moved past this
 * forget when nothing else was forgotten since it was taken, since the
 * call's own forget must not cost it the copy of the value it computes
 * next. */
void rk__copies_drop(struct rk__fetch_state *fs, const char *key, size_t klen, uint64_t *mark);

#endif
