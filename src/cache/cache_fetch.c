/*
 * cache_fetch.c — one rk_cache_fetch() call (get-or-compute): read the
 * value, and when it is missing, due for an early refresh or stale, take
 * part in the one computation of it — lead it or wait for it — then store
 * what was computed, and serve a stale value or this process's copy when
 * that is all there is (contract in include/redkit/cache.h, the whole
 * story in docs/cache.md, "Get-or-compute"). What outlives a call — the
 * table of computations in flight, the copies, the random source — is in
 * fetch_state.c.
 *
 * Stampede protection, at three levels:
 *
 * 1. In this process, single-flight: the first caller to miss a key leads
 *    its flight (fetch_state.c); later callers of the key wait for the
 *    leader's outcome, error included. After lock_ms they give up
 *    (RK_ERR_TIMEOUT) rather than compute a second time: their leader is
 *    known to be alive.
 * 2. Across processes, a short Redis lock: SET <aux>lock:<key> <token> NX
 *    PX lock_ms, the token 128 bits from getrandom(2), released by a
 *    compare-and-delete script so a holder whose lock expired can never
 *    delete the next holder's. A process that does not get the lock polls
 *    the value (5 ms doubling to 50 ms, jittered) and computes only if the
 *    lock goes away with no value, or after lock_ms in all.
 * 3. Early recomputation, XFetch (Vattani, Chierichetti, Lowenstein,
 *    "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015): each
 *    typed value carries its logical expiry and how long it took to
 *    compute (the META block of value format 2), and a reader refreshes it
 *    ahead of time when  now - delta * beta * ln(u) >= expiry,  u uniform
 *    in (0, 1]. The hotter the key, the more draws, so one of them wins
 *    shortly before expiry; a cold key is left to expire. The winner
 *    refreshes only if it also wins the flight and the lock; everyone
 *    else keeps reading the current value.
 *
 * Serve-stale: with stale_ms the Redis TTL is the fresh TTL plus stale_ms
 * (saturating at 2^62 ms, as every sum of TTLs here), so a value outlives
 * its logical expiry; past it, one caller recomputes while the others are
 * served the old value, flagged stale, and a failed computation serves it
 * too — but never to a caller whose own window it is past: that caller
 * gets the failure, or takes part in the computation itself. When Redis
 * cannot be reached, this process's copies are the only stale source;
 * without a copy the value is computed (still single-flight) and returned
 * flagged degraded.
 *
 * Counting: each call counts one read — a hit, a miss, or degraded when
 * its first read could not ask Redis — whatever happens after it; a
 * compute callback's failure counts in compute_errors, not as an error
 * of the call (it returns RK_ERR_SOURCE); a computed value returned but
 * not stored counts in store_errors, not as an error either.
 *
 * The hit path is one GET, as in rk_cache_get(), plus one random draw
 * (and, once a minute per handle, TIME in the same round trip: expiries
 * are on the server's clock, see fetch_state.h); everything else here
 * runs only on a miss, a refresh or a failure.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <redkit/cache.h>

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "clock.h"
#include "error.h"
#include "fetch_decide.h"
#include "fetch_state.h"
#include "keys.h"
#include "rand.h"
#include "reply.h"
#include "script.h"
#include "value.h"

#define TOKEN_BYTES 16                /* lock token: 128 random bits, sent as hex */
#define WAIT_ROUNDS 3                 /* times one call may wait for a flight */

typedef rk__fetch_outcome outcome;

/* Compare-and-delete: release the lock only if it is still ours. */
static rk__script unlock_script =
    RK__SCRIPT("cache fetch unlock",
               "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end");

static void outcome_fail(outcome *o, rk_status st, const char *prefix)
{
    o->st = st;
    snprintf(o->msg, sizeof o->msg, "%s%s", prefix, rk_last_error());
}

static void outcome_clear(outcome *o)
{
    rk__free(o->data);
    o->data = NULL;
    o->len = 0;
}

/* ---- the compute callback's side ----------------------------------------- */

struct rk_cache_computed {
    rk_cache *cache;
    char *data;          /* owned until taken by the fetch */
    size_t len;
    bool has_value;
    bool has_ttl;
    int64_t ttl_ms;
    bool degraded;        /* the fetch could not read Redis (rk__cache_computed_degraded) */
    rk_status set_failed; /* the last rk_cache_computed_set failure, for the message */
};

rk_status rk_cache_computed_set(rk_cache_computed *out, const void *value, size_t len)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_cache_computed_set: out is NULL");
    rk_status st = RK_OK;
    if (!value && len) st = rk__fail(RK_ERR_INVALID, "rk_cache_computed_set: value is NULL with len %zu", len);
    else if (len > out->cache->max_value)
        st = rk__fail(RK_ERR_TOO_LARGE, "rk_cache_computed_set: value of %zu bytes is over the cache's maximum of %zu", len,
                      out->cache->max_value);
    char *d = st == RK_OK ? rk__strndup(value ? value : "", len) : NULL;
    if (st == RK_OK && !d) st = rk__fail(RK_ERR_NOMEM, "rk_cache_computed_set: out of memory");
    if (st != RK_OK) {
        out->set_failed = st;
        return st;
    }
    rk__free(out->data);
    out->data = d;
    out->len = len;
    out->has_value = true;
    return RK_OK;
}

