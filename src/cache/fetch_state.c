/*
 * fetch_state.c — the state an rk_cache keeps for rk_cache_fetch() between
 * calls: the computations in flight, this process's copies of fetched
 * values, and the clocks and random source (interface in fetch_state.h;
 * one call's logic is cache_fetch.c).
 *
 * In-flight computations: a small hash table of keys under one mutex. The
 * first caller to miss a key leads; later callers wait on the flight's
 * condition variable (CLOCK_MONOTONIC, so a wall-clock step cannot stretch
 * a wait) and receive a copy of the leader's outcome, error included. The
 * leader takes the flight out of the table before it wakes the waiters,
 * so the next miss starts afresh; the flight itself lives until its last
 * reference (the leader's or a waiter's) is given back.
 *
 * Copies: a hash table of the values this handle fetched with stale_ms,
 * under a second mutex, in insertion order for eviction, bounded by
 * local_copies entries and local_copies_bytes bytes. They exist for one
 * purpose, serving while Redis is unreachable, so they must never be
 * served after the value is gone from Redis as far as this process can
 * tell. Two counters guard that, both moved under the mutex:
 *   - generation, moved by rk__fetch_forget_all() (a tag invalidation or a
 *     clear, whose keys this process does not know): only copies of the
 *     current generation are served, so forgetting everything is O(1) and
 *     the old copies are reclaimed as they are met or evicted;
 *   - forgets, moved by every forget, which also notes the key's hash (or
 *     "all") in a ring of the last RECENT_FORGETS: a call marks the counter
 *     before its first read and keeps no copy if its key was forgotten
 *     since (or more forgets happened than the ring remembers), so a value
 *     read just before a delete is not kept just after it, while the
 *     misses and deletes of other keys cost it nothing.
 * Copying a value happens out of the lock; a hit on a value already kept
 * compares its META stamp only (O(1)), never the bytes.
 *
 * Random source: the XFetch draw and the poll jitter need a fast,
 * well-spread source, not a secret one: splitmix64 per thread (no lock,
 * no shared state), seeded from getrandom(2). After fork() the child's
 * threads would replay the parent's sequence, and two processes would then
 * win or lose their draws together; a fork generation counter bumped in
 * the child makes each thread reseed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <redkit/cache.h>

#include "alloc.h"
#include "cache.h"
#include "clock.h"
#include "error.h"
#include "fetch_state.h"
#include "forkgen.h"
#include "rand.h"

#define FLIGHT_BUCKETS 64             /* keys in flight at once are few: one per computing thread */
#define COPY_BUCKETS_MAX ((size_t)1 << 16)
#define RECENT_FORGETS 64             /* forgets remembered for the calls in progress */

/* ---- clocks and randomness ---------------------------------------------- */

static _Thread_local uint64_t rng_state;
static _Thread_local unsigned rng_generation; /* 0: not seeded (generations start at 1) */

uint64_t rk__fetch_rng_next(void)
{
    unsigned gen = rk__fork_generation(); /* a child reseeds: it must not repeat its parent's draws */
    if (rng_generation != gen) {
        uint64_t seed;
        if (!rk__fill_random(&seed, sizeof seed)) /* never expected; any spread will do */
            seed = (uint64_t)rk__now_ns() ^ (uint64_t)(uintptr_t)&seed;
        rng_state = seed;
        rng_generation = gen;
    }
    return rk__splitmix64(&rng_state);
}

double rk__fetch_rng_unit(void) { return (double)((rk__fetch_rng_next() >> 11) + 1) * 0x1.0p-53; }

