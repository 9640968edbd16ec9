/*
 * invalidate_test.c — namespace clear and tag invalidation against a real
 * redis-server.
 *
 * Clear: every key of the namespace goes, its tag sets too, and nothing
 * else — not another namespace that starts the same ("cache2"), not a
 * client prefix that starts the same ("shopping"), not foreign keys, not
 * keys made of glob characters, not the fetch locks; a tiny budget makes
 * the clear take several resumed calls (a large one, one call), a
 * one-round clear stops with a cursor to resume from, and every round trip
 * of a call shares the call's one deadline. Tags: invalidation removes
 * exactly the keys of the tag, atomically, counts what it removed and
 * removes the tag set; the tag set lives as long as its longest-lived
 * value and then expires; under continuous writes it holds only the live
 * members, not the history; a tag names a key only until its tagged value
 * expires; it survives SCRIPT FLUSH (NOSCRIPT fallback: one EVAL, and one
 * deadline for a whole batch); a tag set of the earlier format is refused
 * with a clear error; a tag set tampered with cannot make an invalidation
 * reach outside the namespace; bad tags are refused and never shown.
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

#include "cache.h" /* counters, rk__cache_clear_run */
#include "support/clock.h"
#include "support/fault_proxy.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;   /* prefix "shop" */
static rk_cache *cache;     /* namespace "cache": "shop:cache:" */

/* The group's client writes batches of 20,000 keys in one pipeline: its
 * command timeout is generous, so a busy machine does not fail a test
 * about invalidation (the deadline tests use clients of their own). */
static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client, .cache = &cache,
                                                       .client_options = {.key_prefix = "shop",
                                                                          .command_timeout_ms = 10000}});
}

static bool exists(const char *key) { return rk_test_server_integer(server, "EXISTS %s", key) == 1; }
static long long dbsize(void) { return rk_test_server_integer(server, "DBSIZE"); }

/* Members of a tag set, whatever its Redis type (so that a failure can
 * say how large a set of another format grew). */
static long long tag_set_size(const char *key)
{
    redisReply *r = rk_test_server_command(server, "TYPE %s", key);
    assert_non_null(r);
    bool plain_set = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "set") == 0;
    freeReplyObject(r);
    return rk_test_server_integer(server, plain_set ? "SCARD %s" : "ZCARD %s", key);
}

/* A client (and a cache in namespace ns) that talks to the server through
 * a fault proxy, its connection already open while the proxy passes. */
typedef struct slow_link {
    rk_fault_proxy *proxy;
    rk_client *client;
    rk_cache *cache;
} slow_link;

static void slow_link_open(slow_link *l, const char *ns, int command_timeout_ms, int clear_budget_ms)
{
    l->proxy = rk_fault_proxy_start(rk_test_server_port(server));
    assert_non_null(l->proxy);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d?prefix=shop", rk_fault_proxy_port(l->proxy));
    l->client = rk_test_client_new(&(rk_client_options){
        .url = url, .command_timeout_ms = command_timeout_ms, .breaker_threshold = -1});
    l->cache = rk_test_cache_new(l->client, &(rk_cache_options){.ns = ns, .clear_budget_ms = clear_budget_ms});
    assert_int_equal(rk_client_ping(l->client), RK_OK);
}

static void slow_link_close(slow_link *l)
{
    rk_cache_free(l->cache);
    rk_client_free(l->client);
    rk_fault_proxy_stop(l->proxy);
}

/* Store n keys "<stem>:<i>" through handle h, in one batch. */
static void fill(rk_cache *h, const char *stem, int n, const rk_cache_set_options *opts)
{
    char (*keys)[32] = malloc((size_t)n * sizeof *keys);
    rk_cache_entry *e = malloc((size_t)n * sizeof *e);
    assert_non_null(keys);
    assert_non_null(e);
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "%s:%d", stem, i);
        e[i] = (rk_cache_entry){.key = keys[i], .value = "v", .len = 1};
    }
    assert_int_equal(rk_cache_mset(h, e, (size_t)n, opts, NULL), RK_OK);
    free(keys);
    free(e);
}

