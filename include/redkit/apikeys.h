/*
 * redkit/apikeys.h — API-key validation: keys with a checksum, stored
 * only as their SHA-256, verified through an in-process cache, Redis and
 * the service's database, and revoked everywhere at once.
 *
 *     static rk_status lookup(const char *hash, rk_apikeys_record *rec, void *db)
 *     {
 *         // SELECT owner, expires FROM api_keys WHERE sha256 = :hash
 *         if (!found) return RK_MISS;
 *         return rk_apikeys_record_set(rec, owner, owner_len, expires_at_ms);
 *     }
 *
 *     rk_apikeys *keys;
 *     rk_apikeys_new(client, &(rk_apikeys_options){ .lookup = lookup, .lookup_user = db }, &keys);
 *     rk_apikey_result r;
 *     if (rk_apikeys_verify(keys, header_value, &r) == RK_OK && r.verdict == RK_APIKEY_VALID)
 *         ... r.owner / r.owner_len describe the caller ...
 *     rk_apikeys_result_clear(&r);
 *
 * A key looks like "rk_3Gm...Qx0aB9" : a prefix, '_', 43 characters of
 * base62 drawn from the OS CSPRNG (256 bits), and 6 base62 characters of
 * CRC-32 over everything before them. The checksum lets rk_apikeys_verify()
 * refuse a mistyped or made-up key with no Redis and no database call,
 * and lets secret scanners recognise leaked keys.
 *
 * Verify: checksum -> this process's cache (fresh window) -> Redis (one
 * GET of "<prefix>:<ns>:{<sha256 hex>}": the key itself is never sent)
 * -> the lookup callback. Positive answers are cached in Redis for
 * positive_ttl_ms with the owner record, "not found" for negative_ttl_ms;
 * a failed lookup is never cached. However many threads and processes
 * verify one key at once, the callback runs once per key per TTL
 * (single-flight in the process, a short Redis lock across processes: the
 * get-or-compute of rk_cache_fetch()).
 *
 * Revoke: a tombstone replaces the cached answer in Redis for
 * tombstone_ttl_ms (at least positive_ttl_ms), written so that no verify
 * in flight can overwrite it with a stale "valid" from the database, and
 * an invalidation is published on "<prefix>:<ns>#invalidate". Every
 * handle subscribes to that channel (an rk_pubsub of its own: one
 * connection and one thread per handle, unless no_subscribe) and drops a
 * revoked key from its process's memory as the message arrives, within
 * milliseconds. When that subscription is lost, made again, or inherited
 * by a fork() child (which subscribes anew on its first verify), the
 * process's answers are demoted: never again served as fresh, still
 * served as stale (degraded) while Redis cannot answer. See
 * docs/apikeys.md for how long a revoked key can still be accepted, and
 * where.
 *
 * When Redis is unavailable, an answer of this process's cache within its
 * stale window is served, flagged degraded; without one the callback is
 * asked directly (still once per key in the process), unless fail_closed
 * is set. When the callback fails, an answer of this process's cache
 * within its stale window is served, flagged degraded.
 *
 * No API key is ever written to Redis, a log line, an error message or a
 * metric: only its hash, and rk_apikeys_display()'s short form.
 *
 * Thread safety: an rk_apikeys handle may be used from any number of
 * threads at once; the lookup callback runs on the verifying thread with
 * no redkit lock held.
 */
#ifndef REDKIT_APIKEYS_H
#define REDKIT_APIKEYS_H

#include "common.h"
#include "status.h"
#include "client.h"
#include "ratelimit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_apikeys rk_apikeys;

/* Defaults for a zeroed field of rk_apikeys_options. */
#define RK_APIKEYS_DEFAULT_NAMESPACE "apikey"
#define RK_APIKEYS_DEFAULT_KEY_PREFIX "rk"
#define RK_APIKEYS_DEFAULT_POSITIVE_TTL_MS 300000   /* 5 minutes */
#define RK_APIKEYS_DEFAULT_NEGATIVE_TTL_MS 30000    /* 30 seconds */
#define RK_APIKEYS_DEFAULT_TOMBSTONE_TTL_MS 86400000 /* 24 hours */
#define RK_APIKEYS_DEFAULT_FRESH_MS 10000           /* 10 seconds */
#define RK_APIKEYS_DEFAULT_STALE_MS 600000          /* 10 minutes */
#define RK_APIKEYS_DEFAULT_LOCAL_ENTRIES 10000
#define RK_APIKEYS_DEFAULT_LOCK_MS 10000

