/*
 * redkit/cache.h — a key/value cache with TTLs in one namespace.
 *
 *     rk_cache *cache;
 *     rk_cache_new(client, NULL, &cache);                 // namespace "cache"
 *     rk_cache_set_str(cache, "user:123", user_json, &(rk_cache_set_options){ .ttl_s = 300 });
 *     char *user;
 *     if (rk_cache_get_str(cache, "user:123", &user) == RK_OK) { ...; rk_free(user); }
 *     rk_cache_delete(cache, "user:123");
 *
 * Keys are namespaced (see redkit/keys.h): the call above writes
 * "<prefix>:cache:user:123".
 *
 * Every value expires: a set without a TTL uses the handle's default_ttl_ms
 * (5 minutes unless configured). Storing a value forever must be asked for
 * with RK_TTL_NONE.
 *
 * Values and types. By default each stored value starts with a 2-byte
 * header (0xFE, type) naming what was stored: bytes, a string, an int64 or
 * a double. Strings and bytes read interchangeably; the number getters
 * also parse text (a string, bytes, or a value without the header, as
 * redis-cli and other clients write it: every handle reads those as plain
 * bytes). Reading a typed int64 or double as text or as the other number
 * type, or text that is not a number as one, returns RK_ERR_TYPE instead
 * of garbage (docs/cache.md, "Values written by other clients").
 * With .raw = true the handle stores plain bytes with no header, so other
 * Redis clients and redis-cli read and write the same values: integers and
 * doubles are then stored as decimal text (INCR works on them) and the
 * typed getters parse text, returning RK_ERR_TYPE for text that is not a
 * number.
 *
 * When Redis is unavailable (down, unreachable, circuit open, timed out):
 * the reads — rk_cache_get*, rk_cache_exists, rk_cache_ttl_ms — return
 * RK_DEGRADED, a miss flagged as "could not ask" (rk_status_is_miss() is
 * true, rk_status_is_error() false), within the call's deadline; the
 * writes — set and delete — return RK_ERR_UNAVAILABLE or RK_ERR_TIMEOUT
 * without blocking longer. A read whose pooled connection turns out dead
 * is retried once on a fresh connection; a write never is.
 *
 * Thread safety: a cache handle may be used from any number of threads at
 * once. Its own memory is owned by the handle; every value it returns is
 * owned by the caller and freed with rk_free().
 */
#ifndef REDKIT_CACHE_H
#define REDKIT_CACHE_H

#include "common.h"
#include "status.h"
#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_cache rk_cache;

/* Defaults for a zeroed field of rk_cache_options. */
#define RK_CACHE_DEFAULT_NAMESPACE "cache"
#define RK_CACHE_DEFAULT_TTL_MS 300000            /* 5 minutes */
#define RK_CACHE_DEFAULT_MAX_VALUE_BYTES (16u << 20) /* 16 MiB */

/* "Never expire": valid in rk_cache_set_options.ttl_s / .ttl_ms and in
 * rk_cache_options.default_ttl_ms. */
#define RK_TTL_NONE (-1)

/* rk_cache_options.compress_threshold: never compress. */
#define RK_CACHE_COMPRESS_OFF SIZE_MAX
#define RK_CACHE_DEFAULT_COMPRESS_THRESHOLD 1024
#define RK_CACHE_DEFAULT_LOCK_MS 10000
#define RK_CACHE_DEFAULT_LOCAL_COPIES 1024
#define RK_CACHE_DEFAULT_LOCAL_COPIES_BYTES (64u << 20) /* 64 MiB */
#define RK_CACHE_DEFAULT_CLEAR_BUDGET_MS 100
#define RK_CACHE_DEFAULT_NEAR_MAX_BYTES (64u << 20) /* 64 MiB */
#define RK_CACHE_DEFAULT_NEAR_MAX_ENTRIES 100000
#define RK_CACHE_DEFAULT_NEAR_MAX_TTL_MS 60000      /* 1 minute */

