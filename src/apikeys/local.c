/*
 * local.c — this process's answers to verify, the layer in front of
 * Redis: a table from a key's SHA-256 to what was last learned about it
 * (valid with its owner record, not found, revoked), when, and until when
 * it may be served fresh or stale.
 *
 * It is what makes a repeated verify cost a hash and a table probe instead
 * of a round trip, so it is built for that: 16 shards chosen by the first
 * byte of the hash (the hash is uniform), each with its own mutex, chained
 * buckets and an insertion-ordered list that gives the eviction order
 * (the oldest answer goes first when a shard is full). Bounded: at most
 * max_entries answers in all, each with a copy of its owner record (at
 * most RK_APIKEYS_MAX_RECORD_BYTES).
 *
 * An answer must never outlive a revocation this process has heard of:
 * a verify takes its shard's mark (a generation) before it asks Redis,
 * and its answer is kept only if nothing in the shard was dropped or
 * flushed since — a verify that raced a revocation keeps nothing.
 */
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "apikeys.h"

#define SHARDS 16

typedef struct entry {
    unsigned char d[RK__SHA256_BYTES];
    struct entry *chain;         /* next in the bucket */
    struct entry *older, *newer; /* insertion order */
    char kind;
    int64_t expires_at_ms;
    char *owner;
    size_t owner_len;
    int64_t fresh_until_ns, stale_until_ns;
} entry;

typedef struct shard {
    pthread_mutex_t mu;
    _Atomic uint64_t gen;
    entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, max;
    entry *oldest, *newest;
} shard;

struct rk__local {
    shard shards[SHARDS];
};

static shard *shard_of(rk__local *t, const unsigned char *d) { return &t->shards[d[0] % SHARDS]; }

static size_t bucket_of(const shard *s, const unsigned char *d)
{
    uint64_t h;
    memcpy(&h, d + 1, sizeof h);
    return (size_t)(h & (s->nbuckets - 1));
}

rk__local *rk__local_new(size_t max_entries)
{
    rk__local *t = rk__calloc(1, sizeof *t);
    if (!t) return NULL;
    size_t per = max_entries ? (max_entries + SHARDS - 1) / SHARDS : 0;
    size_t nb = 16;
    while (nb < per && nb < ((size_t)1 << 24)) nb <<= 1;
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &t->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->max = per;
        s->nbuckets = nb;
        s->buckets = per ? rk__calloc(nb, sizeof *s->buckets) : NULL;
        if (per && !s->buckets) {
            for (int j = 0; j <= i; j++) {
                rk__free(t->shards[j].buckets);
                pthread_mutex_destroy(&t->shards[j].mu);
            }
            rk__free(t);
            return NULL;
        }
    }
    return t;
}

static void unlink_entry(shard *s, entry *e)
{
    entry **pp = &s->buckets[bucket_of(s, e->d)];
    while (*pp && *pp != e) pp = &(*pp)->chain;
    if (*pp) *pp = e->chain;
    if (e->older) e->older->newer = e->newer;
    else s->oldest = e->newer;
    if (e->newer) e->newer->older = e->older;
    else s->newest = e->older;
    s->count--;
    rk__free(e->owner);
    rk__free(e);
}

static void clear_shard(shard *s)
{
    while (s->oldest) unlink_entry(s, s->oldest);
}

void rk__local_free(rk__local *t)
{
    if (!t) return;
    for (int i = 0; i < SHARDS; i++) {
        clear_shard(&t->shards[i]);
        rk__free(t->shards[i].buckets);
        pthread_mutex_destroy(&t->shards[i].mu);
    }
    rk__free(t);
}

static entry *find(shard *s, const unsigned char *d)
{
    if (!s->buckets) return NULL;
    for (entry *e = s->buckets[bucket_of(s, d)]; e; e = e->chain)
        if (memcmp(e->d, d, RK__SHA256_BYTES) == 0) return e;
    return NULL;
}