bool rk__cache_computed_degraded(const rk_cache_computed *out) { return out && out->degraded; }

rk_status rk_cache_computed_set_ttl_ms(rk_cache_computed *out, int64_t ttl_ms)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_cache_computed_set_ttl_ms: out is NULL");
    if (ttl_ms == 0) { /* back to the call's TTL */
        out->has_ttl = false;
        return RK_OK;
    }
    if (ttl_ms < 0 && ttl_ms != RK_TTL_NONE)
        return rk__fail(RK_ERR_INVALID, "rk_cache_computed_set_ttl_ms: TTL is negative (use RK_TTL_NONE for no expiry)");
    if (ttl_ms > RK__MAX_TTL_MS) return rk__fail(RK_ERR_INVALID, "rk_cache_computed_set_ttl_ms: TTL is over 2^62 ms");
    out->has_ttl = true;
    out->ttl_ms = ttl_ms;
    return RK_OK;
}

/* ---- one call --------------------------------------------------------------- */

typedef struct fetch_call {
    rk_cache *c;
    struct rk__fetch_state *fs;
    const char *key;          /* the user's key */
    size_t klen;
    rk__key k;                /* "<prefix>:<ns>:<key>" */
    rk__key lk;               /* "<prefix>:<ns>#lock:<key>", built on first use */
    bool lk_built;
    char token[2 * TOKEN_BYTES + 1];
    bool lock_held;
    rk_cache_compute_fn compute;
    void *ctx;
    int64_t ttl_ms;           /* fresh TTL, or RK_TTL_NONE */
    rk__fetch_policy policy;  /* stale_ms (0 in raw mode) and beta (< 0: no
                                 early refresh; always so in raw mode) */
    const char *const *tags;
    size_t ntags;
    int64_t wait_until_ns;    /* all waiting ends here (lock_ms after the start) */
    bool timed_out;           /* Redis timed out during this call: do not wait on it again */
    bool wait_counted;        /* lock_waits counts calls, not waits */
    uint64_t mark;            /* the copies' mark, taken before the first read */
    bool degraded_compute;    /* computing because Redis could not be read */
    bool writes_refused;      /* the lock SET met OOM, READONLY or NOREPLICAS: compute, never store */
    char refused[120];        /* that refusal's text, for messages */
} fetch_call;

/* A value read from Redis. */
typedef struct held {
    bool present;
    char *data;
    size_t len;
    rk__value_meta meta;
    bool has_meta;
} held;

static bool unreachable(rk_status st) { return st == RK_ERR_UNAVAILABLE || st == RK_ERR_TIMEOUT; }

static void note_failure(fetch_call *f, rk_status st)
{
    if (st == RK_ERR_TIMEOUT) f->timed_out = true;
}

static void count_wait(fetch_call *f)
{
    if (!f->wait_counted) RK__COUNT(f->c, lock_waits, 1);
    f->wait_counted = true;
}

/* A GET reply into *v (consumes r). */
static rk_status take_value(fetch_call *f, rk_reply *r, held *v)
{
    memset(v, 0, sizeof *v);
    if (r->type == RK_REPLY_NIL) {
        rk_reply_free(r);
        return RK_OK;
    }
    rk_status st = rk__cache_decode(f->c, r, RK__ACCEPT(RK__V_BYTES) | RK__ACCEPT(RK__V_STRING), RK__V_BYTES,
                                    &v->data, &v->len, &v->meta);
    if (st != RK_OK) return st;
    v->present = true;
    v->has_meta = !f->c->raw && v->meta.expires_at_ms != 0;
    return RK_OK;
}

/* Now, on the server's clock as the handle estimates it (fetch_state.h). */
static int64_t now_ms(const fetch_call *f) { return rk__fetch_server_now_ms(f->fs); }

static const char *time_argv[1] = {"TIME"};
static const size_t time_lens[1] = {4};

/* A TIME reply (consumed) into the handle's clock estimate. A refusal (an
 * ACL without TIME, say) or an odd shape is ignored: the estimate keeps
 * its last sample, or the local clock. */
static void take_time(fetch_call *f, rk_reply *r, int64_t sent_ms)
{
    int64_t received_ms = rk__fetch_local_ms(f->fs);
    int64_t s, us;
    if (r && r->type == RK_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == RK_REPLY_STRING &&
        r->element[1]->type == RK_REPLY_STRING &&
        rk__text_to_i64(r->element[0]->str, r->element[0]->len, &s) == RK_OK &&
        rk__text_to_i64(r->element[1]->str, r->element[1]->len, &us) == RK_OK && s > 0 &&
        s < RK__VALUE_EXPIRY_MAX / 1000 - 1 && us >= 0 && us < 1000000)
        rk__fetch_clock_sample(f->fs, s * 1000 + us / 1000, sent_ms, received_ms);
    rk_reply_free(r);
}