typedef struct rk_cache_options {
    const char *ns;              /* namespace; default "cache" */
    int64_t default_ttl_ms;      /* TTL of a set that names none; default
                                    300000 (5 min); RK_TTL_NONE = no expiry;
                                    other negative values and values over
                                    2^62 are RK_ERR_INVALID */
    bool raw;                    /* store plain bytes, no type header (and
                                    so no compression, no XFetch metadata) */
    size_t max_key_bytes;        /* longest user key; default 1024; at most
                                    RK_MAX_KEY_BYTES (64 MiB), else
                                    RK_ERR_INVALID */
    size_t max_value_bytes;      /* largest value; default 16 MiB, at most
                                    512 MiB (Redis's own limit) */
    size_t compress_threshold;   /* typed values of at least this many bytes
                                    are stored compressed (zstd) when that
                                    makes them smaller; default 1024;
                                    RK_CACHE_COMPRESS_OFF = never */
    int compress_level;          /* zstd level: 0 = the default, 1; 1..19
                                    (higher: smaller, slower to compress);
                                    -7..-1 (faster); else RK_ERR_INVALID.
                                    See docs/cache.md, "Compression" */
    int64_t lock_ms;             /* rk_cache_fetch: lifetime of the Redis
                                    lock one process holds while it
                                    computes a value, and the longest any
                                    caller waits for another's computation;
                                    default 10000; 0..3600000, else
                                    RK_ERR_INVALID */
    size_t local_copies;         /* rk_cache_fetch with stale_ms: how many
                                    values to keep in process memory, to
                                    serve stale when Redis is unreachable
                                    (each entry is a copy of its value;
                                    the oldest goes first); default 1024;
                                    SIZE_MAX = none; other values over
                                    PTRDIFF_MAX are RK_ERR_INVALID */
    size_t local_copies_bytes;   /* ... and the most memory they may take,
                                    counting each value, its key and a
                                    small fixed overhead: the oldest go
                                    first until the copies fit, and a value
                                    that alone would not fit is not kept;
                                    default 64 MiB; SIZE_MAX = no copies,
                                    as for local_copies; other values over
                                    PTRDIFF_MAX (a negative number cast to
                                    size_t) are RK_ERR_INVALID */
    int clear_budget_ms;         /* rk_cache_clear: time one call may spend;
                                    default 100; 0..60000, else
                                    RK_ERR_INVALID */
    /* The near cache (docs/cache.md, "Near cache"): a copy of hot values in
     * this process, kept coherent by Redis (CLIENT TRACKING, broadcast on
     * the namespace), so that a read of a value held is answered without
     * a round trip. Off by default. It needs Redis 6+ and a connection of
     * its own per handle; rk_cache_get* and rk_cache_fetch read through
     * it; every write through this handle drops the key locally before and
     * after it is sent. */
    bool near_cache;             /* on/off; default off */
    size_t near_max_bytes;       /* memory it may hold: values, keys and a
                                    fixed overhead per entry; default
                                    64 MiB; 64 KiB .. PTRDIFF_MAX. One value
                                    may take at most 1/64 of it */
    size_t near_max_entries;     /* values it may hold; default 100000;
                                    1 .. 2^32 */
    int64_t near_max_ttl_ms;     /* no value is served from process memory
                                    longer than this after it was read
                                    from Redis (nor past its Redis TTL);
                                    default 60000; 1 .. 86400000 */
} rk_cache_options;

/*
 * Per-call options of the set functions; pass NULL for the defaults.
 * ttl_ms wins over ttl_s when both are set. Zero in both means the
 * handle's default_ttl_ms; RK_TTL_NONE in either means no expiry. Any
 * other negative value, or a TTL over 2^62 ms (Redis refuses TTLs that
 * overflow its clock), is RK_ERR_INVALID.
 */
typedef struct rk_cache_set_options {
    int64_t ttl_s;   /* time to live in seconds */
    int64_t ttl_ms;  /* time to live in milliseconds */
    const char *const *tags; /* tags of the value (see
                                rk_cache_invalidate_tag); NULL = none;
                                each non-empty, at most RK_CACHE_MAX_TAG_BYTES;
                                the strings are not kept */
    size_t ntags;            /* number of tags, at most RK_CACHE_MAX_TAGS */
} rk_cache_set_options;

