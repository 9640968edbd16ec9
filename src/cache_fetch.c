/*
 * cache_fetch.c — get-or-compute (rk_cache_fetch), with stampede
 * protection at three levels (contract in include/redkit/cache.h, the
 * whole story in docs/cache.md, "Get-or-compute").
 *
 * 1. In this process, single-flight: a table of keys being computed
 *    (struct flight), under one mutex. The first caller to miss a key
 *    leads; later callers of the same key wait on the flight's condition
 *    variable (CLOCK_MONOTONIC, so a wall-clock step cannot stretch a
 *    wait) and receive a copy of the leader's outcome, error included.
 *    After lock_ms they give up (RK_ERR_TIMEOUT) rather than compute a
 *    second time: their leader is known to be alive.
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
 * Serve-stale: with stale_ms the Redis TTL is the fresh TTL plus stale_ms,
 * so a value outlives its logical expiry; past it, one caller recomputes
 * while the others are served the old value, flagged stale, and a failed
 * computation serves it too. When Redis cannot be reached, a bounded
 * table of the values this handle last fetched (struct copy, oldest
 * evicted first) is the only stale source; without a copy the value is
 * computed (still single-flight) and returned flagged degraded.
 *
 * The hit path is one GET, as in rk_cache_get(), plus one random draw;
 * everything else here runs only on a miss, a refresh or a failure.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <redkit/cache.h>

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "error.h"
#include "keys.h"
#include "reply.h"
#include "script.h"
#include "value.h"

#define MAX_TTL_MS ((int64_t)1 << 62)
#define FLIGHT_BUCKETS 64             /* keys in flight at once are few: one per computing thread */
#define COPY_BUCKETS_MAX ((size_t)1 << 16)
#define POLL_FIRST_MS 5               /* Redis lock: first poll delay ... */
#define POLL_MAX_MS 50                /* ... doubling up to this */
#define TOKEN_BYTES 16                /* lock token: 128 random bits, sent as hex */

/* Compare-and-delete: release the lock only if it is still ours. */
static rk__script unlock_script =
    RK__SCRIPT("cache fetch unlock",
               "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end");

/* ---- clocks and randomness ---------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Logical expiries are Unix milliseconds: the value is shared with other
 * processes, and other hosts, which share the wall clock only. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool fill_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    for (int tries = 0; n > 0 && tries < 8; tries++) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += got;
        n -= (size_t)got;
    }
    return n == 0;
}

/*
 * The XFetch draw and the poll jitter need a fast, well-spread source, not
 * a secret one: splitmix64 per thread (no lock, no shared state), seeded
 * from getrandom(2). After fork() the child's threads would replay the
 * parent's sequence, and two processes would then win or lose their draws
 * together; a fork generation counter bumped in the child makes each
 * thread reseed.
 */
static atomic_uint fork_generation = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Thread_local uint64_t rng_state;
static _Thread_local unsigned rng_generation;

static void after_fork_child(void) { atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed); }
static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

