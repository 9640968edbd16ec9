/*
 * near.c — the near cache's store (contract and coherence rules in near.h).
 *
 * Layout: RK__NEAR_SHARDS shards, each a chained hash table with its own
 * mutex, its own least-recently-used list and its own slice of the byte
 * and entry budgets. A key's hash picks the shard (top bits) and the
 * bucket (low bits), so a hit costs one uncontended lock, a short chain
 * walk and the copy of the value — and threads reading different keys
 * rarely meet on a lock.
 *
 * Eviction is "second chance" (CLOCK), an approximation of least recently
 * used: a hit only sets the entry's `used` flag (once: a hot entry is
 * read, not written), and eviction takes the oldest entry of the list,
 * unless its flag is set, in which case the flag is cleared and the entry
 * goes back to the front. A hit that moved the entry to the front, as
 * strict LRU does, would write three entries' links and the list head on
 * every read: cache lines that every thread reading the shard then
 * fetches anew. Counters live in
 * the shards, under the same lock, so the hot path has no atomic
 * read-modify-write of a shared cache line.
 *
 * An entry is one allocation: header, key bytes, value bytes. A fill's
 * placeholder is an entry without a value; it is in the hash table (so an
 * invalidation finds and removes it) but not in the list (it is never
 * evicted: it is small and lives only for one round trip).
 *
 * Epochs: `state` holds the epoch (bits 1..63) and the live bit (bit 0). A
 * placeholder remembers the state it began in; a flush moves to a new
 * epoch before it empties the shards, so a fill that began before the
 * flush never lands, whatever the interleaving.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "alloc.h"
#include "near.h"

/* The list links, first in every entry, so that the list's sentinel (a
 * shard's `head`) can be links alone. */
typedef struct links {
    struct links *prev, *next; /* the shard's list, most recent first; NULL for a placeholder */
} links;

typedef struct entry {
    links l;                   /* first: an entry is its links */
    struct entry *chain;       /* next in the bucket */
    uint64_t hash;
    uint64_t token;            /* placeholder: its fill's token; 0 once it holds a value */
    uint64_t state;            /* placeholder: the state its fill began in */
    int64_t expires_ms;
    size_t klen, vlen;
    size_t charge;             /* what it counts against the budget */
    bool used;                 /* read since it last reached the list's front */
    unsigned char bytes[];     /* key, then value */
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry **buckets;
    size_t mask;               /* buckets - 1 */
    size_t count;              /* entries with a value (placeholders not counted) */
    size_t held;               /* all entries in the table, placeholders too */
    size_t bytes;
    links head;                /* sentinel of the list */
    uint64_t hits, misses, fills, cancelled, invalidations, evictions, expirations;
    char pad[64];              /* keep neighbouring shards' hot fields apart */
} shard;

struct rk__near {
    shard shards[RK__NEAR_SHARDS];
    size_t shard_bytes, shard_entries;
    int64_t max_ttl_ms;
    _Atomic uint64_t state;    /* epoch << 1 | live */
    _Atomic uint64_t next_token;
    _Atomic uint64_t flushes[RK__NEAR_FLUSH_REASONS];
};

#define INITIAL_BUCKETS 16

/* A fast 64-bit hash of a byte string: 8 bytes at a time through a
 * multiply-xorshift mix, then a final avalanche, so both the top bits
 * (shard) and the low bits (bucket) depend on every byte. */
static uint64_t hash_key(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t h = 0x243F6A8885A308D3u ^ (len * 0x9E3779B97F4A7C15u);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15u;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, len);
    h = (h ^ tail) * 0xBF58476D1CE4E5B9u;
    h ^= h >> 31;
    h *= 0x94D049BB133111EBu;
    h ^= h >> 32;
    return h;
}

static shard *shard_of(rk__near *n, uint64_t hash)
{
    return &n->shards[hash >> (64 - 6)]; /* 64 shards: the top six bits */
}