/* Most tags one value can carry. */
#define RK_CACHE_MAX_TAGS 32
/* Longest tag, in bytes. A tag is a NUL-terminated string of any other
 * bytes; it is never shown in an error message (it may carry user data). */
#define RK_CACHE_MAX_TAG_BYTES 256

/*
 * rk_cache_new — create a cache handle on client. opts may be NULL
 * (defaults). The options and their strings are copied. The client must
 * outlive the handle. On RK_OK *out is the handle (free it with
 * rk_cache_free()); otherwise *out is NULL. Returns RK_OK, RK_ERR_INVALID
 * (NULL client or out, bad namespace, out-of-range option) or RK_ERR_NOMEM.
 * No network traffic.
 */
RK_EXPORT rk_status rk_cache_new(rk_client *client, const rk_cache_options *opts,
                                 rk_cache **out);

/* rk_cache_free — release the handle (not the client, not stored values).
 * rk_cache_free(NULL) does nothing. */
RK_EXPORT void rk_cache_free(rk_cache *cache);

/*
 * rk_cache_set — store len bytes (value may contain NULs; len 0 is an empty
 * value) under key, replacing any previous value, with a TTL (see
 * rk_cache_set_options). value is copied into the request; the caller keeps it.
 * Returns RK_OK; RK_ERR_INVALID (NULL, empty key, bad TTL);
 * RK_ERR_TOO_LARGE (key or value over the handle's maximum); or the
 * client's errors (RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, RK_ERR_SERVER, ...),
 * in which case the previous value may or may not have been replaced.
 */
RK_EXPORT rk_status rk_cache_set(rk_cache *cache, const char *key, const void *value,
                                 size_t len, const rk_cache_set_options *opts);

/* rk_cache_set_str — rk_cache_set() of a NUL-terminated string (without
 * its NUL), stored as type "string". */
RK_EXPORT rk_status rk_cache_set_str(rk_cache *cache, const char *key, const char *value,
                                     const rk_cache_set_options *opts);

/* rk_cache_set_i64 — store an int64 (type "int64"). */
RK_EXPORT rk_status rk_cache_set_i64(rk_cache *cache, const char *key, int64_t value,
                                     const rk_cache_set_options *opts);

/* rk_cache_set_double — store a finite double (type "double"); NaN and
 * infinities are RK_ERR_INVALID. The value reads back bit-exact. */
RK_EXPORT rk_status rk_cache_set_double(rk_cache *cache, const char *key, double value,
                                        const rk_cache_set_options *opts);

/*
 * rk_cache_get — read the value of key.
 *
 * On RK_OK *value receives a newly allocated copy of the bytes (freed with
 * rk_free(); followed by a NUL that is not counted, so text can be used
 * directly) and *len their number. On RK_MISS (absent or expired) and on
 * every error *value is NULL and *len is 0.
 * Returns RK_OK, RK_MISS, RK_DEGRADED (Redis unavailable), RK_ERR_INVALID,
 * RK_ERR_TYPE (the value is a typed int64/double, has a header this
 * version does not know, or is a compressed value that is corrupt),
 * RK_ERR_TOO_LARGE (a compressed value that would expand beyond
 * max_value_bytes), or the client's other errors
 * (RK_ERR_SERVER, RK_ERR_AUTH, ...). Compressed values are decompressed
 * transparently; a raw handle returns them as stored.
 */
RK_EXPORT rk_status rk_cache_get(rk_cache *cache, const char *key, void **value,
                                 size_t *len);

/* rk_cache_get_str — as rk_cache_get(), for text: *value is a
 * NUL-terminated string, freed with rk_free(). Reads strings, bytes and
 * values written by other clients; a value with a NUL byte inside gives
 * RK_ERR_TYPE (read it with rk_cache_get()), as does a typed number. */
RK_EXPORT rk_status rk_cache_get_str(rk_cache *cache, const char *key, char **value);

