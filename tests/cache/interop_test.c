/*
 * interop_test.c — values written by other clients (redis-cli here,
 * standing for ioredis, cache-manager, Rails, ...) read through a default,
 * typed cache handle, by the rules of docs/cache.md, "Values written by
 * other clients": a value without redkit's header is plain bytes on every
 * handle, strings and bytes read interchangeably, a number stored as text
 * reads as a number, and RK_ERR_TYPE remains for real mismatches between
 * typed values and for text that is not the number asked for. Nothing
 * read here is changed on the server.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <redkit/redkit.h>

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

/* redis-cli ARGS..., its output checked. */
static void cli(const char *expect, const char *a0, const char *a1, const char *a2)
{
    char out[256];
    const char *args[] = {a0, a1, a2, NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, args), 0);
    if (expect) assert_string_equal(out, expect);
}

static void expect_str(const char *key, const char *want)
{
    char *s = NULL;
    assert_int_equal(rk_cache_get_str(cache, key, &s), RK_OK);
    assert_string_equal(s, want);
    rk_free(s);
}

static void expect_bytes(const char *key, const char *want, size_t n)
{
    void *v = NULL;
    size_t len = 99;
    assert_int_equal(rk_cache_get(cache, key, &v, &len), RK_OK);
    assert_int_equal(len, n);
    assert_memory_equal(v, want, n);
    assert_int_equal(((char *)v)[n], '\0');
    rk_free(v);
}

/* Text from redis-cli reads as bytes and as a string. */
static void test_foreign_text(void **state)
{
    (void)state;
    cli("OK", "SET", "shop:cache:greeting", "hello world");
    expect_str("greeting", "hello world");
    expect_bytes("greeting", "hello world", 11);

    int64_t i = 7;
    double d = 7;
    assert_int_equal(rk_cache_get_i64(cache, "greeting", &i), RK_ERR_TYPE);
    assert_non_null(strstr(rk_last_error(), "not an int64"));
    assert_int_equal(rk_cache_get_double(cache, "greeting", &d), RK_ERR_TYPE);
    assert_int_equal(i, 7);
    assert_true(d == 7);

    /* An empty value and a one-byte value are too short for a header. */
    cli("OK", "SET", "shop:cache:empty", "");
    expect_str("empty", "");
    cli("OK", "SET", "shop:cache:one", "x");
    expect_bytes("one", "x", 1);

    /* Batches read them the same way (one hash tag: a cluster refuses
     * an MGET across slots). */
    cli("OK", "SET", "shop:cache:{b}greeting", "hello world");
    cli("OK", "SET", "shop:cache:{b}empty", "");
    const char *keys[] = {"{b}greeting", "{b}empty", "{b}absent"};
    rk_cache_result res[3];
    assert_int_equal(rk_cache_mget(cache, keys, 3, res), RK_OK);
    assert_int_equal(res[0].status, RK_OK);
    assert_string_equal(res[0].value, "hello world");
    assert_int_equal(res[1].status, RK_OK);
    assert_int_equal(res[1].len, 0);
    assert_int_equal(res[2].status, RK_MISS);
    rk_cache_results_free(res, 3);

    /* The server still holds exactly what redis-cli wrote. */
    cli("hello world", "GET", "shop:cache:greeting", NULL);
}

static rk_status never(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key;
    (void)out;
    (*(int *)ctx)++;
    return RK_ERR_INVALID;
}

static rk_status compute_json(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key;
    (void)ctx;
    return rk_cache_computed_set(out, "{\"id\":1}", 8);
}

/* rk_cache_fetch serves another client's value as a hit, and what fetch
 * stored (bytes) reads back as a string. */
static void test_fetch_interop(void **state)
{
    (void)state;
    cli("OK", "SET", "shop:cache:page", "<html>");
    int runs = 0;
    void *v = NULL;
    size_t len = 0;
    rk_cache_fetch_info info;
    assert_int_equal(rk_cache_fetch(cache, "page", never, &runs, NULL, &v, &len, &info), RK_OK);
    assert_int_equal(runs, 0);
    assert_false(info.computed);
    assert_int_equal(len, 6);
    assert_memory_equal(v, "<html>", 6);
    rk_free(v);

    assert_int_equal(rk_cache_fetch(cache, "user:1", compute_json, NULL, NULL, &v, &len, &info), RK_OK);
    assert_true(info.computed);
    rk_free(v);
    expect_str("user:1", "{\"id\":1}");
}

/* Numbers as text: from redis-cli (and its INCR), and from
 * rk_cache_set_str (what `redkit set n 42` stores). */
