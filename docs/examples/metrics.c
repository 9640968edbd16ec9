/*
 * metrics.c — watching a cache: its counters, the latency of Redis, the
 * Prometheus text a /metrics endpoint would serve, and the server's memory
 * with the start-up check that warns when Redis will not evict
 * (docs/metrics.md).
 *
 * Run: REDIS_URL=redis://localhost:6379 ./metrics
 * Against a Redis with the default settings (no maxmemory, noeviction) it
 * logs the two memory warnings once, then carries on: they are advice,
 * not errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

static void log_redis(rk_log_level level, const char *message, void *user)
{
    (void)user;
    fprintf(stderr, "redis %s: %s\n", level >= RK_LOG_WARN ? "warning" : "info", message);
}

/* Start-up: is this Redis set up to be a cache? Logs once per condition
 * through the client's log callback, and prints a status line. A failure here (Redis down, INFO refused by an ACL) is not fatal:
 * the service runs without the check. */
static void check_server(rk_client *client)
{
    rk_memory_info mem;
    rk_status st = rk_server_memory(client, &mem);
    if (st != RK_OK) {
        fprintf(stderr, "memory check skipped: %s: %s\n", rk_strerror(st), rk_last_error());
        return;
    }
    char limit[32] = "none";
    if (mem.maxmemory)
        snprintf(limit, sizeof limit, "%.0f MiB", (double)mem.maxmemory / (1 << 20));
    printf("redis %s: %.1f MiB used, maxmemory %s, policy %s, %llu evicted, "
           "server hit ratio %.1f%%\n",
           mem.redis_version, (double)mem.used_memory / (1 << 20), limit, mem.maxmemory_policy,
           (unsigned long long)mem.evicted_keys, 100.0 * mem.hit_ratio);
}

int main(void)
{
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    rk_client_options opts = {.url = getenv("REDIS_URL"), .log = log_redis};
    rk_status st = rk_client_new(&opts, &client);
    if (st == RK_OK)
        st = rk_cache_new(client, &(rk_cache_options){.ns = "pages"}, &cache);
    if (st != RK_OK) {
        fprintf(stderr, "setup: %s: %s\n", rk_strerror(st), rk_last_error());
        rk_client_free(client);
        return 1;
    }
    check_server(client); /* after rk_cache_new: the warning is for caches */

    /* Some traffic: 20 pages cached, 30 reads of which 10 miss. */
    char key[32];
    for (int i = 0; i < 20 && st == RK_OK; i++) {
        snprintf(key, sizeof key, "/page/%d", i);
        st = rk_cache_set_str(cache, key, "<html>...</html>", &(rk_cache_set_options){.ttl_s = 60});
    }
    for (int i = 0; i < 30 && st == RK_OK; i++) {
        char *page = NULL;
        snprintf(key, sizeof key, "/page/%d", i);
        rk_status got = rk_cache_get_str(cache, key, &page);
        rk_free(page);
        if (rk_status_is_error(got))
            st = got;
    }
    if (st != RK_OK) {
        fprintf(stderr, "traffic: %s: %s\n", rk_strerror(st), rk_last_error());
        rk_cache_free(cache);
        rk_client_free(client);
        return 1;
    }

    /* The handle's counters: what a health page or a log line shows. */
    rk_cache_metrics m;
    rk_cache_metrics_get(cache, &m);
    printf("cache pages: %llu hits, %llu misses (hit ratio %.0f%%), %llu sets, "
           "%llu bytes stored, %llu errors (%llu timeouts)\n",
           (unsigned long long)m.hits, (unsigned long long)m.misses, 100.0 * m.hit_ratio,
           (unsigned long long)m.sets, (unsigned long long)m.bytes_stored,
           (unsigned long long)m.errors_total, (unsigned long long)m.errors[RK_ERR_TIMEOUT]);

    /* How long Redis took, per round trip. */
    rk_latency lat;
    rk_client_latency_get(client, &lat);
    printf("redis latency over %llu requests: p50 %llu us, p99 %llu us, max %llu us\n",
           (unsigned long long)lat.count, (unsigned long long)lat.p50_us,
           (unsigned long long)lat.p99_us, (unsigned long long)lat.max_us);

    /* The body of GET /metrics (Content-Type: text/plain; version=0.0.4).
     * Here only the cache's hit counters are printed. */
    char *text = NULL;
    size_t len = 0;
    st = rk_metrics_prometheus(client, &text, &len);
    if (st == RK_OK) {
        printf("prometheus text: %zu bytes, among them:\n", len);
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
            if (strncmp(line, "redkit_cache_hits_total", 23) == 0 ||
                strncmp(line, "redkit_cache_misses_total", 25) == 0)
                printf("  %s\n", line);
        rk_free(text);
    } else {
        fprintf(stderr, "metrics: %s: %s\n", rk_strerror(st), rk_last_error());
    }

    rk_cache_free(cache); /* before the client: it is registered there */
    rk_client_free(client);
    return st == RK_OK && m.hits == 20 && m.misses == 10 ? 0 : 1;
}