/* GET the value; with TIME in the same round trip when the handle's
 * estimate of the server's clock is due (at most once a minute). */
static rk_status read_value(fetch_call *f, held *v)
{
    memset(v, 0, sizeof *v);
    const char *argv[2] = {"GET", f->k.str};
    size_t lens[2] = {3, f->k.len};
    rk_reply *r[2];
    rk_status st;
    bool with_time = rk__fetch_clock_due(f->fs);
    int64_t sent_ms = rk__fetch_local_ms(f->fs);
    if (with_time) { /* straight to Redis: the clock is Redis's, at most once a minute */
        rk__cmd cmds[2] = {{2, argv, lens}, {1, time_argv, time_lens}};
        st = rk__client_pipeline(f->c->client, 2, cmds, true, r);
    } else {
        st = rk__cache_near_get(f->c, &f->k, &r[0]); /* a plain GET without a near cache */
    }
    if (st != RK_OK) {
        note_failure(f, st);
        return st;
    }
    if (with_time) take_time(f, r[1], sent_ms);
    if (r[0]->type == RK_REPLY_ERROR) return rk__reply_fail(r[0], "GET");
    return take_value(f, r[0], v);
}

/* A held value becomes the call's outcome. */
static void outcome_from(outcome *o, held *v)
{
    o->st = RK_OK;
    o->data = v->data;
    o->len = v->len;
    o->meta = v->meta;
    o->has_meta = v->has_meta;
    v->data = NULL;
    v->present = false;
}

enum vstate { V_FRESH = RK__FETCH_FRESH, V_EARLY = RK__FETCH_EARLY, V_STALE = RK__FETCH_STALE,
              V_EXPIRED = RK__FETCH_EXPIRED };

/* Where a value stands for this call, now (fetch_decide.c decides). A
 * draw is made only for the first read of a call. */
static enum vstate classify(const fetch_call *f, const held *v, bool draw)
{
    double u = draw && v->has_meta && f->policy.beta >= 0 ? rk__fetch_rng_unit() : 0;
    return (enum vstate)rk__fetch_classify(&v->meta, v->has_meta, now_ms(f), &f->policy, u);
}

static rk_status build_lock_key(fetch_call *f)
{
    if (f->lk_built) return RK_OK;
    size_t head_len;
    const char *head = rk__fetch_lock_head(f->fs, &head_len);
    rk_status st = rk__key_make(&f->lk, head, head_len, f->key, f->c->max_key);
    if (st != RK_OK) return st;
    f->lk_built = true;
    unsigned char raw[TOKEN_BYTES];
    if (!rk__fill_random(raw, sizeof raw))
        return rk__fail(RK_ERR_SYSTEM, "cache fetch: getrandom failed: %s", strerror(errno));
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        f->token[2 * i] = hex[raw[i] >> 4];
        f->token[2 * i + 1] = hex[raw[i] & 15];
    }
    f->token[sizeof f->token - 1] = '\0';
    return RK_OK;
}

/*
 * Try the lock and read the value in one round trip:
 *     SET <lock> <token> NX PX lock_ms
 *     GET <key>
 *     TIME
 * Reading after trying means a value stored by the previous holder just
 * before it released the lock is seen, so winning the lock never leads to
 * computing a value that is already there. TIME refreshes the handle's
 * estimate of the server's clock right before a computation whose expiry
 * will be written on it.
 */
static rk_status lock_and_get(fetch_call *f, bool *acquired, held *v)
{
    *acquired = false;
    memset(v, 0, sizeof *v);
    rk_status st = build_lock_key(f);
    if (st != RK_OK) return st;
    char ms[RK__NUMBER_TEXT_MAX + 1];
    const char *set_argv[6] = {"SET", f->lk.str, f->token, "NX", "PX", ms};
    size_t set_lens[6] = {3, f->lk.len, 2 * TOKEN_BYTES, 2, 2, rk__i64_to_text(f->c->lock_ms, ms)};
    const char *get_argv[2] = {"GET", f->k.str};
    size_t get_lens[2] = {3, f->k.len};
    rk__cmd cmds[3] = {{6, set_argv, set_lens}, {2, get_argv, get_lens}, {1, time_argv, time_lens}};
    rk_reply *r[3];
    int64_t sent_ms = rk__fetch_local_ms(f->fs);
    st = rk__client_pipeline(f->c->client, 3, cmds, false, r);
    if (st != RK_OK) {
        note_failure(f, st);
        return st;
    }
    take_time(f, r[2], sent_ms);
    if (r[0]->type == RK_REPLY_STATUS) {
        *acquired = f->lock_held = true;
    } else if (rk__reply_refuses_writes(r[0])) {
        /* A server out of memory (noeviction) or a replica: it serves the
         * GET but would refuse the value too. Not a lock someone holds:
         * the caller computes without it and stores nothing. */
        f->writes_refused = true;
        snprintf(f->refused, sizeof f->refused, "%.*s", (int)(r[0]->len < 100 ? r[0]->len : 100), r[0]->str);
    } else if (r[0]->type == RK_REPLY_ERROR) {
        st = rk__reply_fail(r[0], "SET (fetch lock)"), r[0] = NULL;
    } else if (r[0]->type != RK_REPLY_NIL) {
        st = rk__fail(RK_ERR_PROTOCOL, "SET (fetch lock): unexpected reply type");
    }
    rk_reply_free(r[0]);
    if (st == RK_OK && r[1]->type == RK_REPLY_ERROR) {
        st = rk__reply_fail(r[1], "GET");
    } else if (st == RK_OK) {
        st = take_value(f, r[1], v);
    } else {
        rk_reply_free(r[1]);
    }
    return st;
}

