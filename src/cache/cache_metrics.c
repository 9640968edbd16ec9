/*
 * cache_metrics.c — the cache's counters: the snapshot of one handle
 * (rk_cache_metrics_get) and the cache's families in the Prometheus text,
 * written through the metrics sink when the registry asks (registry.h).
 *
 * Handles that share a namespace are summed into one series, so a
 * program that makes several handles on "cache" sees one
 * redkit_cache_hits_total{ns="cache"}, as a reader of the text expects.
 */
#include <stdatomic.h>
#include <string.h>

#include <redkit/cache.h>
#include <redkit/keys.h>

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "error.h"
#include "metrics.h"
#include "near.h"
#include "sink.h"

_Static_assert(RK_METRICS_STATUS_SLOTS == RK__STATUS_SLOTS, "one errors[] slot per counter slot");

/* Add the handle's counters to *m (relaxed loads: see metrics.h). */
static void add_counters(const rk_cache *c, rk_cache_metrics *m)
{
    const rk__cache_counters *k = &c->counters;
#define LOAD(field) atomic_load_explicit(&k->field, memory_order_relaxed)
    m->hits += LOAD(hits);
    m->misses += LOAD(misses);
    m->degraded += LOAD(degraded);
    m->stale += LOAD(stale);
    m->sets += LOAD(sets);
    m->deletes += LOAD(deletes);
    m->computations += LOAD(computations);
    m->compute_errors += LOAD(compute_errors);
    m->early_refreshes += LOAD(early);
    m->lock_waits += LOAD(lock_waits);
    m->bytes_in += LOAD(bytes_in);
    m->bytes_stored += LOAD(bytes_stored);
    m->store_errors += LOAD(store_errors);
    for (unsigned i = 0; i < RK__STATUS_SLOTS; i++) {
        uint64_t n = LOAD(errors[i]);
        m->errors[i] += n;
        m->errors_total += n;
    }
#undef LOAD
    if (c->near) {
        rk__near_stats ns;
        rk__near_stats_get(c->near, &ns);
        m->near_hits += ns.hits;
        m->near_misses += ns.misses;
        m->near_fills += ns.fills;
        m->near_fills_cancelled += ns.fills_cancelled;
        m->near_invalidations += ns.invalidations;
        m->near_evictions += ns.evictions;
        for (int r = 0; r < RK__NEAR_FLUSH_REASONS; r++) m->near_flushes += ns.flushes[r];
        m->near_bytes += ns.bytes;
        m->near_entries += ns.entries;
    }
}

static void finish(rk_cache_metrics *m)
{
    uint64_t reads = m->hits + m->misses;
    m->hit_ratio = reads ? (double)m->hits / (double)reads : 0.0;
}

rk_status rk_cache_metrics_get(rk_cache *cache, rk_cache_metrics *out)
{
    if (!cache || !out) return rk__fail(RK_ERR_INVALID, "rk_cache_metrics_get: NULL argument");
    rk_cache_metrics m;
    memset(&m, 0, sizeof m);
    add_counters(cache, &m);
    finish(&m);
    *out = m;
    return RK_OK;
}

/* ---- Prometheus ----------------------------------------------------------- */

/* The handle's namespace, NUL-terminated into buf: its head
 * "<prefix>:<ns>:" without the client's part and the final ':'. */
static const char *cache_ns(const rk_cache *c, char buf[RK_MAX_NAMESPACE_BYTES + 1])
{
    size_t plen;
    rk__client_key_head(c->client, &plen);
    size_t len = c->head_len - plen - 1;
    if (len > RK_MAX_NAMESPACE_BYTES) len = RK_MAX_NAMESPACE_BYTES; /* cannot happen: checked at creation */
    memcpy(buf, c->head + plen, len);
    buf[len] = '\0';
    return buf;
}

typedef struct cache_family {
    const char *name;
    const char *help;
    size_t offset; /* of the uint64_t in rk_cache_metrics */
} cache_family;

#define CF(name, field, help) {"redkit_cache_" name, help, offsetof(rk_cache_metrics, field)}
static const cache_family cache_families[] = {
    CF("hits_total", hits, "Cache reads that found a value."),
    CF("misses_total", misses, "Cache reads that found no value."),
    CF("degraded_total", degraded, "Cache reads that could not ask Redis and answered as a miss."),
    CF("stale_total", stale, "Values served past their fresh lifetime."),
    CF("sets_total", sets, "Values written."),
    CF("deletes_total", deletes, "Keys removed by delete, clear and tag invalidation."),
    CF("computations_total", computations, "Compute callbacks run by fetch."),
    CF("compute_errors_total", compute_errors, "Compute callbacks that failed."),
    CF("early_refreshes_total", early_refreshes, "Early (XFetch) recomputations of fresh values."),
    CF("lock_waits_total", lock_waits, "Fetches that waited for another caller's computation."),
    CF("set_bytes_total", bytes_in, "Bytes of the values given to set, before encoding."),
    CF("stored_bytes_total", bytes_stored, "Bytes written to Redis for those values, after header and compression."),
    CF("store_errors_total", store_errors, "Computed values fetch returned but could not store in Redis."),
};
/* The near cache's families: only for namespaces that have one, so the
 * text of a program without a near cache is what it always was. */
static const cache_family near_families[] = {
    CF("near_hits_total", near_hits, "Reads answered from the near cache, without a round trip."),
    CF("near_misses_total", near_misses, "Reads the near cache could not answer."),
    CF("near_fills_total", near_fills, "Values the near cache took in."),
    CF("near_fills_cancelled_total", near_fills_cancelled, "Fills dropped because the key changed while its read was out."),
    CF("near_invalidations_total", near_invalidations, "Keys Redis said changed."),
    CF("near_evictions_total", near_evictions, "Values pushed out of the near cache by its budgets."),
    CF("near_flushes_total", near_flushes, "Times the near cache was emptied."),
};
static const cache_family near_gauges[] = {
    CF("near_bytes", near_bytes, "Memory the near cache holds now, as counted for its budget."),
    CF("near_entries", near_entries, "Values the near cache holds now."),
};
#undef CF

