/*
 * cache.h — the inside of an rk_cache, shared by the files that implement
 * it (contract in include/redkit/cache.h):
 *
 *   cache.c          handle, single-key set/get/delete/exists/ttl, and the
 *                    value encoding and decoding every other file uses
 *   cache_fetch.c    get-or-compute, one call: read, single-flight, Redis
 *                    lock, XFetch, compute, store, serve-stale
 *   fetch_decide.c   ... and its decisions, pure functions of (stored
 *                    value, now, options)
 *   fetch_state.c    what get-or-compute keeps between calls: the flights
 *                    in progress, this process's copies, the random source
 *   cache_batch.c    multi-get and multi-set
 *   cache_tags.c     tagged sets, tag invalidation, namespace clear
 *   compress.c       compression of large values
 *
 * Keys: user values live under "<prefix>:<ns>:<key>" (head). The cache's
 * own bookkeeping (fetch locks, tag sets) lives under "<prefix>:<ns>#..."
 * (aux head): '#' can never appear in a namespace, so no user key and no
 * other namespace can ever name one of them, and a SCAN of the namespace
 * never sees them.
 */
#ifndef RK_SRC_CACHE_H
#define RK_SRC_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/cache.h>

#include "compress.h"
#include "keys.h"
#include "registry.h"
#include "reply.h"
#include "value.h"

/* Values up to this size are assembled (header + payload) on the stack. */
#define RK__CACHE_STACK_VALUE 512
/* One counter slot per rk_status value (they are small and dense). */
#define RK__STATUS_SLOTS 32

/* Counters of one handle. Relaxed atomics: each is exact, a snapshot of
 * several is not a single instant (see metrics). */
typedef struct rk__cache_counters {
    _Atomic uint64_t hits;            /* a read found a value */
    _Atomic uint64_t misses;          /* a read found none */
    _Atomic uint64_t degraded;        /* a read could not ask Redis */
    _Atomic uint64_t stale;           /* fetch served a value past its fresh life */
    _Atomic uint64_t sets;            /* values written */
    _Atomic uint64_t deletes;         /* keys removed (delete, clear, tags) */
    _Atomic uint64_t computations;    /* compute callbacks run */
    _Atomic uint64_t compute_errors;  /* ... that failed */
    _Atomic uint64_t early;           /* XFetch early refreshes */
    _Atomic uint64_t lock_waits;      /* fetch waited for another computation */
    _Atomic uint64_t bytes_in;        /* payload bytes given to set */
    _Atomic uint64_t bytes_stored;    /* bytes written to Redis for them */
    _Atomic uint64_t store_errors;    /* fetch returned a computed value it could not store */
    _Atomic uint64_t errors[RK__STATUS_SLOTS]; /* calls that failed, by status */
} rk__cache_counters;

#define RK__COUNT(c, field, n) atomic_fetch_add_explicit(&(c)->counters.field, (uint64_t)(n), memory_order_relaxed)

/* Count an error status of a public call (no-op for RK_OK, misses). */
void rk__cache_count_error(rk_cache *c, rk_status st);

struct rk__fetch_state; /* fetch_state.c */

/*
 * How rk_cache_fetch() stores a computed value on a handle that a module
 * builds on (apikeys), instead of a plain SET: k is the full key, v/vlen
 * the encoded value, ttl_ms its Redis TTL (> 0). Returns RK_OK when
 * stored; RK_MISS when Redis holds a value that must not be overwritten
 * (apikeys' revocation tombstone), which is then in *kept (rk__malloc'd,
 * NUL-terminated, not counted in *kept_len) and is what the fetch serves,
 * to its waiters too, instead of the computed value; any other status is
 * a failed store, handled as one of SET.
 */
typedef rk_status (*rk__cache_fill_fn)(rk_cache *c, const rk__key *k, const char *v, size_t vlen, int64_t ttl_ms,
                                       char **kept, size_t *kept_len);

struct rk_cache {
    rk_client *client;
    char *head;               /* "<prefix>:<ns>:" */
    size_t head_len;
    char *aux_head;           /* "<prefix>:<ns>#" */
    size_t aux_head_len;
    int64_t default_ttl_ms;   /* RK_TTL_NONE or > 0 */
    bool raw;
    size_t max_key;
    size_t max_value;
    size_t compress_threshold; /* RK_CACHE_COMPRESS_OFF = never */
    int compress_level;        /* 0 = RK__COMPRESS_LEVEL_DEFAULT */
    rk__zpool zpool;           /* idle zstd contexts (compress.c); cleared
                                  by rk_cache_free */
    int64_t lock_ms;
    size_t local_copies;       /* 0 = no copies */
    size_t local_copies_bytes;
    int clear_budget_ms;
    rk__cache_counters counters;
    struct rk__fetch_state *fetch; /* owned by fetch_state.c */
    struct rk__near *near;         /* the near cache, or NULL (cache_near.c) */
    struct rk__tracker *tracker;   /* ... and its tracking connection */
    _Atomic unsigned near_gen;     /* the fork generation near was made for */
    _Atomic bool near_resetting;   /* a child is resetting it (cache_near.c) */
    rk__cache_fill_fn fill;        /* NULL = SET (only internal handles set it) */
};

