/*
 * cache_raw.c — a raw cache shares plain values with other Redis clients:
 * what it writes, redis-cli reads, and INCR works on its integers
 * (docs/cache.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <redkit/redkit.h>

int main(void)
{
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    rk_reply *reply = NULL;
    char key[256];
    size_t key_len;
    int64_t hits = 0;
    rk_status st;

    st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_cache_new(client, &(rk_cache_options){ .ns = "stats", .raw = true }, &cache);

    /* Stored as the text "0": `redis-cli GET stats:hits` prints 0. */
    if (st == RK_OK)
        st = rk_cache_set_i64(cache, "hits", 0, &(rk_cache_set_options){ .ttl_s = 600 });

    /* Anyone may now INCR it — here through the escape hatch. */
    if (st == RK_OK)
        st = rk_key_build(client, "stats", "hits", key, sizeof key, &key_len);
    if (st == RK_OK) {
        const char *argv[] = { "INCRBY", key, "5" };
        st = rk_client_command(client, 3, argv, NULL, &reply);
        rk_reply_free(reply);
    }

    /* The typed getter parses the text; non-numeric text is RK_ERR_TYPE. */
    if (st == RK_OK)
        st = rk_cache_get_i64(cache, "hits", &hits);
    if (st == RK_OK)
        printf("%s = %" PRId64 "\n", key, hits); /* stats:hits = 5 */

    if (st == RK_OK)
        st = rk_cache_delete(cache, "hits");
    if (st != RK_OK)
        fprintf(stderr, "redis: %s: %s\n", rk_strerror(st), rk_last_error());
    rk_cache_free(cache);
    rk_client_free(client);
    return st == RK_OK ? 0 : 1;
}
