/*
 * apikeys_metrics.c — the counters of an rk_apikeys: the public snapshot
 * and the Prometheus families written through the module registry's sink
 * (redkit_apikeys_<what>_total{ns="..."}; hits also by layer). Labels are
 * namespaces and layer names only: never a key, never a hash.
 */
#include <stddef.h>
#include <string.h>

#include "apikeys.h"
#include "error.h"
#include "sink.h"

#define LOAD(ak, f) atomic_load_explicit(&(ak)->counters.f, memory_order_relaxed)

rk_status rk_apikeys_metrics_get(rk_apikeys *ak, rk_apikeys_metrics *out)
{
    if (!ak || !out) return rk__fail(RK_ERR_INVALID, "rk_apikeys_metrics_get: NULL argument");
    *out = (rk_apikeys_metrics){
        .verifies = LOAD(ak, verifies),
        .malformed = LOAD(ak, malformed),
        .process_hits = LOAD(ak, process_hits),
        .redis_hits = LOAD(ak, redis_hits),
        .negative_hits = LOAD(ak, negative_hits),
        .lookups = LOAD(ak, lookups),
        .lookup_errors = LOAD(ak, lookup_errors),
        .revocations = LOAD(ak, revocations),
        .invalidations = LOAD(ak, invalidations),
        .degraded = LOAD(ak, degraded),
        .errors = LOAD(ak, errors),
        .subscription_losses = LOAD(ak, subscription_losses),
    };
    return RK_OK;
}

typedef struct family {
    const char *name, *help;
    size_t offset;
} family;

#define F(n, field, h) {"redkit_apikeys_" n "_total", h, offsetof(rk_apikeys_metrics, field)}
static const family families[] = {
    F("verifies", verifies, "API-key verifies."),
    F("malformed", malformed, "Verifies refused by the key's checksum, with no lookup."),
    F("negative_hits", negative_hits, "Not-found answers served from a cache (process or Redis)."),
    F("lookups", lookups, "Lookup callbacks run (database queries)."),
    F("lookup_errors", lookup_errors, "Lookup callbacks that failed."),
    F("revocations", revocations, "Keys revoked (tombstones written)."),
    F("invalidations", invalidations, "Invalidations received from other processes."),
    F("degraded", degraded, "Verdicts given without Redis or without the database."),
    F("errors", errors, "Verifies that reached no verdict."),
    F("subscription_losses", subscription_losses,
      "Revocation subscriber lost or inherited by fork(): in-process answers demoted to stale."),
};
#undef F

/* Handles of one namespace are summed: the sink wants one sample per ns.
 * n is small (a handle or two per program); the quadratic passes allocate
 * nothing under the registry's lock. */
static bool first_of_ns(void *const *handles, size_t i)
{
    const rk_apikeys *a = handles[i];
    for (size_t j = 0; j < i; j++)
        if (strcmp(((const rk_apikeys *)handles[j])->ns, a->ns) == 0) return false;
    return true;
}

static uint64_t ns_sum(void *const *handles, size_t n, size_t i, size_t offset)
{
    const rk_apikeys *a = handles[i];
    uint64_t sum = 0;
    for (size_t j = i; j < n; j++) {
        rk_apikeys *b = handles[j];
        if (strcmp(b->ns, a->ns) != 0) continue;
        rk_apikeys_metrics m;
        rk_apikeys_metrics_get(b, &m);
        uint64_t v;
        memcpy(&v, (const char *)&m + offset, sizeof v);
        sum += v;
    }
    return sum;
}

static void emit(void *const *handles, size_t n, rk__sink *sink)
{
    const char *hits = "redkit_apikeys_hits_total";
    rk__sink_family(sink, hits, "counter", "Verifies answered from a cache, by layer.");
    for (size_t i = 0; i < n; i++) {
        if (!first_of_ns(handles, i)) continue;
        const char *ns = ((const rk_apikeys *)handles[i])->ns;
        rk__sink_u64(sink, hits, ns, "layer", "process", ns_sum(handles, n, i, offsetof(rk_apikeys_metrics, process_hits)));
        rk__sink_u64(sink, hits, ns, "layer", "redis", ns_sum(handles, n, i, offsetof(rk_apikeys_metrics, redis_hits)));
    }
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        rk__sink_family(sink, families[f].name, "counter", families[f].help);
        for (size_t i = 0; i < n; i++)
            if (first_of_ns(handles, i))
                rk__sink_u64(sink, families[f].name, ((const rk_apikeys *)handles[i])->ns, NULL, NULL,
                             ns_sum(handles, n, i, families[f].offset));
    }
}

const rk__module_ops rk__apikeys_ops = {.kind = "apikeys", .emit = emit};
