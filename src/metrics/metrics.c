/*
 * metrics.c — snapshots of the cache counters and of the latency
 * histogram, the Prometheus text, and the server's memory from INFO
 * (contract in include/redkit/metrics.h).
 *
 * Nothing here is on a request's path. The modules bump their handles'
 * counters and client.c's request() records each round trip in the
 * client's histogram; this file only reads them, so its cost is paid by
 * whoever asks (a scrape every few seconds), never by a request.
 *
 * This file knows no module. Each module handle is in the client's
 * registry (src/client/registry.h) with an emit operation that writes the
 * module's families into the sink defined here (sink.h): a new module
 * appears in the text without a line changed here.
 *
 * The Prometheus text names only configuration: namespaces, status names,
 * bucket bounds and the library version. No key, value, URL or password
 * is ever in reach of the code that writes it — it reads counters, and
 * namespaces, which every module checks to be [A-Za-z0-9_.-].
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/keys.h>
#include <redkit/metrics.h>

#include "alloc.h"
#include "client.h"
#include "error.h"
#include "histogram.h"
#include "metrics.h"
#include "number.h"
#include "registry.h"
#include "sink.h"

/* ---- Latency ------------------------------------------------------------ */

static void latency_from(const rk__hist_snap *s, rk_latency *out)
{
    out->count = s->count;
    out->sum_us = s->sum_ns / 1000;
    out->max_us = s->max_ns / 1000;
    out->p50_us = rk__hist_quantile(s, 500000);
    out->p90_us = rk__hist_quantile(s, 900000);
    out->p99_us = rk__hist_quantile(s, 990000);
    out->p999_us = rk__hist_quantile(s, 999000);
}

rk_status rk_client_latency_get(rk_client *client, rk_latency *out)
{
    if (!client || !out) return rk__fail(RK_ERR_INVALID, "rk_client_latency_get: NULL argument");
    /* 1.5 KiB: fine on any thread's stack, and no allocation to fail. */
    rk__hist_snap s;
    rk__hist_snapshot(rk__client_latency(client), &s);
    latency_from(&s, out);
    return RK_OK;
}

/* ---- Prometheus text ------------------------------------------------------ */

/* The text being built; after a failed allocation every append is a no-op
 * and the caller reports RK_ERR_NOMEM once. */
typedef struct text {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void put(text *t, const char *fmt, ...)
{
    if (t->failed) return;
    for (int tries = 0; tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) break;
        if (t->buf && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        /* Grow to fit (doubling, so the whole text costs O(length)) and
         * format again: at most once, since the size is now known. */
        size_t cap = t->cap ? t->cap : 4096;
        while (cap - t->len <= (size_t)n) cap *= 2;
        char *grown = rk__realloc(t->buf, cap);
        if (!grown) break;
        t->buf = grown;
        t->cap = cap;
    }
    t->failed = true;
}

static void family(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter or gauge family of the client, without labels. */
static void client_metric(text *t, const char *name, const char *type, const char *help, uint64_t value)
{
    family(t, name, type, help);
    put(t, "%s %" PRIu64 "\n", name, value);
}

/* A label value, escaped as the exposition format wants. Namespaces can
 * hold none of these characters; the escape is there so that this
 * function is correct on its own. */
static void put_label_value(text *t, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '\\' || ch == '"') put(t, "\\%c", ch);
        else if (ch == '\n') put(t, "\\n");
        else put(t, "%c", ch);
    }
}

/* Seconds, exactly, from an integer count of a smaller unit. */
static void put_seconds(text *t, uint64_t units, uint64_t per_second, int digits)
{
    put(t, "%" PRIu64 ".%0*" PRIu64, units / per_second, digits, units % per_second);
}

