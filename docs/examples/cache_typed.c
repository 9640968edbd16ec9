/*
 * cache_typed.c — typed values, TTL choices and RK_ERR_TYPE
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
    rk_status st;

    st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_cache_new(client,
                          &(rk_cache_options){ .ns = "catalog", .default_ttl_ms = 60000 },
                          &cache);
    if (st != RK_OK)
        goto out;

    /* No TTL given: the handle's default_ttl_ms (60 s here). */
    rk_cache_set_i64(cache, "stock:42", 17, NULL);
    /* Per call, in milliseconds; ttl_ms wins over ttl_s. */
    rk_cache_set_double(cache, "price:42", 19.99, &(rk_cache_set_options){ .ttl_ms = 1500 });
    /* Bytes, NULs included. */
    static const unsigned char blob[] = { 0x00, 0x01, 0x02, 0xff };
    rk_cache_set(cache, "thumb:42", blob, sizeof blob, &(rk_cache_set_options){ .ttl_s = 3600 });
    /* Never expires: must be asked for. */
    st = rk_cache_set_str(cache, "currency", "EUR", &(rk_cache_set_options){ .ttl_s = RK_TTL_NONE });
    if (st != RK_OK)
        goto out;

    int64_t stock;
    double price;
    if (rk_cache_get_i64(cache, "stock:42", &stock) == RK_OK)
        printf("stock:42 = %" PRId64 "\n", stock);
    if (rk_cache_get_double(cache, "price:42", &price) == RK_OK)
        printf("price:42 = %.2f\n", price);

    void *bytes = NULL;
    size_t len = 0;
    if (rk_cache_get(cache, "thumb:42", &bytes, &len) == RK_OK)
        printf("thumb:42 = %zu bytes\n", len);
    rk_free(bytes);

    /* Reading a value as the wrong type is an error, not garbage. */
    char *text = NULL;
    st = rk_cache_get_str(cache, "stock:42", &text);
    printf("stock:42 as a string: %s (%s)\n", rk_strerror(st), rk_last_error());

    int64_t ttl_ms;
    if (rk_cache_ttl_ms(cache, "currency", &ttl_ms) == RK_OK && ttl_ms == RK_TTL_NONE)
        printf("currency never expires\n");
    if (rk_cache_ttl_ms(cache, "stock:42", &ttl_ms) == RK_OK)
        printf("stock:42 expires in %" PRId64 " ms\n", ttl_ms);

    st = rk_cache_exists(cache, "nope");
    printf("nope: %s\n", rk_strerror(st)); /* miss */

    rk_cache_delete(cache, "stock:42");
    rk_cache_delete(cache, "price:42");
    rk_cache_delete(cache, "thumb:42");
    st = rk_cache_delete(cache, "currency");

out:
    if (rk_status_is_error(st))
        fprintf(stderr, "redis: %s: %s\n", rk_strerror(st), rk_last_error());
    rk_cache_free(cache);
    rk_client_free(client);
    return rk_status_is_error(st) ? 1 : 0;
}