static uint64_t hash_key(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* ---- the state ------------------------------------------------------------ */

struct rk__flight {
    struct rk__flight *next;  /* bucket chain */
    uint64_t hash;
    int refs;                 /* the leader, and each waiter */
    bool done;
    pthread_t leader;         /* to refuse a fetch of the key from its own callback */
    pthread_cond_t cv;        /* signalled when done */
    rk__fetch_outcome res;    /* valid once done; data owned by the flight */
    size_t klen;
    char key[];
};

/* One value this handle fetched, kept to serve while Redis is down. */
typedef struct copy {
    struct copy *chain;
    struct copy *older, *newer;  /* insertion order, for eviction */
    uint64_t hash;
    uint64_t generation;         /* served only while it is the table's */
    char *data;
    size_t len;
    size_t cost;                 /* bytes counted against the budget */
    int64_t expires_at_ms;       /* logical expiry; 0 = none */
    uint32_t compute_ms;         /* with expires_at_ms and len: the stamp of
                                    one computation's value */
    int64_t stale_until_ms;      /* end of the stale window; 0 = none */
    size_t klen;
    char key[];
} copy;

struct rk__fetch_state {
    pthread_mutex_t lock;        /* the flights */
    pthread_condattr_t cattr;    /* CLOCK_MONOTONIC */
    rk__flight *flights[FLIGHT_BUCKETS];
    char *lock_head;             /* "<prefix>:<ns>#lock:" */
    size_t lock_head_len;

    pthread_mutex_t copies_lock; /* the copies, and the two counters */
    copy **copies;               /* hash buckets; NULL when no copies are kept */
    size_t copy_mask;
    copy *oldest, *newest;
    size_t ncopies, max_copies;
    size_t bytes, max_bytes;
    uint64_t generation;         /* moved by rk__fetch_forget_all */
    _Atomic uint64_t forgets;    /* moved by every forget (under copies_lock) */
    _Atomic bool fetched;        /* a fetch has run on this handle: see
                                    rk__fetch_forget for why sets may skip
                                    the lock until then */
    _Atomic int64_t clock_offset_ms; /* server clock - local clock */
    _Atomic int64_t clock_taken_ns;  /* monotonic time of the last sample; 0 = none */
    _Atomic int64_t clock_skew_ms;   /* test hook: this host's clock is off by this */
    struct {
        uint64_t seq;            /* the forget's value of forgets */
        uint64_t hash;           /* the key's hash ... */
        bool all;                /* ... or every key */
    } recent[RECENT_FORGETS];    /* forget number seq is at seq % RECENT_FORGETS */
};

rk_status rk__fetch_state_new(rk_cache *c)
{
    struct rk__fetch_state *fs = rk__calloc(1, sizeof *fs);
    if (!fs) return rk__fail(RK_ERR_NOMEM, "cache: out of memory");
    rk__fork_watch();
    fs->lock_head_len = c->aux_head_len + 5;
    fs->lock_head = rk__malloc(fs->lock_head_len + 1);
    fs->max_copies = c->local_copies;
    fs->max_bytes = c->local_copies_bytes;
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

static void copy_free(copy *e)
{
    rk__free(e->data);
    rk__free(e);
}

void rk__fetch_state_free(rk_cache *c)
{
    struct rk__fetch_state *fs = c ? c->fetch : NULL;
    if (!fs) return;
    /* No call may be running on a handle being freed, so no flight is
     * left; the copies are ours. */
    for (copy *e = fs->oldest, *next; e; e = next) {
        next = e->newer;
        copy_free(e);
    }
    rk__free(fs->copies);
    rk__free(fs->lock_head);
    pthread_condattr_destroy(&fs->cattr);
    pthread_mutex_destroy(&fs->copies_lock);
    pthread_mutex_destroy(&fs->lock);
    rk__free(fs);
    c->fetch = NULL;
}

const char *rk__fetch_lock_head(const struct rk__fetch_state *fs, size_t *len)
{
    *len = fs->lock_head_len;
    return fs->lock_head;
}

/* ---- in-flight computations ---------------------------------------------- */

static char *dup_bytes(const char *p, size_t n) { return rk__strndup(p ? p : "", n); }

static rk__flight **flight_slot(struct rk__fetch_state *fs, const char *key, size_t klen, uint64_t h)
{
    rk__flight **p = &fs->flights[h % FLIGHT_BUCKETS];
    while (*p && !((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->key, key, klen) == 0)) p = &(*p)->next;
    return p;
}

rk_status rk__flight_enter(struct rk__fetch_state *fs, const char *key, size_t klen, bool join, rk__flight **fl,
                           bool *leader)
{
    uint64_t h = hash_key(key, klen);
    *fl = NULL;
    *leader = false;
    pthread_mutex_lock(&fs->lock);
    rk__flight **slot = flight_slot(fs, key, klen, h);
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
    rk__flight *f = rk__calloc(1, sizeof *f + klen + 1);
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

static void flight_destroy(rk__flight *f)
{
    pthread_cond_destroy(&f->cv);
    rk__free(f->res.data);
    rk__free(f);
}

void rk__flight_finish(struct rk__fetch_state *fs, rk__flight *f, const rk__fetch_outcome *o)
{
    pthread_mutex_lock(&fs->lock);
    rk__flight **slot = flight_slot(fs, f->key, f->klen, f->hash);
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
            f->res.compute_failed = false;
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

bool rk__flight_wait(struct rk__fetch_state *fs, rk__flight *f, int64_t deadline_ns, rk__fetch_outcome *o)
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
            o->compute_failed = false;
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

/* What a copy costs against local_copies_bytes: its value, its key and
 * the entry around them (allocator overhead aside). */
static size_t copy_cost(size_t klen, size_t len) { return sizeof(copy) + klen + 1 + len + 1; }

static copy **copy_slot(struct rk__fetch_state *fs, const char *key, size_t klen, uint64_t h)
{
    copy **p = &fs->copies[h & fs->copy_mask];
    while (*p && !((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->key, key, klen) == 0)) p = &(*p)->chain;
    return p;
}

/* Take *slot out of the table and push it on *gone (chained through
 * ->chain), to be freed once the lock is released. */
static void copy_unlink(struct rk__fetch_state *fs, copy **slot, copy **gone)
{
    copy *e = *slot;
    *slot = e->chain;
    if (e->older) e->older->newer = e->newer;
    else fs->oldest = e->newer;
    if (e->newer) e->newer->older = e->older;
    else fs->newest = e->older;
    fs->ncopies--;
    fs->bytes -= e->cost;
    e->chain = *gone;
    *gone = e;
}

static void free_gone(copy *gone)
{
    while (gone) {
        copy *next = gone->chain;
        copy_free(gone);
        gone = next;
    }
}

uint64_t rk__copies_mark(struct rk__fetch_state *fs)
{
    /* Published before this fetch reads Redis (seq_cst), so a write that
     * does not see it finished before the read and cannot be outdated by
     * what this fetch keeps. Checked first: one store per handle, not one
     * per call, on a shared cache line. */
    if (!atomic_load(&fs->fetched)) atomic_store(&fs->fetched, true);
    return atomic_load_explicit(&fs->forgets, memory_order_acquire);
}

/* Note a forget of the key hashed h, or of every key (under copies_lock). */
static void note_forget(struct rk__fetch_state *fs, uint64_t h, bool all)
{
    uint64_t seq = atomic_load_explicit(&fs->forgets, memory_order_relaxed) + 1;
    fs->recent[seq % RECENT_FORGETS].seq = seq;
    fs->recent[seq % RECENT_FORGETS].hash = h;
    fs->recent[seq % RECENT_FORGETS].all = all;
    atomic_store_explicit(&fs->forgets, seq, memory_order_release);
}

/* Was the key hashed h forgotten after mark (under copies_lock)? When the
 * ring no longer holds every forget since, it may have been. */
static bool forgotten_since(const struct rk__fetch_state *fs, uint64_t h, uint64_t mark)
{
    uint64_t last = atomic_load_explicit(&fs->forgets, memory_order_relaxed);
    if (last - mark > RECENT_FORGETS) return true;
    for (uint64_t seq = mark + 1; seq <= last; seq++) { /* bounded: at most RECENT_FORGETS */
        if (fs->recent[seq % RECENT_FORGETS].all || fs->recent[seq % RECENT_FORGETS].hash == h) return true;
    }
    return false;
}

void rk__copies_put(struct rk__fetch_state *fs, const char *key, size_t klen, const rk__fetch_outcome *o,
                    int64_t stale_ms, uint64_t mark)
{
    if (!fs->copies) return;
    uint64_t h = hash_key(key, klen);
    int64_t exp = o->meta.expires_at_ms;
    int64_t stale_until = exp ? rk__ms_add(exp, stale_ms) : 0;
    size_t cost = copy_cost(klen, o->len);
    copy *gone = NULL;

    pthread_mutex_lock(&fs->copies_lock);
    bool forgotten = forgotten_since(fs, h, mark);
    copy **slot = forgotten ? NULL : copy_slot(fs, key, klen, h);
    copy *e = slot ? *slot : NULL;
    /* The same stored value: one computation's META stamp. A value without
     * a logical expiry has no stamp worth trusting, and is always copied
     * (it is only put right after its computation). */
    bool same = e && exp != 0 && e->expires_at_ms == exp && e->compute_ms == o->meta.compute_ms && e->len == o->len;
    if (same) {
        /* This call read it from Redis after every forget that could
         * concern it (the mark says so): the copy is current again,
         * whatever generation it was kept in. Two computations stamped
         * alike would have to end in the same millisecond, take as long
         * and be as long: then either value is as recent as the other. */
        e->generation = fs->generation;
        if (stale_until > e->stale_until_ms) e->stale_until_ms = stale_until;
    } else if (e && cost > fs->max_bytes) {
        copy_unlink(fs, slot, &gone); /* older than the value just seen, which cannot be kept */
    }
    pthread_mutex_unlock(&fs->copies_lock);
    free_gone(gone);
    if (forgotten || same || cost > fs->max_bytes) return;

    copy *n = rk__malloc(sizeof *n + klen + 1);
    char *data = n ? dup_bytes(o->data, o->len) : NULL;
    if (!data) { /* a copy is a convenience: without memory, go without */
        rk__free(n);
        return;
    }
    *n = (copy){.hash = h, .data = data, .len = o->len, .cost = cost, .expires_at_ms = exp,
                .compute_ms = o->meta.compute_ms, .stale_until_ms = stale_until, .klen = klen};
    memcpy(n->key, key, klen);
    n->key[klen] = '\0';

    pthread_mutex_lock(&fs->copies_lock);
    if (forgotten_since(fs, h, mark)) { /* forgotten while we copied */
        pthread_mutex_unlock(&fs->copies_lock);
        copy_free(n);
        return;
    }
    n->generation = fs->generation;
    slot = copy_slot(fs, key, klen, h);
    if (*slot) copy_unlink(fs, slot, &gone);
    /* Bounded: each round removes one entry. */
    while ((fs->ncopies >= fs->max_copies || fs->bytes > fs->max_bytes - cost) && fs->oldest) {
        copy *old = fs->oldest;
        copy_unlink(fs, copy_slot(fs, old->key, old->klen, old->hash), &gone);
    }
    slot = copy_slot(fs, key, klen, h);
    n->chain = *slot;
    *slot = n;
    n->older = fs->newest;
    if (fs->newest) fs->newest->newer = n;
    else fs->oldest = n;
    fs->newest = n;
    fs->ncopies++;
    fs->bytes += cost;
    pthread_mutex_unlock(&fs->copies_lock);
    free_gone(gone);
}

bool rk__copies_get(struct rk__fetch_state *fs, const char *key, size_t klen, int64_t now_ms, int64_t stale_ms,
                    rk__fetch_outcome *o)
{
    if (!fs->copies) return false;
    bool found = false;
    copy *gone = NULL;
    pthread_mutex_lock(&fs->copies_lock);
    copy **slot = copy_slot(fs, key, klen, hash_key(key, klen));
    copy *e = *slot;
    if (e && e->generation != fs->generation) {
        copy_unlink(fs, slot, &gone); /* forgotten by rk__fetch_forget_all: reclaimed now that it is met */
    } else if (e) {
        bool usable = e->expires_at_ms == 0 ||
                      (now_ms < e->stale_until_ms && now_ms < rk__ms_add(e->expires_at_ms, stale_ms));
        if (usable && (o->data = dup_bytes(e->data, e->len))) {
            o->len = e->len;
            o->meta.expires_at_ms = e->expires_at_ms;
            o->meta.compute_ms = e->compute_ms;
            o->has_meta = true;
            o->stale = e->expires_at_ms != 0 && now_ms >= e->expires_at_ms;
            found = true;
        }
    }
    pthread_mutex_unlock(&fs->copies_lock);
    free_gone(gone);
    return found;
}

void rk__copies_drop(struct rk__fetch_state *fs, const char *key, size_t klen, uint64_t *mark)
{
    if (!fs->copies) return;
    copy *gone = NULL;
    uint64_t h = hash_key(key, klen);
    pthread_mutex_lock(&fs->copies_lock);
    uint64_t before = atomic_load_explicit(&fs->forgets, memory_order_relaxed);
    note_forget(fs, h, false);
    if (mark && *mark == before) *mark = before + 1;
    copy **slot = copy_slot(fs, key, klen, h);
    if (*slot) copy_unlink(fs, slot, &gone);
    pthread_mutex_unlock(&fs->copies_lock);
    free_gone(gone);
}

/* ---- the server's clock ---------------------------------------------------- */

int64_t rk__fetch_local_ms(struct rk__fetch_state *fs)
{
    return rk__wall_ms() + atomic_load_explicit(&fs->clock_skew_ms, memory_order_relaxed);
}

int64_t rk__fetch_server_now_ms(struct rk__fetch_state *fs)
{
    return rk__fetch_local_ms(fs) + atomic_load_explicit(&fs->clock_offset_ms, memory_order_relaxed);
}

bool rk__fetch_clock_due(struct rk__fetch_state *fs)
{
    int64_t taken = atomic_load_explicit(&fs->clock_taken_ns, memory_order_relaxed);
    return taken == 0 || rk__now_ns() - taken >= (int64_t)RK__FETCH_CLOCK_REFRESH_MS * 1000000;
}

void rk__fetch_clock_sample(struct rk__fetch_state *fs, int64_t server_ms, int64_t sent_local_ms,
                            int64_t received_local_ms)
{
    /* The server read its clock somewhere in the round trip: its middle
     * is the best guess. A sample from a clock stepped backwards in
     * between is still within the step of the truth, and the next one
     * mends it. */
    int64_t mid = sent_local_ms + (received_local_ms - sent_local_ms) / 2;
    atomic_store_explicit(&fs->clock_offset_ms, server_ms - mid, memory_order_relaxed);
    int64_t now = rk__now_ns();
    atomic_store_explicit(&fs->clock_taken_ns, now ? now : 1, memory_order_relaxed);
}

void rk__fetch_set_clock_skew(struct rk__fetch_state *fs, int64_t skew_ms)
{
    atomic_store_explicit(&fs->clock_skew_ms, skew_ms, memory_order_relaxed);
}

/* ---- the cache's hooks (src/cache/cache.h) ------------------------------------- */

/* Until a fetch has run on the handle there is no copy to forget, and no
 * fetch can keep one older than a write that finished before it started
 * (rk__copies_mark): the sets and deletes of a handle that never fetches
 * skip the lock. */
static bool never_fetched(const struct rk__fetch_state *fs) { return !atomic_load(&fs->fetched); }

void rk__fetch_forget(rk_cache *c, const char *key)
{
    if (!c || !c->fetch || !key || never_fetched(c->fetch)) return;
    rk__copies_drop(c->fetch, key, strlen(key), NULL);
}

void rk__fetch_forget_all(rk_cache *c)
{
    struct rk__fetch_state *fs = c ? c->fetch : NULL;
    if (!fs || !fs->copies || never_fetched(fs)) return;
    pthread_mutex_lock(&fs->copies_lock);
    fs->generation++;
    note_forget(fs, 0, true);
    pthread_mutex_unlock(&fs->copies_lock);
}
