/*
 * handlers_ops.c — what operators look at: the status page and its data,
 * the health check, Prometheus metrics.
 *
 * None of these touch SQLite, and only /healthz and /v1/status talk to
 * Redis (one PING, one INFO), each within the client's command timeout,
 * so they answer quickly while Redis is down — which is when they matter.
 */
#include <string.h>

#include "handlers.h"
#include "status_page.h" /* generated from status.html by CMakeLists.txt */

static const char *circuit_name(rk_circuit_state c)
{
    return c == RK_CIRCUIT_OPEN ? "open" : c == RK_CIRCUIT_HALF_OPEN ? "half-open" : "closed";
}

/* "up", "degraded" (answers, but too slowly) or "down". */
static const char *redis_health(struct app *app)
{
    rk_status st = rk_client_ping(app->redis);
    return st == RK_OK ? "up" : st == RK_ERR_TIMEOUT ? "degraded" : "down";
}

void h_index(struct app *app, const struct http_request *rq, struct http_response *rs,
             const char *arg)
{
    (void)app, (void)rq, (void)arg;
    rs->status = 200;
    rs->content_type = "text/html; charset=utf-8";
    buf_append(&rs->body, (const char *)status_page_html, sizeof status_page_html);
    /* The page runs only its own inline script and talks only to us. */
    resp_header(rs, "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'; img-src 'self' data:");
}

void h_healthz(struct app *app, const struct http_request *rq, struct http_response *rs,
               const char *arg)
{
    (void)rq, (void)arg;
    const char *redis = redis_health(app);
    resp_json(rs, 200,
              json_pack("{s:s, s:s, s:s, s:b}", "status", strcmp(redis, "up") ? "degraded" : "ok",
                        "redis", redis, "circuit", circuit_name(rk_client_circuit(app->redis)),
                        "cache", app->cfg.cache_enabled));
}

void h_metrics(struct app *app, const struct http_request *rq, struct http_response *rs,
               const char *arg)
{
    char *text = NULL;
    size_t len = 0;
    (void)rq, (void)arg;
    if (rk_metrics_prometheus(app->redis, &text, &len) != RK_OK) {
        resp_problem(rs, 500, "internal", "Internal error", "out of memory");
        return;
    }
    rs->status = 200;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
    buf_append(&rs->body, text, len);
    rk_free(text);
    stats_prometheus(&rs->body, db_queries(app->db));
}

/* The status page's data, polled every 2 s: the counters now, and their
 * last 60 samples (stats.c), from which the page draws its charts. */
void h_status(struct app *app, const struct http_request *rq, struct http_response *rs,
              const char *arg)
{
    (void)rq, (void)arg;
    rk_cache_metrics cm = { 0 };
    uint64_t hits, misses, degraded;
    rk_cache_metrics_get(app->cache, &cm);
    stats_cache_totals(app, &hits, &misses, &degraded);
    rk_memory_info mem;
    rk_status mst = rk_server_memory(app->redis, &mem);
    json_t *redis = json_pack("{s:s, s:s}", "status",
                              mst == RK_OK ? "up" : mst == RK_ERR_TIMEOUT ? "degraded" : "down",
                              "circuit", circuit_name(rk_client_circuit(app->redis)));
    if (redis && mst == RK_OK)
        json_object_update_new(redis, json_pack("{s:I, s:I, s:s, s:I, s:s}", "used_memory",
                                                (json_int_t)mem.used_memory, "maxmemory",
                                                (json_int_t)mem.maxmemory, "policy",
                                                mem.maxmemory_policy, "evicted_keys",
                                                (json_int_t)mem.evicted_keys, "version",
                                                mem.redis_version));
    resp_json(rs, 200,
              json_pack("{s:{s:b, s:I, s:I, s:I, s:I}, s:{s:I, s:I}, s:I, s:I, s:o, s:o}",
                        "cache", "enabled", app->cfg.cache_enabled, "hits", (json_int_t)hits,
                        "misses", (json_int_t)misses, "stale", (json_int_t)cm.stale,
                        "degraded", (json_int_t)degraded,
                        "sqlite", "queries", (json_int_t)db_queries(app->db),
                        "saved", (json_int_t)hits, /* each hit: a query not run */
                        "requests", (json_int_t)stats_requests_total(),
                        "rate_limited", (json_int_t)stats_rate_limited_total(),
                        "redis", redis, "history", stats_history_json()));
}
