/*
 * batch_test.c — rk_cache_mget / rk_cache_mset against a real
 * redis-server: mixed hits, misses and wrong-typed values in one batch;
 * 1000 keys; binary and large values; TTLs checked on the server (PTTL);
 * raw mode; per-entry failures (an ACL that forbids some keys); bad input
 * refused with the entry's index and nothing written; the counters; a
 * stopped server, where reads degrade and writes fail; and every
 * allocation of the batch, tag and clear paths failed once in turn.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "cache.h" /* the counters */
#include "support/fail_alloc.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;
static rk_cache *cache;

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client, .cache = &cache,
                                                       .client_options = {.key_prefix = "shop"}});
}

static long long dbsize(void) { return rk_test_server_integer(server, "DBSIZE"); }

static uint64_t counter(_Atomic uint64_t *c) { return atomic_load(c); }

/* Absent keys, a wrong-typed value, a foreign value, a hash: each key gets
 * its own answer, in order, and the counters follow. */
static void test_mget_mixed(void **state)
{
    (void)state;
    assert_int_equal(rk_cache_set_str(cache, "a", "alpha", NULL), RK_OK);
    static const char bin[] = {'b', 0, 'c'};
    assert_int_equal(rk_cache_set(cache, "bin", bin, sizeof bin, NULL), RK_OK);
    assert_int_equal(rk_cache_set_i64(cache, "n", 42, NULL), RK_OK);
    redisReply *r = rk_test_server_command(server, "SET shop:cache:foreign plain");
    freeReplyObject(r);
    r = rk_test_server_command(server, "HSET shop:cache:hash f v");
    freeReplyObject(r);

    const char *keys[] = {"a", "missing", "bin", "n", "foreign", "hash", "a"};
    enum { N = sizeof keys / sizeof keys[0] };
    rk_cache_result res[N];
    uint64_t hits = counter(&cache->counters.hits), misses = counter(&cache->counters.misses);
    uint64_t type_errors = counter(&cache->counters.errors[RK_ERR_TYPE]);

    assert_int_equal(rk_cache_mget(cache, keys, N, res), RK_OK);
    assert_int_equal(res[0].status, RK_OK);
    assert_int_equal(res[0].len, 5);
    assert_string_equal(res[0].value, "alpha");
    assert_int_equal(res[1].status, RK_MISS);
    assert_null(res[1].value);
    assert_int_equal(res[1].len, 0);
    assert_int_equal(res[2].status, RK_OK);
    assert_int_equal(res[2].len, 3);
    assert_memory_equal(res[2].value, bin, 3);
    assert_int_equal(((char *)res[2].value)[3], '\0'); /* NUL after the bytes */
    assert_int_equal(res[3].status, RK_ERR_TYPE);       /* an int64 read as bytes */
    assert_null(res[3].value);
    assert_int_equal(res[4].status, RK_OK); /* another client's value: plain bytes */
    assert_string_equal(res[4].value, "plain");
    /* MGET answers nil for a key of another Redis type: a miss here,
     * where rk_cache_get would report WRONGTYPE. */
    assert_int_equal(res[5].status, RK_MISS);
    assert_int_equal(res[6].status, RK_OK);
    assert_string_equal(res[6].value, "alpha");
    assert_ptr_not_equal(res[0].value, res[6].value);
    /* The first failing key is named by index only. */
    assert_non_null(strstr(rk_last_error(), "keys[3]"));

    assert_int_equal(counter(&cache->counters.hits) - hits, 4);
    assert_int_equal(counter(&cache->counters.misses) - misses, 2);
    assert_int_equal(counter(&cache->counters.errors[RK_ERR_TYPE]) - type_errors, 1);

    rk_cache_results_free(res, N);
    for (int i = 0; i < N; i++) {
        assert_null(res[i].value);
        assert_int_equal(res[i].len, 0);
    }
    rk_cache_results_free(res, N); /* twice is harmless */
    rk_cache_results_free(NULL, 3);
}