/* fresh_ms / stale_ms: off (no in-process answers of that kind). */
#define RK_APIKEYS_OFF (-1)

/* Longest key prefix, in bytes ([A-Za-z0-9_], not ending in '_'). */
#define RK_APIKEYS_MAX_PREFIX_BYTES 32
/* Characters after "<prefix>_": the random part and the checksum. */
#define RK_APIKEYS_BODY_CHARS 43
#define RK_APIKEYS_CHECKSUM_CHARS 6
/* Longest API key, and the size of a buffer that holds any (with NUL). */
#define RK_APIKEYS_MAX_KEY_BYTES (RK_APIKEYS_MAX_PREFIX_BYTES + 1 + RK_APIKEYS_BODY_CHARS + RK_APIKEYS_CHECKSUM_CHARS)
#define RK_APIKEYS_KEY_BUF (RK_APIKEYS_MAX_KEY_BYTES + 1)
/* A SHA-256 as lowercase hex, and a buffer for it (with NUL). */
#define RK_APIKEYS_HASH_HEX 64
#define RK_APIKEYS_HASH_BUF (RK_APIKEYS_HASH_HEX + 1)
/* A buffer for rk_apikeys_display() (with NUL). */
#define RK_APIKEYS_DISPLAY_BUF (RK_APIKEYS_MAX_PREFIX_BYTES + 1 + 4 + 3 + 4 + 1)
/* Largest owner record. */
#define RK_APIKEYS_MAX_RECORD_BYTES (64u << 10)

/* Where the lookup callback puts what the database said about a key. */
typedef struct rk_apikeys_record rk_apikeys_record;

/*
 * The lookup callback: ask the service's database about the key whose
 * SHA-256 is hash_hex (64 lowercase hex digits, valid during the call —
 * the key itself is never given). Return RK_OK after
 * rk_apikeys_record_set() when the key exists (revoked or expired keys
 * too: the record's expiry is honoured, see rk_apikeys_record_set), RK_MISS
 * when it does not (cached as "not found" for negative_ttl_ms), or any
 * other status when the database could not answer (never cached;
 * rk_apikeys_verify() returns RK_ERR_SOURCE with that status in
 * result->lookup_status, unless it can serve a stale answer). RK_OK without a record is treated as a failure
 * (RK_ERR_INVALID). record is valid only during the call. Runs on the
 * verifying thread with no redkit lock held; may call redkit (but not
 * verify the same key). user is rk_apikeys_options.lookup_user.
 */
typedef rk_status (*rk_apikeys_lookup_fn)(const char *hash_hex, rk_apikeys_record *record, void *user);

/*
 * rk_apikeys_record_set — the key exists: copy len bytes of owner (the
 * service's own encoding of user id, scopes, plan...; NULL is fine with
 * len 0) as its owner record, with the key's expiry expires_at_ms (Unix
 * milliseconds, wall clock; 0 = never). A key past its expiry is answered
 * RK_APIKEY_EXPIRED. Calling it again replaces the record. Returns RK_OK;
 * RK_ERR_INVALID (NULL record, NULL owner with len > 0, negative expiry);
 * RK_ERR_TOO_LARGE (len over RK_APIKEYS_MAX_RECORD_BYTES); RK_ERR_NOMEM.
 * The caller keeps owner.
 */
RK_EXPORT rk_status rk_apikeys_record_set(rk_apikeys_record *record, const void *owner, size_t len,
                                          int64_t expires_at_ms);

typedef struct rk_apikeys_options {
    const char *ns;              /* namespace; default "apikey" */
    rk_apikeys_lookup_fn lookup; /* required */
    void *lookup_user;           /* passed to lookup as its last argument */
    int64_t positive_ttl_ms;     /* Redis lifetime of a "valid" answer and
                                    its owner record; default 300000 */
    int64_t negative_ttl_ms;     /* ... of a "not found" answer; default 30000 */
    int64_t tombstone_ttl_ms;    /* ... of a revocation tombstone; default
                                    86400000 (24 h); at least
                                    positive_ttl_ms, else RK_ERR_INVALID */
    int64_t fresh_ms;            /* this process answers from memory, without
                                    Redis, for this long after it learned an
                                    answer (never longer than that answer's
                                    TTL); default 10000; RK_APIKEYS_OFF = never */
    int64_t stale_ms;            /* ... and, when Redis or the database cannot
                                    answer, serves it flagged degraded up to
                                    this long after it learned it; default
                                    600000; RK_APIKEYS_OFF = never; at least
                                    fresh_ms */
    size_t local_entries;        /* most answers kept in process memory (the
                                    oldest go first); default 10000 */
    const char *key_prefix;      /* prefix of rk_apikeys_generate()'s keys;
                                    default "rk" */
    bool fail_closed;            /* Redis unavailable and no answer in this
                                    process's stale window: return
                                    RK_ERR_UNAVAILABLE instead of asking the
                                    database directly */
    int64_t lock_ms;             /* longest one lookup is waited for by other
                                    verifies of the key (in this process and
                                    others, through the Redis lock); default
                                    10000 */
    bool no_subscribe;           /* do not subscribe to revocations: other
                                    processes' revocations then reach this
                                    handle only when its fresh window ends
                                    (for an ACL user without pub/sub
                                    rights). Default: subscribed, through
                                    an rk_pubsub of the handle's own */
} rk_apikeys_options;