/* rk_cache_get_i64 — read an int64 into *value (unchanged unless RK_OK):
 * a value stored as an int64, or text that is one (-?[0-9]+ in range);
 * RK_ERR_TYPE for a typed double and for other text. */
RK_EXPORT rk_status rk_cache_get_i64(rk_cache *cache, const char *key, int64_t *value);

/* rk_cache_get_double — read a double into *value (unchanged unless
 * RK_OK): a value stored as a double, or text that is a finite number;
 * RK_ERR_TYPE for a typed int64 and for other text. */
RK_EXPORT rk_status rk_cache_get_double(rk_cache *cache, const char *key, double *value);

/*
 * rk_cache_delete — remove key (with UNLINK, so a large value is freed in
 * the background). Idempotent: returns RK_OK whether or not the key held
 * a value (rk_cache_delete_ex() says which); RK_ERR_INVALID (NULL cache,
 * NULL or empty key), RK_ERR_TOO_LARGE (key), or a client error
 * (RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, ...: the key may or may not have
 * been removed). Thread-safe.
 */
RK_EXPORT rk_status rk_cache_delete(rk_cache *cache, const char *key);

/*
 * rk_cache_delete_ex — rk_cache_delete(), and *existed (may be NULL) set to
 * true when a value was removed, false when the key was already absent
 * (and on every error). Same statuses as rk_cache_delete(). Thread-safe.
 */
RK_EXPORT rk_status rk_cache_delete_ex(rk_cache *cache, const char *key, bool *existed);

/* rk_cache_exists — RK_OK if key holds a value, RK_MISS if not,
 * RK_DEGRADED if Redis could not be asked, or an error. */
RK_EXPORT rk_status rk_cache_exists(rk_cache *cache, const char *key);

/*
 * rk_cache_ttl_ms — the remaining time to live of key in milliseconds.
 * On RK_OK *ttl_ms is >= 0, or RK_TTL_NONE for a value that never expires.
 * RK_MISS when the key is absent, RK_DEGRADED when Redis could not be
 * asked (*ttl_ms unchanged in both).
 */
RK_EXPORT rk_status rk_cache_ttl_ms(rk_cache *cache, const char *key, int64_t *ttl_ms);

/*
 * rk_cache_key_build — write the full Redis key this handle uses for key
 * ("<prefix>:<ns>:<key>") into buf, NUL-terminated, and its length
 * (without the NUL) into *len: rk_key_build() under this handle's
 * namespace and its own max_key_bytes. buf may be NULL with buf_size 0 to
 * ask only for the length; a buffer too small gives RK_ERR_TOO_LARGE with
 * *len set to the length needed. Returns RK_OK; RK_ERR_INVALID (NULL
 * cache or len, NULL buf with buf_size > 0, NULL or empty key);
 * RK_ERR_TOO_LARGE (a key over max_key_bytes, or the buffer). No I/O;
 * safe from any thread.
 */
RK_EXPORT rk_status rk_cache_key_build(const rk_cache *cache, const char *key, char *buf, size_t buf_size,
                                       size_t *len);

/* ---- Get-or-compute ----------------------------------------------------- */

/* Where a compute callback puts the value it computed. */
typedef struct rk_cache_computed rk_cache_computed;

/*
 * The compute callback of rk_cache_fetch(): produce the value of key (from
 * the database, say) and hand it over with rk_cache_computed_set(). Return RK_OK
 * when a value was set (RK_OK without one makes rk_cache_fetch() return
 * RK_ERR_INVALID); RK_MISS when there is no value (nothing is cached, a
 * value cached before is removed, and rk_cache_fetch() returns RK_MISS);
 * any other status is a failure of the application's source, which
 * reaches the caller as RK_ERR_SOURCE — never as a Redis status, even if
 * the callback chose one — with the callback's own status in
 * rk_cache_fetch_info.source_status (or makes it serve a stale value, see
 * stale_ms); rk_last_error() then names the callback's status, followed
 * by the message it set with a failing redkit call (or the last redkit
 * call that failed inside the callback), if any. key is the caller's key (not namespaced),
 * valid during the call. It runs on the calling thread with no redkit
 * lock held and may call redkit on other keys (rk_cache_fetch() of the
 * same key from its own callback returns RK_ERR_INVALID). out is valid
 * only until the callback returns.
 */
