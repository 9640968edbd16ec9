/*
 * stats.c — the service's own metrics, next to redkit's in GET /metrics.
 *
 * Requests are counted by route (the route's pattern, never the raw path:
 * ids would make one series per user) and status code; latency goes into
 * a fixed-bucket histogram. Everything is a relaxed atomic counter bumped
 * by the HTTP threads; a scrape reads them without stopping anyone.
 */
#include <stdatomic.h>

#include "app.h"
#include "http.h"

const char *const route_names[R_COUNT] = {
    [R_INDEX] = "/",
    [R_STATUS] = "/v1/status",
    [R_HEALTHZ] = "/healthz",
    [R_METRICS] = "/metrics",
    [R_SIGNUP] = "/v1/signup",
    [R_LOGIN] = "/v1/login",
    [R_LOGOUT] = "/v1/logout",
    [R_ME] = "/v1/me",
    [R_SESSIONS] = "/v1/sessions",
    [R_USER] = "/v1/users/{id}",
    [R_PRODUCT] = "/v1/products/{id}",
    [R_PRODUCTS] = "/v1/products",
    [R_APIKEYS] = "/v1/api-keys",
    [R_APIKEY] = "/v1/api-keys/{id}",
    [R_UNMATCHED] = "other",
};

/* Status codes the service answers with; anything else counts as "other". */
static const unsigned codes[] = { 200, 201, 204, 400, 401, 403, 404, 405,
                                  409, 413, 422, 429, 431, 500, 501, 503 };
#define NCODES (sizeof codes / sizeof codes[0])

/* Latency bucket bounds in microseconds (Prometheus wants seconds). */
static const uint64_t bounds_us[] = { 250, 500, 1000, 2500, 5000, 10000,
                                      25000, 50000, 100000, 250000, 1000000 };
#define NBOUNDS (sizeof bounds_us / sizeof bounds_us[0])

static atomic_uint_least64_t requests[R_COUNT][NCODES + 1];
static atomic_uint_least64_t buckets[NBOUNDS + 1];
static atomic_uint_least64_t latency_sum_us;
static atomic_uint_least64_t rate_limited;

void stats_request(enum route_id route, unsigned status, uint64_t elapsed_us)
{
    size_t c = 0;
    while (c < NCODES && codes[c] != status)
        c++;
    atomic_fetch_add_explicit(&requests[route][c], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < NBOUNDS && elapsed_us > bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_sum_us, elapsed_us, memory_order_relaxed);
}

void stats_rate_limited(void)
{
    atomic_fetch_add_explicit(&rate_limited, 1, memory_order_relaxed);
}

uint64_t stats_rate_limited_total(void)
{
    return atomic_load_explicit(&rate_limited, memory_order_relaxed);
}

uint64_t stats_requests_total(void)
{
    uint64_t n = 0;
    for (size_t b = 0; b <= NBOUNDS; b++)
        n += atomic_load_explicit(&buckets[b], memory_order_relaxed);
    return n;
}

void stats_prometheus(struct buf *out, uint64_t sqlite_queries)
{
    buf_printf(out, "# HELP api_requests_total HTTP requests answered, by route and status.\n"
                    "# TYPE api_requests_total counter\n");
    for (int r = 0; r < R_COUNT; r++)
        for (size_t c = 0; c <= NCODES; c++) {
            uint64_t n = atomic_load_explicit(&requests[r][c], memory_order_relaxed);
            if (n == 0)
                continue;
            if (c < NCODES)
                buf_printf(out, "api_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
                           route_names[r], codes[c], (unsigned long long)n);
            else
                buf_printf(out, "api_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                           route_names[r], (unsigned long long)n);
        }
    buf_printf(out, "# HELP api_request_duration_seconds Time to answer a request.\n"
                    "# TYPE api_request_duration_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= NBOUNDS; b++) {
        cumulative += atomic_load_explicit(&buckets[b], memory_order_relaxed);
        if (b < NBOUNDS)
            buf_printf(out, "api_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       (double)bounds_us[b] / 1e6, (unsigned long long)cumulative);
        else
            buf_printf(out, "api_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                       (unsigned long long)cumulative);
    }
    buf_printf(out, "api_request_duration_seconds_sum %.6f\napi_request_duration_seconds_count %llu\n",
               (double)atomic_load(&latency_sum_us) / 1e6, (unsigned long long)cumulative);
    buf_printf(out, "# HELP api_sqlite_queries_total SQL statements run against SQLite.\n"
                    "# TYPE api_sqlite_queries_total counter\n"
                    "api_sqlite_queries_total %llu\n"
                    "# HELP api_rate_limited_total Requests refused with 429.\n"
                    "# TYPE api_rate_limited_total counter\n"
                    "api_rate_limited_total %llu\n",
               (unsigned long long)sqlite_queries, (unsigned long long)stats_rate_limited_total());
}