/* Release the lock if it is still ours. A failure is left alone: the
 * lock expires by itself within lock_ms. */
static void unlock(fetch_call *f)
{
    if (!f->lock_held) return;
    f->lock_held = false;
    if (f->timed_out) return; /* Redis is slow: the PX will do */
    const char *keys[1] = {f->lk.str};
    size_t keylens[1] = {f->lk.len};
    const char *args[1] = {f->token};
    size_t arglens[1] = {2 * TOKEN_BYTES};
    rk_reply *r;
    rk_status st = rk__script_run(f->c->client, &unlock_script, 1, keys, keylens, 1, args, arglens, false, &r);
    if (st == RK_OK) rk_reply_free(r);
    else note_failure(f, st);
}

/* Run the compute callback. On RK_OK the outcome holds the new value and
 * its META block (logical expiry from now, and the time it took). */
static void run_compute(fetch_call *f, outcome *o, int64_t *fresh_ttl)
{
    rk_cache *c = f->c;
    rk_cache_computed out = {.cache = c, .degraded = f->degraded_compute};
    RK__COUNT(c, computations, 1);
    /* Cleared, so that what is here afterwards was said during the
     * callback (by a redkit call it made) and can explain its failure.
     * The caller's own message is restored at the end of a plain RK_OK. */
    rk__fail_str(RK_OK, "");
    int64_t t0 = rk__now_ns();
    rk_status st = f->compute(f->key, &out, f->ctx);
    int64_t took_ns = rk__now_ns() - t0; /* monotonic: a clock step cannot make it negative */
    bool callback_failed = st != RK_OK; /* RK_MISS aside, its own failure */
    if (st == RK_OK && !out.has_value) {
        st = out.set_failed
                 ? rk__fail(RK_ERR_INVALID, "rk_cache_fetch: the compute callback returned RK_OK, but its "
                                            "rk_cache_computed_set() had failed (%s)", rk_strerror(out.set_failed))
                 : rk__fail(RK_ERR_INVALID, "rk_cache_fetch: the compute callback returned RK_OK without "
                                            "calling rk_cache_computed_set()");
    }
    if (st == RK_MISS) {
        rk__free(out.data);
        o->st = RK_MISS;
        snprintf(o->msg, sizeof o->msg, "compute found no value");
        return;
    }
    if (st != RK_OK) {
        rk__free(out.data);
        RK__COUNT(c, compute_errors, 1);
        const char *said = rk_last_error();
        /* The callback's own failure (a database timeout, say) is not a
         * failure of Redis, whatever status it chose: RK_ERR_SOURCE,
         * counted above only, with its status in source_status.
         * RK_ERR_INVALID for RK_OK without a value is redkit's verdict on
         * a bug in the program, and counts as a call error too. */
        o->st = callback_failed ? RK_ERR_SOURCE : st;
        o->source_status = callback_failed ? st : RK_OK;
        o->compute_failed = callback_failed;
        snprintf(o->msg, sizeof o->msg, "compute failed (%s)%s%.440s", rk_strerror(st), said[0] ? ": " : "", said);
        return;
    }
    *fresh_ttl = out.has_ttl ? out.ttl_ms : f->ttl_ms;
    o->st = RK_OK;
    o->data = out.data;
    o->len = out.len;
    o->computed = true;
    o->has_meta = !c->raw;
    o->meta = rk__fetch_new_meta(now_ms(f), *fresh_ttl, took_ns); /* on the server's clock */
}

/* Store a computed value: META block in typed mode, Redis TTL = fresh TTL
 * + stale_ms, at most 2^62 ms (a callback's TTL and the call's stale_ms
 * may each be near it). A value that cannot be stored is still the caller's: the
 * failure is counted, and flagged degraded when Redis was unreachable. */
