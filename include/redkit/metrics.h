/*
 * redkit/metrics.h — what the cache and the client did, how long Redis
 * took, and how the server's memory stands.
 *
 *     rk_cache_metrics m;
 *     rk_cache_metrics_get(cache, &m);         // hits, misses, errors, ...
 *     rk_latency lat;
 *     rk_client_latency_get(client, &lat);     // p50/p90/p99/p99.9 in µs
 *     char *text; size_t len;
 *     rk_metrics_prometheus(client, &text, &len);  // for GET /metrics
 *     ...; rk_free(text);
 *     rk_memory_info mem;
 *     rk_server_memory(client, &mem);          // INFO: memory, evictions
 *
 * Client-side figures cost nothing to read and never touch the network:
 * the counters are kept as they happen, with relaxed atomics, by the calls
 * themselves. Each counter is exact; a snapshot of several is not one
 * instant (a call in flight may show in one counter and not yet in
 * another). rk_server_memory() is the only function here that talks to
 * Redis (one INFO).
 *
 * Each module's own counters are in its header (rk_cache_metrics_get() in
 * cache.h, ...); the Prometheus text here holds the families of every
 * module handle registered on the client.
 *
 * Secrets: nothing here ever contains a key, a value, a URL or a password.
 * The only label values in the Prometheus text are module namespaces
 * (configuration, [A-Za-z0-9_.-]), status names and bucket bounds.
 *
 * Thread safety: every function may be called from any thread at any time,
 * concurrently with any other call on the same client or handle.
 */
#ifndef REDKIT_METRICS_H
#define REDKIT_METRICS_H

#include "common.h"
#include "status.h"
#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Request latency ---------------------------------------------------- */

/*
 * The latency of a client's requests since it was created. One request is
 * one round trip: a command, or a whole pipeline (rk_cache_mget, ...); a
 * read retried on a fresh connection is two. The time runs from asking
 * the pool for a connection (waiting for one, or opening one, included) to
 * the end of reading the reply, or of the failure (a timeout counts with
 * the time it took). Calls that never reached the network — refused by the
 * open circuit breaker, or with no connection to be had — are not requests
 * here: rk_client_stats counts them (fast_failed, unavailable, timeouts),
 * so a dead Redis cannot make the latency look good.
 *
 * Quantiles come from a log-linear histogram (8 buckets per power of two
 * of microseconds, see docs/metrics.md): each is within 6.25 % of the true
 * value, and never above max_us.
 */
typedef struct rk_latency {
    uint64_t count;    /* requests measured */
    uint64_t sum_us;   /* their total time */
    uint64_t max_us;   /* the slowest */
    uint64_t p50_us;   /* median */
    uint64_t p90_us;
    uint64_t p99_us;
    uint64_t p999_us;  /* 99.9th percentile */
} rk_latency;

/*
 * rk_client_latency_get — copy the latency figures of client into *out.
 * No network traffic, no allocation; a few microseconds. Returns RK_OK,
 * or RK_ERR_INVALID for a NULL argument.
 */
RK_EXPORT rk_status rk_client_latency_get(rk_client *client, rk_latency *out);

/* ---- Prometheus ---------------------------------------------------------- */

/*
 * rk_metrics_prometheus — everything client-side as Prometheus text
 * exposition (format 0.0.4), ready to be the body of a GET /metrics reply
 * (Content-Type: text/plain; version=0.0.4):
 *
 *   - the client's counters (rk_client_stats) as redkit_client_*_total,
 *     and its circuit state and connections as gauges;
 *   - its request latency as the histogram
 *     redkit_client_request_duration_seconds (le bounds at powers of two
 *     of microseconds, 8 µs to 67 s, then +Inf; _sum and _count);
 *   - for every cache handle alive on the client, its counters as
 *     redkit_cache_*_total{ns="<namespace>"}, errors by
 *     {ns="...",status="timeout"|...}. Handles of one namespace are summed
 *     into one series (a series must be unique).
 *
 * Every metric has its # HELP and # TYPE lines; counters end in _total.
 * Labels carry only namespaces, status names and bucket bounds — never a
 * key, a URL or a password. See docs/metrics.md for every name.
 *
 * On RK_OK *text is a new NUL-terminated string (free it with rk_free())
 * and *len its length without the NUL (len may be NULL). On error *text is
 * NULL. Returns RK_OK, RK_ERR_INVALID (NULL client or text) or
 * RK_ERR_NOMEM. No network traffic: a scrape never waits for Redis.
 */
