/*
 * redkit/cache.h — a key/value cache with TTLs in one namespace.
 *
 *     rk_cache *cache;
 *     rk_cache_new(client, NULL, &cache);                 // namespace "cache"
 *     rk_cache_set_str(cache, "user:123", user_json, &(rk_set_options){ .ttl_s = 300 });
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
 * a double. Reading a value as another type — or reading a value written by
 * something other than redkit — returns RK_ERR_TYPE instead of garbage.
 * rk_cache_get() reads both bytes and strings (a string is bytes).
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

/* "Never expire": valid in rk_set_options.ttl_s / .ttl_ms and in
 * rk_cache_options.default_ttl_ms. */
#define RK_TTL_NONE (-1)

typedef struct rk_cache_options {
    const char *ns;              /* namespace; default "cache" */
    int64_t default_ttl_ms;      /* TTL of a set that names none; default
                                    300000 (5 min); RK_TTL_NONE = no expiry */
    bool raw;                    /* store plain bytes, no type header */
    size_t max_key_bytes;        /* longest user key; default 1024 */
    size_t max_value_bytes;      /* largest value; default 16 MiB, at most
                                    512 MiB (Redis's own limit) */
} rk_cache_options;

/*
 * Per-call options of the set functions; pass NULL for the defaults.
 * ttl_ms wins over ttl_s when both are set. Zero in both means the
 * handle's default_ttl_ms; RK_TTL_NONE in either means no expiry. Any
 * other negative value, or a TTL over 2^62 ms (Redis refuses TTLs that
 * overflow its clock), is RK_ERR_INVALID.
 */
typedef struct rk_set_options {
    int64_t ttl_s;   /* time to live in seconds */
    int64_t ttl_ms;  /* time to live in milliseconds */
} rk_set_options;

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
 * rk_set_options). value is copied into the request; the caller keeps it.
 * Returns RK_OK; RK_ERR_INVALID (NULL, empty key, bad TTL);
 * RK_ERR_TOO_LARGE (key or value over the handle's maximum); or the
 * client's errors (RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, RK_ERR_SERVER, ...),
 * in which case the previous value may or may not have been replaced.
 */
RK_EXPORT rk_status rk_cache_set(rk_cache *cache, const char *key, const void *value,
                                 size_t len, const rk_set_options *opts);

/* rk_cache_set_str — rk_cache_set() of a NUL-terminated string (without
 * its NUL), stored as type "string". */
RK_EXPORT rk_status rk_cache_set_str(rk_cache *cache, const char *key, const char *value,
                                     const rk_set_options *opts);

/* rk_cache_set_i64 — store an int64 (type "int64"). */
RK_EXPORT rk_status rk_cache_set_i64(rk_cache *cache, const char *key, int64_t value,
                                     const rk_set_options *opts);

/* rk_cache_set_double — store a finite double (type "double"); NaN and
 * infinities are RK_ERR_INVALID. The value reads back bit-exact. */
RK_EXPORT rk_status rk_cache_set_double(rk_cache *cache, const char *key, double value,
                                        const rk_set_options *opts);

/*
 * rk_cache_get — read the value of key.
 *
 * On RK_OK *value receives a newly allocated copy of the bytes (freed with
 * rk_free(); followed by a NUL that is not counted, so text can be used
 * directly) and *len their number. On RK_MISS (absent or expired) and on
 * every error *value is NULL and *len is 0.
 * Returns RK_OK, RK_MISS, RK_DEGRADED (Redis unavailable), RK_ERR_INVALID,
 * RK_ERR_TYPE (the value is an int64/double, or not a redkit value), or the
 * client's other errors (RK_ERR_SERVER, RK_ERR_AUTH, ...).
 */
RK_EXPORT rk_status rk_cache_get(rk_cache *cache, const char *key, void **value,
                                 size_t *len);

/* rk_cache_get_str — as rk_cache_get() for a value stored with
 * rk_cache_set_str(): *value is a NUL-terminated string, freed with
 * rk_free(). A bytes value gives RK_ERR_TYPE. */
RK_EXPORT rk_status rk_cache_get_str(rk_cache *cache, const char *key, char **value);

/* rk_cache_get_i64 — read an int64 into *value (unchanged unless RK_OK). */
RK_EXPORT rk_status rk_cache_get_i64(rk_cache *cache, const char *key, int64_t *value);

/* rk_cache_get_double — read a double into *value (unchanged unless RK_OK). */
RK_EXPORT rk_status rk_cache_get_double(rk_cache *cache, const char *key, double *value);

/*
 * rk_cache_delete — remove key (with UNLINK, so a large value is freed in
 * the background). Returns RK_OK if a value was removed, RK_MISS if there
 * was none, or an error.
 */
RK_EXPORT rk_status rk_cache_delete(rk_cache *cache, const char *key);

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

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_CACHE_H */