/* ---- The near cache, as the cache uses it (cache_near.c) ----------------- */

/* Make the handle's near cache and start its tracking connection when
 * opts asks for one (no-op otherwise). RK_ERR_INVALID for a limit out of
 * range, RK_ERR_NOMEM, RK_ERR_SYSTEM. */
rk_status rk__cache_near_start(rk_cache *c, const rk_cache_options *opts);

/* Stop the tracking connection (it uses the client: call it while the
 * client is certainly alive) ... */
void rk__cache_near_stop(rk_cache *c);
/* ... and free the near cache (after no scrape can see the handle). */
void rk__cache_near_free(rk_cache *c);

/* GET of the namespaced key k through the near cache: a reply (STRING or
 * NIL, the caller frees it) from process memory or from Redis, which
 * fills the near cache. Without a near cache, a plain GET. Failures as
 * rk__client_run's (not degraded here). */
rk_status rk__cache_near_get(rk_cache *c, const rk__key *k, rk_reply **r);

/* The same, for a caller that can take a near-cache hit as bare bytes:
 * on a hit *hit is the stored value (NUL-terminated, the caller's to
 * rk__free, *hit_len bytes) and *r is NULL; otherwise *hit is NULL and *r
 * is as rk__cache_near_get's. Saves a reply object on the hottest path. */
rk_status rk__cache_near_read(rk_cache *c, const rk__key *k, char **hit, size_t *hit_len, rk_reply **r);

/* MGET of n namespaced keys through the near cache: an ARRAY reply of n
 * elements (STRING or NIL, as MGET gives), hits from process memory and
 * the rest read with GET and PTTL in one pipelined round trip, filling the
 * near cache. Failures as rk__client_pipeline's. */
rk_status rk__cache_near_mget(rk_cache *c, size_t n, const char *const *keys, const size_t *lens, rk_reply **array);

/* This process writes k: forget it locally (call before the write is sent
 * and again after it is answered, so that a read racing the write cannot
 * leave the old value behind). No-op without a near cache. */
void rk__cache_near_forget(rk_cache *c, const char *full_key, size_t len);

/* Forget a user key (builds the namespaced key; a bad key is ignored). */
void rk__cache_near_forget_user_key(rk_cache *c, const char *key);

/* A bulk removal by this handle (tag, clear): forget everything. */
void rk__cache_near_clear(rk_cache *c);

/* Tests only (NULL otherwise): called after a filling read's reply came
 * and before it lands, so a test can change the key in between. */
extern void (*rk__cache_near_test_hook)(rk_cache *c, const char *key, size_t len);

/* The TTL from a (ttl_s, ttl_ms) pair by rk_cache_set_options' rules: ms, or
 * RK_TTL_NONE. */
rk_status rk__cache_resolve_ttl(const rk_cache *c, int64_t ttl_s, int64_t ttl_ms, int64_t *out);

/* An encoded value, ready to be the value argument of SET. */
typedef struct rk__encoded {
    const char *data;
    size_t len;
    char *heap;                          /* owned; NULL when on the stack */
    char small[RK__CACHE_STACK_VALUE];
} rk__encoded;

/* Encode payload as the handle stores it: raw bytes in raw mode; else the
 * header (with meta when non-NULL), compressed when it is large enough and
 * compression pays. Checks plen against max_value. Release with
 * rk__cache_encoded_release(). */
rk_status rk__cache_encode(rk_cache *c, rk__vtype type, const void *payload, size_t plen,
                           const rk__value_meta *meta, rk__encoded *out);
void rk__cache_encoded_release(rk__encoded *e);

/* Decode a stored value (the bytes of a GET reply). accept is a bit set of
 * (1 << rk__vtype); want names the type asked for, for messages. On RK_OK
 * *data is a new NUL-terminated buffer with the payload (decompressed),
 * owned by the caller, *len its size, and *meta (may be NULL) the META
 * block (zero when none). The reply is always consumed (freed); its
 * buffer is reused for *data when it can be. */