/* Keys that must survive a clear of "shop:cache", written raw. */
static const char *const outsiders[] = {
    "shop:cache",         /* the head without its separator */
    "shop:cachex:1",      /* a namespace that starts the same */
    "shop:cache*",        /* glob characters where the separator would be */
    "shop:cache?1",
    "shop:cach[e]:1",
    "shop:cache\\:1",
    "shop:cache[:#]1",    /* the very class the pattern uses, literally */
    "shop:cache#lock:k",  /* a fetch lock: left to expire */
    "cache:1",            /* the namespace without the prefix */
    "shop:Cache:1",
    "other",
};
#define N_OUTSIDERS (sizeof outsiders / sizeof outsiders[0])

/* Clear with the public call, resuming until done; returns the calls made. */
static int clear_all(rk_cache *h, size_t *removed)
{
    uint64_t cursor = 0;
    int calls = 0;
    do {
        size_t n = 12345;
        assert_int_equal(rk_cache_clear(h, &cursor, &n), RK_OK);
        assert_true(n != 12345); /* overwritten, never added to */
        *removed += n;
        calls++;
        assert_true(calls < 100000); /* a clear that never ends is a failure */
    } while (cursor != 0);
    return calls;
}

static void test_clear_removes_namespace_only(void **state)
{
    (void)state;
    enum { N = 5000, OTHERS = 300 };
    rk_cache *cache2, *other, *tiny;
    rk_client *shopping;
    rk_cache *shopping_cache;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "cache2"}, &cache2), RK_OK);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "other"}, &other), RK_OK);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.clear_budget_ms = 1}, &tiny), RK_OK);
    rk_client_options so = {.url = rk_test_server_url(server), .key_prefix = "shopping"};
    assert_int_equal(rk_client_new(&so, &shopping), RK_OK);
    assert_int_equal(rk_cache_new(shopping, NULL, &shopping_cache), RK_OK);

    fill(cache, "k", N, NULL);
    const char *tags[] = {"t"};
    fill(cache, "tagged", 10, &(rk_cache_set_options){.tags = tags, .ntags = 1});
    fill(cache2, "k", OTHERS, &(rk_cache_set_options){.tags = tags, .ntags = 1});
    fill(other, "k", OTHERS, NULL);
    fill(shopping_cache, "k", OTHERS, NULL);
    for (size_t i = 0; i < N_OUTSIDERS; i++) rk_test_server_ok(server, "SET %s x", outsiders[i]);
    assert_true(exists("shop:cache#tag:t"));
    long long before = dbsize();
    assert_int_equal(before, N + 10 + 1 + (OTHERS + 1) + OTHERS + OTHERS + (long long)N_OUTSIDERS);

    uint64_t deletes = atomic_load(&tiny->counters.deletes);
    size_t removed = 0;
    int calls = clear_all(tiny, &removed);
    print_message("clear of %d keys with a 1 ms budget: %d calls\n", N + 10, calls);
    /* The budget is obeyed: some 6000 keys take six SCAN rounds or more
     * (COUNT 1000), twelve round trips, which no call fits in 1 ms. */
    assert_true(calls >= 2);
    assert_int_equal(removed, N + 10);
    assert_int_equal(atomic_load(&tiny->counters.deletes) - deletes, N + 10);

    /* What is left is exactly everything else. */
    assert_int_equal(dbsize(), before - (N + 10) - 1);
    assert_false(exists("shop:cache:k:0"));
    assert_false(exists("shop:cache#tag:t"));
    assert_true(exists("shop:cache2:k:0"));
    assert_true(exists("shop:cache2#tag:t"));
    assert_true(exists("shop:other:k:0"));
    assert_true(exists("shopping:cache:k:0"));
    for (size_t i = 0; i < N_OUTSIDERS; i++) assert_true(exists(outsiders[i]));

    /* Clearing an empty namespace: done in one call, nothing removed. */
    removed = 0;
    assert_int_equal(clear_all(cache, &removed), 1);
    assert_int_equal(removed, 0);
    /* removed may be NULL. */
    uint64_t cursor = 0;
    assert_int_equal(rk_cache_clear(cache, &cursor, NULL), RK_OK);
    assert_int_equal(rk_cache_clear(cache, NULL, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_clear(NULL, &cursor, NULL), RK_ERR_INVALID);

    rk_cache_free(cache2);
    rk_cache_free(other);
    rk_cache_free(tiny);
    rk_cache_free(shopping_cache);
    rk_client_free(shopping);
}

/* One round at a time: a clear stops with a cursor to resume from, and
 * resuming finishes the job; what was removed plus what is left is always
 * the whole namespace. */
