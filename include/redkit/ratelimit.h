/*
 * redkit/ratelimit.h — rate limits per user, API key or IP address, checked
 * in Redis in one round trip however many limits apply.
 *
 *     rk_limit limits[] = {
 *         { .name = "second", .limit = 10,   .period_ms = 1000 },
 *         { .name = "day",    .limit = 5000, .period_ms = 86400000 },
 *     };
 *     rk_limiter *rl;
 *     rk_limiter_new(client, &(rk_limiter_options){ .limits = limits, .nlimits = 2 }, &rl);
 *     rk_limit_result r;
 *     if (rk_limiter_check(rl, "user:42", 1, &r) == RK_OK && !r.allowed)
 *         ... answer 429, with the headers of rk_limit_headers(&r, ...) ...
 *
 * Algorithms (rk_limit_algorithm; docs/ratelimit.md gives the formulas and
 * the memory each takes per key): GCRA (the default), sliding window
 * counter, fixed window (starting at a key's first hit, or aligned to the
 * clock), token bucket, and concurrency leases. Each runs as one atomic Lua
 * script on the server's clock (TIME), so hosts with skewed clocks agree.
 *
 * All limits of a limiter are checked together, atomically: a request is
 * allowed only when every limit allows it, and a request refused by one
 * limit consumes from none. The Redis keys of one check are
 * "<prefix>:<ns>:{<user key>}:<limit name>": they share a hash tag, so a
 * check is one script on one Redis Cluster slot.
 *
 * When Redis is unavailable (down, paused, circuit open, timed out, or an
 * error reply) a check still answers within its deadline, as the
 * limiter's failure policy says — fail open, fail closed, or a local
 * in-process limiter of the same limits — and the result says which path
 * answered (rk_limit_result.path). A check never refuses because of a
 * Redis error unless the policy is RK_LIMIT_FAIL_CLOSED.
 *
 * Thread safety: a limiter may be used from any number of threads at once.
 * Its memory (including the local limiter and the block cache) is owned by
 * the handle; results are plain structs owned by the caller.
 */
#ifndef REDKIT_RATELIMIT_H
#define REDKIT_RATELIMIT_H

#include "common.h"
#include "status.h"
#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_limiter rk_limiter;

/* Defaults for zeroed fields. */
#define RK_LIMITER_DEFAULT_NAMESPACE "rl"
#define RK_LIMITER_DEFAULT_LOCAL_KEYS 10000
#define RK_LIMITER_DEFAULT_BLOCK_KEYS 10000
/* Most limits one limiter may hold (they are all checked in one script). */
#define RK_LIMITER_MAX_LIMITS 8
/* Longest limit name (it appears in key names and headers). */
#define RK_LIMIT_MAX_NAME_BYTES 32
/* Largest limit, cost and burst (so all arithmetic stays exact in Lua's
 * doubles); longest period: 400 days. */
#define RK_LIMIT_MAX_VALUE ((int64_t)1 << 40)
#define RK_LIMIT_MAX_PERIOD_MS ((int64_t)400 * 86400000)
/* Size of a concurrency lease id (hex), without its NUL. */
#define RK_LEASE_ID_BYTES 32

typedef enum rk_limit_algorithm {
    /* Generic cell rate algorithm (as redis-cell): one integer per key, the
     * theoretical arrival time. Emission interval T = period_ms / limit,
     * tolerance tau = T * (burst + 1): at most burst + 1 requests at once,
     * then one per T. The default. */
    RK_LIMIT_GCRA = 0,
    /* Cloudflare's sliding window counter: counts of the current and the
     * previous window (aligned to the clock), the previous one weighted by
     * how much of it the sliding window still covers. */
    RK_LIMIT_SLIDING_WINDOW = 1,
    /* Fixed window of period_ms: from the key's first hit (so windows of
     * different keys are staggered), or aligned to the clock with
     * .aligned. */
    RK_LIMIT_FIXED_WINDOW = 2,
    /* Token bucket: capacity .burst tokens (default: limit), refilled at
     * limit tokens per period_ms. */
    RK_LIMIT_TOKEN_BUCKET = 3,
    /* At most limit requests in flight: an allowed check takes a lease
     * (rk_limit_result.lease) that rk_limiter_release() returns; a lease
     * not returned expires by itself after period_ms, so a crashed process
     * cannot keep capacity. Cost must be 0 or 1. */
    RK_LIMIT_CONCURRENCY = 4
} rk_limit_algorithm;