RK_EXPORT rk_status rk_metrics_prometheus(rk_client *client, char **text, size_t *len);

/* ---- Server memory -------------------------------------------------------- */

/* rk_memory_info.warnings: the server is set up in a way that hurts a
 * cache (see docs/metrics.md for what to change). */
#define RK_MEMORY_WARN_NO_MAXMEMORY 1u /* maxmemory is 0: no limit, no eviction */
#define RK_MEMORY_WARN_NOEVICTION 2u   /* maxmemory-policy noeviction: writes
                                          fail once memory is full */

/*
 * The server's memory and keyspace, from one INFO. Figures the server did
 * not report (an old version, a managed service that hides some) are 0 or
 * "" — and raise no warning.
 */
typedef struct rk_memory_info {
    uint64_t used_memory;          /* bytes allocated by Redis (used_memory) */
    uint64_t used_memory_rss;      /* resident set size of the process */
    uint64_t used_memory_peak;     /* the highest used_memory so far */
    uint64_t maxmemory;            /* the limit in bytes; 0 = none */
    char maxmemory_policy[32];     /* "allkeys-lru", "noeviction", ... */
    double mem_fragmentation_ratio;/* rss / used */
    uint64_t evicted_keys;         /* keys evicted to stay under maxmemory */
    uint64_t expired_keys;         /* keys removed because their TTL ran out */
    uint64_t keyspace_hits;        /* server-wide lookups that found a key */
    uint64_t keyspace_misses;      /* ... and that did not */
    double hit_ratio;              /* hits / (hits + misses); 0 when both 0 */
    int db;                        /* the client's database number */
    uint64_t db_keys;              /* keys in that database */
    uint64_t db_expires;           /* ... of which have a TTL */
    /* From the same reply, for a one-screen status: */
    char redis_version[32];
    uint64_t uptime_s;
    uint64_t connected_clients;
    uint64_t total_commands;       /* commands processed since start */
    uint64_t ops_per_sec;          /* instantaneous_ops_per_sec */
    unsigned warnings;             /* RK_MEMORY_WARN_* bits */
} rk_memory_info;

/*
 * rk_server_memory — run INFO (its default sections) on client's server
 * and fill *out. One round trip within the command timeout; a read, so it
 * degrades like one: RK_ERR_UNAVAILABLE / RK_ERR_TIMEOUT when Redis cannot
 * be asked (not RK_DEGRADED: there is no "miss" to fall back on).
 *
 * When the reply shows maxmemory 0 or the noeviction policy, the matching
 * RK_MEMORY_WARN_* bits are set in out->warnings; and if at least one
 * cache handle exists on the client, a warning is also passed to the
 * client's log callback (rk_client_options.log) — once per client per
 * condition, so a dashboard polling every second does not flood the log.
 * Only this call checks: no cache call sends an INFO of its own (see
 * docs/metrics.md, "The memory warning"), so call it once at start-up.
 *
 * Returns RK_OK; RK_ERR_INVALID (NULL argument); the client's errors
 * (RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, RK_ERR_AUTH, RK_ERR_SERVER when
 * INFO is refused, e.g. by an ACL); RK_ERR_PROTOCOL for a reply that is
 * not INFO text. On error *out is zeroed.
 */
RK_EXPORT rk_status rk_server_memory(rk_client *client, rk_memory_info *out);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_METRICS_H */