static const char *const status_labels[] = {
    [RK_ERR_INVALID] = "invalid",   [RK_ERR_UNAVAILABLE] = "unavailable",
    [RK_ERR_TIMEOUT] = "timeout",   [RK_ERR_AUTH] = "auth",
    [RK_ERR_TLS] = "tls",           [RK_ERR_PROTOCOL] = "protocol",
    [RK_ERR_SERVER] = "server",     [RK_ERR_TYPE] = "type",
    [RK_ERR_TOO_LARGE] = "too_large", [RK_ERR_NOMEM] = "nomem",
    [RK_ERR_SYSTEM] = "system",
};

const char *rk__metrics_status_label(int status)
{
    if (status < 0 || (size_t)status >= sizeof status_labels / sizeof status_labels[0]) return NULL;
    return status_labels[status];
}

/* ---- The sink the modules write into (sink.h) ------------------------------ */

struct rk__sink {
    text t;
};

void rk__sink_family(rk__sink *s, const char *name, const char *type, const char *help)
{
    family(&s->t, name, type, help);
}

static void sample_head(text *t, const char *name, const char *ns, const char *label_key, const char *label_value)
{
    put(t, "%s{ns=\"", name);
    put_label_value(t, ns, strlen(ns));
    if (label_key) {
        put(t, "\",%s=\"", label_key);
        put_label_value(t, label_value, strlen(label_value));
    }
    put(t, "\"} ");
}

void rk__sink_u64(rk__sink *s, const char *name, const char *ns, const char *label_key, const char *label_value,
                  uint64_t value)
{
    sample_head(&s->t, name, ns, label_key, label_value);
    put(&s->t, "%" PRIu64 "\n", value);
}

void rk__sink_f64(rk__sink *s, const char *name, const char *ns, const char *label_key, const char *label_value,
                  double value)
{
    sample_head(&s->t, name, ns, label_key, label_value);
    put(&s->t, "%.17g\n", value);
}

/* The latency histogram: le bounds at 2^3 .. 2^26 µs, each exactly a
 * bucket boundary of the internal histogram, so every count is exact. */
#define LE_FIRST_BITS 3

static void put_latency(text *t, const rk__hist_snap *s)
{
    const char *name = "redkit_client_request_duration_seconds";
    family(t, name, "histogram",
           "Round trips to Redis, from asking the pool for a connection to the end of the reply.");
    for (unsigned bits = LE_FIRST_BITS; bits <= RK__HIST_MAX_BITS; bits++) {
        put(t, "%s_bucket{le=\"", name);
        put_seconds(t, (uint64_t)1 << bits, 1000000, 6);
        put(t, "\"} %" PRIu64 "\n", rk__hist_count_below_pow2(s, bits));
    }
    put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, s->count);
    put(t, "%s_sum ", name);
    put_seconds(t, s->sum_ns, 1000000000, 9);
    put(t, "\n%s_count %" PRIu64 "\n", name, s->count);
}

static void put_client(text *t, const rk_client_stats *st)
{
    static const struct {
        const char *name, *help;
        size_t offset;
    } counters[] = {
#define CC(field, help) {"redkit_client_" #field "_total", help, offsetof(rk_client_stats, field)}
        CC(requests, "Requests that got their replies."),
        CC(connects, "Connections opened."),
        CC(reconnects, "Times Redis was reached again after failures."),
        CC(connect_failures, "Connect attempts that failed."),
        CC(disconnects, "Connections closed because they failed."),
        CC(timeouts, "Calls that ended with a timeout."),
        CC(unavailable, "Calls that ended with Redis unavailable, fast failures included."),
        CC(fast_failed, "Calls refused without touching the network."),
        CC(read_retries, "Reads retried on a fresh connection."),
        CC(circuit_opened, "Transitions of the circuit breaker to open."),
        CC(circuit_closed, "Transitions of the circuit breaker back to closed."),
#undef CC
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)st + counters[i].offset, sizeof v);
        client_metric(t, counters[i].name, "counter", counters[i].help, v);
    }
    client_metric(t, "redkit_client_circuit_state", "gauge",
                  "Circuit breaker now: 0 closed, 1 open, 2 half-open.", (uint64_t)st->circuit);
    client_metric(t, "redkit_client_connections", "gauge", "Connections open now, idle or in use.",
                  (uint64_t)(st->open_connections > 0 ? st->open_connections : 0));
    client_metric(t, "redkit_client_idle_connections", "gauge", "Connections idle in the pool now.",
                  (uint64_t)(st->idle_connections > 0 ? st->idle_connections : 0));
}