/* What a verify decided. */
typedef enum rk_apikey_verdict {
    RK_APIKEY_VALID = 1,     /* the key exists and has not expired */
    RK_APIKEY_NOT_FOUND = 2, /* well-formed, but the database does not know it */
    RK_APIKEY_REVOKED = 3,   /* revoked with rk_apikeys_revoke*() */
    RK_APIKEY_EXPIRED = 4,   /* past the expiry of its owner record */
    RK_APIKEY_MALFORMED = 5  /* wrong shape or checksum: nothing was asked */
} rk_apikey_verdict;

/* Which layer answered. */
typedef enum rk_apikey_layer {
    RK_APIKEY_LAYER_CHECKSUM = 0, /* the key's own checksum (malformed) */
    RK_APIKEY_LAYER_PROCESS = 1,  /* this process's memory */
    RK_APIKEY_LAYER_REDIS = 2,    /* Redis */
    RK_APIKEY_LAYER_LOOKUP = 3    /* the lookup callback (this call's, or one
                                     it waited for) */
} rk_apikey_layer;

typedef struct rk_apikey_result {
    rk_apikey_verdict verdict;
    rk_apikey_layer layer;
    bool degraded;          /* answered without Redis or without the database:
                               from this process's stale window, or from the
                               database while Redis is unavailable */
    int64_t expires_at_ms;  /* the owner record's expiry (0 = never, or none) */
    void *owner;            /* VALID and EXPIRED: a copy of the owner record
                               (NUL-terminated, not counted), else NULL; owned
                               by the caller: rk_apikeys_result_clear() */
    size_t owner_len;
    rk_status lookup_status; /* when verify returns RK_ERR_SOURCE: the status
                                the lookup callback failed with; else RK_OK */
} rk_apikey_result;

/*
 * rk_apikeys_new — create an API-key verifier on client. opts is required
 * (the lookup callback); it and its strings are copied. The client must
 * outlive the handle... or be freed first: the handle keeps it alive (the
 * module registry). On RK_OK *out is the handle (rk_apikeys_free());
 * otherwise NULL. Returns RK_OK; RK_ERR_INVALID (NULL client, opts, out or
 * lookup, a bad namespace or key prefix, a negative or out-of-range TTL or
 * window, stale_ms < fresh_ms, tombstone_ttl_ms < positive_ttl_ms);
 * RK_ERR_NOMEM. No network traffic.
 */
RK_EXPORT rk_status rk_apikeys_new(rk_client *client, const rk_apikeys_options *opts, rk_apikeys **out);

/* rk_apikeys_free — release the handle and its in-process answers (not
 * what is cached in Redis). rk_apikeys_free(NULL) does nothing. No verify
 * may be running on the handle. */
RK_EXPORT void rk_apikeys_free(rk_apikeys *keys);

/*
 * rk_apikeys_verify — decide whether key is a valid API key, as described
 * at the top of this header. *result is always written (zeroed first);
 * free its owner record with rk_apikeys_result_clear().
 *
 * Returns RK_OK when a verdict was reached (result->verdict, malformed
 * included); otherwise no verdict, result->verdict is 0, and the status
 * says why: RK_ERR_INVALID (NULL keys, key or result);
 * RK_ERR_UNAVAILABLE (Redis unavailable with fail_closed, and no answer
 * in this process's stale window; also when the lookup failed with
 * RK_ERR_UNAVAILABLE while Redis was unavailable); RK_ERR_SOURCE (the
 * lookup callback failed and nothing cached could stand in: its own
 * status in result->lookup_status, as rk_cache_fetch() reports a failed
 * source); RK_ERR_TIMEOUT (waited lock_ms for
 * another thread's lookup of the key); RK_ERR_NOMEM; or a client error
 * other than unavailability (RK_ERR_SERVER, RK_ERR_AUTH, ...).
 * rk_last_error() never contains the key.
 */