static void store(fetch_call *f, outcome *o, int64_t fresh_ttl)
{
    rk_cache *c = f->c;
    if (f->writes_refused) { /* the server said so to the lock already */
        RK__COUNT(c, store_errors, 1);
        o->degraded = true;
        snprintf(o->msg, sizeof o->msg, "degraded: computed, not stored: the server refuses writes (%s)", f->refused);
        return;
    }
    if (f->timed_out) { /* one timeout per call is enough */
        RK__COUNT(c, store_errors, 1);
        o->degraded = true;
        snprintf(o->msg, sizeof o->msg, "computed, but not stored: redis timed out earlier in this call");
        return;
    }
    int64_t redis_ttl = rk__fetch_redis_ttl(fresh_ttl, f->policy.stale_ms, o->has_meta);
    rk__encoded e;
    rk_status st = rk__cache_encode(c, RK__V_BYTES, o->data, o->len, o->has_meta ? &o->meta : NULL, &e);
    if (st == RK_OK && c->fill && redis_ttl != RK_TTL_NONE) {
        char *kept = NULL;
        size_t kept_len = 0;
        st = c->fill(c, &f->k, e.data, e.len, redis_ttl, &kept, &kept_len);
        if (st == RK_MISS) { /* Redis keeps its value: serve that one */
            rk__cache_encoded_release(&e);
            rk__free(o->data);
            o->data = kept;
            o->len = kept_len;
            return;
        }
    } else if (st == RK_OK) {
        st = rk__cache_store(c, &f->k, &e, redis_ttl, f->tags, f->ntags);
    }
    if (st == RK_OK) {
        RK__COUNT(c, sets, 1);
        RK__COUNT(c, bytes_in, o->len);
        RK__COUNT(c, bytes_stored, e.len);
    }
    rk__cache_encoded_release(&e);
    if (st == RK_OK) return;
    /* The caller gets its value: not an error of the call (errors[] would
     * fire alerts while the service is fine), but a store that failed. */
    RK__COUNT(c, store_errors, 1);
    note_failure(f, st);
    if (unreachable(st)) {
        o->degraded = true;
        snprintf(o->msg, sizeof o->msg, "computed, but not stored: %.440s", rk_last_error());
    }
}

/* The source says there is no value: nothing may keep serving one. */
static void forget(fetch_call *f)
{
    rk__copies_drop(f->fs, f->key, f->klen, &f->mark);
    if (f->timed_out) return;
    const char *argv[2] = {"UNLINK", f->k.str};
    size_t lens[2] = {6, f->k.len};
    rk_reply *r;
    rk__cache_near_forget(f->c, f->k.str, f->k.len); /* before and after: cache_near.c */
    rk_status st = rk__client_run(f->c->client, 2, argv, lens, false, &r);
    rk__cache_near_forget(f->c, f->k.str, f->k.len);
    if (st == RK_OK) rk_reply_free(r);
    else note_failure(f, st);
}

/* Compute, then store (unless the source has nothing, or failed). */
static void compute_and_store(fetch_call *f, outcome *o, bool early)
{
    int64_t fresh_ttl = 0;
    run_compute(f, o, &fresh_ttl);
    if (o->st == RK_OK) {
        o->early = early;
        if (early) RK__COUNT(f->c, early, 1);
        store(f, o, fresh_ttl);
    } else if (o->st == RK_MISS) {
        forget(f);
    }
}

/* Redis cannot be asked: this process's copy, else a computed value,
 * both flagged degraded. why is the failure that got us here. */
static void degraded_compute(fetch_call *f, outcome *o, const char *why)
{
    f->degraded_compute = true;
    compute_and_store(f, o, false);
    o->degraded = true;
    if (o->st == RK_OK) snprintf(o->msg, sizeof o->msg, "degraded: computed without the cache (%.440s)", why);
}

static bool serve_copy(fetch_call *f, outcome *o, const char *why)
{
    if (f->policy.stale_ms <= 0 || !rk__copies_get(f->fs, f->key, f->klen, now_ms(f), f->policy.stale_ms, o))
        return false;
    o->st = RK_OK;
    o->from_copy = true;
    o->degraded = true;
    snprintf(o->msg, sizeof o->msg, "degraded: served this process's %s copy (%.440s)", o->stale ? "stale" : "fresh",
             why);
    return true;
}

/* The failure text, before something else overwrites it. */
static void why_now(char *buf, size_t n, rk_status st)
{
    snprintf(buf, n, "%s: %s", rk_strerror(st), rk_last_error());
}

/*
 * A wait for this process's leader ran out (lock_ms). The leader is alive
 * and still computing — a second computation would be the stampede this
 * file exists to prevent — so the waiter gives up: it takes the value if
 * it has landed in Redis meanwhile (when ask is true), else returns
 * RK_ERR_TIMEOUT.
 */