typedef rk_status (*rk_cache_compute_fn)(const char *key, rk_cache_computed *out, void *ctx);

/* rk_cache_computed_set — copy len bytes of value (NULL is fine with len 0) as
 * the computed value; the caller keeps value. Calling it again replaces
 * the value. Returns RK_OK; RK_ERR_INVALID (NULL out, NULL value with
 * len > 0); RK_ERR_TOO_LARGE (over the handle's max_value_bytes); or
 * RK_ERR_NOMEM. On an error the previous value, if any, is kept. */
RK_EXPORT rk_status rk_cache_computed_set(rk_cache_computed *out, const void *value, size_t len);

/* rk_cache_computed_set_ttl_ms — give this value its own fresh lifetime (for
 * example a shorter one for a "not found" answer) instead of the call's.
 * Same rules as rk_cache_set_options.ttl_ms: RK_TTL_NONE = no expiry, other
 * negative values and values over 2^62 are RK_ERR_INVALID (NULL out too);
 * 0 goes back to the call's TTL. The stale window (stale_ms) still comes
 * on top. */
RK_EXPORT rk_status rk_cache_computed_set_ttl_ms(rk_cache_computed *out, int64_t ttl_ms);

/*
 * Per-call options of rk_cache_fetch(); NULL = all defaults. In raw mode
 * (rk_cache_options.raw) a value has no room for the metadata that early
 * recomputation and serve-stale need, so stale_ms and beta are ignored
 * there: a raw fetch still has single-flight and the Redis lock.
 */
typedef struct rk_cache_fetch_options {
    int64_t ttl_s;     /* fresh lifetime, as in rk_cache_set_options (0 = the
                          handle's default_ttl_ms; RK_TTL_NONE = never
                          expires, and then never early or stale) */
    int64_t ttl_ms;
    int64_t stale_ms;  /* serve-stale window: keep the value this long past
                          its fresh lifetime (the Redis TTL is the fresh
                          TTL + stale_ms) and serve it, flagged stale,
                          while one caller recomputes it, when that
                          computation fails, or when Redis is unreachable
                          and this process holds a copy; 0 = off;
                          negative = RK_ERR_INVALID */
    double beta;       /* XFetch early recomputation: 0 = the default 1.0;
                          larger recomputes earlier; negative = off; NaN
                          or infinite = RK_ERR_INVALID */
    const char *const *tags; /* tags of the stored value (see
                                rk_cache_invalidate_tag); NULL = none */
    size_t ntags;            /* at most RK_CACHE_MAX_TAGS */
} rk_cache_fetch_options;

/* What rk_cache_fetch() did, for callers who care. */
typedef struct rk_cache_fetch_info {
    bool computed;   /* this call ran the compute callback */
    bool early;      /* ... as an early (XFetch) refresh of a fresh value */
    bool waited;     /* waited for another caller's computation (in this
                        process, or another's through the Redis lock) */
    bool stale;      /* the value is past its fresh lifetime */
    bool degraded;   /* Redis could not be asked or written */
    rk_status source_status; /* the status the compute callback failed
                                with in this call (the call then returns
                                RK_ERR_SOURCE, or RK_OK with a stale value
                                served in its place); RK_OK when it did
                                not run or did not fail */
} rk_cache_fetch_info;

