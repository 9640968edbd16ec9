/*
 * cache_tags.c — tagged sets, tag invalidation, namespace clear. STUB.
 */
#include <redkit/cache.h>

#include "cache.h"
#include "error.h"

rk_status rk__cache_store_tagged(rk_cache *c, const rk__key *k, const rk__encoded *v, int64_t ttl_ms,
                                 const char *const *tags, size_t ntags)
{
    (void)c, (void)k, (void)v, (void)ttl_ms, (void)tags, (void)ntags;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}

rk_status rk_cache_clear(rk_cache *cache, uint64_t *cursor, size_t *removed)
{
    (void)cache, (void)cursor, (void)removed;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}

rk_status rk_cache_invalidate_tag(rk_cache *cache, const char *tag, size_t *removed)
{
    (void)cache, (void)tag, (void)removed;
    return rk__fail(RK_ERR_INVALID, "not implemented yet");
}
