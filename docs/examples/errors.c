/*
 * errors.c — handling rk_status in a request path: a cache read that
 * degrades to the database when Redis is unavailable (RK_DEGRADED) or
 * answers with an error, and a write that is retried only because it is
 * safe to repeat (docs/status.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

/* Stand-in for the real database query. */
static char *load_user_from_db(const char *id)
{
    char *json = malloc(64);
    if (json != NULL)
        snprintf(json, 64, "{\"id\":\"%s\"}", id);
    return json;
}

/* Returns a malloc'd JSON document, from the cache when possible. */
static char *get_user(rk_cache *cache, const char *id)
{
    char key[64];
    char *cached = NULL;

    snprintf(key, sizeof key, "user:%s", id);
    rk_status st = rk_cache_get_str(cache, key, &cached);
    if (st == RK_OK) {
        /* Values from redkit are released with rk_free(), so copy into
         * memory the rest of the program frees with free(). */
        size_t n = strlen(cached) + 1;
        char *copy = malloc(n);
        if (copy != NULL)
            memcpy(copy, cached, n);
        rk_free(cached);
        return copy;
    }
    if (st == RK_DEGRADED) {
        /* Redis could not be asked (down, circuit open, too slow): serve
         * from the database and skip the write-back, which would only fail
         * the same way. The message never holds a password. */
        fprintf(stderr, "cache get %s: %s\n", key, rk_last_error());
        return load_user_from_db(id);
    }
    if (st != RK_MISS) {
        /* Redis answered, but with an error (auth, server, type): log it
         * and serve from the database. */
        fprintf(stderr, "cache get %s: %s: %s\n", key, rk_strerror(st), rk_last_error());
    }

    char *json = load_user_from_db(id);
    if (json == NULL)
        return NULL;

    /* SET is idempotent, so one retry of a retryable failure is safe. */
    const rk_cache_set_options ttl = { .ttl_s = 300 };
    st = rk_cache_set_str(cache, key, json, &ttl);
    if (rk_status_is_retryable(st))
        st = rk_cache_set_str(cache, key, json, &ttl);
    if (st != RK_OK)
        fprintf(stderr, "cache set %s: %s: %s\n", key, rk_strerror(st), rk_last_error());
    return json;
}

int main(void)
{
    rk_client *client = NULL;
    rk_cache *cache = NULL;

    rk_status st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_cache_new(client, NULL, &cache);
    if (st != RK_OK) {
        /* Configuration errors (RK_ERR_INVALID, ...) are worth stopping for. */
        fprintf(stderr, "redis: %s: %s\n", rk_strerror(st), rk_last_error());
        return 1;
    }
    for (int i = 0; i < 2; i++) { /* a miss, then a hit */
        char *user = get_user(cache, "123");
        printf("%s\n", user ? user : "(no user)");
        free(user);
    }
    rk_cache_delete(cache, "user:123");
    rk_cache_free(cache);
    rk_client_free(client);
    return 0;
}