uint64_t rk__local_mark(rk__local *t, const unsigned char d[RK__SHA256_BYTES])
{
    return atomic_load_explicit(&shard_of(t, d)->gen, memory_order_acquire);
}

void rk__local_put(rk__local *t, const unsigned char d[RK__SHA256_BYTES], const rk__answer *a, int64_t now_ns,
                   int64_t fresh_ns, int64_t stale_ns, uint64_t mark)
{
    shard *s = shard_of(t, d);
    if (!s->max || (fresh_ns <= 0 && stale_ns <= 0)) return;
    /* The copy is made before the lock, and dropped if it is not needed. */
    char *owner = NULL;
    if (a->kind == 'V' && a->owner_len) {
        owner = rk__malloc(a->owner_len);
        if (!owner) return;
        memcpy(owner, a->owner, a->owner_len);
    }
    pthread_mutex_lock(&s->mu);
    if (atomic_load_explicit(&s->gen, memory_order_relaxed) != mark) {
        pthread_mutex_unlock(&s->mu);
        rk__free(owner);
        return;
    }
    entry *e = find(s, d);
    if (e) {
        unlink_entry(s, e); /* re-inserted as the newest */
    } else if (s->count >= s->max) {
        unlink_entry(s, s->oldest);
    }
    e = rk__calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&s->mu);
        rk__free(owner);
        return;
    }
    memcpy(e->d, d, RK__SHA256_BYTES);
    e->kind = a->kind;
    e->expires_at_ms = a->expires_at_ms;
    e->owner = owner;
    e->owner_len = owner ? a->owner_len : 0;
    e->fresh_until_ns = now_ns + (fresh_ns > 0 ? fresh_ns : 0);
    e->stale_until_ns = now_ns + (stale_ns > fresh_ns ? stale_ns : fresh_ns);
    size_t b = bucket_of(s, d);
    e->chain = s->buckets[b];
    s->buckets[b] = e;
    e->older = s->newest;
    if (s->newest) s->newest->newer = e;
    else s->oldest = e;
    s->newest = e;
    s->count++;
    pthread_mutex_unlock(&s->mu);
}

int rk__local_get(rk__local *t, const unsigned char d[RK__SHA256_BYTES], int64_t now_ns, bool allow_stale,
                  rk__answer *a)
{
    shard *s = shard_of(t, d);
    if (!s->max) return 0;
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, d);
    int got = 0;
    if (e && now_ns >= e->stale_until_ns) {
        unlink_entry(s, e); /* of no use any more */
    } else if (e && (now_ns < e->fresh_until_ns || allow_stale)) {
        got = now_ns < e->fresh_until_ns ? 1 : 2;
        a->kind = e->kind;
        a->expires_at_ms = e->expires_at_ms;
        a->owner = NULL;
        a->owner_len = 0;
        if (e->owner_len) {
            char *copy = rk__malloc(e->owner_len + 1);
            if (copy) {
                memcpy(copy, e->owner, e->owner_len);
                copy[e->owner_len] = '\0';
                a->owner = copy;
                a->owner_len = e->owner_len;
            } else {
                got = -1;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return got;
}

void rk__local_drop(rk__local *t, const unsigned char d[RK__SHA256_BYTES])
{
    shard *s = shard_of(t, d);
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, d);
    if (e) unlink_entry(s, e);
    atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
    pthread_mutex_unlock(&s->mu);
}

void rk__local_flush(rk__local *t)
{
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &t->shards[i];
        pthread_mutex_lock(&s->mu);
        clear_shard(s);
        atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
        pthread_mutex_unlock(&s->mu);
    }
}

void rk__local_demote(rk__local *t)
{
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &t->shards[i];
        pthread_mutex_lock(&s->mu);
        for (entry *e = s->oldest; e; e = e->newer) e->fresh_until_ns = INT64_MIN;
        atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
        pthread_mutex_unlock(&s->mu);
    }
}

size_t rk__local_count(rk__local *t)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&t->shards[i].mu);
        n += t->shards[i].count;
        pthread_mutex_unlock(&t->shards[i].mu);
    }
    return n;
}