/* A value with no redkit header, on a typed handle: written by another
 * client, read as plain bytes. */
bool rk__cache_foreign(const rk_cache *c, const char *data, size_t len);

rk_status rk__cache_decode(rk_cache *c, rk_reply *string_reply, unsigned accept, rk__vtype want, char **data,
                           size_t *len, rk__value_meta *meta);

/* The same for a stored value already out of its reply: s (n bytes,
 * NUL-terminated, from rk__malloc) is consumed, and reused for *data when
 * the value is not compressed. */
rk_status rk__cache_decode_bytes(rk_cache *c, char *s, size_t n, unsigned accept, rk__vtype want, char **data,
                                 size_t *len, rk__value_meta *meta);

#define RK__ACCEPT(t) (1u << (t))

/* SET key value [PX ttl]; when tags are given the set and the tag
 * bookkeeping happen in one script (cache_tags.c). */
rk_status rk__cache_store(rk_cache *c, const rk__key *k, const rk__encoded *v, int64_t ttl_ms,
                          const char *const *tags, size_t ntags);

/* Tagged store (cache_tags.c). */
rk_status rk__cache_store_tagged(rk_cache *c, const rk__key *k, const rk__encoded *v, int64_t ttl_ms,
                                 const char *const *tags, size_t ntags);

/* ---- cache_tags.c, for cache_batch.c and the tests ---- */

/* Check a tag list: tags non-NULL when ntags > 0, ntags <= RK_CACHE_MAX_TAGS,
 * each tag non-NULL, non-empty, at most RK_CACHE_MAX_TAG_BYTES. Messages name
 * the tag's index, never its text. */
rk_status rk__cache_check_tags(const char *const *tags, size_t ntags);

/* Store n encoded values under the full keys keys[i] (binary, with
 * keylens) with one TTL (ms, or RK_TTL_NONE) and the same tags, through
 * the tag store script: one script per chunk of entries, the chunks
 * pipelined; chunks refused with NOSCRIPT are sent again in one more
 * pipeline (the first in full), all under one command deadline taken at
 * the start of the call. statuses[i] receives each
 * entry's outcome (an entry fails with its whole chunk). Returns RK_OK or
 * the first failure. Nothing is copied that outlives the call. */
rk_status rk__cache_store_tagged_batch(rk_cache *c, size_t n, const char *const *keys, const size_t *keylens,
                                       const char *const *values, const size_t *vlens, int64_t ttl_ms,
                                       const char *const *tags, size_t ntags, rk_status *statuses);

/* rk_cache_clear with its bounds explicit: stop after max_rounds SCAN
 * rounds (>= 1 always runs) or once budget_ms has passed, whichever comes
 * first. Lets tests resume deterministically. */
rk_status rk__cache_clear_run(rk_cache *c, uint64_t *cursor, size_t *removed, int64_t budget_ms,
                              size_t max_rounds);

/* Turn an unreachable-Redis failure of a read into RK_DEGRADED. */
rk_status rk__cache_degrade(rk_status st);

/* RK_MISS with its message. */
rk_status rk__cache_miss(void);

/* Get-or-compute state, created with the handle (fetch_state.c). */
rk_status rk__fetch_state_new(rk_cache *c);
void rk__fetch_state_free(rk_cache *c);

/* This process's copies of fetched values (fetch_state.c), served while
 * Redis is unreachable, must not outlive the values they copy.
 * rk__fetch_forget() forgets the copy of one key: rk_cache_delete,
 * rk_cache_set* and rk_cache_mset call it once their command has been
 * tried, whatever the reply. rk__fetch_forget_all()
 * forgets every copy (O(1): a generation moves on): rk_cache_invalidate_tag
 * and rk_cache_clear call it first thing, since this process cannot know
 * which keys they remove. Both send nothing, and take one mutex once a
 * fetch has run on the handle (before that there is nothing to forget);
 * a NULL cache or key does nothing. */
void rk__fetch_forget(rk_cache *c, const char *key);
void rk__fetch_forget_all(rk_cache *c);

/* The decisions of rk_cache_fetch() (rk__xfetch_early and the rest) are
 * pure functions in fetch_decide.h. */
#include "fetch_decide.h"

/* True when the fetch running this compute callback could not read Redis
 * (it is computing degraded): lets a module built on the cache answer
 * from its own copy, or refuse, instead of asking its source. */
bool rk__cache_computed_degraded(const rk_cache_computed *out);

/* The cache's entry in the client's module registry (cache_metrics.c). */
extern const rk__module_ops rk__cache_ops;

#endif