/* One limit. */
typedef struct rk_limit {
    const char *name;          /* [A-Za-z0-9_.-], 1..RK_LIMIT_MAX_NAME_BYTES,
                                  distinct within a limiter; used in key
                                  names and headers. NULL = "default" for
                                  the first limit, "l<i>" for limit i > 0 */
    rk_limit_algorithm algorithm; /* default RK_LIMIT_GCRA */
    int64_t limit;             /* requests per period (max in flight for
                                  RK_LIMIT_CONCURRENCY); 1..RK_LIMIT_MAX_VALUE */
    int64_t period_ms;         /* the period (lease timeout for
                                  RK_LIMIT_CONCURRENCY); 1..RK_LIMIT_MAX_PERIOD_MS */
    int64_t burst;             /* GCRA: requests beyond one that may come at
                                  once; 0 = limit - 1 (the whole quota at
                                  once), RK_LIMIT_NO_BURST = none (evenly
                                  spaced). Token bucket: the capacity; 0 =
                                  limit. Ignored by the others. */
    bool aligned;              /* fixed window: windows aligned to the
                                  clock (multiples of period_ms since the
                                  epoch) instead of starting at first hit */
} rk_limit;

/* rk_limit.burst for GCRA: no burst (tau = T). */
#define RK_LIMIT_NO_BURST (-1)

/* What a check does when Redis cannot answer. */
typedef enum rk_limit_failure_policy {
    RK_LIMIT_FAIL_OPEN = 0,   /* allow (the default, as Stripe advises) */
    RK_LIMIT_FAIL_CLOSED = 1, /* refuse */
    RK_LIMIT_FAIL_LOCAL = 2   /* decide with an in-process limiter of the
                                 same limits (per process: N processes
                                 together allow up to N times the limit) */
} rk_limit_failure_policy;

typedef struct rk_limiter_options {
    const char *ns;            /* namespace; default "rl" */
    const rk_limit *limits;    /* 1..RK_LIMITER_MAX_LIMITS limits (copied) */
    size_t nlimits;
    rk_limit_failure_policy failure_policy; /* default RK_LIMIT_FAIL_OPEN */
    int timeout_ms;            /* deadline of one check; 0 = the client's
                                  command_timeout_ms; at most 60000 */
    bool block_cache;          /* answer keys refused until t from process
                                  memory until t, without asking Redis
                                  (not used with a concurrency limit, whose
                                  capacity a release frees early, nor in
                                  shadow mode) */
    size_t block_cache_keys;   /* most keys the block cache holds; default
                                  10000 (the least recently used go first) */
    size_t local_keys;         /* most keys the local limiter holds; default
                                  10000 (least recently used go first) */
    bool shadow;               /* shadow mode: checks run and are counted,
                                  but every request is allowed */
    size_t max_key_bytes;      /* longest user key; default 1024 */
} rk_limiter_options;

/* Which path decided a check. */
typedef enum rk_limit_path {
    RK_LIMIT_PATH_REDIS = 0,       /* the scripts in Redis */
    RK_LIMIT_PATH_BLOCK_CACHE = 1, /* the local block cache (refused) */
    RK_LIMIT_PATH_LOCAL = 2,       /* Redis failed; the local limiter */
    RK_LIMIT_PATH_FAIL_OPEN = 3,   /* Redis failed; allowed by policy */
    RK_LIMIT_PATH_FAIL_CLOSED = 4  /* Redis failed; refused by policy */
} rk_limit_path;

/* The state of one limit after a check. */
typedef struct rk_limit_state {
    bool allowed;            /* this limit alone allows the request */
    int64_t limit;           /* the quota: burst + 1 for GCRA, the capacity
                                for a token bucket, else limit */
    int64_t remaining;       /* units still available now (>= 0) */
    int64_t reset_ms;        /* until the limit is back to its full quota */
    int64_t retry_after_ms;  /* refused: until this cost can pass (-1 if it
                                never can: cost over the quota); else 0 */
    double used;             /* units counted as used now (the sliding
                                window's estimate; for GCRA (TAT-now)/T) */
} rk_limit_state;