RK_EXPORT rk_status rk_apikeys_verify(rk_apikeys *keys, const char *key, rk_apikey_result *result);

/*
 * rk_apikeys_verify_limit — rk_apikeys_verify() and rk_limiter_check() of
 * the key's own limits, in one round trip on a warm key: one Lua script
 * reads the key's cached answer in Redis and, only when it is a valid,
 * unexpired key, consumes cost (as rk_limiter_check: 0 peeks) from
 * limiter's limits for it, atomically. The limits are kept under the
 * key's hash: the limiter's identifier is the key's SHA-256 in hex (its
 * keys "<prefix>:<limiter ns>:{<sha256 hex>}:<name>"), which is also the
 * hash tag of the cached answer, so the script touches one cluster slot;
 * `redkit limit peek <hash>` shows them. limiter may use any algorithms,
 * policy, block cache or shadow mode; the caller keeps both handles.
 *
 * - A malformed key: RK_APIKEY_MALFORMED, no Redis call, nothing consumed.
 * - A key this process knows (fresh window) to be not found, revoked or
 *   expired: answered from memory, no Redis call, nothing consumed.
 * - The answer not cached in Redis yet: the verify path runs first (the
 *   lookup callback, once per key across threads and processes, as in
 *   rk_apikeys_verify), then, for a valid key, one rk_limiter_check().
 * - Redis unavailable: the verdict from this process's memory (fresh or
 *   stale window, flagged degraded) when it knows the key; otherwise
 *   rk_apikeys_verify()'s degraded answer, without asking Redis again
 *   (the lookup callback directly, once per key in the process, or
 *   RK_ERR_UNAVAILABLE with fail_closed). Either way the call waits on
 *   Redis once: it ends within the limiter's deadline, plus the lookup
 *   callback's own time. For a valid key the limiter's failure policy
 *   decides (decision->path, decision->redis_status).
 * - A key refused by the limiter's block cache: verified as by
 *   rk_apikeys_verify(), the refusal answered from the block cache.
 *
 * *result is always written (zeroed first; rk_apikeys_result_clear() it);
 * *decision too: filled (as by rk_limiter_check) only when the verdict is
 * RK_APIKEY_VALID, else zeroed (allowed false, nlimits 0: nothing was
 * consumed). Serve the request when result->verdict is RK_APIKEY_VALID
 * and decision->allowed.
 *
 * Returns RK_OK when a verdict was reached; RK_ERR_INVALID (a NULL
 * argument, cost outside 0..2^40, cost > 1 with a concurrency limit);
 * otherwise the statuses of rk_apikeys_verify() (no verdict) or of
 * rk_limiter_check() (no decision). rk_last_error() never contains the key.
 */
RK_EXPORT rk_status rk_apikeys_verify_limit(rk_apikeys *keys, rk_limiter *limiter, const char *key, int64_t cost,
                                            rk_apikey_result *result, rk_limit_result *decision);

/* rk_apikeys_result_clear — free result's owner record and zero it.
 * NULL is a no-op; calling it twice is harmless. */
RK_EXPORT void rk_apikeys_result_clear(rk_apikey_result *result);

/* rk_apikeys_verdict_name — "valid", "not_found", "revoked", "expired",
 * "malformed", or "unknown"; a static string. */
RK_EXPORT const char *rk_apikeys_verdict_name(rk_apikey_verdict verdict);

/*
 * rk_apikeys_revoke — revoke key: a tombstone in Redis for
 * tombstone_ttl_ms, which every later verify of the key, in every
 * process, answers RK_APIKEY_REVOKED (and which no verify in flight can
 * overwrite), this process's memory of the key dropped, and an
 * invalidation published for the other processes'. One round trip.
 * Revoke the key in the database too: after the tombstone expires the
 * database is asked again. Returns RK_OK; RK_ERR_INVALID (NULL, or key
 * malformed: revoke such a key by hash); or a client error, after which
 * the tombstone may or may not be written (retry: revoking is idempotent).
 */
RK_EXPORT rk_status rk_apikeys_revoke(rk_apikeys *keys, const char *key);