static void gave_up_waiting(fetch_call *f, outcome *o, bool ask)
{
    held v = {0};
    if (ask && read_value(f, &v) == RK_OK && v.present) {
        enum vstate s = classify(f, &v, false);
        if (s != V_EXPIRED) {
            outcome_from(o, &v);
            o->stale = s == V_STALE;
            if (o->stale) snprintf(o->msg, sizeof o->msg, "served stale: another caller is recomputing");
            return;
        }
    }
    rk__free(v.data);
    o->st = RK_ERR_TIMEOUT;
    snprintf(o->msg, sizeof o->msg,
             "rk_cache_fetch: waited lock_ms (%lld ms) for this process's computation of the key; "
             "it is still running",
             (long long)f->c->lock_ms);
}

/*
 * Lead a missing key's computation across processes: take the Redis lock,
 * or poll until its holder stores the value, the lock disappears without
 * one (its holder failed or died: take it), or the wait budget is spent
 * (compute anyway).
 */
static void lead_missing(fetch_call *f, outcome *o)
{
    rk_cache *c = f->c;
    int delay_ms = RK__FETCH_POLL_FIRST_MS;
    bool waited = false;
    int64_t max_rounds = rk__fetch_max_rounds(c->lock_ms);
    for (int64_t round = 0;; round++) {
        bool acquired;
        held v;
        rk_status st = lock_and_get(f, &acquired, &v);
        if (unreachable(st)) {
            char why[RK__ERRMSG_MAX];
            why_now(why, sizeof why, st);
            if (!serve_copy(f, o, why)) degraded_compute(f, o, why);
            o->waited = waited;
            unlock(f);
            return;
        }
        if (st != RK_OK) {
            outcome_fail(o, st, "");
            unlock(f);
            return;
        }
        enum vstate s = v.present ? classify(f, &v, false) : V_EXPIRED;
        if (f->writes_refused) {
            /* No lock to wait for and none to take: a value that is there
             * is served, else computed (and not stored, see store()). */
            if (v.present && s != V_EXPIRED) {
                outcome_from(o, &v);
                o->stale = s == V_STALE;
                o->degraded = true;
                snprintf(o->msg, sizeof o->msg, "degraded: served the stored value; the server refuses writes (%s)",
                         f->refused);
            } else {
                rk__free(v.data);
                compute_and_store(f, o, false); /* flagged degraded by store() */
            }
            o->waited = waited;
            return;
        }
        bool waited_out = rk__now_ns() >= f->wait_until_ns || round >= max_rounds;
        rk__fetch_step step = rk__fetch_lead_step(v.present, (rk__fetch_vstate)s, acquired, waited_out);
        if (step == RK__FETCH_TAKE) {
            outcome_from(o, &v);
            o->stale = s == V_STALE;
            if (o->stale) snprintf(o->msg, sizeof o->msg, "served stale: another caller is recomputing");
            o->waited = waited;
            unlock(f);
            return;
        }
        rk__free(v.data);
        if (step == RK__FETCH_COMPUTE) {
            compute_and_store(f, o, false);
            o->waited = waited;
            unlock(f);
            return;
        }
        count_wait(f);
        waited = true;
        int64_t sleep_ns = rk__fetch_sleep_ns(delay_ms, rk__fetch_rng_next(), f->wait_until_ns - rk__now_ns());
        struct timespec ts = {.tv_sec = sleep_ns / 1000000000, .tv_nsec = sleep_ns % 1000000000};
        nanosleep(&ts, NULL);
        delay_ms = rk__fetch_next_delay(delay_ms);
    }
}

/* May this call return o, a value served in place of a fresh one? Not
 * when o is stale past this call's own window (none without stale_ms):
 * another caller's window served it. */
static bool acceptable(const fetch_call *f, const outcome *o)
{
    if (o->st != RK_OK || !o->stale) return true;
    return rk__fetch_within_stale(o->meta.expires_at_ms, now_ms(f), f->policy.stale_ms);
}

/*
 * No usable value: the first caller for the key in this process leads the
 * in-process flight, the others wait for its outcome (bounded by the
 * call's wait). why is NULL when Redis answered: the leader goes through
 * the Redis lock (lead_missing), and a waiter that gives up asks Redis
 * once more. Otherwise Redis could not be asked, and why says what failed:
 * the leader computes without the cache (degraded_compute), and a
 * waiter's outcome is degraded too.
 *
 * A waiter is handed a stale value only if its own window allows it: the
 * leader may have served one within a wider window than the waiter's.
 * When that value stands in for a failed computation the waiter gets the
 * failure (its share of the flight); otherwise (another process was
 * recomputing, Redis went away) it starts over, leading or waiting, at
 * most WAIT_ROUNDS times within the call's one wait budget.
 */