static uint64_t rng_next(void)
{
    unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (rng_generation != gen) {
        uint64_t seed;
        if (!fill_random(&seed, sizeof seed)) /* never expected; any spread will do */
            seed = (uint64_t)mono_ns() ^ (uint64_t)(uintptr_t)&seed;
        rng_state = seed;
        rng_generation = gen;
    }
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: never 0, whose logarithm is -inf. */
static double rng_unit(void) { return (double)((rng_next() >> 11) + 1) * 0x1.0p-53; }

bool rk__xfetch_early(int64_t now_ms, int64_t expires_at_ms, uint32_t compute_ms, double beta, double u)
{
    if (expires_at_ms <= 0 || beta < 0 || !(u > 0) || u > 1) return false;
    if (beta == 0) beta = 1.0;
    /* -ln(u) is exponentially distributed with mean 1: the refresh starts,
     * on average, delta * beta before expiry, for each reader that draws. */
    return (double)now_ms - (double)compute_ms * beta * log(u) >= (double)expires_at_ms;
}

static uint64_t hash_key(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* ---- outcomes ------------------------------------------------------------ */

/* What one call ends with, and what a flight hands to its waiters. */
typedef struct outcome {
    rk_status st;
    char *data;              /* RK_OK: the value, NUL-terminated, owned */
    size_t len;
    rk__value_meta meta;     /* its META block, when has_meta */
    bool has_meta;
    bool from_copy;          /* served from this process's copies */
    bool stale, degraded, computed, early, waited;
    char msg[RK__ERRMSG_MAX]; /* errors, and why a value is stale or degraded */
} outcome;

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

static char *dup_bytes(const char *p, size_t n)
{
    char *d = rk__malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

/* ---- in-flight computations ---------------------------------------------- */

typedef struct flight {
    struct flight *next;     /* bucket chain */
    uint64_t hash;
    int refs;                /* the leader, and each waiter */
    bool done;
    pthread_t leader;        /* to refuse a fetch of the key from its own callback */
    pthread_cond_t cv;       /* signalled when done */
    outcome res;             /* valid once done; data owned by the flight */
    size_t klen;
    char key[];
} flight;

/* One value this handle fetched, kept to serve stale when Redis is down. */
typedef struct copy {
    struct copy *chain;
    struct copy *older, *newer;  /* insertion order, for eviction */
    uint64_t hash;
    char *data;
    size_t len;
    int64_t expires_at_ms;       /* logical expiry; 0 = none */
    int64_t stale_until_ms;      /* end of the stale window; 0 = none */
    size_t klen;
    char key[];
} copy;

struct rk__fetch_state {
    pthread_mutex_t lock;        /* the flights */
    pthread_condattr_t cattr;    /* CLOCK_MONOTONIC */
    flight *flights[FLIGHT_BUCKETS];
    char *lock_head;             /* "<prefix>:<ns>#lock:" */
    size_t lock_head_len;

    pthread_mutex_t copies_lock; /* the copies */
    copy **copies;               /* hash buckets; NULL when local_copies is 0 */
    size_t copy_mask;
    copy *oldest, *newest;
    size_t ncopies, max_copies;
};

rk_status rk__fetch_state_new(rk_cache *c)
{
    struct rk__fetch_state *fs = rk__calloc(1, sizeof *fs);
    if (!fs) return rk__fail(RK_ERR_NOMEM, "cache: out of memory");
    pthread_once(&atfork_once, register_atfork);
    fs->lock_head_len = c->aux_head_len + 5;
    fs->lock_head = rk__malloc(fs->lock_head_len + 1);
    fs->max_copies = c->local_copies;
    if (fs->max_copies) {
        size_t n = 16;
        while (n < fs->max_copies && n < COPY_BUCKETS_MAX) n <<= 1;
        fs->copies = rk__calloc(n, sizeof *fs->copies);
        fs->copy_mask = n - 1;
    }
    if (!fs->lock_head || (fs->max_copies && !fs->copies)) {
        rk__free(fs->lock_head);
        rk__free(fs->copies);
        rk__free(fs);
        return rk__fail(RK_ERR_NOMEM, "cache: out of memory");
    }
    memcpy(fs->lock_head, c->aux_head, c->aux_head_len);
    memcpy(fs->lock_head + c->aux_head_len, "lock:", 6);
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->copies_lock, NULL);
    pthread_condattr_init(&fs->cattr);
    pthread_condattr_setclock(&fs->cattr, CLOCK_MONOTONIC);
    c->fetch = fs;
    return RK_OK;
}

void rk__fetch_state_free(rk_cache *c)
{
    struct rk__fetch_state *fs = c ? c->fetch : NULL;
    if (!fs) return;
    /* No call may be running on a handle being freed, so no flight is
     * left; the copies are ours. */
    for (copy *e = fs->oldest, *next; e; e = next) {
        next = e->newer;
        rk__free(e->data);
        rk__free(e);
    }
    rk__free(fs->copies);
    rk__free(fs->lock_head);
    pthread_condattr_destroy(&fs->cattr);
    pthread_mutex_destroy(&fs->copies_lock);
    pthread_mutex_destroy(&fs->lock);
    rk__free(fs);
    c->fetch = NULL;
}

static flight **flight_slot(struct rk__fetch_state *fs, const char *key, size_t klen, uint64_t h)
{
    flight **p = &fs->flights[h % FLIGHT_BUCKETS];
    while (*p && !((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->key, key, klen) == 0)) p = &(*p)->next;
    return p;
}

/*
 * Lead the computation of key, or join the one in progress (when join is
 * true). On RK_OK *fl is the flight and *leader says which; with join
 * false and someone else leading, *fl is NULL. Every flight obtained is
 * given back with flight_finish() (leader) or flight_wait() (waiter).
 */
static rk_status flight_enter(struct rk__fetch_state *fs, const char *key, size_t klen, bool join, flight **fl,
                              bool *leader)
{
    uint64_t h = hash_key(key, klen);
    *fl = NULL;
    *leader = false;
    pthread_mutex_lock(&fs->lock);
    flight **slot = flight_slot(fs, key, klen, h);
    if (*slot) {
        bool own = pthread_equal((*slot)->leader, pthread_self());
        if (join && !own) {
            (*slot)->refs++;
            *fl = *slot;
        }
        pthread_mutex_unlock(&fs->lock);
        /* Waiting for ourselves would only end after lock_ms, and then
         * compute again, and again. */
        if (join && own)
            return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: called from the compute callback of the same key");
        return RK_OK;
    }
    flight *f = rk__calloc(1, sizeof *f + klen + 1);
    if (!f) {
        pthread_mutex_unlock(&fs->lock);
        return rk__fail(RK_ERR_NOMEM, "cache fetch: out of memory");
    }
    pthread_cond_init(&f->cv, &fs->cattr);
    f->hash = h;
    f->leader = pthread_self();
    f->refs = 1;
    f->klen = klen;
    memcpy(f->key, key, klen);
    *slot = f;
    pthread_mutex_unlock(&fs->lock);
    *fl = f;
    *leader = true;
    return RK_OK;
}

static void flight_destroy(flight *f)
{
    pthread_cond_destroy(&f->cv);
    rk__free(f->res.data);
    rk__free(f);
}

/* The leader's end: take the flight out of the table (later callers start
 * afresh, from Redis) and hand its outcome to the waiters. */
static void flight_finish(struct rk__fetch_state *fs, flight *f, const outcome *o)
{
    pthread_mutex_lock(&fs->lock);
    flight **slot = flight_slot(fs, f->key, f->klen, f->hash);
    if (*slot == f) *slot = f->next;
    bool waiters = f->refs > 1;
    pthread_mutex_unlock(&fs->lock);

    /* Out of the lock: no waiter reads res before done is set under it. */
    if (waiters) {
        f->res = *o;
        f->res.data = NULL;
        f->res.computed = f->res.early = false;
        if (o->st == RK_OK && !(f->res.data = dup_bytes(o->data, o->len))) {
            f->res.st = RK_ERR_NOMEM;
            snprintf(f->res.msg, sizeof f->res.msg, "cache fetch: out of memory sharing a computed value");
        }
    }
    pthread_mutex_lock(&fs->lock);
    f->done = true;
    pthread_cond_broadcast(&f->cv);
    bool last = --f->refs == 0;
    pthread_mutex_unlock(&fs->lock);
    if (last) flight_destroy(f);
}

/* A waiter's end: wait until the flight is done or until deadline_ns
 * (CLOCK_MONOTONIC). Returns true with the shared outcome in *o (a copy
 * of its own), false on timeout. */
static bool flight_wait(struct rk__fetch_state *fs, flight *f, int64_t deadline_ns, outcome *o)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    pthread_mutex_lock(&fs->lock);
    /* Bounded: every wake-up either finds the flight done or moves toward
     * the deadline, past which timedwait returns ETIMEDOUT at once. */
    while (!f->done)
        if (pthread_cond_timedwait(&f->cv, &fs->lock, &ts) == ETIMEDOUT) break;
    bool done = f->done;
    pthread_mutex_unlock(&fs->lock);

    if (done) { /* res is immutable once done, and our reference keeps it */
        *o = f->res;
        o->data = NULL;
        if (f->res.st == RK_OK && !(o->data = dup_bytes(f->res.data, f->res.len))) {
            o->st = RK_ERR_NOMEM;
            snprintf(o->msg, sizeof o->msg, "cache fetch: out of memory");
        }
    }
    pthread_mutex_lock(&fs->lock);
    bool last = --f->refs == 0;
    pthread_mutex_unlock(&fs->lock);
    if (last) flight_destroy(f);
    return done;
}

/* ---- this process's copies ----------------------------------------------- */

static copy **copy_slot(struct rk__fetch_state *fs, const char *key, size_t klen, uint64_t h)
{
    copy **p = &fs->copies[h & fs->copy_mask];
    while (*p && !((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->key, key, klen) == 0)) p = &(*p)->chain;
    return p;
}

static void copy_unlink(struct rk__fetch_state *fs, copy **slot)
{
    copy *e = *slot;
    *slot = e->chain;
    if (e->older) e->older->newer = e->newer;
    else fs->oldest = e->newer;
    if (e->newer) e->newer->older = e->older;
    else fs->newest = e->older;
    fs->ncopies--;
}

/* Keep (a copy of) the value this call returns. The common case, a hit on
 * a value already kept, only compares; a new or changed value is copied
 * out of the lock, and the oldest entries go when the table is full. */
static void copies_put(struct rk__fetch_state *fs, const char *key, size_t klen, const outcome *o, int64_t stale_ms)
{
    if (!fs->copies) return;
    uint64_t h = hash_key(key, klen);
    int64_t stale_until = o->meta.expires_at_ms ? o->meta.expires_at_ms + stale_ms : 0;
    pthread_mutex_lock(&fs->copies_lock);
    copy *e = *copy_slot(fs, key, klen, h);
    bool same = e && e->expires_at_ms == o->meta.expires_at_ms && e->len == o->len &&
                memcmp(e->data, o->data, o->len) == 0;
    if (same && stale_until > e->stale_until_ms) e->stale_until_ms = stale_until;
    pthread_mutex_unlock(&fs->copies_lock);
    if (same) return;

    copy *n = rk__malloc(sizeof *n + klen + 1);
    char *data = n ? dup_bytes(o->data, o->len) : NULL;
    if (!data) { /* a copy is a convenience: without memory, go without */
        rk__free(n);
        return;
    }
    *n = (copy){.hash = h, .data = data, .len = o->len, .expires_at_ms = o->meta.expires_at_ms,
                .stale_until_ms = stale_until, .klen = klen};
    memcpy(n->key, key, klen);
    n->key[klen] = '\0';
    copy *gone = NULL; /* chained through ->chain, freed out of the lock */
    pthread_mutex_lock(&fs->copies_lock);
    copy **slot = copy_slot(fs, key, klen, h);
    if (*slot) {
        copy *old = *slot;
        copy_unlink(fs, slot);
        old->chain = gone;
        gone = old;
    }
    while (fs->ncopies >= fs->max_copies && fs->oldest) {
        copy *old = fs->oldest;
        copy_unlink(fs, copy_slot(fs, old->key, old->klen, old->hash));
        old->chain = gone;
        gone = old;
    }
    slot = copy_slot(fs, key, klen, h);
    n->chain = *slot;
    *slot = n;
    n->older = fs->newest;
    if (fs->newest) fs->newest->newer = n;
    else fs->oldest = n;
    fs->newest = n;
    fs->ncopies++;
    pthread_mutex_unlock(&fs->copies_lock);
    while (gone) {
        copy *next = gone->chain;
        rk__free(gone->data);
        rk__free(gone);
        gone = next;
    }
}

static void copies_drop(struct rk__fetch_state *fs, const char *key, size_t klen)
{
    if (!fs->copies) return;
    copy *gone = NULL;
    pthread_mutex_lock(&fs->copies_lock);
    copy **slot = copy_slot(fs, key, klen, hash_key(key, klen));
    if (*slot) {
        gone = *slot;
        copy_unlink(fs, slot);
    }
    pthread_mutex_unlock(&fs->copies_lock);
    if (gone) {
        rk__free(gone->data);
        rk__free(gone);
    }
}

/* A kept value still inside its stale window (also the caller's), into
 * *o. Returns false when there is none. */
static bool copies_get(struct rk__fetch_state *fs, const char *key, size_t klen, int64_t now_ms, int64_t stale_ms,
                       outcome *o)
{
    if (!fs->copies) return false;
    bool found = false;
    pthread_mutex_lock(&fs->copies_lock);
    copy *e = *copy_slot(fs, key, klen, hash_key(key, klen));
    if (e) {
        bool usable = e->expires_at_ms == 0 ||
                      (now_ms < e->stale_until_ms && now_ms < e->expires_at_ms + stale_ms);
        if (usable && (o->data = dup_bytes(e->data, e->len))) {
            o->len = e->len;
            o->meta.expires_at_ms = e->expires_at_ms;
            o->has_meta = true;
            o->stale = e->expires_at_ms != 0 && now_ms >= e->expires_at_ms;
            found = true;
        }
    }
    pthread_mutex_unlock(&fs->copies_lock);
    return found;
}

/* ---- the compute callback's side ----------------------------------------- */

struct rk_computed {
    rk_cache *cache;
    char *data;          /* owned until taken by the fetch */
    size_t len;
    bool has_value;
    bool has_ttl;
    int64_t ttl_ms;
    rk_status set_failed; /* the last rk_computed_set failure, for the message */
};

rk_status rk_computed_set(rk_computed *out, const void *value, size_t len)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_computed_set: out is NULL");
    rk_status st = RK_OK;
    if (!value && len) st = rk__fail(RK_ERR_INVALID, "rk_computed_set: value is NULL with len %zu", len);
    else if (len > out->cache->max_value)
        st = rk__fail(RK_ERR_TOO_LARGE, "rk_computed_set: value of %zu bytes is over the cache's maximum of %zu", len,
                      out->cache->max_value);
    char *d = st == RK_OK ? dup_bytes(value ? value : "", len) : NULL;
    if (st == RK_OK && !d) st = rk__fail(RK_ERR_NOMEM, "rk_computed_set: out of memory");
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

rk_status rk_computed_set_ttl_ms(rk_computed *out, int64_t ttl_ms)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_computed_set_ttl_ms: out is NULL");
    if (ttl_ms == 0) { /* back to the call's TTL */
        out->has_ttl = false;
        return RK_OK;
    }
    if (ttl_ms < 0 && ttl_ms != RK_TTL_NONE)
        return rk__fail(RK_ERR_INVALID, "rk_computed_set_ttl_ms: TTL is negative (use RK_TTL_NONE for no expiry)");
    if (ttl_ms > MAX_TTL_MS) return rk__fail(RK_ERR_INVALID, "rk_computed_set_ttl_ms: TTL is over 2^62 ms");
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
    rk_compute_fn compute;
    void *ctx;
    int64_t ttl_ms;           /* fresh TTL, or RK_TTL_NONE */
    int64_t stale_ms;         /* 0 in raw mode */
    double beta;              /* < 0: no early refresh (always in raw mode) */
    const char *const *tags;
    size_t ntags;
    int64_t wait_until_ns;    /* all waiting ends here (lock_ms after the start) */
    bool timed_out;           /* Redis timed out during this call: do not wait on it again */
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

static rk_status read_value(fetch_call *f, held *v)
{
    memset(v, 0, sizeof *v);
    const char *argv[2] = {"GET", f->k.str};
    size_t lens[2] = {3, f->k.len};
    rk_reply *r;
    rk_status st = rk__client_run(f->c->client, 2, argv, lens, true, &r);
    if (st != RK_OK) {
        note_failure(f, st);
        return st;
    }
    return take_value(f, r, v);
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

enum vstate { V_FRESH, V_EARLY, V_STALE, V_EXPIRED };

/* Where a value stands for this call. Values without a logical expiry
 * (raw mode, plain sets, RK_TTL_NONE) are simply fresh. */
static enum vstate classify(const fetch_call *f, const held *v, int64_t now_ms, bool draw)
{
    if (!v->has_meta) return V_FRESH;
    int64_t exp = v->meta.expires_at_ms;
    if (now_ms < exp) {
        if (draw && f->beta >= 0 && rk__xfetch_early(now_ms, exp, v->meta.compute_ms, f->beta, rng_unit()))
            return V_EARLY;
        return V_FRESH;
    }
    return f->stale_ms > 0 && now_ms - exp < f->stale_ms ? V_STALE : V_EXPIRED;
}

static rk_status build_lock_key(fetch_call *f)
{
    if (f->lk_built) return RK_OK;
    rk_status st = rk__key_make(&f->lk, f->fs->lock_head, f->fs->lock_head_len, f->key, f->c->max_key);
    if (st != RK_OK) return st;
    f->lk_built = true;
    unsigned char raw[TOKEN_BYTES];
    if (!fill_random(raw, sizeof raw))
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
 * Reading after trying means a value stored by the previous holder just
 * before it released the lock is seen, so winning the lock never leads to
 * computing a value that is already there.
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
    rk__cmd cmds[2] = {{6, set_argv, set_lens}, {2, get_argv, get_lens}};
    rk_reply *r[2];
    st = rk__client_pipeline(f->c->client, 2, cmds, false, r);
    if (st != RK_OK) {
        note_failure(f, st);
        return st;
    }
    if (r[0]->type == RK_REPLY_STATUS) *acquired = f->lock_held = true;
    else if (r[0]->type == RK_REPLY_ERROR) st = rk__reply_fail(r[0], "SET (fetch lock)"), r[0] = NULL;
    else if (r[0]->type != RK_REPLY_NIL) st = rk__fail(RK_ERR_PROTOCOL, "SET (fetch lock): unexpected reply type");
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
    rk_computed out = {.cache = c};
    RK__COUNT(c, computations, 1);
    /* Cleared, so that what is here afterwards was said during the
     * callback (by a redkit call it made) and can explain its failure.
     * The caller's own message is restored at the end of a plain RK_OK. */
    rk__fail_str(RK_OK, "");
    int64_t t0 = mono_ns();
    rk_status st = f->compute(f->ctx, f->key, &out);
    int64_t took_ns = mono_ns() - t0;
    if (st == RK_OK && !out.has_value) {
        st = out.set_failed
                 ? rk__fail(RK_ERR_INVALID, "rk_cache_fetch: the compute callback returned RK_OK, but its "
                                            "rk_computed_set() had failed (%s)", rk_strerror(out.set_failed))
                 : rk__fail(RK_ERR_INVALID, "rk_cache_fetch: the compute callback returned RK_OK without "
                                            "calling rk_computed_set()");
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
        o->st = st;
        snprintf(o->msg, sizeof o->msg, "compute failed (%s)%s%.440s", rk_strerror(st), said[0] ? ": " : "", said);
        return;
    }
    *fresh_ttl = out.has_ttl ? out.ttl_ms : f->ttl_ms;
    o->st = RK_OK;
    o->data = out.data;
    o->len = out.len;
    o->computed = true;
    o->has_meta = !c->raw;
    o->meta.expires_at_ms = *fresh_ttl == RK_TTL_NONE ? 0 : wall_ms() + *fresh_ttl;
    /* At least 1 ms, so that even a cheap value can be refreshed early. */
    int64_t ms = (took_ns + 999999) / 1000000;
    o->meta.compute_ms = ms < 1 ? 1 : ms > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* Store a computed value: META block in typed mode, Redis TTL = fresh TTL
 * + stale_ms. A value that cannot be stored is still the caller's: the
 * failure is counted, and flagged degraded when Redis was unreachable. */
static void store(fetch_call *f, outcome *o, int64_t fresh_ttl)
{
    rk_cache *c = f->c;
    if (f->timed_out) { /* one timeout per call is enough */
        o->degraded = true;
        snprintf(o->msg, sizeof o->msg, "computed, but not stored: redis timed out earlier in this call");
        return;
    }
    int64_t redis_ttl = fresh_ttl;
    if (redis_ttl != RK_TTL_NONE && o->has_meta) redis_ttl += f->stale_ms;
    if (redis_ttl > MAX_TTL_MS) redis_ttl = MAX_TTL_MS;
    rk__encoded e;
    rk_status st = rk__cache_encode(c, RK__V_BYTES, o->data, o->len, o->has_meta ? &o->meta : NULL, &e);
    if (st == RK_OK) {
        st = rk__cache_store(c, &f->k, &e, redis_ttl, f->tags, f->ntags);
        if (st == RK_OK) {
            RK__COUNT(c, sets, 1);
            RK__COUNT(c, bytes_in, o->len);
            RK__COUNT(c, bytes_stored, e.len);
        }
    }
    rk__cache_encoded_release(&e);
    if (st == RK_OK) return;
    rk__cache_count_error(c, st);
    note_failure(f, st);
    if (unreachable(st)) {
        o->degraded = true;
        snprintf(o->msg, sizeof o->msg, "computed, but not stored: %.440s", rk_last_error());
    }
}

/* The source says there is no value: nothing may keep serving one. */
static void forget(fetch_call *f)
{
    copies_drop(f->fs, f->key, f->klen);
    if (f->timed_out) return;
    const char *argv[2] = {"UNLINK", f->k.str};
    size_t lens[2] = {6, f->k.len};
    rk_reply *r;
    rk_status st = rk__client_run(f->c->client, 2, argv, lens, false, &r);
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
    compute_and_store(f, o, false);
    o->degraded = true;
    if (o->st == RK_OK) snprintf(o->msg, sizeof o->msg, "degraded: computed without the cache (%.440s)", why);
}

static bool serve_copy(fetch_call *f, outcome *o, const char *why)
{
    if (f->stale_ms <= 0 || !copies_get(f->fs, f->key, f->klen, wall_ms(), f->stale_ms, o)) return false;
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
        enum vstate s = classify(f, &v, wall_ms(), false);
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
    int delay_ms = POLL_FIRST_MS;
    bool waited = false;
    /* Each round sleeps >= POLL_FIRST_MS / 2, so the budget bounds the
     * count; the constant is the bound in case the clock misbehaves. */
    int64_t max_rounds = c->lock_ms / (POLL_FIRST_MS / 2) + 8;
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
        if (v.present) {
            enum vstate s = classify(f, &v, wall_ms(), false);
            /* Someone else's value: take it, unless it is only stale and
             * the lock is ours, in which case we refresh it. */
            if (s == V_FRESH || (s == V_STALE && !acquired)) {
                outcome_from(o, &v);
                o->stale = s == V_STALE;
                if (o->stale) snprintf(o->msg, sizeof o->msg, "served stale: another caller is recomputing");
                o->waited = waited;
                unlock(f);
                return;
            }
            rk__free(v.data);
        }
        if (acquired || mono_ns() >= f->wait_until_ns || round >= max_rounds) {
            /* Ours, or the holder overran lock_ms in all: compute. */
            compute_and_store(f, o, false);
            o->waited = waited;
            unlock(f);
            return;
        }
        if (!waited) RK__COUNT(c, lock_waits, 1);
        waited = true;
        /* Jitter in [d/2, d]: pollers of several processes spread out. */
        int64_t sleep_ns = ((int64_t)delay_ms * 1000000 / 2) +
                           (int64_t)(rng_next() % (uint64_t)(delay_ms * 1000000 / 2 + 1));
        int64_t left = f->wait_until_ns - mono_ns();
        if (sleep_ns > left) sleep_ns = left > 0 ? left : 0;
        struct timespec ts = {.tv_sec = sleep_ns / 1000000000, .tv_nsec = sleep_ns % 1000000000};
        nanosleep(&ts, NULL);
        delay_ms = delay_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay_ms * 2;
    }
}

/*
 * No usable value: the first caller for the key in this process leads the
 * in-process flight, the others wait for its outcome (bounded by the
 * call's wait). why is NULL when Redis answered: the leader goes through
 * the Redis lock (lead_missing), and a waiter that gives up asks Redis
 * once more. Otherwise Redis could not be asked, and why says what failed:
 * the leader computes without the cache (degraded_compute), and a
 * waiter's outcome is degraded too.
 */
static void lead_or_wait(fetch_call *f, outcome *o, const char *why)
{
    flight *fl;
    bool leader;
    rk_status st = flight_enter(f->fs, f->key, f->klen, true, &fl, &leader);
    if (st != RK_OK) {
        outcome_fail(o, st, "");
        return;
    }
    if (leader) {
        if (why) degraded_compute(f, o, why);
        else lead_missing(f, o);
        flight_finish(f->fs, fl, o);
        return;
    }
    RK__COUNT(f->c, lock_waits, 1);
    if (!flight_wait(f->fs, fl, f->wait_until_ns, o)) gave_up_waiting(f, o, why == NULL);
    o->waited = true;
    if (why) o->degraded = true;
}

/* No usable value in Redis: lead the in-process flight, or wait for it. */
static void on_absent(fetch_call *f, outcome *o) { lead_or_wait(f, o, NULL); }

/*
 * A present value that is due for a refresh: early (XFetch) or stale. One
 * caller refreshes — the one that wins both the flight and the lock —
 * and everyone else, including a refresher whose computation fails, gets
 * the current value.
 */
static void refresh(fetch_call *f, held *cur, enum vstate s, outcome *o)
{
    bool stale = s == V_STALE;
    flight *fl;
    bool leader;
    if (flight_enter(f->fs, f->key, f->klen, false, &fl, &leader) != RK_OK || !leader) {
        outcome_from(o, cur);
        o->stale = stale;
        if (stale) snprintf(o->msg, sizeof o->msg, "served stale: another caller is recomputing");
        return;
    }
    bool acquired;
    held now;
    rk_status st = lock_and_get(f, &acquired, &now);
    if (st != RK_OK || !acquired) {
        if (st == RK_OK && now.present && now.meta.expires_at_ms != cur->meta.expires_at_ms &&
            classify(f, &now, wall_ms(), false) == V_FRESH) {
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
            } else if (stale) {
                snprintf(o->msg, sizeof o->msg, "served stale: another process is recomputing");
            }
        }
        flight_finish(f->fs, fl, o);
        return;
    }
    if (now.present && now.meta.expires_at_ms != cur->meta.expires_at_ms &&
        classify(f, &now, wall_ms(), false) == V_FRESH) {
        unlock(f); /* the previous holder refreshed it just before we locked */
        outcome_from(o, &now);
        flight_finish(f->fs, fl, o);
        return;
    }
    rk__free(now.data);
    compute_and_store(f, o, !stale);
    unlock(f);
    if (o->st != RK_OK && o->st != RK_MISS) {
        /* Serve-stale: the failure is counted; the caller keeps a value. */
        char why[RK__ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", o->msg);
        outcome_from(o, cur);
        o->stale = stale;
        snprintf(o->msg, sizeof o->msg, "served %s value: %.440s", stale ? "stale" : "current", why);
    }
    flight_finish(f->fs, fl, o);
}

/* Redis could not be asked at all. */
static void on_unreachable(fetch_call *f, rk_status why_st, outcome *o)
{
    char why[RK__ERRMSG_MAX];
    why_now(why, sizeof why, why_st);
    if (!serve_copy(f, o, why)) lead_or_wait(f, o, why);
}

static rk_status check_fetch_options(rk_cache *c, const rk_fetch_options *opts, fetch_call *f)
{
    static const rk_fetch_options none = {0};
    if (!opts) opts = &none;
    rk_status st = rk__cache_resolve_ttl(c, opts->ttl_s, opts->ttl_ms, &f->ttl_ms);
    if (st != RK_OK) return st;
    if (opts->stale_ms < 0)
        return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: stale_ms %lld is negative", (long long)opts->stale_ms);
    if (opts->stale_ms > MAX_TTL_MS - (f->ttl_ms > 0 ? f->ttl_ms : 0))
        return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: TTL plus stale_ms is over 2^62 ms");
    if (isnan(opts->beta) || isinf(opts->beta))
        return rk__fail(RK_ERR_INVALID, "rk_cache_fetch: beta is not a finite number");
    /* Checked now, not when storing: a bad tag list must not cost a
     * computation. */
    if ((st = rk__cache_check_tags(opts->tags, opts->ntags)) != RK_OK) return st;
    /* Raw values have no META block: no logical expiry, so nothing can be
     * early or stale. */
    f->stale_ms = c->raw ? 0 : opts->stale_ms;
    f->beta = c->raw ? -1 : opts->beta;
    f->tags = opts->ntags ? opts->tags : NULL;
    f->ntags = opts->ntags;
    return RK_OK;
}

rk_status rk_cache_fetch(rk_cache *c, const char *key, rk_compute_fn compute, void *ctx,
                         const rk_fetch_options *opts, void **value, size_t *len, rk_fetch_info *info)
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
    f.wait_until_ns = mono_ns() + c->lock_ms * 1000000;

    outcome o = {.st = RK_OK};
    held v;
    bool plain = true; /* RK_OK with neither flag leaves rk_last_error() as it was */
    char saved[RK__ERRMSG_MAX];
    st = read_value(&f, &v);
    if (st == RK_OK && v.present) {
        enum vstate s = classify(&f, &v, wall_ms(), true);
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
        on_absent(&f, &o);
    } else if (unreachable(st)) {
        saved[0] = '\0';
        plain = false;
        on_unreachable(&f, st, &o);
    } else {
        outcome_fail(&o, st, "");
        plain = false;
        saved[0] = '\0';
    }
    unlock(&f);
    if (f.lk_built) rk__key_release(&f.lk);

    if (o.st == RK_OK && o.has_meta && f.stale_ms > 0 && !o.from_copy) copies_put(f.fs, f.key, f.klen, &o, f.stale_ms);
    rk__key_release(&f.k);
    if (o.stale) RK__COUNT(c, stale, 1);
    if (o.degraded) RK__COUNT(c, degraded, 1);
    if (info) *info = (rk_fetch_info){.computed = o.computed, .early = o.early, .waited = o.waited,
                                      .stale = o.stale, .degraded = o.degraded};
    if (o.st == RK_OK) {
        *value = o.data;
        *len = o.len;
        if (o.stale || o.degraded) return rk__fail_str(RK_OK, o.msg);
        if (!plain) return rk__fail_str(RK_OK, saved);
        return RK_OK;
    }
    outcome_clear(&o);
    rk__cache_count_error(c, o.st);
    return rk__fail_str(o.st, o.msg);
}
