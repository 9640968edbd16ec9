/*
 * apikeys.h — the inside of an rk_apikeys, shared by the files that
 * implement it (contract in include/redkit/apikeys.h, the story in
 * docs/apikeys.md):
 *
 *   keyformat.c       key shape, CRC-32 checksum, generator, SHA-256, display
 *   local.c           this process's answers: a bounded table by hash
 *   apikeys.c         handle, verify, revoke
 *   verify_limit.c    verify + rate limit in one script
 *   apikeys_metrics.c counters, snapshot, Prometheus families
 *
 * Built on an internal raw rk_cache (src/cache/) rather than beside it:
 * the get-or-compute of rk_cache_fetch() — single-flight per key in the
 * process, a short Redis lock across processes, degraded computation when
 * Redis is down — is exactly what "one lookup per key per TTL" needs, so
 * it is reused, not written again. The cache gained two small hooks for
 * this (src/cache/cache.h): a fill function, so that a computed answer is
 * stored by a script that never overwrites a revocation tombstone, and
 * rk__cache_computed_degraded(), so that the lookup wrapper knows Redis
 * could not be read and may answer from this process's stale window or
 * refuse (fail_closed) instead of asking the database.
 *
 * What Redis holds, under "<prefix>:<ns>:{<sha256 hex>}" (the hash tag
 * keeps the fetch lock "<prefix>:<ns>#lock:{<sha256 hex>}" in the same
 * cluster slot), is one byte of kind and its payload:
 *   'V' + 8 bytes big-endian expiry (Unix ms, 0 = never) + owner record
 *   'N'                                  not found
 *   'R'                                  revoked (tombstone)
 */
#ifndef RK_SRC_APIKEYS_H
#define RK_SRC_APIKEYS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/apikeys.h>
#include <redkit/cache.h>

#include "registry.h"

#define RK__SHA256_BYTES 32

/* ---- keyformat.c --------------------------------------------------------- */

/* rk_apikeys_check() without the message: true when key is well formed
 * with a matching checksum; *len is its length. */
bool rk__apikey_well_formed(const char *key, size_t *len);

/* A key prefix a generated key can carry ([A-Za-z0-9_], 1..32, not
 * ending in '_'). */
bool rk__apikey_prefix_ok(const char *p);

/* SHA-256 of len bytes into out; false if OpenSSL failed. */
bool rk__sha256(const void *data, size_t len, unsigned char out[RK__SHA256_BYTES]);

/* Lowercase hex of a digest (64 characters and a NUL). */
void rk__hex32(const unsigned char d[RK__SHA256_BYTES], char out[RK_APIKEYS_HASH_BUF]);

/* Parse 64 hex digits (either case, then NUL) into d; false otherwise. */
bool rk__unhex32(const char *hex, unsigned char d[RK__SHA256_BYTES]);

/* CRC-32 (IEEE 802.3, as zlib's crc32) of len bytes. */
uint32_t rk__crc32(const void *data, size_t len);

/* ---- local.c: this process's answers -------------------------------------- */

/* One answer as cached anywhere: the kind byte and, for 'V', the record. */
typedef struct rk__answer {
    char kind;              /* 'V', 'N', 'R' */
    int64_t expires_at_ms;  /* 'V': the record's expiry, 0 = never */
    const char *owner;      /* 'V': the record (not owned here) */
    size_t owner_len;
} rk__answer;

typedef struct rk__local rk__local;

/* A table of at most max_entries answers (0: none kept). NULL on no memory. */
rk__local *rk__local_new(size_t max_entries);
void rk__local_free(rk__local *t);

/* Taken before asking Redis: an answer is kept (rk__local_put) only if
 * its key was not dropped since, nor everything flushed. */
uint64_t rk__local_mark(rk__local *t, const unsigned char d[RK__SHA256_BYTES]);

/* Keep a copy of a (learned at now_ns, CLOCK_MONOTONIC), good for
 * fresh_ns, then stale until stale_ns after now_ns. Best effort. */
void rk__local_put(rk__local *t, const unsigned char d[RK__SHA256_BYTES], const rk__answer *a, int64_t now_ns,
                   int64_t fresh_ns, int64_t stale_ns, uint64_t mark);

/* Look d up at now_ns. Returns 0 (none usable), 1 (fresh) or 2 (stale,
 * only when allow_stale). On 1 or 2, *a is the answer with owner a new
 * rk__malloc'd copy (NULL when empty) — or, without memory, returns -1. */