static void lead_or_wait(fetch_call *f, outcome *o, const char *why)
{
    for (int round = 1;; round++) {
        rk__flight *fl;
        bool leader;
        rk_status st = rk__flight_enter(f->fs, f->key, f->klen, true, &fl, &leader);
        if (st != RK_OK) {
            outcome_fail(o, st, "");
            return;
        }
        if (leader) {
            if (why) degraded_compute(f, o, why);
            else lead_missing(f, o);
            rk__flight_finish(f->fs, fl, o);
            if (round > 1) o->waited = true;
            return;
        }
        count_wait(f);
        if (!rk__flight_wait(f->fs, fl, f->wait_until_ns, o)) {
            gave_up_waiting(f, o, why == NULL);
            break;
        }
        if (acceptable(f, o)) break;
        outcome_clear(o);
        if (o->replaced != RK_OK) {
            o->st = o->replaced;
            o->compute_failed = true;
            o->stale = o->degraded = o->from_copy = false;
            snprintf(o->msg, sizeof o->msg, "%s", o->replaced_msg);
            break;
        }
        if (round == WAIT_ROUNDS) {
            *o = (outcome){.st = RK_OK, .waited = true};
            gave_up_waiting(f, o, why == NULL);
            break;
        }
        *o = (outcome){.st = RK_OK};
    }
    o->waited = true;
    if (why) o->degraded = true;
}

/* No usable value in Redis: lead the in-process flight, or wait for it. */
static void on_absent(fetch_call *f, outcome *o) { lead_or_wait(f, o, NULL); }

/*
 * A present value that is due for a refresh: early (XFetch) or stale. One
 * caller refreshes — the one that wins both the flight and the lock —
 * and everyone else, including a refresher whose computation fails, gets
 * the current value (except a waiter whose own window it is past: see
 * lead_or_wait).
 */
static void refresh(fetch_call *f, held *cur, enum vstate s, outcome *o)
{
    bool stale = s == V_STALE;
    rk__flight *fl;
    bool leader;
    if (rk__flight_enter(f->fs, f->key, f->klen, false, &fl, &leader) != RK_OK || !leader) {
        outcome_from(o, cur);
        o->stale = stale;
        if (stale) snprintf(o->msg, sizeof o->msg, "served stale: another caller is recomputing");
        return;
    }
    bool acquired;
    held now;
    rk_status st = lock_and_get(f, &acquired, &now);
    if (st != RK_OK || !acquired) {
        if (st == RK_OK && now.present &&
            rk__fetch_refreshed_meanwhile(&cur->meta, &now.meta, (rk__fetch_vstate)classify(f, &now, false))) {
            outcome_from(o, &now); /* refreshed by someone else meanwhile */
        } else {
            rk__free(now.data);
            outcome_from(o, cur);
            o->stale = stale;
            if (unreachable(st)) {
                o->degraded = true;
                why_now(o->msg, sizeof o->msg, st);
            } else if (st != RK_OK) {
                rk__cache_count_error(f->c, st); /* the caller is served; the failure still shows */
            } else if (f->writes_refused) {
                o->degraded = true;
                snprintf(o->msg, sizeof o->msg, "degraded: not refreshed: the server refuses writes (%s)", f->refused);
            } else if (stale) {
                snprintf(o->msg, sizeof o->msg, "served stale: another process is recomputing");
            }
        }
        rk__flight_finish(f->fs, fl, o);
        return;
    }
    if (now.present &&
        rk__fetch_refreshed_meanwhile(&cur->meta, &now.meta, (rk__fetch_vstate)classify(f, &now, false))) {
        unlock(f); /* the previous holder refreshed it just before we locked */
        outcome_from(o, &now);
        rk__flight_finish(f->fs, fl, o);
        return;
    }
    rk__free(now.data);
    compute_and_store(f, o, !stale);
    unlock(f);
    if (o->st != RK_OK && o->st != RK_MISS) {
        /* Serve-stale: the failure is counted; the caller keeps a value.
         * The failure goes along, for waiters whose window is narrower. */
        o->replaced = o->st;
        snprintf(o->replaced_msg, sizeof o->replaced_msg, "%s", o->msg);
        o->compute_failed = false;
        outcome_from(o, cur);
        o->stale = stale;
        snprintf(o->msg, sizeof o->msg, "served %s value: %.440s", stale ? "stale" : "current", o->replaced_msg);
    }
    rk__flight_finish(f->fs, fl, o);
}

/* Redis could not be asked at all. */
static void on_unreachable(fetch_call *f, rk_status why_st, outcome *o)
{
    char why[RK__ERRMSG_MAX];
    why_now(why, sizeof why, why_st);
    if (!serve_copy(f, o, why)) lead_or_wait(f, o, why);
}

