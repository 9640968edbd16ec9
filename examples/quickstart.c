/*
 * quickstart.c — redkit's cache in one page: connect, set a value with a
 * TTL, read it back, delete it.
 *
 *     REDIS_URL=redis://localhost:6379 ./quickstart
 *
 * REDIS_URL unset means 127.0.0.1:6379. Every redkit call returns an
 * rk_status; RK_MISS is an answer ("no such key"), not an error. Values
 * that redkit returns are freed with rk_free().
 */
#include <stdio.h>
#include <stdlib.h>

#include <redkit/redkit.h>

int main(void)
{
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    char *user = NULL;
    int64_t ttl_ms = 0;
    int exit_code = 1;
    rk_status st;

    /* No connection is opened yet: the first command opens one. */
    st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st != RK_OK)
        goto fail;
    st = rk_cache_new(client, NULL, &cache); /* namespace "cache" */
    if (st != RK_OK)
        goto fail;

    /* Writes the Redis key "cache:user:123", expiring in 5 minutes. */
    st = rk_cache_set_str(cache, "user:123", "{\"id\":123,\"name\":\"Ada\"}",
                          &(rk_cache_set_options){ .ttl_s = 300 });
    if (st != RK_OK)
        goto fail;
    printf("set  user:123\n");

    st = rk_cache_get_str(cache, "user:123", &user);
    if (st != RK_OK)
        goto fail;
    printf("get  user:123 -> %s\n", user);

    st = rk_cache_ttl_ms(cache, "user:123", &ttl_ms);
    if (st != RK_OK)
        goto fail;
    printf("ttl  user:123 -> %lld s\n", (long long)((ttl_ms + 500) / 1000));

    st = rk_cache_delete(cache, "user:123");
    if (st != RK_OK)
        goto fail;
    printf("del  user:123\n");

    rk_free(user);
    user = NULL;
    st = rk_cache_get_str(cache, "user:123", &user);
    if (st == RK_OK) {
        fprintf(stderr, "quickstart: user:123 is still there after delete\n");
        goto done;
    }
    if (st != RK_MISS)
        goto fail;
    printf("get  user:123 -> miss, as expected\n");

    exit_code = 0;
    goto done;

fail:
    /* rk_last_error() is only valid until the next redkit call: print it
     * before freeing anything. It never contains the password. */
    fprintf(stderr, "quickstart: %s: %s\n", rk_strerror(st), rk_last_error());
done:
    rk_free(user);
    rk_cache_free(cache);
    rk_client_free(client);
    return exit_code;
}