/* 1000 distinct values in, the same 1000 out, one round trip each way. */
static void test_thousand_keys(void **state)
{
    (void)state;
    enum { N = 1000 };
    static char keybuf[N][16], valbuf[N][32];
    static const char *keys[N];
    static rk_cache_entry entries[N];
    static rk_status statuses[N];
    static rk_cache_result res[N];
    for (int i = 0; i < N; i++) {
        snprintf(keybuf[i], sizeof keybuf[i], "item:%d", i);
        int len = snprintf(valbuf[i], sizeof valbuf[i], "value-%d", i * 7);
        keys[i] = keybuf[i];
        entries[i] = (rk_cache_entry){.key = keybuf[i], .value = valbuf[i], .len = (size_t)len};
    }
    uint64_t sets = counter(&cache->counters.sets), bytes_in = counter(&cache->counters.bytes_in);
    uint64_t bytes_stored = counter(&cache->counters.bytes_stored);
    size_t total = 0;
    for (int i = 0; i < N; i++) total += entries[i].len;

    assert_int_equal(rk_cache_mset(cache, entries, N, &(rk_cache_set_options){.ttl_s = 60}, statuses), RK_OK);
    for (int i = 0; i < N; i++) assert_int_equal(statuses[i], RK_OK);
    assert_int_equal(dbsize(), N);
    assert_int_equal(counter(&cache->counters.sets) - sets, N);
    assert_int_equal(counter(&cache->counters.bytes_in) - bytes_in, total);
    assert_int_equal(counter(&cache->counters.bytes_stored) - bytes_stored, total + 2 * N); /* headers */

    /* Stored as the single-key calls store them: rk_cache_get reads it. */
    void *v;
    size_t len;
    assert_int_equal(rk_cache_get(cache, "item:999", &v, &len), RK_OK);
    assert_string_equal(v, valbuf[999]);
    rk_free(v);

    assert_int_equal(rk_cache_mget(cache, keys, N, res), RK_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].status, RK_OK);
        assert_int_equal(res[i].len, entries[i].len);
        assert_memory_equal(res[i].value, valbuf[i], res[i].len);
    }
    rk_cache_results_free(res, N);
}

/* Values past the encoder's stack buffer, NUL bytes, empty values. */
static void test_large_and_empty_values(void **state)
{
    (void)state;
    size_t big_len = 100000;
    char *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++) big[i] = (char)(i % 251);
    rk_cache_entry e[] = {
        {.key = "big", .value = big, .len = big_len},
        {.key = "empty", .value = NULL, .len = 0},
        {.key = "edge", .value = big, .len = 510}, /* header + 510 = 512: the stack buffer exactly */
        {.key = "edge2", .value = big, .len = 511},
    };
    assert_int_equal(rk_cache_mset(cache, e, 4, NULL, NULL), RK_OK);
    const char *keys[] = {"big", "empty", "edge", "edge2"};
    rk_cache_result res[4];
    assert_int_equal(rk_cache_mget(cache, keys, 4, res), RK_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(res[i].status, RK_OK);
        assert_int_equal(res[i].len, e[i].len);
        if (e[i].len) assert_memory_equal(res[i].value, big, e[i].len);
    }
    rk_cache_results_free(res, 4);
    free(big);
}

/* n = 0: nothing to do, nothing sent, NULL arrays allowed. */
static void test_empty_batch(void **state)
{
    (void)state;
    assert_int_equal(rk_cache_mget(cache, NULL, 0, NULL), RK_OK);
    assert_int_equal(rk_cache_mset(cache, NULL, 0, NULL, NULL), RK_OK);
    assert_int_equal(dbsize(), 0);
}

/* The TTL applies to every entry, in milliseconds on the server. */
static void test_mset_ttl(void **state)
{
    (void)state;
    rk_cache_entry e[] = {{.key = "t1", .value = "x", .len = 1}, {.key = "t2", .value = "y", .len = 1}};
    assert_int_equal(rk_cache_mset(cache, e, 2, &(rk_cache_set_options){.ttl_ms = 7000}, NULL), RK_OK);
    for (int i = 1; i <= 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "shop:cache:t%d", i);
        long long pttl = rk_test_server_integer(server, "PTTL %s", key);
        assert_true(pttl > 6000 && pttl <= 7000);
    }
    /* No options: the handle's default TTL. */
    assert_int_equal(rk_cache_mset(cache, e, 2, NULL, NULL), RK_OK);
    long long pttl = rk_test_server_integer(server, "PTTL %s", "shop:cache:t1");
    assert_true(pttl > 290000 && pttl <= RK_CACHE_DEFAULT_TTL_MS);
    /* Forever only when asked. */
    assert_int_equal(rk_cache_mset(cache, e, 2, &(rk_cache_set_options){.ttl_s = RK_TTL_NONE}, NULL), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "PTTL %s", "shop:cache:t2"), -1);
}