rk_status rk_metrics_prometheus(rk_client *client, char **out, size_t *len)
{
    if (out) *out = NULL;
    if (len) *len = 0;
    if (!client || !out) return rk__fail(RK_ERR_INVALID, "rk_metrics_prometheus: NULL argument");

    rk_client_stats stats;
    rk_client_stats_get(client, &stats);
    rk__hist_snap *lat = rk__malloc(sizeof *lat);
    if (!lat) return rk__fail(RK_ERR_NOMEM, "rk_metrics_prometheus: out of memory");
    rk__sink sink = {{0}};
    text *t = &sink.t;
    rk__hist_snapshot(rk__client_latency(client), lat);
    family(t, "redkit_build_info", "gauge", "The redkit library version, as a label.");
    put(t, "redkit_build_info{version=\"%s\"} 1\n", rk_version());
    put_client(t, &stats);
    put_latency(t, lat);
    rk__free(lat);
    rk__registry_emit(client, &sink);
    if (t->failed) {
        rk__free(t->buf);
        return rk__fail(RK_ERR_NOMEM, "rk_metrics_prometheus: out of memory");
    }
    *out = t->buf;
    if (len) *len = t->len;
    return RK_OK;
}

/* ---- Server memory --------------------------------------------------------- */

/* A whole decimal number, and nothing else; false leaves *out alone. */
static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_double(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    double v = rk__strtod_c(buf, &end); /* INFO writes "1.23" whatever our locale */
    if (*end != '\0') return false;
    *out = v;
    return true;
}

static void copy_text(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* "keys=12,expires=3,avg_ttl=0" from the keyspace line of the db. */
static void parse_db(const char *v, size_t n, rk_memory_info *out)
{
    const char *end = v + n;
    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *stop = comma ? comma : end;
        const char *eq = memchr(v, '=', (size_t)(stop - v));
        if (eq) {
            size_t klen = (size_t)(eq - v);
            if (klen == 4 && memcmp(v, "keys", 4) == 0) parse_u64(eq + 1, (size_t)(stop - eq - 1), &out->db_keys);
            else if (klen == 7 && memcmp(v, "expires", 7) == 0)
                parse_u64(eq + 1, (size_t)(stop - eq - 1), &out->db_expires);
        }
        v = stop < end ? stop + 1 : end; /* never past the end, even by one more */
    }
}

