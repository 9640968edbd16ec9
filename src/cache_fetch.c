/*
 * cache_fetch.c — get-or-compute (rk_cache_fetch). STUB: being written.
 */
#include <redkit/cache.h>

#include "cache.h"
#include "error.h"

rk_status rk__fetch_state_new(rk_cache *c)
{
    (void)c;
    return RK_OK;
}

void rk__fetch_state_free(rk_cache *c) { (void)c; }

rk_status rk_computed_set(rk_computed *out, const void *value, size_t len)
{
    (void)out, (void)value, (void)len;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}

rk_status rk_computed_set_ttl_ms(rk_computed *out, int64_t ttl_ms)
{
    (void)out, (void)ttl_ms;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}

rk_status rk_cache_fetch(rk_cache *cache, const char *key, rk_compute_fn compute, void *ctx,
                         const rk_fetch_options *opts, void **value, size_t *len, rk_fetch_info *info)
{
    (void)cache, (void)key, (void)compute, (void)ctx, (void)opts, (void)value, (void)len, (void)info;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}
