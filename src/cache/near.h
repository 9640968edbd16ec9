/*
 * near.h — the near cache: an in-process copy of hot cache values, kept
 * coherent by invalidations that Redis sends (src/cache/near.c).
 *
 * This is the store alone, with no I/O and no clock of its own: whoever
 * reads Redis (the cache) asks it first, fills it through the two-step
 * fill below, and whoever listens to Redis's invalidations (the tracking
 * connection) removes keys or flushes it. Time is passed in, so the unit
 * tests move it by hand.
 *
 * Coherence rests on three rules, each enforced here:
 *
 *  1. A fill is announced before its read is sent (rk__near_fill_begin
 *     leaves a placeholder) and lands only if nothing removed that
 *     placeholder meanwhile: an invalidation that overtakes the reply of
 *     the read that fills the entry cancels the fill.
 *  2. Nothing is stored or served while the near cache is not live, that
 *     is while the invalidation stream is not known to be up (before it is
 *     subscribed, after it broke, in a child after fork()); going live
 *     starts a new epoch, and a fill begun in an older epoch never lands.
 *  3. No entry outlives the expiry it was stored with (the value's Redis
 *     TTL or the handle's local cap, whichever is first).
 *
 * Keys are the full Redis keys ("<prefix>:<ns>:<key>"), as invalidations
 * name them. Values are copied in and out; an entry is never shared with a
 * caller.
 *
 * Thread safety: every function may be called from any thread. The store
 * is split into shards, each with its own lock, chosen by the key's hash:
 * a hit takes one shard's lock, never a global one.
 */
#ifndef RK_SRC_CACHE_NEAR_H
#define RK_SRC_CACHE_NEAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/status.h>

/* Shards: a power of two. The byte and entry budgets are split evenly
 * between them, so one entry may take at most max_bytes / RK__NEAR_SHARDS. */
#define RK__NEAR_SHARDS 64

/* What an entry costs beyond its key and value bytes (the entry header and
 * its hash bucket), for the byte budget. */
#define RK__NEAR_ENTRY_OVERHEAD 96

typedef struct rk__near rk__near;

typedef struct rk__near_limits {
    size_t max_bytes;    /* keys + values + overhead, all shards; > 0 */
    size_t max_entries;  /* all shards; > 0 */
    int64_t max_ttl_ms;  /* no entry lives longer locally; > 0 */
} rk__near_limits;

/* Why the near cache was emptied, for its counters. */
typedef enum rk__near_flush_reason {
    RK__NEAR_FLUSH_SERVER,     /* FLUSHALL / FLUSHDB on the server */
    RK__NEAR_FLUSH_CONNECTION, /* the invalidation stream broke or restarted */
    RK__NEAR_FLUSH_FORK,       /* a child process starts empty */
    RK__NEAR_FLUSH_OTHER,      /* the owner asked (e.g. a namespace clear) */
    RK__NEAR_FLUSH_REASONS
} rk__near_flush_reason;

typedef struct rk__near_stats {
    uint64_t hits, misses;
    uint64_t fills, fills_cancelled;  /* landed; dropped by rule 1 or 2 */
    uint64_t invalidations;           /* keys named by the server */
    uint64_t evictions;               /* entries pushed out by the budgets */
    uint64_t expirations;             /* entries found past their expiry */
    uint64_t flushes[RK__NEAR_FLUSH_REASONS];
    uint64_t bytes, entries;          /* held now */
} rk__near_stats;

/* A new, empty near cache that is not live yet; NULL when out of memory or
 * when a limit is 0. */
rk__near *rk__near_new(const rk__near_limits *limits);

/* Free it and every entry (NULL is a no-op). Nothing may use it anymore. */
void rk__near_free(rk__near *n);

/* Look key up at now_ms (any clock, as long as fills use the same). On a
 * hit RK_OK and *value is a copy of the value (rk__malloc'd, NUL-terminated
 * one byte past *len, freed with rk__free); RK_MISS when the key is absent,
 * filling, expired or the cache is not live; RK_ERR_NOMEM when the copy
 * could not be made (counted as neither). */
rk_status rk__near_get(rk__near *n, const char *key, size_t klen, int64_t now_ms, void **value, size_t *len);

/* Announce a fill of key (rule 1): returns a token for rk__near_fill_end,
 * or 0 when the key cannot be filled now (not live, out of memory). Call
 * it before the read whose reply will fill the entry is sent. */
uint64_t rk__near_fill_begin(rk__near *n, const char *key, size_t klen);

/* The read's reply: store value (copied) for key with expiry
 * min(expires_ms, now_ms + max_ttl_ms) — expires_ms 0 means "no TTL of its
 * own" — if token's placeholder is still there and the epoch has not
 * changed. Returns true when it landed. A value that does not fit one
 * shard's budget is not stored (false). value may be NULL only to cancel:
 * then the placeholder is removed and nothing is stored. */
bool rk__near_fill_end(rk__near *n, const char *key, size_t klen, uint64_t token, const void *value, size_t len,
                       int64_t now_ms, int64_t expires_ms);

/* Forget key because the server said it changed (counted in
 * invalidations). A placeholder is removed too, cancelling its fill. */
void rk__near_invalidate(rk__near *n, const char *key, size_t klen);

/* The same for this process's own write (not counted). */
void rk__near_forget(rk__near *n, const char *key, size_t klen);

/* Forget everything and count why. live is what the cache is afterwards:
 * false while the invalidation stream is down (nothing is stored or served
 * until rk__near_set_live), true when the stream is (again) up. Either way
 * a new epoch starts, so no fill begun before this call lands. */
void rk__near_flush(rk__near *n, rk__near_flush_reason why, bool live);

/* Forget everything and count why, keeping the live state as it is (the
 * owner's own bulk removals: a tag invalidation, a namespace clear). */
void rk__near_clear(rk__near *n, rk__near_flush_reason why);

/* In a child process after fork(), before anything else touches n: the
 * shard locks are made anew (a thread of the parent may have held one),
 * every entry goes, and the cache is off until rk__near_flush(..., true). */
void rk__near_reset_after_fork(rk__near *n);

/* True while the cache serves and stores. */
bool rk__near_is_live(const rk__near *n);

/* Counters and current size. */
void rk__near_stats_get(const rk__near *n, rk__near_stats *out);

#endif
