/*
 * cache_quickstart.c — the seed's three cache calls in C, exactly as shown
 * in README.md and docs/cache.md:
 *
 *     await cache.set('user:123', userData, { ttl: 300 });
 *     const user = await cache.get('user:123');
 *     await cache.delete('user:123');
 *
 * Run: REDIS_URL=redis://localhost:6379 ./cache_quickstart
 */
#include <stdio.h>
#include <stdlib.h>

#include <redkit/redkit.h>

int main(void)
{
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    char *user = NULL;

    /* No connection yet: the first command opens one. NULL URL = 127.0.0.1:6379. */
    rk_status st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_cache_new(client, NULL, &cache); /* namespace "cache" */

    /* cache.set('user:123', userData, { ttl: 300 }) -> Redis key "cache:user:123" */
    if (st == RK_OK)
        st = rk_cache_set_str(cache, "user:123", "{\"id\":123,\"name\":\"Ada\"}",
                              &(rk_cache_set_options){ .ttl_s = 300 });

    /* const user = await cache.get('user:123') */
    if (st == RK_OK)
        st = rk_cache_get_str(cache, "user:123", &user);
    if (st == RK_OK) {
        printf("user:123 = %s\n", user);
        rk_free(user); /* values from redkit are freed with rk_free() */
    }

    /* await cache.delete('user:123'): RK_OK whether or not the key was there */
    if (st == RK_OK)
        st = rk_cache_delete(cache, "user:123");

    /* RK_MISS from the get would mean "not cached": an answer, not an error.
     * rk_strerror() leaves rk_last_error() alone: both in one call is fine. */
    if (st != RK_OK)
        fprintf(stderr, "redis: %s: %s\n", rk_strerror(st), rk_last_error());
    rk_cache_free(cache);
    rk_client_free(client);
    return st == RK_OK ? 0 : 1;
}