static void test_numbers_as_text(void **state)
{
    (void)state;
    int64_t i = 0;
    double d = 0;

    cli("OK", "SET", "shop:cache:hits", "41");
    cli("42", "INCR", "shop:cache:hits", NULL);
    assert_int_equal(rk_cache_get_i64(cache, "hits", &i), RK_OK);
    assert_int_equal(i, 42);
    assert_int_equal(rk_cache_get_double(cache, "hits", &d), RK_OK);
    assert_true(d == 42.0);
    expect_str("hits", "42");

    cli("OK", "SET", "shop:cache:price", "3.25");
    assert_int_equal(rk_cache_get_double(cache, "price", &d), RK_OK);
    assert_true(d == 3.25);
    assert_int_equal(rk_cache_get_i64(cache, "price", &i), RK_ERR_TYPE);
    assert_int_equal(i, 42);

    cli("OK", "SET", "shop:cache:big", "99999999999999999999");
    assert_int_equal(rk_cache_get_i64(cache, "big", &i), RK_ERR_TYPE);
    assert_int_equal(i, 42);

    assert_int_equal(rk_cache_set_str(cache, "n", "42", NULL), RK_OK);
    assert_int_equal(rk_cache_get_i64(cache, "n", &i), RK_OK);
    assert_int_equal(i, 42);
    assert_int_equal(rk_cache_set(cache, "b", "-5", 2, NULL), RK_OK);
    assert_int_equal(rk_cache_get_i64(cache, "b", &i), RK_OK);
    assert_int_equal(i, -5);
    assert_int_equal(rk_cache_get_double(cache, "b", &d), RK_OK);
    assert_true(d == -5.0);
}

/* Real mismatches between typed values stay RK_ERR_TYPE, outputs untouched. */
static void test_typed_mismatches(void **state)
{
    (void)state;
    char *s = (char *)"untouched";
    void *v = (void *)"untouched";
    size_t len = 3;
    int64_t i = 7;
    double d = 7;

    assert_int_equal(rk_cache_set_double(cache, "ratio", 0.5, NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(cache, "ratio", &s), RK_ERR_TYPE);
    assert_null(s);
    assert_non_null(strstr(rk_last_error(), "double"));
    assert_int_equal(rk_cache_get(cache, "ratio", &v, &len), RK_ERR_TYPE);
    assert_null(v);
    assert_int_equal(rk_cache_get_i64(cache, "ratio", &i), RK_ERR_TYPE);
    assert_int_equal(i, 7);

    assert_int_equal(rk_cache_set_i64(cache, "count", 3, NULL), RK_OK);
    assert_int_equal(rk_cache_get_double(cache, "count", &d), RK_ERR_TYPE);
    assert_true(d == 7);
    assert_int_equal(rk_cache_get_str(cache, "count", &s), RK_ERR_TYPE);

    /* Both still read as what they are. */
    assert_int_equal(rk_cache_get_double(cache, "ratio", &d), RK_OK);
    assert_true(d == 0.5);
    assert_int_equal(rk_cache_get_i64(cache, "count", &i), RK_OK);
    assert_int_equal(i, 3);
}

/* Binary values of other clients: bytes always; a string only without a
 * NUL inside; a value starting like a redkit header but not one is
 * refused rather than guessed at. */
static void test_foreign_binary(void **state)
{
    (void)state;
    redisReply *r = rk_test_server_command(server, "SET %s %b", "shop:cache:bin", "a\0b", (size_t)3);
    assert_non_null(r);
    freeReplyObject(r);
    expect_bytes("bin", "a\0b", 3);
    char *s = (char *)"untouched";
    assert_int_equal(rk_cache_get_str(cache, "bin", &s), RK_ERR_TYPE);
    assert_null(s);
    assert_non_null(strstr(rk_last_error(), "NUL"));

    r = rk_test_server_command(server, "SET %s %b", "shop:cache:odd", "\xFE\x09zz", (size_t)4);
    assert_non_null(r);
    freeReplyObject(r);
    void *v = NULL;
    size_t len = 0;
    assert_int_equal(rk_cache_get(cache, "odd", &v, &len), RK_ERR_TYPE);
    assert_null(v);

    /* UTF-8 text (never starts with 0xFE) reads as text. */
    cli("OK", "SET", "shop:cache:utf8", "\xC3\xA9t\xC3\xA9");
    expect_str("utf8", "\xC3\xA9t\xC3\xA9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_foreign_text, rk_test_group_flush),
        cmocka_unit_test_setup(test_fetch_interop, rk_test_group_flush),
        cmocka_unit_test_setup(test_numbers_as_text, rk_test_group_flush),
        cmocka_unit_test_setup(test_typed_mismatches, rk_test_group_flush),
        cmocka_unit_test_setup(test_foreign_binary, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