/* Raw mode: the caller's bytes go out as they are, and come back. */
static void test_raw_mode(void **state)
{
    (void)state;
    rk_cache *raw;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "raw", .raw = true}, &raw), RK_OK);
    rk_cache_entry e[] = {{.key = "a", .value = "1", .len = 1}, {.key = "b", .value = "two", .len = 3}};
    assert_int_equal(rk_cache_mset(raw, e, 2, NULL, NULL), RK_OK);
    redisReply *r = rk_test_server_command(server, "GET shop:raw:b");
    assert_non_null(r);
    assert_string_equal(r->str, "two");
    freeReplyObject(r);
    const char *keys[] = {"a", "b"};
    rk_cache_result res[2];
    assert_int_equal(rk_cache_mget(raw, keys, 2, res), RK_OK);
    assert_string_equal(res[0].value, "1");
    assert_string_equal(res[1].value, "two");
    rk_cache_results_free(res, 2);
    rk_cache_free(raw);
}

/* Whatever is wrong with a batch, nothing is written, every status says
 * so, and the message names the entry by index, never by key. */
static void test_bad_input_writes_nothing(void **state)
{
    (void)state;
    rk_status st[4];
    char long_key[2000];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';

    rk_cache_entry e[4] = {
        {.key = "secret-one", .value = "v", .len = 1},
        {.key = "secret-two", .value = "v", .len = 1},
        {.key = "", .value = "v", .len = 1},
        {.key = "secret-four", .value = "v", .len = 1},
    };
    assert_int_equal(rk_cache_mset(cache, e, 4, NULL, st), RK_ERR_INVALID);
    for (int i = 0; i < 4; i++) assert_int_equal(st[i], RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "entries[2]"));
    assert_null(strstr(rk_last_error(), "secret"));

    e[2].key = NULL;
    assert_int_equal(rk_cache_mset(cache, e, 4, NULL, st), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "entries[2]"));
    e[2].key = long_key;
    assert_int_equal(rk_cache_mset(cache, e, 4, NULL, st), RK_ERR_TOO_LARGE);
    assert_int_equal(st[0], RK_ERR_TOO_LARGE);
    assert_null(strstr(rk_last_error(), "kkkk"));
    e[2].key = "secret-three";
    e[3].value = NULL; /* with len 1 */
    assert_int_equal(rk_cache_mset(cache, e, 4, NULL, st), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "entries[3]"));
    e[3].value = "v";

    /* Bad options. */
    assert_int_equal(rk_cache_mset(cache, e, 4, &(rk_cache_set_options){.ttl_ms = -5}, st), RK_ERR_INVALID);
    const char *bad_tags[] = {"ok", ""};
    assert_int_equal(rk_cache_mset(cache, e, 4, &(rk_cache_set_options){.tags = bad_tags, .ntags = 2}, st),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_mset(cache, e, 4, &(rk_cache_set_options){.tags = NULL, .ntags = 1}, st),
                     RK_ERR_INVALID);
    /* Bad arrays and sizes. */
    assert_int_equal(rk_cache_mset(cache, NULL, 4, NULL, st), RK_ERR_INVALID);
    assert_int_equal(rk_cache_mset(NULL, e, 4, NULL, st), RK_ERR_INVALID);
    assert_int_equal(rk_cache_mset(cache, e, (size_t)RK_CACHE_MAX_BATCH + 1, NULL, NULL), RK_ERR_INVALID);

    /* A value over the handle's maximum. */
    rk_cache *small;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.max_value_bytes = 4}, &small), RK_OK);
    e[1].value = "12345";
    e[1].len = 5;
    assert_int_equal(rk_cache_mset(small, e, 4, NULL, st), RK_ERR_TOO_LARGE);
    assert_non_null(strstr(rk_last_error(), "entries[1]"));
    rk_cache_free(small);

    assert_int_equal(dbsize(), 0);

    /* mget: the same rules; every result carries the status. */
    const char *keys[] = {"one", "two", "", "four"};
    rk_cache_result res[4];
    assert_int_equal(rk_cache_mget(cache, keys, 4, res), RK_ERR_INVALID);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(res[i].status, RK_ERR_INVALID);
        assert_null(res[i].value);
    }
    assert_non_null(strstr(rk_last_error(), "keys[2]"));
    keys[2] = long_key;
    assert_int_equal(rk_cache_mget(cache, keys, 4, res), RK_ERR_TOO_LARGE);
    assert_int_equal(res[0].status, RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_mget(cache, NULL, 4, res), RK_ERR_INVALID);
    assert_int_equal(rk_cache_mget(cache, keys, 4, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_mget(NULL, keys, 4, res), RK_ERR_INVALID);
    assert_int_equal(rk_cache_mget(cache, keys, (size_t)RK_CACHE_MAX_BATCH + 1, res), RK_ERR_INVALID);
}