static void test_clear_resumes(void **state)
{
    (void)state;
    enum { N = 5000 };
    fill(cache, "k", N, NULL);
    rk_test_server_ok(server, "SET %s x", "foreign");
    uint64_t cursor = 0;
    size_t removed = 0;
    assert_int_equal(rk__cache_clear_run(cache, &cursor, &removed, 60000, 1), RK_OK);
    assert_int_not_equal(cursor, 0); /* 5000 keys do not fit one SCAN COUNT 1000 */
    assert_true(removed < N);
    assert_int_equal(dbsize(), N - (long long)removed + 1);
    int rounds = 1;
    while (cursor != 0) {
        size_t n;
        assert_int_equal(rk__cache_clear_run(cache, &cursor, &n, 60000, 1), RK_OK);
        removed += n;
        assert_int_equal(dbsize(), N - (long long)removed + 1);
        assert_true(++rounds < 10000);
    }
    assert_int_equal(removed, N);
    assert_true(exists("foreign"));
}

/* The budget decides how many calls a clear takes: a large one does the
 * whole namespace in one call, a tiny one needs several. (An
 * implementation that ignored the budget would fail one of the two.) */
static void test_clear_budget(void **state)
{
    (void)state;
    enum { N = 20000 };
    rk_cache *tiny = rk_test_cache_new(client, &(rk_cache_options){.clear_budget_ms = 1});
    rk_cache *large = rk_test_cache_new(client, &(rk_cache_options){.clear_budget_ms = 60000});

    fill(cache, "k", N, NULL);
    size_t removed = 0;
    int calls = clear_all(tiny, &removed);
    print_message("clear of %d keys: %d calls with a 1 ms budget\n", N, calls);
    /* 20 SCAN rounds at least, 40 round trips and 20000 UNLINKs: never
     * within 1 ms. */
    assert_true(calls >= 2);
    assert_int_equal(removed, N);
    assert_int_equal(dbsize(), 0);

    fill(cache, "k", N, NULL);
    removed = 0;
    assert_int_equal(clear_all(large, &removed), 1);
    assert_int_equal(removed, N);
    assert_int_equal(dbsize(), 0);
    rk_cache_free(tiny);
    rk_cache_free(large);
}

/* Every round trip of one clear call shares the call's deadline (budget +
 * one command timeout): with 200 ms of latency each way, the SCAN takes
 * 400 ms or more and the UNLINK that follows cannot end within
 * 1 ms + 500 ms of the start, so the call times out instead of taking a
 * second command timeout. Only lower bounds of time are relied on. */
static void test_clear_one_deadline(void **state)
{
    (void)state;
    slow_link l;
    slow_link_open(&l, "slow", 500, 1);
    for (int i = 0; i < 5; i++) rk_test_server_ok(server, "SET shop:slow:k%d v", i);
    rk_fault_proxy_set(l.proxy, RK_FAULT_LATENCY, 200);
    uint64_t cursor = 0;
    size_t removed = 7;
    rk_status st = rk_cache_clear(l.cache, &cursor, &removed);
    if (st != RK_ERR_TIMEOUT) fail_msg("want RK_ERR_TIMEOUT, got %s: %s", rk_strerror(st), rk_last_error());
    assert_int_equal(cursor, 0);
    assert_int_equal(removed, 0); /* overwritten: nothing was removed */
    rk_fault_proxy_set(l.proxy, RK_FAULT_PASS, 0);
    slow_link_close(&l);
}

/* Keys made of glob characters are ordinary keys of the namespace. */
static void test_clear_glob_keys(void **state)
{
    (void)state;
    const char *keys[] = {"*", "?", "[a]", "[", "]", "\\", "a*b", "[:#]", "#tag:x", "\xff"};
    enum { N = sizeof keys / sizeof keys[0] };
    for (int i = 0; i < N; i++) assert_int_equal(rk_cache_set_str(cache, keys[i], "v", NULL), RK_OK);
    for (size_t i = 0; i < N_OUTSIDERS; i++) rk_test_server_ok(server, "SET %s x", outsiders[i]);
    size_t removed = 0;
    clear_all(cache, &removed);
    assert_int_equal(removed, N);
    assert_int_equal(dbsize(), N_OUTSIDERS);
}