static rk_status check_fetch_options(rk_cache *c, const rk_cache_fetch_options *opts, fetch_call *f)
{
    static const rk_cache_fetch_options none = {0};
    if (!opts) opts = &none;
    rk_status st = rk__cache_resolve_ttl(c, opts->ttl_s, opts->ttl_ms, &f->ttl_ms);
    if (st != RK_OK) return st;
    if (opts->stale_ms < 0)
        return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: stale_ms %lld is negative", (long long)opts->stale_ms);
    if (opts->stale_ms > RK__MAX_TTL_MS - (f->ttl_ms > 0 ? f->ttl_ms : 0))
        return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: TTL plus stale_ms is over 2^62 ms");
    if (isnan(opts->beta) || isinf(opts->beta))
        return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: beta is not a finite number");
    /* Checked now, not when storing: a bad tag list must not cost a
     * computation. */
    if ((st = rk__cache_check_tags(opts->tags, opts->ntags)) != RK_OK) return st;
    /* Raw values have no META block: no logical expiry, so nothing can be
     * early or stale. */
    f->policy.stale_ms = c->raw ? 0 : opts->stale_ms;
    f->policy.beta = c->raw ? -1 : opts->beta;
    f->tags = opts->ntags ? opts->tags : NULL;
    f->ntags = opts->ntags;
    return RK_OK;
}

rk_status rk_cache_fetch(rk_cache *c, const char *key, rk_cache_compute_fn compute, void *ctx,
                         const rk_cache_fetch_options *opts, void **value, size_t *len, rk_cache_fetch_info *info)
{
    if (value) *value = NULL;
    if (len) *len = 0;
    if (info) memset(info, 0, sizeof *info);
    rk_status st;
    if (!c) return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: cache is NULL");
    if (!compute) st = rk__fail(RK_ERR_INVALID, "rk_cache_fetch: compute is NULL");
    else if (!value || !len) st = rk__fail(RK_ERR_INVALID, "rk_cache_fetch: NULL output");
    else st = RK_OK;
    fetch_call f = {.c = c, .fs = c->fetch, .key = key, .compute = compute, .ctx = ctx};
    if (st == RK_OK) st = check_fetch_options(c, opts, &f);
    if (st == RK_OK) st = rk__key_make(&f.k, c->head, c->head_len, key, c->max_key);
    if (st != RK_OK) {
        rk__cache_count_error(c, st);
        return st;
    }
    f.klen = f.k.len - c->head_len;
    f.wait_until_ns = rk__now_ns() + c->lock_ms * 1000000;
    f.mark = rk__copies_mark(f.fs); /* before the read: see fetch_state.h */

    outcome o = {.st = RK_OK};
    held v;
    bool plain = true; /* RK_OK with neither flag leaves rk_last_error() as it was */
    char saved[RK__ERRMSG_MAX];
    st = read_value(&f, &v);
    if (st == RK_OK && v.present) {
        enum vstate s = classify(&f, &v, true);
        if (s == V_FRESH) {
            RK__COUNT(c, hits, 1);
            outcome_from(&o, &v);
        } else {
            snprintf(saved, sizeof saved, "%s", rk_last_error());
            plain = false;
            if (s == V_EXPIRED) {
                RK__COUNT(c, misses, 1);
                rk__free(v.data);
                on_absent(&f, &o);
            } else {
                RK__COUNT(c, hits, 1);
                refresh(&f, &v, s, &o);
                rk__free(v.data);
            }
        }
    } else if (st == RK_OK) {
        snprintf(saved, sizeof saved, "%s", rk_last_error());
        plain = false;
        RK__COUNT(c, misses, 1);
        /* Gone from Redis (deleted by another process, say): the copy
         * must not bring it back while Redis is down. */
        rk__copies_drop(f.fs, f.key, f.klen, &f.mark);
        on_absent(&f, &o);
    } else if (unreachable(st)) {
        saved[0] = '\0';
        plain = false;
        /* The one read that could not ask Redis: whatever follows (a copy,
         * a computation), it is counted degraded, and only then. */
        RK__COUNT(c, degraded, 1);
        on_unreachable(&f, st, &o);
    } else {
        outcome_fail(&o, st, "");
        plain = false;
        saved[0] = '\0';
    }
    unlock(&f);
    if (f.lk_built) rk__key_release(&f.lk);

    if (o.st == RK_OK && o.has_meta && f.policy.stale_ms > 0 && !o.from_copy)
        rk__copies_put(f.fs, f.key, f.klen, &o, f.policy.stale_ms, f.mark);
    rk__key_release(&f.k);
    if (o.stale) RK__COUNT(c, stale, 1);
    if (info) *info = (rk_cache_fetch_info){.computed = o.computed, .early = o.early, .waited = o.waited,
                                            .stale = o.stale, .degraded = o.degraded,
                                            .source_status = o.source_status};
    if (o.st == RK_OK) {
        *value = o.data;
        *len = o.len;
        if (o.stale || o.degraded) return rk__fail_str(RK_OK, o.msg);
        if (!plain) return rk__fail_str(RK_OK, saved);
        return RK_OK;
    }
    outcome_clear(&o);
    if (!o.compute_failed) rk__cache_count_error(c, o.st);
    return rk__fail_str(o.st, o.msg);
}