/*
 * rk_cache_fetch — read-through get: the cached value of key, or the value
 * compute() produces, which is then cached (typed mode: as type bytes, so
 * rk_cache_get() reads it). At most one computation of a key runs at a
 * time: in this process, concurrent callers wait for the one computation
 * and share its result (its error too); across processes, a short Redis
 * lock (lock_ms) lets one compute while the others poll for its value.
 * A hot value is recomputed early, by one caller, before it expires
 * (XFetch), while the others keep reading it; with stale_ms, readers never
 * see a miss for it. See docs/cache.md, "Get-or-compute".
 *
 * On RK_OK *value is a new copy (rk_free; NUL-terminated, not counted) and
 * *len its size; otherwise *value is NULL and *len 0. info may be NULL.
 * Returns RK_OK; RK_MISS when compute() returned RK_MISS; RK_ERR_SOURCE
 * when compute() failed (its own status in info->source_status; unless a
 * stale value is served instead: RK_OK, info->stale);
 * RK_ERR_INVALID (NULL cache, key, compute, value or len; a bad key, TTL,
 * stale_ms, beta or tag list; compute() returning RK_OK without a value);
 * RK_ERR_TOO_LARGE (key, tag); RK_ERR_TYPE (the key holds a typed
 * number, or a header this version does not know; another client's
 * value is served as a hit); RK_ERR_TIMEOUT (waited
 * lock_ms for this process's computation of the key, which is still
 * running); RK_ERR_NOMEM; or a client error other than unavailability
 * (RK_ERR_SERVER, RK_ERR_AUTH, ...).
 *
 * When Redis is unreachable (RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, circuit
 * open) the value is served from this process's copy (kept only for
 * calls with stale_ms, within the stale window, at most local_copies of
 * them in at most local_copies_bytes; forgotten when this handle deletes
 * the key, invalidates a tag or clears the namespace, or a fetch finds
 * the key absent — deletes by other processes cannot be seen) or else
 * computed — still once per key in the process — and RK_OK is returned
 * with info->degraded set; a computed value is still offered to Redis
 * with one SET under its own deadline, skipped once a command of this
 * call has timed out. A value that could not be stored is still
 * returned. On RK_OK with info->stale or info->degraded,
 * rk_last_error() says why; on a plain RK_OK it is left
 * unchanged. Waiting for another caller's computation is bounded by
 * lock_ms in all: a caller waiting for this process's computation then
 * gives up (RK_ERR_TIMEOUT, unless the value has landed meanwhile); one
 * waiting for another process's lock computes itself. compute() itself
 * is not bounded by redkit.
 */
RK_EXPORT rk_status rk_cache_fetch(rk_cache *cache, const char *key, rk_cache_compute_fn compute,
                                   void *ctx, const rk_cache_fetch_options *opts, void **value,
                                   size_t *len, rk_cache_fetch_info *info);

/* ---- Batches ------------------------------------------------------------ */

/* Most keys in one batch call. */
#define RK_CACHE_MAX_BATCH 100000

/* One key's answer in rk_cache_mget(). */
typedef struct rk_cache_result {
    rk_status status; /* RK_OK, RK_MISS, RK_DEGRADED, RK_ERR_TYPE, ... */
    void *value;      /* RK_OK: the bytes (NUL-terminated), owned by the
                         caller until rk_cache_results_free(); else NULL */
    size_t len;
} rk_cache_result;

/*
 * rk_cache_mget — read n keys in one round trip (MGET). results is the
 * caller's array of n; results[i] is the answer for keys[i]: RK_OK with
 * value/len (bytes or string values, as rk_cache_get() reads them),
 * RK_MISS (absent, expired, or a key of another Redis type, which MGET
 * answers with nil), or RK_ERR_TYPE (a typed number, or a header this
 * version does not know).
 *
 * Returns RK_OK when the batch was read (each result has its own status;
 * rk_last_error() names the first failing key by index); RK_DEGRADED when
 * Redis could not be asked (every result RK_DEGRADED); RK_ERR_INVALID
 * (NULL cache, keys or results, n > RK_CACHE_MAX_BATCH, a NULL or empty key) or
 * RK_ERR_TOO_LARGE (a key over max_key_bytes), found before anything is
 * sent, with the key's index — never the key — in the message; or another
 * client error. Whenever the call fails every result carries its status
 * and no value (except for n > RK_CACHE_MAX_BATCH or NULL results, where
 * results is not touched). n == 0 is RK_OK and does nothing (keys and
 * results may be NULL). One deadline (command_timeout_ms) covers the
 * whole batch. Free the values with rk_cache_results_free().
 */