/* Redis down: an error, and the cursor still says where to resume. */
static void test_clear_server_down(void **state)
{
    (void)state;
    rk_test_server *gone = rk_test_server_start(NULL);
    assert_non_null(gone);
    rk_client *c;
    rk_cache *k;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(gone)}, &c), RK_OK);
    assert_int_equal(rk_cache_new(c, NULL, &k), RK_OK);
    rk_test_server_stop(gone);
    uint64_t cursor = 1234;
    size_t removed = 7;
    rk_status st = rk_cache_clear(k, &cursor, &removed);
    assert_true(rk_status_is_error(st) && rk_status_is_retryable(st));
    assert_int_equal(cursor, 1234);
    assert_int_equal(removed, 0); /* overwritten, as rk_cache_invalidate_tag's below */
    size_t n = 9;
    st = rk_cache_invalidate_tag(k, "t", &n);
    assert_true(rk_status_is_error(st) && rk_status_is_retryable(st));
    assert_int_equal(n, 0);
    rk_cache_free(k);
    rk_client_free(c);
}

/* ---- tags ---------------------------------------------------------------- */

static rk_cache_set_options tagged(const char *const *tags, size_t n, int64_t ttl_ms)
{
    return (rk_cache_set_options){.ttl_ms = ttl_ms, .tags = tags, .ntags = n};
}

static void test_invalidate_tag(void **state)
{
    (void)state;
    const char *a[] = {"a"}, *b[] = {"b"}, *ab[] = {"a", "b"};
    rk_cache_set_options oa = tagged(a, 1, 60000), ob = tagged(b, 1, 60000), oab = tagged(ab, 2, 60000);
    assert_int_equal(rk_cache_set_str(cache, "a1", "v", &oa), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "a2", "v", &oa), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "b1", "v", &ob), RK_OK);
    assert_int_equal(rk_cache_set_i64(cache, "ab1", 5, &oab), RK_OK);
    rk_cache_entry e[] = {{.key = "ab2", .value = "v", .len = 1}, {.key = "ab3", .value = "v", .len = 1}};
    assert_int_equal(rk_cache_mset(cache, e, 2, &oab, NULL), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "plain", "v", NULL), RK_OK);
    /* The value is stored as an untagged set stores it. */
    int64_t n64;
    assert_int_equal(rk_cache_get_i64(cache, "ab1", &n64), RK_OK);
    assert_int_equal(n64, 5);
    assert_int_equal(rk_test_server_integer(server, "ZCARD %s", "shop:cache#tag:a"), 5);
    assert_int_equal(rk_test_server_integer(server, "ZCARD %s", "shop:cache#tag:b"), 4);

    uint64_t deletes = atomic_load(&cache->counters.deletes);
    size_t removed = 99;
    assert_int_equal(rk_cache_invalidate_tag(cache, "a", &removed), RK_OK);
    assert_int_equal(removed, 5);
    assert_int_equal(atomic_load(&cache->counters.deletes) - deletes, 5);
    const char *gone[] = {"shop:cache:a1", "shop:cache:a2", "shop:cache:ab1", "shop:cache:ab2",
                          "shop:cache:ab3", "shop:cache#tag:a"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) assert_false(exists(gone[i]));
    assert_true(exists("shop:cache:b1"));
    assert_true(exists("shop:cache:plain"));
    assert_true(exists("shop:cache#tag:b"));

    /* b's set still names the a+b keys; they are gone, and not counted. */
    assert_int_equal(rk_cache_invalidate_tag(cache, "b", &removed), RK_OK);
    assert_int_equal(removed, 1);
    assert_false(exists("shop:cache:b1"));
    assert_int_equal(dbsize(), 1); /* "plain" */

    /* A tag that names nothing: RK_OK, 0. removed may be NULL. */
    assert_int_equal(rk_cache_invalidate_tag(cache, "never", &removed), RK_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(rk_cache_invalidate_tag(cache, "a", NULL), RK_OK);
}

/* Tags are per namespace: the same tag in another namespace is another set. */
static void test_tags_per_namespace(void **state)
{
    (void)state;
    rk_cache *other;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "other"}, &other), RK_OK);
    const char *t[] = {"t"};
    rk_cache_set_options o = tagged(t, 1, 60000);
    assert_int_equal(rk_cache_set_str(cache, "x", "v", &o), RK_OK);
    assert_int_equal(rk_cache_set_str(other, "x", "v", &o), RK_OK);
    size_t removed;
    assert_int_equal(rk_cache_invalidate_tag(other, "t", &removed), RK_OK);
    assert_int_equal(removed, 1);
    assert_true(exists("shop:cache:x"));
    assert_false(exists("shop:other:x"));
    rk_cache_free(other);
}

