/*
 * stats.c — the service's own metrics, next to redkit's in GET /metrics.
 *
 * Requests are counted by route (the route's pattern, never the raw path:
 * ids would make one series per user) and status code; latency goes into
 * a fixed-bucket histogram. Everything is a relaxed atomic counter bumped
 * by the HTTP threads; a scrape reads them without stopping anyone.
 *
 * For the status page, a sampler thread also records the counters every
 * SAMPLE_MS in a ring of HISTORY samples, so that the page shows the last
 * two minutes the moment it opens, without keeping state of its own.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

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

void stats_cache_totals(struct app *app, uint64_t *hits, uint64_t *misses, uint64_t *degraded)
{
    rk_cache_metrics cm = { 0 };
    rk_apikeys_metrics km = { 0 };
    rk_cache_metrics_get(app->cache, &cm);
    rk_apikeys_metrics_get(app->keys, &km);
    /* A key answered from memory or Redis is a lookup SQLite did not run;
     * every lookup callback is one it did. */
    *hits = cm.hits + km.process_hits + km.redis_hits;
    *misses = cm.misses + km.lookups;
    if (degraded)
        *degraded = cm.degraded + km.degraded;
}

/* ---- history for the status page ------------------------------------------ */

#define SAMPLE_MS 2000
#define HISTORY 60

struct sample {
    int64_t t_ms; /* wall clock */
    uint64_t hits, misses, queries, limited, used_memory;
    int64_t sessions; /* live sessions; -1 = unknown (Redis down) */
    bool redis_up;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop;
    struct sample ring[HISTORY];
    int next, count;
} hist = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static void take_sample(struct app *app)
{
    struct sample s = { 0 };
    rk_memory_info mem;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s.t_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    stats_cache_totals(app, &s.hits, &s.misses, NULL);
    s.queries = db_queries(app->db);
    s.limited = stats_rate_limited_total();
    s.redis_up = rk_server_memory(app->redis, &mem) == RK_OK; /* one INFO */
    s.used_memory = s.redis_up ? mem.used_memory : 0;
    uint64_t live = 0; /* a SCAN of the sessions' namespace: fine at a demo's scale */
    rk_status st = s.redis_up ? rk_sessions_count(app->sessions, &live) : RK_ERR_UNAVAILABLE;
    s.sessions = st == RK_OK ? (int64_t)live : -1;
    if (s.redis_up && st != RK_OK)
        log_msg(LOG_WARN, "status page: live sessions not counted: %s: %s", rk_strerror(st),
                rk_last_error());
    pthread_mutex_lock(&hist.lock);
    hist.ring[hist.next] = s;
    hist.next = (hist.next + 1) % HISTORY;
    if (hist.count < HISTORY)
        hist.count++;
    pthread_mutex_unlock(&hist.lock);
}

static void *sampler(void *arg)
{
    struct app *app = arg;
    pthread_mutex_lock(&hist.lock);
    while (!hist.stop) {
        pthread_mutex_unlock(&hist.lock);
        take_sample(app);
        pthread_mutex_lock(&hist.lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SAMPLE_MS / 1000;
        while (!hist.stop && pthread_cond_timedwait(&hist.wake, &hist.lock, &until) == 0)
            ; /* woken without stop: wait out the interval */
    }
    pthread_mutex_unlock(&hist.lock);
    return NULL;
}

int stats_sampler_start(struct app *app)
{
    hist.stop = false;
    if (pthread_create(&hist.thread, NULL, sampler, app) != 0)
        return -1;
    hist.running = true;
    return 0;
}

void stats_sampler_stop(void)
{
    if (!hist.running)
        return;
    pthread_mutex_lock(&hist.lock);
    hist.stop = true;
    pthread_cond_signal(&hist.wake);
    pthread_mutex_unlock(&hist.lock);
    pthread_join(hist.thread, NULL);
    hist.running = false;
}

json_t *stats_history_json(void)
{
    json_t *out = json_array();
    pthread_mutex_lock(&hist.lock);
    for (int i = 0; out && i < hist.count; i++) {
        const struct sample *s = &hist.ring[(hist.next - hist.count + i + HISTORY) % HISTORY];
        json_array_append_new(out, json_pack("[I, I, I, I, I, I, b, I]", (json_int_t)s->t_ms,
                                             (json_int_t)s->hits, (json_int_t)s->misses,
                                             (json_int_t)s->queries, (json_int_t)s->limited,
                                             (json_int_t)s->used_memory, s->redis_up,
                                             (json_int_t)s->sessions));
    }
    pthread_mutex_unlock(&hist.lock);
    return out;
}