RK_EXPORT rk_status rk_cache_mget(rk_cache *cache, const char *const *keys, size_t n,
                                  rk_cache_result *results);

/* rk_cache_results_free — free every value in results[0..n-1], set the
 * pointers to NULL and the lengths to 0 (statuses stay). Calling it again
 * is harmless; NULL results is a no-op. */
RK_EXPORT void rk_cache_results_free(rk_cache_result *results, size_t n);

/* One key and value of rk_cache_mset(). */
typedef struct rk_cache_entry {
    const char *key;
    const void *value;
    size_t len;
} rk_cache_entry;

/*
 * rk_cache_mset — store n values (type bytes, as rk_cache_set() stores
 * them) in one round trip: pipelined SET ... PX, each with opts' TTL and
 * tags (opts NULL: the default TTL, no tags). Keys and values are copied
 * into the request. statuses may be NULL; else statuses[i] says how
 * entries[i] fared. Returns RK_OK when every value was stored; otherwise
 * the first failing status, with that entry's index in rk_last_error().
 *
 * The whole batch is checked before anything is sent: n > RK_CACHE_MAX_BATCH,
 * NULL entries, a NULL/empty key, a NULL value with len > 0, a bad TTL or
 * tag list give RK_ERR_INVALID; a key or value over the handle's maximum
 * (or a tag over RK_CACHE_MAX_TAG_BYTES) RK_ERR_TOO_LARGE; every status then
 * carries it and nothing is written. n == 0 is RK_OK and does nothing.
 *
 * Not atomic: one entry may fail (RK_ERR_SERVER) while the others are
 * stored, and after a transport error (RK_ERR_TIMEOUT, ...: every status
 * not already answered by the server) some values may have been stored.
 * With tags, entries go through the tag script in chunks of 256; a chunk
 * reports as a whole (a script that fails midway keeps the entries it
 * stored before the failure). One deadline (command_timeout_ms) covers
 * the whole batch, including, after NOSCRIPT (a server that lost its
 * scripts), the second pipeline that resends the refused chunks.
 */
RK_EXPORT rk_status rk_cache_mset(rk_cache *cache, const rk_cache_entry *entries, size_t n,
                                  const rk_cache_set_options *opts, rk_status *statuses);

/* ---- Invalidation ------------------------------------------------------- */

/*
 * rk_cache_clear — remove every key of the handle's namespace, without
 * KEYS: SCAN with a MATCH pattern of the namespace (escaped) and UNLINK in
 * batches. One call starts SCAN rounds for clear_budget_ms, always at
 * least one, so every call makes progress, and returns within
 * clear_budget_ms plus one command timeout: every round trip of the call
 * ends by then (RK_ERR_TIMEOUT otherwise). It can be resumed: start with
 * *cursor = 0; on return *cursor
 * is 0 when the namespace is clear, otherwise pass it back to continue.
 * *removed (may be NULL) receives the number of values this call removed
 * — overwritten, never added to, like every output of redkit; on a
 * failure, those removed by the rounds before it. Add up the calls of a
 * resumed clear yourself.
 * The namespace's tag sets go too; other namespaces and prefixes, even
 * ones starting with the same characters, and rk_cache_fetch()'s locks
 * (short-lived) stay. Keys written while a clear runs may survive it
 * (SCAN's guarantee). Returns RK_OK; RK_ERR_INVALID (NULL cache or
 * cursor); or a client error, after which the cursor still names where
 * to resume (the failed round is repeated).
 */
RK_EXPORT rk_status rk_cache_clear(rk_cache *cache, uint64_t *cursor, size_t *removed);