/* The answer of a check. */
typedef struct rk_limit_result {
    bool allowed;            /* the decision (always true in shadow mode) */
    bool shadow_limited;     /* shadow mode: would have been refused */
    int64_t limit, remaining, reset_ms, retry_after_ms; /* of the deciding limit */
    size_t decided_by;       /* index of the deciding limit: when refused,
                                the refusing limit with the longest wait;
                                when allowed, the one with least remaining */
    const char *decided_name; /* its name (owned by the limiter) */
    rk_limit_path path;
    rk_status redis_status;  /* RK_OK, or why Redis was not used (then
                                rk_last_error() says more) */
    size_t nlimits;          /* entries of limits[] filled (0 on the
                                fail-open and fail-closed paths) */
    rk_limit_state limits[RK_LIMITER_MAX_LIMITS];
    char lease[RK_LEASE_ID_BYTES + 1]; /* the lease taken by an allowed
                                check of a limiter with a concurrency
                                limit, for rk_limiter_release(); else "" */
} rk_limit_result;

/*
 * rk_limiter_new — create a limiter on client. opts is required (it holds
 * the limits); it and its strings are copied. The client must outlive the
 * limiter. On RK_OK *out is the limiter (free with rk_limiter_free());
 * otherwise NULL. Returns RK_OK, RK_ERR_INVALID (NULL argument, no limits
 * or too many, limit or period 0 or out of range, a bad or duplicate
 * name, bad namespace, an option out of range) or RK_ERR_NOMEM. No network
 * traffic.
 */
RK_EXPORT rk_status rk_limiter_new(rk_client *client, const rk_limiter_options *opts,
                                   rk_limiter **out);

/* rk_limiter_free — release the limiter (not the client, not the keys in
 * Redis). NULL does nothing. */
RK_EXPORT void rk_limiter_free(rk_limiter *limiter);

/*
 * rk_limiter_check — check key (a user id, an API key id,
 * rk_limiter_ip_key()...) against every limit and, when all allow it,
 * consume cost from each, in one atomic round trip. cost 0 peeks: nothing
 * is consumed and "allowed" says whether a request of cost 1 would pass.
 *
 * Returns RK_OK whenever a decision was made, whichever path made it
 * (out->path; out->redis_status says why Redis was not used); the
 * decision is out->allowed. RK_ERR_INVALID (NULL, empty key, cost < 0 or
 * over RK_LIMIT_MAX_VALUE, cost > 1 with a concurrency limit),
 * RK_ERR_TOO_LARGE (key over max_key_bytes), RK_ERR_NOMEM and
 * RK_ERR_SYSTEM (no random bytes for a concurrency lease) leave *out
 * zeroed and decide nothing. Blocks at most timeout_ms (plus the
 * connect timeout when a connection must be opened). Thread-safe.
 */
RK_EXPORT rk_status rk_limiter_check(rk_limiter *limiter, const char *key, int64_t cost,
                                     rk_limit_result *out);

/*
 * rk_limiter_peek — rk_limiter_check(limiter, key, 0, out): read the state
 * of every limit without consuming anything.
 */
RK_EXPORT rk_status rk_limiter_peek(rk_limiter *limiter, const char *key, rk_limit_result *out);

/*
 * rk_limiter_penalty / rk_limiter_reward — consume cost from every rate
 * limit of key without asking whether it fits (a penalty: a failed login
 * costs 5), or give cost back (a reward: a request that turned out to be
 * free). Concurrency limits are not touched. out (may be NULL) receives
 * the new state. These need Redis: when it cannot answer they return its
 * status (RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, RK_ERR_SERVER) and apply
 * nothing, whatever the failure policy. Also RK_ERR_INVALID, RK_ERR_TOO_LARGE.
 * A reward drops this process's block-cache entry for key.
 */
RK_EXPORT rk_status rk_limiter_penalty(rk_limiter *limiter, const char *key, int64_t cost,
                                       rk_limit_result *out);
RK_EXPORT rk_status rk_limiter_reward(rk_limiter *limiter, const char *key, int64_t cost,
                                      rk_limit_result *out);

/*
 * rk_limiter_reset — forget everything about key: delete its keys in
 * Redis (all limits, in one command), its block-cache entry and its local
 * limiter state in this process (other processes keep their block-cache
 * entries until they end). Returns RK_OK, RK_ERR_INVALID,
 * RK_ERR_TOO_LARGE or the client's errors.
 */
RK_EXPORT rk_status rk_limiter_reset(rk_limiter *limiter, const char *key);

/*
 * rk_limiter_release — return the concurrency lease (rk_limit_result.lease)
 * that a check of key took. Releasing a lease twice, or one that already
 * expired, is harmless. Returns RK_OK, RK_ERR_INVALID (NULL, empty key or
 * lease, a lease that is not RK_LEASE_ID_BYTES hex digits), or the
 * client's errors (the lease then expires by itself). Under the local
 * policy a lease taken locally is returned locally.
 */
