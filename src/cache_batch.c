/*
 * cache_batch.c — multi-get and multi-set. STUB.
 */
#include <redkit/cache.h>

#include "cache.h"
#include "error.h"

rk_status rk_cache_mget(rk_cache *cache, const char *const *keys, size_t n, rk_cache_result *results)
{
    (void)cache, (void)keys, (void)n, (void)results;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}

void rk_cache_results_free(rk_cache_result *results, size_t n) { (void)results, (void)n; }

rk_status rk_cache_mset(rk_cache *cache, const rk_cache_entry *entries, size_t n, const rk_set_options *opts,
                        rk_status *statuses)
{
    (void)cache, (void)entries, (void)n, (void)opts, (void)statuses;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}