/* rk_apikeys_revoke_hash — rk_apikeys_revoke() of the key whose SHA-256
 * is hash_hex (64 hex digits, either case), for an operator who has only
 * the hash. RK_ERR_INVALID for anything else. */
RK_EXPORT rk_status rk_apikeys_revoke_hash(rk_apikeys *keys, const char *hash_hex);

/*
 * rk_apikeys_forget — drop every cached answer for key (in Redis, unless
 * it is a revocation tombstone, which stays; in this process; and, through
 * the invalidation channel, in the others), so that the next verify asks
 * the database: after the key's record changed (new scopes, a rotation's
 * grace period set as its expiry; see docs/apikeys.md). A revoked key
 * stays revoked. Two round trips. Returns RK_OK; RK_ERR_INVALID (NULL, a
 * malformed key); or a client error (the Redis answer may then remain
 * until positive_ttl_ms; this process's is dropped regardless).
 */
RK_EXPORT rk_status rk_apikeys_forget(rk_apikeys *keys, const char *key);

/*
 * rk_apikeys_generate — a new key with the handle's key prefix, written
 * to key (a buffer of RK_APIKEYS_KEY_BUF bytes, NUL-terminated), and its
 * SHA-256 to hash_hex (RK_APIKEYS_HASH_BUF bytes; may be NULL): store the
 * hash in the database, give the key to its owner once. Returns RK_OK;
 * RK_ERR_INVALID (NULL keys or key); RK_ERR_SYSTEM (the OS CSPRNG
 * failed). No network traffic.
 */
RK_EXPORT rk_status rk_apikeys_generate(rk_apikeys *keys, char *key, char *hash_hex);

/* ---- Key format, without a handle (no network, no allocation) -------- */

/*
 * rk_apikeys_check — RK_OK when key has the shape of a redkit API key
 * ("<prefix>_<43 base62><6 base62 CRC-32>", any valid prefix) and its
 * checksum matches; RK_ERR_INVALID otherwise (NULL, empty, too long, bad
 * character, wrong length, wrong checksum), with a message that never
 * quotes the key.
 */
RK_EXPORT rk_status rk_apikeys_check(const char *key);

/* rk_apikeys_hash — the SHA-256 of key's bytes as 64 lowercase hex digits
 * into hash_hex (RK_APIKEYS_HASH_BUF bytes). Any non-empty key up to
 * RK_APIKEYS_MAX_KEY_BYTES is hashed, well-formed or not. Returns RK_OK,
 * RK_ERR_INVALID (NULL, empty) or RK_ERR_TOO_LARGE; RK_ERR_SYSTEM if
 * OpenSSL fails. */
RK_EXPORT rk_status rk_apikeys_hash(const char *key, char *hash_hex);

/* rk_apikeys_display — a short form of key that is safe to show and log:
 * "<prefix>_" + its first 4 + "..." + its last 4 characters, into out
 * (RK_APIKEYS_DISPLAY_BUF bytes). RK_ERR_INVALID unless rk_apikeys_check()
 * accepts the key (a malformed key may be a secret of another kind). */
RK_EXPORT rk_status rk_apikeys_display(const char *key, char *out);

/* ---- Counters ------------------------------------------------------------ */

typedef struct rk_apikeys_metrics {
    uint64_t verifies;        /* rk_apikeys_verify calls with a key */
    uint64_t malformed;       /* ... refused by the checksum */
    uint64_t process_hits;    /* answered from this process's fresh window */
    uint64_t redis_hits;      /* answered from Redis */
    uint64_t negative_hits;   /* of those two, "not found" answers */
    uint64_t lookups;         /* lookup callbacks run */
    uint64_t lookup_errors;   /* ... that failed */
    uint64_t revocations;     /* rk_apikeys_revoke* that wrote a tombstone */
    uint64_t invalidations;   /* invalidations received from other processes */
    uint64_t degraded;        /* verdicts flagged degraded */
    uint64_t errors;          /* verifies with no verdict */
    uint64_t subscription_losses; /* revocation subscriber lost, or inherited
                                    by a fork() child: in-process answers
                                    were demoted to stale */
} rk_apikeys_metrics;

/* rk_apikeys_metrics_get — copy the counters of keys into *out. No
 * network, no allocation. RK_OK, or RK_ERR_INVALID for a NULL argument. */
RK_EXPORT rk_status rk_apikeys_metrics_get(rk_apikeys *keys, rk_apikeys_metrics *out);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_APIKEYS_H */