/* One row per namespace, in the order the namespaces first appear. */
typedef struct ns_row {
    char ns[RK_MAX_NAMESPACE_BYTES + 1];
    rk_cache_metrics m;
    bool near; /* a handle of the namespace has a near cache */
} ns_row;

/* The sums are built in a small fixed array, and again for each further
 * block of namespaces when a program has more: no allocation under the
 * registry's lock, and a scrape of any number of handles. */
#define ROWS 16

static void emit_errors(const ns_row *rows, size_t n, rk__sink *sink)
{
    const char *name = "redkit_cache_errors_total";
    for (size_t i = 0; i < n; i++) {
        uint64_t other = 0;
        for (int s = 0; s < RK_METRICS_STATUS_SLOTS; s++) {
            const char *label = rk__metrics_status_label(s);
            if (!label) {
                other += rows[i].m.errors[s];
                continue;
            }
            rk__sink_u64(sink, name, rows[i].ns, "status", label, rows[i].m.errors[s]);
        }
        /* Statuses not in the table (none is counted today) stay visible. */
        if (other) rk__sink_u64(sink, name, rows[i].ns, "status", "other", other);
    }
}

/* Sum handles[from..] into rows by namespace, skipping namespaces that an
 * earlier block (handles[0..from-1]'s first appearances) already took.
 * Returns the number of rows; *next is where the next block starts (n
 * when this block holds every remaining namespace). */
static size_t collect(void *const *handles, size_t n, size_t from, ns_row rows[ROWS], size_t *next)
{
    size_t nrows = 0;
    *next = n;
    for (size_t h = from; h < n; h++) {
        char ns[RK_MAX_NAMESPACE_BYTES + 1];
        cache_ns(handles[h], ns);
        bool earlier = false; /* this namespace first appeared before from */
        for (size_t e = 0; e < from && !earlier; e++) {
            char other[RK_MAX_NAMESPACE_BYTES + 1];
            earlier = strcmp(cache_ns(handles[e], other), ns) == 0;
        }
        if (earlier) continue;
        size_t i = 0;
        while (i < nrows && strcmp(rows[i].ns, ns) != 0) i++;
        if (i == nrows) {
            if (nrows == ROWS) {
                if (*next == n) *next = h;
                continue;
            }
            memset(&rows[i], 0, sizeof rows[i]);
            memcpy(rows[i].ns, ns, sizeof ns);
            nrows++;
        }
        add_counters(handles[h], &rows[i].m);
        if (((const rk_cache *)handles[h])->near) rows[i].near = true;
    }
    return nrows;
}

static bool any_near(void *const *handles, size_t n)
{
    for (size_t h = 0; h < n; h++)
        if (((const rk_cache *)handles[h])->near) return true;
    return false;
}

static void emit_near_family(void *const *handles, size_t n, rk__sink *sink, ns_row rows[ROWS],
                             const cache_family *cf, const char *type)
{
    rk__sink_family(sink, cf->name, type, cf->help);
    for (size_t from = 0, next; from < n; from = next) {
        size_t nrows = collect(handles, n, from, rows, &next);
        for (size_t i = 0; i < nrows; i++) {
            if (!rows[i].near) continue;
            uint64_t v;
            memcpy(&v, (const char *)&rows[i].m + cf->offset, sizeof v);
            rk__sink_u64(sink, cf->name, rows[i].ns, NULL, NULL, v);
        }
    }
}

static void emit_near(void *const *handles, size_t n, rk__sink *sink, ns_row rows[ROWS])
{
    if (!any_near(handles, n)) return;
    for (size_t f = 0; f < sizeof near_families / sizeof near_families[0]; f++)
        emit_near_family(handles, n, sink, rows, &near_families[f], "counter");
    for (size_t f = 0; f < sizeof near_gauges / sizeof near_gauges[0]; f++)
        emit_near_family(handles, n, sink, rows, &near_gauges[f], "gauge");
}

/* The families are written one after the other, each with the series of
 * every namespace, as the exposition format requires. With more than ROWS
 * namespaces a family is written in blocks, all of them before the next
 * family starts (its HELP and TYPE once). */
static void cache_emit(void *const *handles, size_t n, rk__sink *sink)
{
    const size_t nfamilies = sizeof cache_families / sizeof cache_families[0];
    ns_row rows[ROWS];
    for (size_t f = 0; f <= nfamilies; f++) {
        if (f == nfamilies)
            rk__sink_family(sink, "redkit_cache_errors_total", "counter", "Cache calls that failed, by status.");
        else
            rk__sink_family(sink, cache_families[f].name, "counter", cache_families[f].help);
        for (size_t from = 0, next; from < n; from = next) {
            size_t nrows = collect(handles, n, from, rows, &next);
            if (f == nfamilies) {
                emit_errors(rows, nrows, sink);
                continue;
            }
            for (size_t i = 0; i < nrows; i++) {
                uint64_t v;
                memcpy(&v, (const char *)&rows[i].m + cache_families[f].offset, sizeof v);
                rk__sink_u64(sink, cache_families[f].name, rows[i].ns, NULL, NULL, v);
            }
        }
    }
    emit_near(handles, n, sink, rows);
}

const rk__module_ops rk__cache_ops = {.kind = "cache", .emit = cache_emit};
