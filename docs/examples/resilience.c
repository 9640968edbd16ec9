/*
 * resilience.c — a client that reports its own health, and a cache read
 * that falls back to the source of truth when Redis cannot be asked
 * (docs/resilience.md).
 *
 * Run: REDIS_URL=redis://localhost:6379 ./resilience
 * Pointed at a Redis that is down, it still serves both reads from the
 * "database", and its log shows the reconnect schedule at work.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

/* Events arrive on the thread whose call caused them, possibly on several
 * threads at once, with no redkit lock held: keep them short and
 * thread-safe. Here: count circuit openings for a health endpoint. */
static atomic_int circuit_openings;

static void on_redis_event(const rk_event *e, void *user)
{
    (void)user;
    if (e->type == RK_EVENT_CIRCUIT_OPEN)
        atomic_fetch_add(&circuit_openings, 1);
}

/* One line per event at or above log_level; never a secret in it. */
static void log_redis(rk_log_level level, const char *message, void *user)
{
    (void)user;
    static const char *const names[] = {"?", "debug", "info", "warn", "error"};
    fprintf(stderr, "redis %s: %s\n", names[level], message);
}

/* Stand-in for the real database query. Its result is allocated with
 * rk_malloc(), so that every value cached() returns has one owner rule —
 * rk_free() — whether it came from the cache or from the database. */
static char *load_from_db(const char *key)
{
    char *value = rk_malloc(64);
    if (value != NULL)
        snprintf(value, 64, "{\"key\":\"%s\"}", key);
    return value;
}

/* The value of key, from the cache when possible; NULL only when the
 * database fails too. *from_cache says where it came from; either way the
 * caller frees it with rk_free(). */
static char *cached(rk_cache *cache, const char *key, int *from_cache)
{
    char *value = NULL;
    rk_status st = rk_cache_get_str(cache, key, &value);
    *from_cache = st == RK_OK;
    if (st == RK_OK)
        return value;
    if (!rk_status_is_miss(st)) /* a real error: auth, server, type, ... */
        fprintf(stderr, "cache get: %s: %s\n", rk_strerror(st), rk_last_error());

    value = load_from_db(key);
    /* Write back on a real miss only. RK_DEGRADED means Redis could not be
     * asked (down, circuit open, too slow): a SET would fail the same way. */
    if (value != NULL && st == RK_MISS) {
        st = rk_cache_set_str(cache, key, value, &(rk_cache_set_options){.ttl_s = 60});
        if (st != RK_OK)
            fprintf(stderr, "cache set: %s: %s\n", rk_strerror(st), rk_last_error());
    }
    return value;
}

int main(void)
{
    rk_client *client = NULL;
    rk_cache *cache = NULL;

    rk_status st = rk_client_new(&(rk_client_options){
                                     .url = getenv("REDIS_URL"),
                                     .command_timeout_ms = 200,
                                     .connect_timeout_ms = 300,
                                     .reconnect_base_ms = 50,    /* the defaults, */
                                     .reconnect_max_ms = 5000,   /* spelled out */
                                     .breaker_threshold = 5,
                                     .on_event = on_redis_event,
                                     .log = log_redis,
                                     .log_level = RK_LOG_INFO,   /* default: WARN */
                                 },
                                 &client);
    if (st == RK_OK)
        st = rk_cache_new(client, NULL, &cache);
    if (st != RK_OK) {
        fprintf(stderr, "redis config: %s: %s\n", rk_strerror(st), rk_last_error());
        return 1;
    }

    for (int i = 0; i < 2; i++) { /* a miss, then a hit */
        int from_cache;
        char *value = cached(cache, "resilience:42", &from_cache);
        printf("%s (%s)\n", value ? value : "(none)", from_cache ? "cache" : "database");
        rk_free(value); /* one rule, wherever the value came from */
    }
    rk_cache_delete(cache, "resilience:42");

    rk_client_stats stats;
    rk_client_stats_get(client, &stats);
    printf("requests %llu, connects %llu, reconnects %llu, timeouts %llu, fast-failed %llu, "
           "circuit %s, circuit openings seen %d\n",
           (unsigned long long)stats.requests, (unsigned long long)stats.connects,
           (unsigned long long)stats.reconnects, (unsigned long long)stats.timeouts,
           (unsigned long long)stats.fast_failed,
           rk_client_circuit(client) == RK_CIRCUIT_CLOSED ? "closed" : "not closed",
           atomic_load(&circuit_openings));

    rk_cache_free(cache);
    rk_client_free(client);
    return 0;
}
