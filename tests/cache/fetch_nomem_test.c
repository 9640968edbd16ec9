/*
 * fetch_nomem_test.c — every allocation failure on the paths of
 * rk_cache_fetch(), one at a time, against a private redis-server.
 *
 * As tests/client/nomem_test.c does for the common paths: an allocator
 * (support/fail_alloc.h) fails exactly the Nth allocation, and the same
 * fetch scenario runs for N = 1, 2, ... until a run completes without
 * reaching N, so every allocation point the scenario passes has failed
 * once. The scenario covers a miss (single-flight, the Redis lock with
 * TIME, the compute callback, the store, this process's copy), a hit, a
 * stale value refreshed, a large compressible value, a tagged store, a
 * callback that fails and one that finds nothing.
 *
 * For every N: each fetch returns its normal status, or RK_ERR_NOMEM, or
 * RK_ERR_SOURCE with info.source_status == RK_ERR_NOMEM (the callback's
 * own rk_cache_computed_set() ran out), and the latter two only once the
 * failure was injected; outputs are NULL after a failure; nothing
 * crashes; when the handles are freed no block is live. The client and
 * the cache are created and the data seeded with injection off, so the
 * walk is over the fetches alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redkit/redkit.h>

#include "support/fail_alloc.h"
#include "support/redis_server.h"
#include "value.h" /* src/: a hand-made META block */

#define MAX_N 3000
#define BIG 4000 /* a compressible value, stored compressed and on the heap */

static rk_test_server *server;
static char big[BIG + 1];

static int group_setup(void **state)
{
    (void)state;
    if (rk_set_allocator(&rk_test_fail_allocator) != RK_OK) return -1;
    server = rk_test_server_start(NULL);
    if (!server) return -1;
    for (int i = 0; i < BIG; i++) big[i] = "abcdefgh"[i % 8];
    big[BIG] = '\0';
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rk_test_server_stop(server);
    return rk_set_allocator(NULL) == RK_OK ? 0 : -1;
}

typedef struct job {
    const char *value;
    rk_status fail;   /* returned instead of a value when not RK_OK */
} job;

static rk_status compute(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key;
    const job *j = ctx;
    if (j->fail != RK_OK) return j->fail;
    return rk_cache_computed_set(out, j->value, strlen(j->value));
}

/* Written with injection off before each run: a fresh value ("hit") and
 * one past its fresh life inside a minute of stale window ("stale"). */
static void seed(void)
{
    redisReply *r = rk_test_server_command(server, "FLUSHALL");
    assert_non_null(r);
    freeReplyObject(r);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    /* Expired a second ago: inside the fetch's minute of stale window. */
    rk__value_meta past = {.expires_at_ms = now_ms - 1000, .compute_ms = 5};
    rk__value_meta later = {.expires_at_ms = (int64_t)1 << 61, .compute_ms = 5};
    unsigned char hdr[RK__VALUE_HEADER_MAX];
    char buf[RK__VALUE_HEADER_MAX + 8];
    size_t n = rk__value_encode_header(RK__V_BYTES, RK__VF_META, &later, hdr);
    memcpy(buf, hdr, n);
    memcpy(buf + n, "cached", 6);
    r = rk_test_server_command(server, "SET nm:cache:hit %b PX 60000", buf, n + 6);
    assert_non_null(r);
    freeReplyObject(r);
    n = rk__value_encode_header(RK__V_BYTES, RK__VF_META, &past, hdr);
    memcpy(buf, hdr, n);
    memcpy(buf + n, "old", 3);
    r = rk_test_server_command(server, "SET nm:cache:stale %b PX 60000", buf, n + 3);
    assert_non_null(r);
    freeReplyObject(r);
}

typedef struct run {
    long n;
    int nomem;       /* failures seen */
} run;

/* One fetch: its status must be the normal one, or an out-of-memory
 * failure (at most one per run, only after injection). */
static void fetch(run *r, rk_cache *c, const char *key, const job *j, const rk_cache_fetch_options *o,
                  rk_status normal, const char *want)
{
    void *v = (void *)1;
    size_t len = 99;
    rk_cache_fetch_info info;
    rk_status st = rk_cache_fetch(c, key, compute, (void *)j, o, &v, &len, &info);
    bool nomem = st == RK_ERR_NOMEM || (st == RK_ERR_SOURCE && info.source_status == RK_ERR_NOMEM &&
                                        normal != RK_ERR_SOURCE);
    if (st != normal && !nomem)
        fail_msg("N=%ld: fetch %s: %s (%s), want %s", r->n, key, rk_strerror(st), rk_last_error(), rk_strerror(normal));
    if (nomem) {
        if (!rk_test_fail_hit()) fail_msg("N=%ld: fetch %s: out of memory before any failure", r->n, key);
        r->nomem++;
    }
    if (st != RK_OK) {
        assert_null(v);
        assert_int_equal(len, 0);
        return;
    }
    assert_non_null(v);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    rk_free(v);
}

