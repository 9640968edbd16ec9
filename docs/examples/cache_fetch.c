/*
 * cache_fetch.c — read-through caching with rk_cache_fetch()
 * (docs/cache.md, "Get-or-compute").
 *
 * Run: REDIS_URL=redis://localhost:6379 ./cache_fetch
 *
 * The "database" is a function that takes 50 ms. Eight threads ask for
 * the same product at once: it is loaded once, and all eight get it. The
 * next read is a hit; a product that does not exist is cached briefly as
 * "not found"; and a failing database is covered by the stale value.
 * Exits 0 when all of that happened.
 */
/* nanosleep() is POSIX, not C11: ask for it, so that the README's
 * `cc -std=c11 -Wall -Wextra -Werror` compiles this file as it is. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redkit/redkit.h>

static atomic_int db_queries;
static atomic_bool db_down;

/* The compute callback: load key from the database. It runs on the
 * calling thread, once per key at a time however many threads ask. */
static rk_status load_product(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&db_queries, 1);
    nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL); /* a slow query */
    if (atomic_load(&db_down))
        return RK_ERR_UNAVAILABLE; /* the caller gets this, or the stale value */

    if (strcmp(key, "product:404") == 0) {
        /* Cache "not found" too, for less time than a real product. */
        rk_cache_computed_set_ttl_ms(out, 10000);
        return rk_cache_computed_set(out, "null", 4);
    }
    char json[64];
    int n = snprintf(json, sizeof json, "{\"key\":\"%s\",\"price\":42}", key);
    return rk_cache_computed_set(out, json, (size_t)n);
}

/* Fresh for 60 s; then served stale for up to 10 more minutes while one
 * caller refreshes it, or while the database fails. */
static const rk_cache_fetch_options product_opts = {.ttl_s = 60, .stale_ms = 600000};

static rk_cache *cache;

static void *reader(void *arg)
{
    (void)arg;
    void *value = NULL;
    size_t len;
    rk_status st = rk_cache_fetch(cache, "product:1", load_product, NULL, &product_opts, &value, &len, NULL);
    if (st != RK_OK)
        fprintf(stderr, "fetch: %s: %s\n", rk_strerror(st), rk_last_error());
    rk_free(value);
    return NULL;
}

static int show(const char *key)
{
    void *value = NULL;
    size_t len = 0;
    rk_cache_fetch_info info;
    rk_status st = rk_cache_fetch(cache, key, load_product, NULL, &product_opts, &value, &len, &info);
    if (st != RK_OK) {
        fprintf(stderr, "fetch %s: %s: %s\n", key, rk_strerror(st), rk_last_error());
        return 1;
    }
    printf("%s = %.*s (%s%s%s)\n", key, (int)len, (const char *)value,
           info.computed ? "computed" : "from the cache", info.stale ? ", stale" : "",
           info.degraded ? ", redis down" : "");
    rk_free(value);
    return 0;
}

int main(void)
{
    rk_client *client = NULL;
    rk_status st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_cache_new(client, &(rk_cache_options){.ns = "shop"}, &cache);
    if (st != RK_OK) {
        fprintf(stderr, "redis config: %s: %s\n", rk_strerror(st), rk_last_error());
        return 1;
    }
    rk_cache_delete(cache, "product:1"); /* start cold */
    rk_cache_delete(cache, "product:404");

    /* A stampede: eight threads, one database query. */
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, reader, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    printf("8 concurrent readers, %d database query\n", atomic_load(&db_queries));

    int failed = show("product:1");   /* a hit */
    failed |= show("product:404");    /* computed: "not found", cached 10 s */

    /* Serve-stale: a value fresh for 100 ms only, then the database fails
     * once the value is past its fresh life. The stale value is served,
     * flagged, and the error is in rk_last_error(). */
    const rk_cache_fetch_options brief = {.ttl_ms = 100, .stale_ms = 600000};
    void *value = NULL;
    size_t len;
    rk_cache_fetch_info info;
    rk_cache_delete(cache, "product:2");
    st = rk_cache_fetch(cache, "product:2", load_product, NULL, &brief, &value, &len, &info);
    rk_free(value);
    nanosleep(&(struct timespec){0, 150 * 1000000L}, NULL);
    atomic_store(&db_down, true);
    st = rk_cache_fetch(cache, "product:2", load_product, NULL, &brief, &value, &len, &info);
    if (st == RK_OK && info.stale)
        printf("database down: served the stale %.*s (%s)\n", (int)len, (const char *)value, rk_last_error());
    else
        failed = 1;
    rk_free(value);
    printf("%d database queries in all\n", atomic_load(&db_queries));

    rk_cache_delete(cache, "product:1");
    rk_cache_delete(cache, "product:2");
    rk_cache_delete(cache, "product:404");
    rk_cache_free(cache);
    rk_client_free(client);
    return failed || atomic_load(&db_queries) != 4 ? 1 : 0;
}