int rk__local_get(rk__local *t, const unsigned char d[RK__SHA256_BYTES], int64_t now_ns, bool allow_stale,
                  rk__answer *a);

/* Forget d (a revocation, an invalidation). */
void rk__local_drop(rk__local *t, const unsigned char d[RK__SHA256_BYTES]);

/* Forget everything (invalidations may have been missed). */
void rk__local_flush(rk__local *t);

/* Keep everything, but as stale only: no answer held now is served fresh
 * again, each may still be served stale (degraded) until its stale
 * window ends; verifies in flight keep nothing they learned. */
void rk__local_demote(rk__local *t);

/* Answers held now. */
size_t rk__local_count(rk__local *t);

/* ---- the handle --------------------------------------------------------- */

typedef struct rk__apikeys_counters {
    _Atomic uint64_t verifies, malformed, process_hits, redis_hits, negative_hits, lookups, lookup_errors,
        revocations, invalidations, degraded, errors, subscription_losses;
} rk__apikeys_counters;

#define RK__AK_COUNT(ak, field) atomic_fetch_add_explicit(&(ak)->counters.field, 1, memory_order_relaxed)

struct rk_apikeys {
    rk_client *client;
    rk_cache *cache;            /* raw, ns = ours, no registry entry */
    char *ns;
    char *key_prefix;
    char *channel;              /* "<prefix>:<ns>#invalidate" */
    size_t channel_len;
    rk_apikeys_lookup_fn lookup;
    void *lookup_user;
    int64_t positive_ttl_ms, negative_ttl_ms, tombstone_ttl_ms;
    int64_t fresh_ms, stale_ms; /* 0 = off */
    bool fail_closed;
    rk__local *local;
    rk__apikeys_counters counters;
    struct rk_pubsub *ps;       /* hears the channel; NULL with no_subscribe */
    bool no_subscribe;
    _Atomic unsigned fork_gen;  /* rk__fork_generation() ps was made in */
};

/* An invalidation message from another process (the payload: the hash in
 * hex): drop it from this process's memory. For the subscriber. */
void rk__apikeys_invalidated(rk_apikeys *ak, const char *payload, size_t len);

/* The subscriber's connection was lost (lost: counted as such), or made
 * again: answers held may have missed invalidations, so they are demoted
 * to stale. For the subscriber. */
void rk__apikeys_subscription_changed(rk_apikeys *ak, bool lost);

/* In a fork() child, on its first call: answers held are demoted and a
 * subscriber of the child's own is made (the inherited one is inert).
 * Every verify path calls it first. */
void rk__apikeys_check_fork(rk_apikeys *ak);

/* Tests: wait (at most timeout_ms) until the handle's subscription is
 * confirmed by Redis (rk_pubsub_sync()). RK_ERR_INVALID with no_subscribe. */
rk_status rk__apikeys_subscribed(rk_apikeys *ak, int timeout_ms);

/* ---- apikeys.c, for verify_limit.c ------------------------------------------ */

struct rk__key;

/* A cached answer's bytes (NUL-terminated) into *a, owner pointing into
 * them; false when they are not an apikeys answer. */
bool rk__apikeys_parse_answer(const char *v, size_t len, rk__answer *a);

/* Fill in r from answer a (verdict, expiry against the wall clock, layer,
 * counters); owner is the heap buffer holding a's record (or NULL), which
 * passes to r or is freed. */
void rk__apikeys_conclude(rk_apikeys *ak, rk_apikey_result *r, const rk__answer *a, char *owner,
                          rk_apikey_layer layer, bool degraded);

/* Keep answer a, just read from Redis, in this process's memory (fresh
 * and stale windows as verify does) unless d was dropped since mark. */
void rk__apikeys_learned(rk_apikeys *ak, const unsigned char d[RK__SHA256_BYTES], const rk__answer *a,
                         uint64_t mark);

/* The Redis key of digest d ("<prefix>:<ns>:{<hex>}") into k (release it
 * with rk__key_release), its hex into hex. */
rk_status rk__apikeys_redis_key(rk_apikeys *ak, const unsigned char d[RK__SHA256_BYTES], struct rk__key *k,
                                char hex[RK_APIKEYS_HASH_BUF]);

/* verify_limit.c's script (for bench/apikeys_bench.c, which runs it
 * through bare hiredis as the baseline): KEYS the cached answer then the
 * limiter's keys, ARGV the wall clock in ms then the limiter's ARGV. */
struct rk__script *rk__apikeys_verify_limit_script(void);

/* The registry entry (apikeys_metrics.c). */
extern const rk__module_ops rk__apikeys_ops;

#endif