void rk__info_parse(const char *s, size_t len, int db, rk_memory_info *out)
{
    memset(out, 0, sizeof *out);
    out->db = db;
    char dbkey[24];
    int dbkey_len = snprintf(dbkey, sizeof dbkey, "db%d", db);
    bool has_maxmemory = false;

    static const struct {
        const char *key;
        size_t offset;
    } numbers[] = {
#define N(field, key) {key, offsetof(rk_memory_info, field)}
        N(used_memory, "used_memory"),
        N(used_memory_rss, "used_memory_rss"),
        N(used_memory_peak, "used_memory_peak"),
        N(maxmemory, "maxmemory"),
        N(evicted_keys, "evicted_keys"),
        N(expired_keys, "expired_keys"),
        N(keyspace_hits, "keyspace_hits"),
        N(keyspace_misses, "keyspace_misses"),
        N(uptime_s, "uptime_in_seconds"),
        N(connected_clients, "connected_clients"),
        N(total_commands, "total_commands_processed"),
        N(ops_per_sec, "instantaneous_ops_per_sec"),
#undef N
    };

    const char *end = s + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *line_end = nl ? nl : end;
        const char *e = line_end;
        if (e > s && e[-1] == '\r') e--;
        const char *colon = *s == '#' ? NULL : memchr(s, ':', (size_t)(e - s));
        if (colon) {
            size_t klen = (size_t)(colon - s);
            const char *v = colon + 1;
            size_t vlen = (size_t)(e - v);
            for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
                if (strlen(numbers[i].key) != klen || memcmp(s, numbers[i].key, klen) != 0) continue;
                uint64_t x;
                if (parse_u64(v, vlen, &x)) {
                    memcpy((char *)out + numbers[i].offset, &x, sizeof x);
                    if (numbers[i].offset == offsetof(rk_memory_info, maxmemory)) has_maxmemory = true;
                }
                break;
            }
            if (klen == 16 && memcmp(s, "maxmemory_policy", 16) == 0)
                copy_text(out->maxmemory_policy, sizeof out->maxmemory_policy, v, vlen);
            else if (klen == 13 && memcmp(s, "redis_version", 13) == 0)
                copy_text(out->redis_version, sizeof out->redis_version, v, vlen);
            else if (klen == 23 && memcmp(s, "mem_fragmentation_ratio", 23) == 0)
                parse_double(v, vlen, &out->mem_fragmentation_ratio);
            else if (klen == (size_t)dbkey_len && memcmp(s, dbkey, klen) == 0)
                parse_db(v, vlen, out);
        }
        s = line_end < end ? line_end + 1 : end;
    }
    uint64_t lookups = out->keyspace_hits + out->keyspace_misses;
    out->hit_ratio = lookups ? (double)out->keyspace_hits / (double)lookups : 0.0;
    if (has_maxmemory && out->maxmemory == 0) out->warnings |= RK_MEMORY_WARN_NO_MAXMEMORY;
    if (strcmp(out->maxmemory_policy, "noeviction") == 0) out->warnings |= RK_MEMORY_WARN_NOEVICTION;
}

/* The warnings, logged once per client per condition, and only while a
 * cache handle exists: a client used only for sessions or rate limits
 * may rightly run on a server without eviction. */
static void warn(rk_client *client, unsigned warnings)
{
    if (!warnings || rk__registry_count(client, "cache") == 0) return;
    if ((warnings & RK_MEMORY_WARN_NO_MAXMEMORY) && rk__client_warn_once(client, RK_MEMORY_WARN_NO_MAXMEMORY))
        rk__client_log(client, RK_LOG_WARN,
                       "Redis has no memory limit (maxmemory 0) while a cache uses it: cached values pile up "
                       "until the server runs out of memory; set maxmemory and maxmemory-policy allkeys-lru "
                       "(see docs/metrics.md)");
    if ((warnings & RK_MEMORY_WARN_NOEVICTION) && rk__client_warn_once(client, RK_MEMORY_WARN_NOEVICTION))
        rk__client_log(client, RK_LOG_WARN,
                       "Redis maxmemory-policy is noeviction while a cache uses it: once memory is full every "
                       "write fails instead of evicting old values; use allkeys-lru or volatile-lru "
                       "(see docs/metrics.md)");
}

rk_status rk_server_memory(rk_client *client, rk_memory_info *out)
{
    if (!client || !out) return rk__fail(RK_ERR_INVALID, "rk_server_memory: NULL argument");
    memset(out, 0, sizeof *out);
    static const char *argv[] = {"INFO"};
    static const size_t lens[] = {4};
    rk_reply *r;
    rk_status st = rk__client_run(client, 1, argv, lens, true, &r);
    if (st != RK_OK) return st;
    if (r->type != RK_REPLY_STRING && r->type != RK_REPLY_STATUS) {
        rk_reply_free(r);
        return rk__fail(RK_ERR_PROTOCOL, "INFO: unexpected reply type");
    }
    rk__info_parse(r->str, r->len, rk__client_db(client), out);
    rk_reply_free(r);
    warn(client, out->warnings);
    return RK_OK;
}