_Static_assert(RK__NEAR_SHARDS == 64, "shard_of takes the top six bits");

static void list_unlink(entry *e)
{
    e->l.prev->next = e->l.next;
    e->l.next->prev = e->l.prev;
    e->l.prev = e->l.next = NULL;
}

static void list_push_front(shard *s, entry *e)
{
    e->l.prev = &s->head;
    e->l.next = s->head.next;
    s->head.next->prev = &e->l;
    s->head.next = &e->l;
}

static entry *entry_of(links *l) { return (entry *)l; /* the links are its first member */ }

/* The slot that points at key's entry (or at the NULL ending its chain). */
static entry **find_slot(shard *s, uint64_t hash, const char *key, size_t klen)
{
    entry **slot = &s->buckets[hash & s->mask];
    while (*slot && !((*slot)->hash == hash && (*slot)->klen == klen && memcmp((*slot)->bytes, key, klen) == 0))
        slot = &(*slot)->chain;
    return slot;
}

/* Take the entry at *slot out of the table and the list, and free it. */
static void remove_at(shard *s, entry **slot)
{
    entry *e = *slot;
    *slot = e->chain;
    if (e->l.prev) {
        list_unlink(e);
        s->count--;
    }
    s->held--;
    s->bytes -= e->charge;
    rk__free(e);
}

/* Double the buckets when the table is full; on a failed allocation the
 * chains just grow longer. */
static void maybe_grow(shard *s)
{
    if (s->held <= s->mask + 1) return;
    size_t nb = (s->mask + 1) * 2;
    entry **b = rk__calloc(nb, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i <= s->mask; i++) {
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    rk__free(s->buckets);
    s->buckets = b;
    s->mask = nb - 1;
}

static void clear_shard(shard *s)
{
    for (size_t i = 0; i <= s->mask; i++) {
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->chain;
            rk__free(e);
        }
        s->buckets[i] = NULL;
    }
    s->head.next = s->head.prev = &s->head;
    s->count = s->held = s->bytes = 0;
}

rk__near *rk__near_new(const rk__near_limits *limits)
{
    if (!limits || limits->max_bytes == 0 || limits->max_entries == 0 || limits->max_ttl_ms <= 0) return NULL;
    rk__near *n = rk__calloc(1, sizeof *n);
    if (!n) return NULL;
    n->shard_bytes = limits->max_bytes / RK__NEAR_SHARDS;
    n->shard_entries = limits->max_entries / RK__NEAR_SHARDS;
    if (n->shard_entries == 0) n->shard_entries = 1; /* a budget below 64 entries still holds some */
    n->max_ttl_ms = limits->max_ttl_ms;
    atomic_init(&n->state, 2); /* epoch 1, not live */
    atomic_init(&n->next_token, 1);
    size_t made = 0;
    for (; made < RK__NEAR_SHARDS; made++) {
        shard *s = &n->shards[made];
        s->buckets = rk__calloc(INITIAL_BUCKETS, sizeof *s->buckets);
        if (!s->buckets || pthread_mutex_init(&s->lock, NULL) != 0) {
            rk__free(s->buckets);
            break;
        }
        s->mask = INITIAL_BUCKETS - 1;
        s->head.next = s->head.prev = &s->head;
    }
    if (made < RK__NEAR_SHARDS) {
        for (size_t i = 0; i < made; i++) {
            pthread_mutex_destroy(&n->shards[i].lock);
            rk__free(n->shards[i].buckets);
        }
        rk__free(n);
        return NULL;
    }
    return n;
}

void rk__near_free(rk__near *n)
{
    if (!n) return;
    for (size_t i = 0; i < RK__NEAR_SHARDS; i++) {
        shard *s = &n->shards[i];
        clear_shard(s);
        pthread_mutex_destroy(&s->lock);
        rk__free(s->buckets);
    }
    rk__free(n);
}

bool rk__near_is_live(const rk__near *n)
{
    return atomic_load_explicit(&((rk__near *)n)->state, memory_order_acquire) & 1;
}