RK_EXPORT rk_status rk_limiter_release(rk_limiter *limiter, const char *key, const char *lease);

/*
 * rk_limiter_ip_key — the key for an IP address: "ip4:<address>" for IPv4
 * (also IPv4-mapped IPv6, ::ffff:a.b.c.d), "ip6:<network>/<bits>" for IPv6
 * with the address masked to its first ipv6_prefix_bits bits (0 = 56, as
 * express-rate-limit: one host usually owns a /56 or /64, so rotating
 * addresses inside it would otherwise escape the limit; 128 = the whole
 * address). Pure: no limiter, no network. Writes the NUL-terminated key
 * into buf (size bytes). Returns RK_OK; RK_ERR_INVALID (NULL ip or buf, an
 * address inet_pton does not accept, bits > 128 or < 0);
 * RK_ERR_TOO_LARGE when size is too small (64 bytes always suffice).
 */
RK_EXPORT rk_status rk_limiter_ip_key(const char *ip, int ipv6_prefix_bits, char *buf, size_t size);

/* Which header fields rk_limit_headers() writes (or them together; 0 =
 * all). */
#define RK_LIMIT_HEADERS_IETF 1u        /* RateLimit-Policy and RateLimit */
#define RK_LIMIT_HEADERS_LEGACY 2u      /* X-RateLimit-Limit/-Remaining/-Reset */
#define RK_LIMIT_HEADERS_RETRY_AFTER 4u /* Retry-After, on a refusal only */

/*
 * rk_limit_headers — render the HTTP response header fields for a result,
 * "Name: value\r\n" each, into buf:
 *
 *   RateLimit-Policy: "<name>";q=<limit>;w=<period s>, ... (every limit;
 *       a concurrency limit as "<name>";q=<limit>;qu="concurrent-requests")
 *   RateLimit: "<name>";r=<remaining>;t=<s>, ... (every limit whose state
 *       the result holds; t = seconds until more quota: the retry-after of
 *       a refusing limit, else its reset; delta-seconds, rounded up)
 *   X-RateLimit-Limit / -Remaining / -Reset: of the deciding limit (Reset
 *       in delta-seconds, rounded up)
 *   Retry-After: delta-seconds, rounded up, never earlier than the t of
 *       the deciding limit; only when the result is a refusal (and a
 *       retry is possible at all)
 *
 * following draft-ietf-httpapi-ratelimit-headers -09/-10 (structured
 * fields). Results of the fail-open/fail-closed paths carry no state:
 * only RateLimit-Policy (and Retry-After: 1 for fail-closed) is written.
 * A result from another limiter gives RK_ERR_INVALID.
 *
 * buf receives the NUL-terminated text; *needed (may be NULL) the length
 * of the text without the NUL. Returns RK_OK; RK_ERR_TOO_LARGE when size
 * < *needed + 1 (buf then holds ""; ask again with a bigger buffer);
 * RK_ERR_INVALID (NULL limiter or result, NULL buf with size > 0). Never
 * allocates; thread-safe.
 */
RK_EXPORT rk_status rk_limit_headers(const rk_limiter *limiter, const rk_limit_result *result,
                                     unsigned which, char *buf, size_t size, size_t *needed);

/* Counters of one limiter since it was made. */
typedef struct rk_limiter_metrics {
    uint64_t allowed;         /* checks answered "allowed" (any path) */
    uint64_t limited;         /* checks refused (any path, block cache too) */
    uint64_t near_limit;      /* allowed with >= 80 % of the deciding limit used */
    uint64_t shadow_limited;  /* shadow mode: would have been refused */
    uint64_t fail_open;       /* Redis failed; allowed by policy */
    uint64_t fail_closed;     /* Redis failed; refused by policy */
    uint64_t local_decisions; /* Redis failed; the local limiter decided */
    uint64_t block_cache_hits;/* refusals answered by the block cache */
    uint64_t errors;          /* calls that returned an error status */
} rk_limiter_metrics;

/* rk_limiter_metrics_get — copy the limiter's counters into *out (each
 * exact, together not one instant). RK_ERR_INVALID for NULL. Thread-safe. */
RK_EXPORT rk_status rk_limiter_metrics_get(const rk_limiter *limiter, rk_limiter_metrics *out);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_RATELIMIT_H */
