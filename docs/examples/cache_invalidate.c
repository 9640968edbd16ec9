/*
 * cache_invalidate.c — batches, tags and namespace clear (docs/cache.md,
 * "Batches" and "Invalidation").
 *
 * Caches three product pages in one round trip, tagged by category; reads
 * them back (and one absent key) in one round trip; drops every page of
 * one category with its tag; then clears the whole namespace, resuming
 * until done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

int main(void)
{
    rk_client *client = NULL;
    rk_cache *pages = NULL;
    rk_status st;

    st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_cache_new(client, &(rk_cache_options){ .ns = "pages" }, &pages);
    if (st != RK_OK)
        goto out;

    /* Multi-set: one pipeline, the same TTL and tags for every entry. */
    const char *shoes[] = { "category:shoes" };
    rk_cache_entry boots[] = {
        { .key = "product:1", .value = "<h1>Boots</h1>", .len = 14 },
        { .key = "product:2", .value = "<h1>Sandals</h1>", .len = 16 },
    };
    rk_status each[2];
    st = rk_cache_mset(pages, boots, 2,
                       &(rk_cache_set_options){ .ttl_s = 600, .tags = shoes, .ntags = 1 }, each);
    if (st != RK_OK)
        goto out;

    const char *hats[] = { "category:hats" };
    st = rk_cache_set_str(pages, "product:3", "<h1>Beret</h1>",
                          &(rk_cache_set_options){ .ttl_s = 600, .tags = hats, .ntags = 1 });
    if (st != RK_OK)
        goto out;

    /* Multi-get: one MGET; every key has its own status. */
    const char *keys[] = { "product:1", "product:2", "product:3", "product:4" };
    rk_cache_result res[4];
    st = rk_cache_mget(pages, keys, 4, res);
    if (st != RK_OK && st != RK_DEGRADED)
        goto out;
    for (int i = 0; i < 4; i++)
        printf("%s: %s%s%s\n", keys[i], rk_strerror(res[i].status),
               res[i].status == RK_OK ? " " : "",
               res[i].status == RK_OK ? (const char *)res[i].value : "");
    rk_cache_results_free(res, 4);

    /* Tag invalidation: every page of the category, atomically. */
    size_t removed = 0;
    st = rk_cache_invalidate_tag(pages, "category:shoes", &removed);
    if (st != RK_OK)
        goto out;
    printf("invalidated category:shoes: %zu pages\n", removed);
    if (rk_cache_exists(pages, "product:1") != RK_MISS ||
        rk_cache_exists(pages, "product:3") != RK_OK) {
        fprintf(stderr, "unexpected state after invalidation\n");
        st = RK_ERR_PROTOCOL;
        goto out;
    }

    /* Namespace clear: each call works for clear_budget_ms at most;
     * resume with the cursor until it comes back 0. */
    uint64_t cursor = 0;
    removed = 0;
    for (int calls = 0; calls < 10000; calls++) {
        size_t n;
        st = rk_cache_clear(pages, &cursor, &n); /* n: this call's keys */
        removed += n;
        if (st != RK_OK || cursor == 0)
            break;
    }
    if (st != RK_OK)
        goto out;
    printf("cleared the namespace: %zu keys\n", removed);

out:
    if (rk_status_is_error(st))
        fprintf(stderr, "redis: %s: %s\n", rk_strerror(st), rk_last_error());
    rk_cache_free(pages);
    rk_client_free(client);
    return rk_status_is_error(st) ? 1 : 0;
}