/*
 * rk_cache_invalidate_tag — remove every key that was set with tag in this
 * namespace, and the tag itself, atomically (one Lua script). *removed
 * (may be NULL) receives the number of keys removed (0 on any failure);
 * keys that had already expired or been deleted are not counted. A tag
 * names a key while the value stored with the tag lives: a key re-set
 * without the tag since is removed too, unless the tagged value's TTL has
 * run out. A tag's bookkeeping (a sorted set of the keys by expiry time,
 * on the server's clock) holds at most the keys live at its last tagged
 * store and expires with the longest-lived of them (never, while one has
 * RK_TTL_NONE); see docs/cache.md, "Tags". tag is not kept and never
 * appears in a message. Returns RK_OK (also when the tag names no key);
 * RK_ERR_INVALID (NULL cache, NULL or empty tag); RK_ERR_TOO_LARGE (tag
 * over RK_CACHE_MAX_TAG_BYTES); RK_ERR_SERVER for a tag set of an earlier
 * format (a plain Redis set; nothing is removed: UNLINK it or clear the
 * namespace); or a client error.
 */
RK_EXPORT rk_status rk_cache_invalidate_tag(rk_cache *cache, const char *tag, size_t *removed);

/* ---- Cache counters ----------------------------------------------------- */

/*
 * What one cache handle did since it was created. Reads are rk_cache_get*,
 * rk_cache_fetch and each key of rk_cache_mget; rk_cache_exists and
 * rk_cache_ttl_ms are not reads here (they count only their errors).
 */
typedef struct rk_cache_metrics {
    uint64_t hits;            /* reads that found a value */
    uint64_t misses;          /* reads that found none (RK_MISS) */
    uint64_t degraded;        /* reads that could not ask Redis (RK_DEGRADED;
                                 a fetch whose first read failed) */
    uint64_t stale;           /* values served past their fresh lifetime
                                 (rk_cache_fetch with stale_ms) */
    uint64_t sets;            /* values written */
    uint64_t deletes;         /* keys removed: rk_cache_delete that found
                                 the key, rk_cache_clear, tag invalidation */
    uint64_t computations;    /* rk_cache_fetch compute callbacks run */
    uint64_t compute_errors;  /* ... that failed */
    uint64_t early_refreshes; /* ... that were early (XFetch) refreshes */
    uint64_t lock_waits;      /* fetches that waited for another caller's
                                 computation */
    uint64_t bytes_in;        /* bytes of the values given to the set
                                 functions, as the caller passed them */
    uint64_t bytes_stored;    /* bytes written to Redis for those values:
                                 type header included, after compression */
    uint64_t store_errors;    /* rk_cache_fetch calls that returned a
                                 computed value (RK_OK) but could not store
                                 it in Redis: the caller was served, so
                                 these are not in errors[] */
    uint64_t errors[RK_METRICS_STATUS_SLOTS]; /* calls that failed, by
                                 status: errors[RK_ERR_TIMEOUT], ... */
    uint64_t errors_total;    /* the sum of errors[] */
    double hit_ratio;         /* hits / (hits + misses), 0 before the first
                                 read; degraded reads are left out (they say
                                 nothing about what is cached) */
    /* The near cache (rk_cache_options.near_cache); all 0 without one. Its
     * hits are counted in hits too. */
    uint64_t near_hits;       /* reads answered from process memory */
    uint64_t near_misses;     /* reads it could not answer (while live) */
    uint64_t near_fills;      /* values it took in */
    uint64_t near_fills_cancelled; /* ... and those dropped because the key
                                 changed (or the stream broke) while the
                                 read that would have filled it was out */
    uint64_t near_invalidations; /* keys Redis said changed */
    uint64_t near_evictions;  /* values pushed out by its budgets */
    uint64_t near_flushes;    /* times it was emptied: the tracking
                                 connection broke or was made again,
                                 FLUSHALL, a tag or namespace clear, fork */
    uint64_t near_bytes;      /* memory held now, as counted for the budget */
    uint64_t near_entries;    /* values held now */
} rk_cache_metrics;

/*
 * rk_cache_metrics_get — copy the counters of cache into *out. No network
 * traffic, no allocation. Returns RK_OK, or RK_ERR_INVALID for a NULL
 * argument (*out untouched).
 */
RK_EXPORT rk_status rk_cache_metrics_get(rk_cache *cache, rk_cache_metrics *out);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_CACHE_H */