static void scenario(run *r)
{
    rk_client *client;
    rk_cache *cache;
    /* Handles made with injection off: the walk is over the fetches. */
    long n = r->n;
    rk_test_fail_arm(0);
    char url[300];
    snprintf(url, sizeof url, "%s", rk_test_server_url(server));
    assert_int_equal(rk_client_new(&(rk_client_options){.url = url, .key_prefix = "nm"}, &client), RK_OK);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.lock_ms = 500, .compress_threshold = 1024}, &cache),
                     RK_OK);
    rk_test_fail_arm(n);

    static const char *const tags[] = {"t1", "t2"};
    const job plain = {.value = "computed"}, large = {.value = big};
    const job failing = {.fail = RK_ERR_UNAVAILABLE}, nothing = {.fail = RK_MISS};
    const rk_cache_fetch_options keep = {.ttl_ms = 60000, .stale_ms = 60000, .beta = -1};
    fetch(r, cache, "miss", &plain, &keep, RK_OK, "computed");
    fetch(r, cache, "hit", &plain, &keep, RK_OK, "cached");
    /* Stale: refreshed by this call (the lock is free), or served stale
     * when the refresh itself ran out of memory. */
    {
        void *v = NULL;
        size_t len = 0;
        rk_cache_fetch_info info;
        rk_status st = rk_cache_fetch(cache, "stale", compute, (void *)&plain, &keep, &v, &len, &info);
        if (st == RK_OK) {
            assert_true(len == 8 || len == 3); /* "computed", or "old" served stale */
            rk_free(v);
        } else if (st == RK_ERR_NOMEM && rk_test_fail_hit()) {
            r->nomem++;
        } else {
            fail_msg("N=%ld: fetch stale: %s (%s)", r->n, rk_strerror(st), rk_last_error());
        }
    }
    fetch(r, cache, "big", &large, &keep, RK_OK, big);
    fetch(r, cache, "tagged", &plain, &(rk_cache_fetch_options){.ttl_ms = 60000, .tags = tags, .ntags = 2}, RK_OK,
          "computed");
    fetch(r, cache, "failing", &failing, NULL, RK_ERR_SOURCE, NULL);
    fetch(r, cache, "nothing", &nothing, NULL, RK_MISS, NULL);
    /* A hit on what the first fetch stored, when it was stored. */
    void *v = NULL;
    size_t len = 0;
    rk_status st = rk_cache_fetch(cache, "miss", compute, (void *)&plain, &keep, &v, &len, NULL);
    if (st == RK_OK) rk_free(v);
    else if (st == RK_ERR_NOMEM || st == RK_ERR_SOURCE) r->nomem++;
    else fail_msg("N=%ld: second fetch: %s", r->n, rk_strerror(st));

    rk_test_fail_disarm();
    rk_cache_free(cache);
    rk_client_free(client);
}

/* One run with the Nth allocation failing (0: none); whether it was reached. */
static bool one_run(long n)
{
    rk_test_fail_arm(0);
    seed();
    assert_int_equal(rk_test_fail_live(), 0);
    run r = {.n = n};
    scenario(&r);
    bool hit = n > 0 && rk_test_fail_hit();
    if (rk_test_fail_live() != 0) fail_msg("N=%ld: %ld block(s) leaked", n, rk_test_fail_live());
    if (!hit) assert_int_equal(r.nomem, 0);
    return hit;
}

static void test_walk(void **state)
{
    (void)state;
    long n;
    for (n = 1; n <= MAX_N; n++)
        if (!one_run(n)) break;
    if (n > MAX_N) fail_msg("the walk did not finish within %d allocations", MAX_N);
    print_message("fetch nomem walk: %ld allocation points failed one at a time\n", n - 1);
    assert_true(n - 1 > 20); /* the scenario really went through the hook */
}

static void test_normal_run(void **state)
{
    (void)state;
    assert_false(one_run(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_run),
        cmocka_unit_test(test_walk),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