/* An ACL user that may write only "shop:cache:ok*": the forbidden entries
 * fail one by one, the others are stored. */
static void test_mset_per_entry_failures(void **state)
{
    (void)state;
    redisReply *r = rk_test_server_command(
        server, "ACL SETUSER partial on >pw-partial resetkeys ~shop:cache:ok* +@all");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    char url[128];
    snprintf(url, sizeof url, "redis://partial:pw-partial@127.0.0.1:%d?prefix=shop",
             rk_test_server_port(server));
    rk_client *c;
    rk_cache *k;
    assert_int_equal(rk_client_new_url(url, &c), RK_OK);
    assert_int_equal(rk_cache_new(c, NULL, &k), RK_OK);

    rk_cache_entry e[] = {
        {.key = "ok1", .value = "a", .len = 1},
        {.key = "no1", .value = "b", .len = 1},
        {.key = "ok2", .value = "c", .len = 1},
        {.key = "no2", .value = "d", .len = 1},
    };
    rk_status st[4];
    assert_int_equal(rk_cache_mset(k, e, 4, NULL, st), RK_ERR_SERVER);
    assert_int_equal(st[0], RK_OK);
    assert_int_equal(st[1], RK_ERR_SERVER);
    assert_int_equal(st[2], RK_OK);
    assert_int_equal(st[3], RK_ERR_SERVER);
    assert_non_null(strstr(rk_last_error(), "entries[1]"));
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "shop:cache:ok1"), 1);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "shop:cache:ok2"), 1);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "shop:cache:no1"), 0);
    assert_int_equal(atomic_load(&k->counters.sets), 2);

    /* Tagged, an entry fails with its whole chunk (one script). */
    const char *tags[] = {"t"};
    assert_int_equal(rk_cache_mset(k, e, 2, &(rk_cache_set_options){.tags = tags, .ntags = 1}, st), RK_ERR_SERVER);
    assert_int_equal(st[0], RK_ERR_SERVER);
    assert_int_equal(st[1], RK_ERR_SERVER);
    assert_non_null(strstr(rk_last_error(), "entries[0]"));
    assert_non_null(strstr(rk_last_error(), "cache tag store"));
    assert_int_equal(atomic_load(&k->counters.sets), 2);

    rk_cache_free(k);
    rk_client_free(c);
    r = rk_test_server_command(server, "ACL DELUSER partial");
    freeReplyObject(r);
}

/* With the server gone: every result of a read is RK_DEGRADED, within the
 * deadline; a write fails with a retryable status for every entry. */
static void test_server_down(void **state)
{
    (void)state;
    rk_test_server *gone = rk_test_server_start(NULL);
    assert_non_null(gone);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(gone)});
    rk_cache *k = rk_test_cache_new(c, NULL);
    rk_cache_entry e[] = {{.key = "x", .value = "1", .len = 1}, {.key = "y", .value = "2", .len = 1}};
    assert_int_equal(rk_cache_mset(k, e, 2, NULL, NULL), RK_OK);
    rk_test_server_stop(gone);

    const char *keys[] = {"x", "y", "z"};
    rk_cache_result res[3];
    rk_status st = rk_cache_mget(k, keys, 3, res);
    assert_int_equal(st, RK_DEGRADED);
    assert_true(rk_status_is_miss(st));
    assert_non_null(strstr(rk_last_error(), "degraded"));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].status, RK_DEGRADED);
        assert_null(res[i].value);
    }
    assert_int_equal(atomic_load(&k->counters.degraded), 3);
    rk_cache_results_free(res, 3);

    rk_status sts[2];
    st = rk_cache_mset(k, e, 2, NULL, sts);
    assert_true(rk_status_is_error(st) && rk_status_is_retryable(st));
    assert_int_equal(sts[0], st);
    assert_int_equal(sts[1], st);
    rk_cache_free(k);
    rk_client_free(c);
}

/* ---- out of memory ------------------------------------------------------ */

static int nomem_returns; /* RK_ERR_NOMEM returns in one run */

/* st is what the call returns with memory to spare (or one of the
 * alternatives a failed earlier write allows), or RK_ERR_NOMEM once the
 * failure was injected, once per run. */