rk_status rk__near_get(rk__near *n, const char *key, size_t klen, int64_t now_ms, void **value, size_t *len)
{
    *value = NULL;
    *len = 0;
    uint64_t h = hash_key(key, klen);
    shard *s = shard_of(n, h);
    if (!rk__near_is_live(n)) return RK_MISS; /* not counted: the near cache is off */
    rk_status st = RK_MISS;
    pthread_mutex_lock(&s->lock);
    entry **slot = find_slot(s, h, key, klen);
    entry *e = *slot;
    if (!e || e->token) {
        s->misses++;
    } else if (now_ms >= e->expires_ms) {
        remove_at(s, slot);
        s->expirations++;
        s->misses++;
    } else {
        unsigned char *copy = rk__malloc(e->vlen + 1);
        if (!copy) {
            st = RK_ERR_NOMEM;
        } else {
            memcpy(copy, e->bytes + e->klen, e->vlen);
            copy[e->vlen] = '\0';
            *value = copy;
            *len = e->vlen;
            if (!e->used) e->used = true;
            s->hits++;
            st = RK_OK;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return st;
}

uint64_t rk__near_fill_begin(rk__near *n, const char *key, size_t klen)
{
    uint64_t state = atomic_load_explicit(&n->state, memory_order_acquire);
    if (!(state & 1)) return 0;
    size_t charge = sizeof(entry) + klen;
    entry *p = rk__malloc(charge);
    if (!p) return 0;
    uint64_t h = hash_key(key, klen);
    *p = (entry){.hash = h, .token = atomic_fetch_add_explicit(&n->next_token, 1, memory_order_relaxed),
                 .state = state, .klen = klen, .charge = 0};
    memcpy(p->bytes, key, klen);
    uint64_t token = p->token;
    shard *s = shard_of(n, h);
    pthread_mutex_lock(&s->lock);
    entry **slot = find_slot(s, h, key, klen);
    if (*slot) remove_at(s, slot); /* an expired entry, or another fill's placeholder: this one wins */
    p->chain = s->buckets[h & s->mask];
    s->buckets[h & s->mask] = p;
    s->held++;
    maybe_grow(s);
    pthread_mutex_unlock(&s->lock);
    return token;
}

bool rk__near_fill_end(rk__near *n, const char *key, size_t klen, uint64_t token, const void *value, size_t len,
                       int64_t now_ms, int64_t expires_ms)
{
    if (token == 0) return false;
    uint64_t h = hash_key(key, klen);
    shard *s = shard_of(n, h);
    size_t charge = RK__NEAR_ENTRY_OVERHEAD + klen + len;
    bool fits = value && charge <= n->shard_bytes;
    int64_t cap = now_ms + n->max_ttl_ms;
    int64_t expires = expires_ms > 0 && expires_ms < cap ? expires_ms : cap;
    entry *e = fits && expires > now_ms ? rk__malloc(sizeof(entry) + klen + len) : NULL;

    bool landed = false;
    pthread_mutex_lock(&s->lock);
    entry **slot = find_slot(s, h, key, klen);
    entry *p = *slot;
    bool mine = p && p->token == token;
    if (mine && e && p->state == atomic_load_explicit(&n->state, memory_order_acquire)) {
        remove_at(s, slot); /* the placeholder */
        /* Make room: the oldest entries not read since they were last
         * given a second chance go first. Each entry is passed over at most
         * once (its flag is cleared), so the loop ends. */
        while (s->count > 0 && (s->bytes + charge > n->shard_bytes || s->count + 1 > n->shard_entries)) {
            entry *victim = entry_of(s->head.prev);
            if (victim->used) {
                victim->used = false;
                list_unlink(victim);
                list_push_front(s, victim);
                continue;
            }
            remove_at(s, find_slot(s, victim->hash, (const char *)victim->bytes, victim->klen));
            s->evictions++;
        }
        *e = (entry){.hash = h, .expires_ms = expires, .klen = klen, .vlen = len, .charge = charge};
        memcpy(e->bytes, key, klen);
        memcpy(e->bytes + klen, value, len);
        e->chain = s->buckets[h & s->mask];
        s->buckets[h & s->mask] = e;
        list_push_front(s, e);
        s->count++;
        s->held++;
        s->bytes += charge;
        s->fills++;
        landed = true;
        e = NULL;
    } else {
        if (mine) remove_at(s, slot); /* cancelled by the caller, too large, out of memory, or an old epoch */
        if (value) s->cancelled++;
    }
    pthread_mutex_unlock(&s->lock);
    rk__free(e);
    return landed;
}

static void drop(rk__near *n, const char *key, size_t klen, bool count)
{
    uint64_t h = hash_key(key, klen);
    shard *s = shard_of(n, h);
    pthread_mutex_lock(&s->lock);
    entry **slot = find_slot(s, h, key, klen);
    if (*slot) remove_at(s, slot);
    if (count) s->invalidations++;
    pthread_mutex_unlock(&s->lock);
}

void rk__near_invalidate(rk__near *n, const char *key, size_t klen) { drop(n, key, klen, true); }

void rk__near_forget(rk__near *n, const char *key, size_t klen) { drop(n, key, klen, false); }

/* Move to a new epoch; live: 1 or 0, or -1 to keep the live bit. */
static void new_epoch(rk__near *n, int live)
{
    uint64_t old = atomic_load_explicit(&n->state, memory_order_relaxed), next;
    do {
        uint64_t bit = live < 0 ? (old & 1) : (uint64_t)live;
        next = ((old >> 1) + 1) << 1 | bit;
    } while (!atomic_compare_exchange_weak_explicit(&n->state, &old, next, memory_order_acq_rel,
                                                    memory_order_relaxed));
}

static void empty(rk__near *n, rk__near_flush_reason why, int live)
{
    /* A new epoch first: a fill that began before this call cannot land,
     * even in a shard emptied before it ends. */
    new_epoch(n, live);
    for (size_t i = 0; i < RK__NEAR_SHARDS; i++) {
        shard *s = &n->shards[i];
        pthread_mutex_lock(&s->lock);
        clear_shard(s);
        pthread_mutex_unlock(&s->lock);
    }
    if ((unsigned)why < RK__NEAR_FLUSH_REASONS)
        atomic_fetch_add_explicit(&n->flushes[why], 1, memory_order_relaxed);
}

void rk__near_flush(rk__near *n, rk__near_flush_reason why, bool live)
{
    empty(n, why, live ? 1 : 0);
}

void rk__near_clear(rk__near *n, rk__near_flush_reason why)
{
    empty(n, why, -1);
}

void rk__near_reset_after_fork(rk__near *n)
{
    new_epoch(n, 0);
    for (size_t i = 0; i < RK__NEAR_SHARDS; i++) {
        shard *s = &n->shards[i];
        pthread_mutex_init(&s->lock, NULL); /* the only thread here; the old lock may be held */
        clear_shard(s);
    }
    atomic_fetch_add_explicit(&n->flushes[RK__NEAR_FLUSH_FORK], 1, memory_order_relaxed);
}

void rk__near_stats_get(const rk__near *cn, rk__near_stats *out)
{
    rk__near *n = (rk__near *)cn;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < RK__NEAR_SHARDS; i++) {
        shard *s = &n->shards[i];
        pthread_mutex_lock(&s->lock);
        out->hits += s->hits;
        out->misses += s->misses;
        out->fills += s->fills;
        out->fills_cancelled += s->cancelled;
        out->invalidations += s->invalidations;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->bytes += s->bytes;
        out->entries += s->count;
        pthread_mutex_unlock(&s->lock);
    }
    for (int r = 0; r < RK__NEAR_FLUSH_REASONS; r++)
        out->flushes[r] = atomic_load_explicit(&n->flushes[r], memory_order_relaxed);
}