/* The tag set lives as long as its longest-lived value, never shorter; a
 * value without TTL makes it persistent; and it expires. (Margins of
 * 10 s below each TTL: a slow machine cannot fail them.) */
static void test_tag_set_ttl(void **state)
{
    (void)state;
    const char *t[] = {"t"};
    rk_cache_set_options o60 = tagged(t, 1, 60000), o120 = tagged(t, 1, 120000), o10 = tagged(t, 1, 10000);
    assert_int_equal(rk_cache_set_str(cache, "k1", "v", &o60), RK_OK);
    long long ttl = rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:t");
    assert_true(ttl > 50000 && ttl <= 60000);
    assert_true(ttl >= rk_test_server_integer(server, "PTTL %s", "shop:cache:k1"));

    assert_int_equal(rk_cache_set_str(cache, "k2", "v", &o120), RK_OK);
    ttl = rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:t");
    assert_true(ttl > 110000 && ttl <= 120000);

    assert_int_equal(rk_cache_set_str(cache, "k3", "v", &o10), RK_OK); /* not lowered */
    assert_true(rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:t") > 110000);

    /* The batch path follows the same rule. */
    rk_cache_entry e[] = {{.key = "k4", .value = "v", .len = 1}};
    assert_int_equal(rk_cache_mset(cache, e, 1, &(rk_cache_set_options){.ttl_s = 200, .tags = t, .ntags = 1}, NULL),
                     RK_OK);
    assert_true(rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:t") > 190000);

    /* The longest-lived value re-set with a shorter TTL: the set follows it
     * down to its longest-lived member (k2, 120 s), not its history. */
    rk_cache_entry e4[] = {{.key = "k4", .value = "v", .len = 1}};
    assert_int_equal(rk_cache_mset(cache, e4, 1, &o10, NULL), RK_OK);
    ttl = rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:t");
    assert_true(ttl > 110000 && ttl <= 120000);

    rk_cache_set_options forever = tagged(t, 1, RK_TTL_NONE);
    assert_int_equal(rk_cache_set_str(cache, "k5", "v", &forever), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:t"), -1);
    assert_int_equal(rk_test_server_integer(server, "PTTL %s", "shop:cache:k5"), -1);
    /* ... and stays so: a later value with a TTL does not put one back. */
    assert_int_equal(rk_cache_set_str(cache, "k6", "v", &o10), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:t"), -1);

    /* A short-lived tag set goes away with its values. */
    const char *s[] = {"short"};
    rk_cache_set_options brief = tagged(s, 1, 150);
    assert_int_equal(rk_cache_set_str(cache, "s1", "v", &brief), RK_OK);
    assert_true(exists("shop:cache#tag:short"));
    int64_t deadline = rk_test_now_ms() + 5000;
    while (exists("shop:cache#tag:short") && rk_test_now_ms() < deadline) rk_test_sleep_ms(20);
    assert_false(exists("shop:cache#tag:short"));
    assert_false(exists("shop:cache:s1"));

    /* The longest TTL there is (2^62 ms): its expiry time, far beyond
     * 2^53, still makes a valid score and set expiry. */
    const char *f[] = {"far"};
    rk_cache_set_options far = tagged(f, 1, (int64_t)1 << 62);
    assert_int_equal(rk_cache_set_str(cache, "f1", "v", &far), RK_OK);
    assert_true(rk_test_server_integer(server, "PTTL %s", "shop:cache#tag:far") > ((long long)1 << 61));
    size_t removed;
    assert_int_equal(rk_cache_invalidate_tag(cache, "far", &removed), RK_OK);
    assert_int_equal(removed, 1);
}

/* After SCRIPT FLUSH the scripts are sent in full and work. */
static void test_tags_after_script_flush(void **state)
{
    (void)state;
    const char *t[] = {"t", "u"};
    rk_cache_set_options o = tagged(t, 2, 60000);
    rk_test_server_ok(server, "SCRIPT FLUSH");
    assert_int_equal(rk_cache_set_str(cache, "one", "v", &o), RK_OK);

    /* A batch of several script chunks, each refused with NOSCRIPT and
     * sent again in full. */
    rk_test_server_ok(server, "SCRIPT FLUSH");
    enum { N = 700 }; /* three chunks of 256 */
    long long eval0 = rk_test_server_command_calls(server, "eval");
    fill(cache, "many", N, &o);
    /* The script is sent in full once; the other chunks go again by SHA. */
    assert_int_equal(rk_test_server_command_calls(server, "eval") - eval0, 1);
    assert_int_equal(rk_test_server_integer(server, "ZCARD %s", "shop:cache#tag:t"), N + 1);
    assert_int_equal(rk_test_server_integer(server, "ZCARD %s", "shop:cache#tag:u"), N + 1);

    rk_test_server_ok(server, "SCRIPT FLUSH");
    size_t removed;
    assert_int_equal(rk_cache_invalidate_tag(cache, "u", &removed), RK_OK);
    assert_int_equal(removed, N + 1);
    assert_int_equal(dbsize(), 1); /* the set of "t", naming removed keys */
}

/* Binary-safe tag names; bad ones refused before anything is written, and
 * never repeated in a message. */
static void test_tag_names(void **state)
{
    (void)state;
    const char *odd[] = {"*", "a:b", "\xff\x01", "tag with spaces", "[x]"};
    rk_cache_set_options o = tagged(odd, 5, 60000);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", &o), RK_OK);
    for (size_t i = 0; i < 5; i++) {
        size_t removed;
        assert_int_equal(rk_cache_set_str(cache, "k", "v", &o), RK_OK);
        assert_int_equal(rk_cache_invalidate_tag(cache, odd[i], &removed), RK_OK);
        assert_int_equal(removed, 1);
        assert_false(exists("shop:cache:k"));
    }
    /* Left: the sets of the four tags not invalidated last (each re-set
     * of "k" recreated them), every one naming the removed key. */
    assert_int_equal(dbsize(), 4);
    assert_true(exists("shop:cache#tag:*"));
    assert_true(exists("shop:cache#tag:\xff\x01"));
    rk_test_server_ok(server, "FLUSHALL");

    char long_tag[RK_CACHE_MAX_TAG_BYTES + 2];
    memset(long_tag, 's', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    const char *bad[][2] = {{"secret-ok", ""}, {"secret-ok", NULL}, {"secret-ok", long_tag}};
    rk_status want[] = {RK_ERR_INVALID, RK_ERR_INVALID, RK_ERR_TOO_LARGE};
    for (size_t i = 0; i < 3; i++) {
        rk_cache_set_options b = tagged(bad[i], 2, 60000);
        assert_int_equal(rk_cache_set_str(cache, "k", "v", &b), want[i]);
        assert_non_null(strstr(rk_last_error(), "tags[1]"));
        assert_null(strstr(rk_last_error(), "secret"));
        rk_cache_entry e[] = {{.key = "k", .value = "v", .len = 1}};
        assert_int_equal(rk_cache_mset(cache, e, 1, &b, NULL), want[i]);
    }
    long_tag[RK_CACHE_MAX_TAG_BYTES] = '\0'; /* exactly the maximum: fine */
    const char *max[] = {long_tag};
    rk_cache_set_options m = tagged(max, 1, 60000);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", &m), RK_OK);
    assert_int_equal(rk_cache_invalidate_tag(cache, long_tag, NULL), RK_OK);
    assert_int_equal(dbsize(), 0);

    const char *many[RK_CACHE_MAX_TAGS + 1];
    for (int i = 0; i <= RK_CACHE_MAX_TAGS; i++) many[i] = "t";
    rk_cache_set_options toomany = tagged(many, RK_CACHE_MAX_TAGS + 1, 60000);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", &toomany), RK_ERR_INVALID);
    assert_int_equal(dbsize(), 0);

    size_t removed = 5;
    assert_int_equal(rk_cache_invalidate_tag(cache, "", &removed), RK_ERR_INVALID);
    assert_int_equal(removed, 0);
    assert_int_equal(rk_cache_invalidate_tag(cache, NULL, &removed), RK_ERR_INVALID);
    long_tag[RK_CACHE_MAX_TAG_BYTES] = 's';
    assert_int_equal(rk_cache_invalidate_tag(cache, long_tag, &removed), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_invalidate_tag(NULL, "t", &removed), RK_ERR_INVALID);
}

/* Tag sets do not grow with the history of a tag in use: 30 rounds of
 * 200 new keys (6000 in all) with a 300 ms TTL, at least 50 ms apart, keep
 * the set written to, so it never expires; yet at the last store it may
 * hold only the keys stored within the last 300 ms, at most 7 rounds of
 * 200. (The earlier format kept all 6000.) */
static void test_tag_set_bounded(void **state)
{
    (void)state;
    enum { ROUNDS = 30, PER_ROUND = 200, TTL_MS = 300, PAUSE_MS = 50 };
    enum { MOST_LIVE = (TTL_MS / PAUSE_MS + 1) * PER_ROUND };
    const char *t[] = {"busy"};
    rk_cache_set_options o = tagged(t, 1, TTL_MS);
    rk_cache_entry e[PER_ROUND];
    char keys[PER_ROUND][32];
    long long most = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < PER_ROUND; i++) {
            snprintf(keys[i], sizeof keys[i], "r%d:%d", round, i);
            e[i] = (rk_cache_entry){.key = keys[i], .value = "v", .len = 1};
        }
        assert_int_equal(rk_cache_mset(cache, e, PER_ROUND, &o, NULL), RK_OK);
        long long size = tag_set_size("shop:cache#tag:busy");
        if (size > most) most = size;
        rk_test_sleep_ms(PAUSE_MS);
    }
    print_message("tag set: %lld members at most, for %d keys written, %d live at most\n", most,
                  ROUNDS * PER_ROUND, MOST_LIVE);
    assert_true(most <= MOST_LIVE);
    /* Once the writes stop, the set goes with its last members. */
    int64_t deadline = rk_test_now_ms() + 5000;
    while (exists("shop:cache#tag:busy") && rk_test_now_ms() < deadline) rk_test_sleep_ms(20);
    assert_false(exists("shop:cache#tag:busy"));
}

/* A tag names a key while the value stored with the tag lives: a key
 * re-set without the tag after that value's TTL ran out is no longer the
 * tag's, even before a store trims the set. */
static void test_tag_names_key_until_its_value_expires(void **state)
{
    (void)state;
    const char *t[] = {"t"};
    rk_cache_set_options brief = tagged(t, 1, 100), lasting = tagged(t, 1, 60000);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", &brief), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "live", "v", &lasting), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "k", "untagged", &(rk_cache_set_options){.ttl_ms = 60000}), RK_OK);
    rk_test_sleep_ms(300); /* past the tagged value's 100 ms */
    size_t removed;
    assert_int_equal(rk_cache_invalidate_tag(cache, "t", &removed), RK_OK);
    assert_int_equal(removed, 1);
    assert_false(exists("shop:cache:live"));
    assert_true(exists("shop:cache:k"));

    /* Re-set with the tag while its tagged value lived: still the tag's. */
    assert_int_equal(rk_cache_set_str(cache, "k", "v", &lasting), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "k", "untagged", &(rk_cache_set_options){.ttl_ms = 60000}), RK_OK);
    assert_int_equal(rk_cache_invalidate_tag(cache, "t", &removed), RK_OK);
    assert_int_equal(removed, 1);
    assert_false(exists("shop:cache:k"));
}

/* A tag set in the earlier format (a plain Redis set) is refused with a
 * clear error, by stores and invalidations alike, and nothing is written
 * or removed. */
static void test_old_format_tag_set(void **state)
{
    (void)state;
    rk_test_server_ok(server, "SET %s v", "shop:cache:old1");
    rk_test_server_ok(server, "SADD shop:cache#tag:secret-old %s", "shop:cache:old1");
    const char *t[] = {"fine", "secret-old"};
    rk_cache_set_options o = tagged(t, 2, 60000);
    assert_int_equal(rk_cache_set_str(cache, "new", "v", &o), RK_ERR_SERVER);
    print_message("%s\n", rk_last_error());
    assert_non_null(strstr(rk_last_error(), "cache tag store"));
    assert_non_null(strstr(rk_last_error(), "tags[1]"));
    assert_non_null(strstr(rk_last_error(), "not a sorted set"));
    assert_null(strstr(rk_last_error(), "secret"));
    assert_false(exists("shop:cache:new"));
    assert_false(exists("shop:cache#tag:fine"));

    size_t removed = 9;
    assert_int_equal(rk_cache_invalidate_tag(cache, "secret-old", &removed), RK_ERR_SERVER);
    print_message("%s\n", rk_last_error());
    assert_non_null(strstr(rk_last_error(), "cache tag invalidate"));
    assert_non_null(strstr(rk_last_error(), "not a sorted set"));
    assert_null(strstr(rk_last_error(), "secret"));
    assert_int_equal(removed, 0);
    assert_true(exists("shop:cache:old1"));
    assert_true(exists("shop:cache#tag:secret-old"));

    /* Removing the old set (a clear does) lets the tag start afresh. */
    size_t cleared = 0;
    clear_all(cache, &cleared);
    assert_int_equal(rk_cache_set_str(cache, "new", "v", &o), RK_OK);
    assert_int_equal(rk_cache_invalidate_tag(cache, "secret-old", &removed), RK_OK);
    assert_int_equal(removed, 1);
}

/* A tagged batch answered NOSCRIPT is sent again under the deadline of
 * the call, not one per chunk: with 200 ms of latency each way, the
 * EVALSHA pipeline and the retry take 800 ms or more, beyond one command
 * timeout of 500 ms. (Before, each chunk got a fresh deadline and the call
 * succeeded after many round trips.) Only lower bounds of time are relied
 * on. */
static void test_tagged_batch_one_deadline(void **state)
{
    (void)state;
    slow_link l;
    slow_link_open(&l, "slow", 500, 0);
    enum { N = 300 }; /* two chunks */
    rk_cache_entry e[N];
    char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        e[i] = (rk_cache_entry){.key = keys[i], .value = "v", .len = 1};
    }
    const char *t[] = {"t"};
    rk_test_server_ok(server, "SCRIPT FLUSH");
    rk_fault_proxy_set(l.proxy, RK_FAULT_LATENCY, 200);
    rk_status st[N];
    rk_status got = rk_cache_mset(l.cache, e, N, &(rk_cache_set_options){.tags = t, .ntags = 1}, st);
    if (got != RK_ERR_TIMEOUT) fail_msg("want RK_ERR_TIMEOUT, got %s: %s", rk_strerror(got), rk_last_error());
    for (int i = 0; i < N; i++) assert_int_equal(st[i], RK_ERR_TIMEOUT);
    rk_fault_proxy_set(l.proxy, RK_FAULT_PASS, 0);
    slow_link_close(&l);
}

/* A tag set edited by someone else still cannot make an invalidation
 * remove keys outside the namespace. */
static void test_tampered_tag_set(void **state)
{
    (void)state;
    rk_test_server_ok(server, "SET %s precious", "shop:other:k");
    rk_test_server_ok(server, "SET %s precious", "unrelated");
    rk_test_server_ok(server, "ZADD shop:cache#tag:evil +inf shop:other:k +inf unrelated +inf %s",
                      "shop:cache:mine");
    rk_test_server_ok(server, "SET %s v", "shop:cache:mine");
    size_t removed;
    assert_int_equal(rk_cache_invalidate_tag(cache, "evil", &removed), RK_OK);
    assert_int_equal(removed, 1);
    assert_true(exists("shop:other:k"));
    assert_true(exists("unrelated"));
    assert_false(exists("shop:cache:mine"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_clear_removes_namespace_only, rk_test_group_flush),
        cmocka_unit_test_setup(test_clear_resumes, rk_test_group_flush),
        cmocka_unit_test_setup(test_clear_budget, rk_test_group_flush),
        cmocka_unit_test_setup(test_clear_one_deadline, rk_test_group_flush),
        cmocka_unit_test_setup(test_clear_glob_keys, rk_test_group_flush),
        cmocka_unit_test(test_clear_server_down),
        cmocka_unit_test_setup(test_invalidate_tag, rk_test_group_flush),
        cmocka_unit_test_setup(test_tags_per_namespace, rk_test_group_flush),
        cmocka_unit_test_setup(test_tag_set_ttl, rk_test_group_flush),
        cmocka_unit_test_setup(test_tags_after_script_flush, rk_test_group_flush),
        cmocka_unit_test_setup(test_tag_names, rk_test_group_flush),
        cmocka_unit_test_setup(test_tag_set_bounded, rk_test_group_flush),
        cmocka_unit_test_setup(test_tag_names_key_until_its_value_expires, rk_test_group_flush),
        cmocka_unit_test_setup(test_old_format_tag_set, rk_test_group_flush),
        cmocka_unit_test_setup(test_tagged_batch_one_deadline, rk_test_group_flush),
        cmocka_unit_test_setup(test_tampered_tag_set, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