static bool outcome(rk_status st, rk_status normal, rk_status alt, const char *what)
{
    if (st == normal || st == alt) return st == normal;
    if (st == RK_ERR_NOMEM && rk_test_fail_hit() && ++nomem_returns == 1 && *rk_last_error()) return false;
    fail_msg("N=%ld: %s: %s: %s", rk_test_fail_at(), what, rk_strerror(st), rk_last_error());
    return false;
}

static void nomem_scenario(const char *url)
{
    rk_client *c;
    if (!outcome(rk_client_new_url(url, &c), RK_OK, RK_OK, "rk_client_new")) return;
    rk_cache *k;
    if (!outcome(rk_cache_new(c, &(rk_cache_options){.ns = "oom", .clear_budget_ms = 1000}, &k), RK_OK, RK_OK,
                 "rk_cache_new")) {
        rk_client_free(c);
        return;
    }
    static char big[600]; /* encoded on the heap */
    memset(big, 'b', sizeof big);
    const char *tags[] = {"t1", "t2"};
    rk_cache_entry e[] = {
        {.key = "a", .value = "1", .len = 1},
        {.key = "b", .value = big, .len = sizeof big},
        {.key = "a-key-long-enough-to-be-built-on-the-heap-"
                "................................................................................"
                "................................................................................"
                "................................................................................",
         .value = "3", .len = 1},
    };
    rk_status st[3];
    outcome(rk_cache_mset(k, e, 3, &(rk_cache_set_options){.ttl_s = 60, .tags = tags, .ntags = 2}, st), RK_OK,
            RK_OK, "mset (tags)");
    outcome(rk_cache_mset(k, e, 3, NULL, st), RK_OK, RK_OK, "mset");
    const char *keys[] = {"a", "b", "missing", e[2].key};
    rk_cache_result res[4];
    if (outcome(rk_cache_mget(k, keys, 4, res), RK_OK, RK_OK, "mget")) {
        assert_int_equal(res[2].status, RK_MISS);
        for (int i = 0; i < 4; i++)
            if (i != 2) outcome(res[i].status, RK_OK, RK_MISS, "mget result");
    }
    rk_cache_results_free(res, 4);
    size_t removed;
    outcome(rk_cache_invalidate_tag(k, "t1", &removed), RK_OK, RK_OK, "invalidate");
    outcome(rk_cache_set_str(k, "c", "v", &(rk_cache_set_options){.tags = tags, .ntags = 1}), RK_OK, RK_OK,
            "set with a tag");
    uint64_t cursor = 0;
    removed = 0;
    for (int i = 0; i < 100; i++)
        if (!outcome(rk_cache_clear(k, &cursor, &removed), RK_OK, RK_OK, "clear") || cursor == 0) break;
    rk_cache_free(k);
    rk_client_free(c);
}

/* Fail the 1st, 2nd, ... allocation until a run needs fewer: every
 * allocation point of the scenario failed once, each call reported it as
 * RK_ERR_NOMEM (or completed), nothing crashed and nothing leaked. */
static void test_out_of_memory(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s", rk_test_server_url(server));
    long n;
    for (n = 1; n < 5000; n++) {
        long live = rk_test_fail_live();
        rk_test_fail_arm(n);
        nomem_returns = 0;
        nomem_scenario(url);
        rk_test_fail_disarm();
        if (rk_test_fail_live() != live) fail_msg("N=%ld: %ld blocks leaked", n, rk_test_fail_live() - live);
        if (!rk_test_fail_hit()) break;
    }
    assert_true(n < 5000);
    print_message("out-of-memory walk: %ld allocation points\n", n - 1);
}

int main(void)
{
    /* Before any other redkit call, as rk_set_allocator asks. */
    if (rk_set_allocator(&rk_test_fail_allocator) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_mget_mixed, rk_test_group_flush),
        cmocka_unit_test_setup(test_thousand_keys, rk_test_group_flush),
        cmocka_unit_test_setup(test_large_and_empty_values, rk_test_group_flush),
        cmocka_unit_test_setup(test_empty_batch, rk_test_group_flush),
        cmocka_unit_test_setup(test_mset_ttl, rk_test_group_flush),
        cmocka_unit_test_setup(test_raw_mode, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_input_writes_nothing, rk_test_group_flush),
        cmocka_unit_test_setup(test_mset_per_entry_failures, rk_test_group_flush),
        cmocka_unit_test(test_server_down),
        cmocka_unit_test_setup(test_out_of_memory, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
