/*
 * registry.h — one registry of module handles per client.
 *
 * Every module handle (a cache, a session store, a rate limiter, an API-key
 * verifier) registers itself on its client when it is made and leaves when
 * it is freed. The registry is module-neutral: it keeps a pointer to the
 * handle and a small table of operations that the module supplies, and
 * knows nothing else about it. Two things use it:
 *
 *  - metrics: rk_metrics_prometheus() asks each kind of module to write
 *    its own families into a sink that src/metrics/ owns, so metrics.c
 *    includes no module's header and a new module appears in the text
 *    through the registry alone;
 *  - lifetime: a registered handle holds a reference to its client, so
 *    rk_client_free() before the handle's own _free only drops the
 *    caller's reference, and the client goes when its last handle does.
 *
 * The registry has a lock of its own, never the one ordinary commands
 * take, so a metrics scrape does not stall requests.
 */
#ifndef RK_SRC_CLIENT_REGISTRY_H
#define RK_SRC_CLIENT_REGISTRY_H

#include <stddef.h>

#include <redkit/client.h>

/* Where a module writes its metrics (src/metrics/sink.h). */
typedef struct rk__sink rk__sink;

typedef struct rk__module_ops {
    /* The module's kind, one lowercase word: "cache", "sessions",
     * "ratelimit", "apikeys". Handles are grouped by the ops pointer. */
    const char *kind;
    /* Write the metric families of the handles of this kind, handles[0..n-1]
     * (n >= 1, in the order they registered), into sink: one family after
     * the other, each with all its samples (rk__sink_family, then
     * rk__sink_u64 / rk__sink_f64 per handle or per namespace). Called once
     * per kind per scrape with the registry's lock held: read counters
     * only; never call the client, never create or free a handle. May be
     * NULL (the kind has no metrics). */
    void (*emit)(void *const *handles, size_t n, rk__sink *sink);
} rk__module_ops;

/* Register handle (of the kind ops describes; ops must outlive it, a
 * static const table) on client, taking a reference to the client.
 * RK_OK, RK_ERR_INVALID (a NULL argument) or RK_ERR_NOMEM. */
rk_status rk__registry_add(rk_client *client, void *handle, const rk__module_ops *ops);

/* Unregister handle and drop its reference to the client, which is freed
 * here when rk_client_free() was already called and this was its last
 * handle. A handle never added is ignored. After this returns no scrape
 * touches the handle, and the client may be gone: call it first in the
 * module's _free, and touch the client no more. */
void rk__registry_remove(rk_client *client, void *handle);

/* For src/metrics/: call emit for each kind registered on client, in the
 * order the kinds first registered, with the registry's lock held.
 * Returns the number of handles. */
size_t rk__registry_emit(rk_client *client, rk__sink *sink);

/* The number of handles of the given kind registered on client now. */
size_t rk__registry_count(rk_client *client, const char *kind);

#endif
