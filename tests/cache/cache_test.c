/*
 * cache_test.c — rk_cache against a real redis-server started by the
 * fixture: every operation, TTL handling checked on the server (PTTL),
 * typed values and their mismatches, raw mode read by redis-cli, and bad
 * input that must be refused without touching what is already stored.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <string.h>

#include <redkit/redkit.h>

#include "support/clock.h"
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

/* The seed's example: set with a TTL, get, delete. */
static void test_seed_example(void **state)
{
    (void)state;
    const char *user = "{\"id\":123,\"name\":\"Ada\"}";
    assert_int_equal(rk_cache_set_str(cache, "user:123", user, &(rk_cache_set_options){.ttl_s = 300}), RK_OK);

    char *got = NULL;
    assert_int_equal(rk_cache_get_str(cache, "user:123", &got), RK_OK);
    assert_string_equal(got, user);
    rk_free(got);

    /* The key is namespaced on the server: prefix, then "cache". */
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "shop:cache:user:123"), 1);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "user:123"), 0);

    bool existed = false;
    assert_int_equal(rk_cache_delete_ex(cache, "user:123", &existed), RK_OK);
    assert_true(existed);
    got = (char *)"untouched";
    assert_int_equal(rk_cache_get_str(cache, "user:123", &got), RK_MISS);
    assert_null(got);
    /* Idempotent: deleting an absent key is RK_OK, and says it was absent. */
    assert_int_equal(rk_cache_delete(cache, "user:123"), RK_OK);
    assert_int_equal(rk_cache_delete_ex(cache, "user:123", &existed), RK_OK);
    assert_false(existed);
    assert_int_equal(rk_cache_delete_ex(cache, "user:123", NULL), RK_OK);
    assert_int_equal(rk_cache_delete_ex(cache, "", &existed), RK_ERR_INVALID);
    assert_false(existed);
}

static void test_exists_and_ttl(void **state)
{
    (void)state;
    int64_t ttl = 0;
    assert_int_equal(rk_cache_exists(cache, "k"), RK_MISS);
    assert_int_equal(rk_cache_ttl_ms(cache, "k", &ttl), RK_MISS);

    assert_int_equal(rk_cache_set_str(cache, "k", "v", &(rk_cache_set_options){.ttl_ms = 60000}), RK_OK);
    assert_int_equal(rk_cache_exists(cache, "k"), RK_OK);
    assert_int_equal(rk_cache_ttl_ms(cache, "k", &ttl), RK_OK);
    assert_true(ttl > 0 && ttl <= 60000);

    /* Seconds are seconds on the server. */
    assert_int_equal(rk_cache_set_str(cache, "s", "v", &(rk_cache_set_options){.ttl_s = 7}), RK_OK);
    long long pttl = rk_test_server_integer(server, "PTTL %s", "shop:cache:s");
    assert_true(pttl > 6000 && pttl <= 7000);

    /* ttl_ms wins over ttl_s. */
    assert_int_equal(rk_cache_set_str(cache, "both", "v", &(rk_cache_set_options){.ttl_s = 1000, .ttl_ms = 5000}),
                     RK_OK);
    pttl = rk_test_server_integer(server, "PTTL %s", "shop:cache:both");
    assert_true(pttl > 0 && pttl <= 5000);
}

static void test_default_ttl_and_no_expiry(void **state)
{
    (void)state;
    /* No TTL given: the handle's default (5 minutes) applies. */
    assert_int_equal(rk_cache_set_str(cache, "d", "v", NULL), RK_OK);
    long long pttl = rk_test_server_integer(server, "PTTL %s", "shop:cache:d");
    assert_true(pttl > 290000 && pttl <= RK_CACHE_DEFAULT_TTL_MS);

    /* No expiry only when asked for. */
    assert_int_equal(rk_cache_set_str(cache, "forever", "v", &(rk_cache_set_options){.ttl_s = RK_TTL_NONE}), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "PTTL %s", "shop:cache:forever"), -1);
    int64_t ttl = 0;
    assert_int_equal(rk_cache_ttl_ms(cache, "forever", &ttl), RK_OK);
    assert_int_equal(ttl, RK_TTL_NONE);

    /* A handle with its own default. */
    rk_cache *c2;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "short", .default_ttl_ms = 1500}, &c2),
                     RK_OK);
    assert_int_equal(rk_cache_set_str(c2, "d", "v", NULL), RK_OK);
    pttl = rk_test_server_integer(server, "PTTL %s", "shop:short:d");
    assert_true(pttl > 0 && pttl <= 1500);
    rk_cache_free(c2);
}

/* The TTL really expires: Redis itself reports the key gone. The wait is
 * a bounded poll, not a single sleep-and-hope. */
static void test_ttl_expires(void **state)
{
    (void)state;
    assert_int_equal(rk_cache_set_str(cache, "brief", "v", &(rk_cache_set_options){.ttl_ms = 150}), RK_OK);
    long long pttl = rk_test_server_integer(server, "PTTL %s", "shop:cache:brief");
    assert_true(pttl > 0 && pttl <= 150);

    long long exists = 1;
    for (int i = 0; i < 100 && exists; i++) { /* at most ~5 s */
        rk_test_sleep_ms(50);
        exists = rk_test_server_integer(server, "EXISTS %s", "shop:cache:brief");
    }
    assert_int_equal(exists, 0);
    assert_int_equal(rk_test_server_integer(server, "PTTL %s", "shop:cache:brief"), -2);
    assert_int_equal(rk_cache_exists(cache, "brief"), RK_MISS);
}

static void test_typed_values(void **state)
{
    (void)state;
    const int64_t ints[] = {0, 1, -1, 42, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t got = 7;
        assert_int_equal(rk_cache_set_i64(cache, "i", ints[i], NULL), RK_OK);
        assert_int_equal(rk_cache_get_i64(cache, "i", &got), RK_OK);
        assert_true(got == ints[i]);
    }
    const double doubles[] = {0.0, -0.0, 0.1, -2.5, 1e308, DBL_MIN, 4.9e-324, 3.141592653589793};
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        double got = 7;
        assert_int_equal(rk_cache_set_double(cache, "d", doubles[i], NULL), RK_OK);
        assert_int_equal(rk_cache_get_double(cache, "d", &got), RK_OK);
        assert_memory_equal(&got, &doubles[i], sizeof got); /* bit-exact */
    }
    assert_int_equal(rk_cache_set_double(cache, "d", NAN, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_double(cache, "d", INFINITY, NULL), RK_ERR_INVALID);

    /* Binary bytes with NULs, and the empty value. */
    const unsigned char bin[] = {0, 1, 0xFE, 0, 0xFF, '\r', '\n', 0};
    void *v;
    size_t len;
    assert_int_equal(rk_cache_set(cache, "b", bin, sizeof bin, NULL), RK_OK);
    assert_int_equal(rk_cache_get(cache, "b", &v, &len), RK_OK);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    rk_free(v);
    assert_int_equal(rk_cache_set(cache, "empty", NULL, 0, NULL), RK_OK);
    assert_int_equal(rk_cache_get(cache, "empty", &v, &len), RK_OK);
    assert_int_equal(len, 0);
    assert_string_equal(v, "");
    rk_free(v);

    /* A large value crosses many reads. */
    size_t big = 1 << 20;
    unsigned char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++) data[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(rk_cache_set(cache, "big", data, big, NULL), RK_OK);
    assert_int_equal(rk_cache_get(cache, "big", &v, &len), RK_OK);
    assert_int_equal(len, big);
    assert_memory_equal(v, data, big);
    rk_free(v);
    free(data);
}

/* Reading a value as another type is an error, never garbage, and leaves
 * the value and the output untouched. */
static void test_type_mismatch(void **state)
{
    (void)state;
    int64_t i = 99;
    double d = 99;
    char *s = NULL;
    void *v = NULL;
    size_t len = 0;

    assert_int_equal(rk_cache_set_str(cache, "str", "hello", NULL), RK_OK);
    assert_int_equal(rk_cache_get_i64(cache, "str", &i), RK_ERR_TYPE);
    assert_int_equal(i, 99);
    assert_non_null(strstr(rk_last_error(), "string"));
    assert_int_equal(rk_cache_get_double(cache, "str", &d), RK_ERR_TYPE);
    /* A string is bytes: the bytes getter reads it. */
    assert_int_equal(rk_cache_get(cache, "str", &v, &len), RK_OK);
    assert_int_equal(len, 5);
    rk_free(v);

    assert_int_equal(rk_cache_set_i64(cache, "int", 5, NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(cache, "int", &s), RK_ERR_TYPE);
    assert_null(s);
    assert_int_equal(rk_cache_get_double(cache, "int", &d), RK_ERR_TYPE);
    assert_int_equal(rk_cache_get(cache, "int", &v, &len), RK_ERR_TYPE);
    assert_null(v);

    /* Bytes and strings read interchangeably; text that is no number
     * is still not one. */
    assert_int_equal(rk_cache_set(cache, "bytes", "ab", 2, NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(cache, "bytes", &s), RK_OK);
    assert_string_equal(s, "ab");
    rk_free(s);
    s = NULL;
    assert_int_equal(rk_cache_get_i64(cache, "bytes", &i), RK_ERR_TYPE);

    /* A value written by another client has no header: plain text
     * (docs/cache.md, "Values written by other clients"). */
    redisReply *r = rk_test_server_command(server, "SET %s %s", "shop:cache:foreign", "12");
    freeReplyObject(r);
    assert_int_equal(rk_cache_get_i64(cache, "foreign", &i), RK_OK);
    assert_int_equal(i, 12);
    i = 99;
    assert_int_equal(rk_cache_get(cache, "foreign", &v, &len), RK_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(v, "12", 3);
    rk_free(v);
    v = NULL;
    /* A value from a future format (unknown flag) is refused. */
    r = rk_test_server_command(server, "SET %s %b", "shop:cache:future", "\xFE\x82xx", (size_t)4);
    freeReplyObject(r);
    assert_int_equal(rk_cache_get_str(cache, "future", &s), RK_ERR_TYPE);
    assert_int_equal(i, 99);

    /* And the stored values are intact. */
    assert_int_equal(rk_cache_get_i64(cache, "int", &i), RK_OK);
    assert_int_equal(i, 5);
}

/* Raw mode: plain bytes, readable and writable by any other client. */
static void test_raw_mode_interop(void **state)
{
    (void)state;
    rk_cache *raw;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.raw = true, .ns = "raw"}, &raw), RK_OK);

    assert_int_equal(rk_cache_set_str(raw, "greeting", "hello world", NULL), RK_OK);
    char out[256];
    const char *get[] = {"GET", "shop:raw:greeting", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, get), 0);
    assert_string_equal(out, "hello world");

    const char *set[] = {"SET", "shop:raw:counter", "41", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, set), 0);
    const char *incr[] = {"INCR", "shop:raw:counter", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, incr), 0);
    int64_t n = 0;
    assert_int_equal(rk_cache_get_i64(raw, "counter", &n), RK_OK);
    assert_int_equal(n, 42);

    /* Numbers written raw are decimal text, so INCR works on them. */
    assert_int_equal(rk_cache_set_i64(raw, "n", -7, NULL), RK_OK);
    const char *incr2[] = {"INCR", "shop:raw:n", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, incr2), 0);
    assert_string_equal(out, "-6");

    /* Text that is not a number still is a type error. */
    assert_int_equal(rk_cache_get_i64(raw, "greeting", &n), RK_ERR_TYPE);
    double d;
    assert_int_equal(rk_cache_get_double(raw, "greeting", &d), RK_ERR_TYPE);
    char *s;
    assert_int_equal(rk_cache_get_str(raw, "counter", &s), RK_OK);
    assert_string_equal(s, "42");
    rk_free(s);
    rk_cache_free(raw);
}

/* Bad input: a documented status, nothing sent, nothing stored lost. */
static void test_bad_input(void **state)
{
    (void)state;
    rk_cache *small;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.max_key_bytes = 16, .max_value_bytes = 100},
                                  &small),
                     RK_OK);
    assert_int_equal(rk_cache_set_str(small, "keep", "precious", NULL), RK_OK);

    void *v;
    size_t len;
    char *s;
    int64_t ttl;
    assert_int_equal(rk_cache_set_str(NULL, "k", "v", NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_str(small, NULL, "v", NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_str(small, "k", NULL, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_set(small, "k", NULL, 5, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_str(small, "", "v", NULL), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "empty"));
    assert_int_equal(rk_cache_get(small, "keep", NULL, &len), RK_ERR_INVALID);
    assert_int_equal(rk_cache_get(small, "keep", &v, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_get_str(NULL, "keep", &s), RK_ERR_INVALID);
    assert_int_equal(rk_cache_get_str(small, NULL, &s), RK_ERR_INVALID);
    assert_int_equal(rk_cache_delete(small, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_exists(NULL, "keep"), RK_ERR_INVALID);
    assert_int_equal(rk_cache_ttl_ms(small, "keep", NULL), RK_ERR_INVALID);

    /* Over the configured maxima. */
    assert_int_equal(rk_cache_set_str(small, "seventeen-bytes-k", "v", NULL), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_get_str(small, "seventeen-bytes-k", &s), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_set_str(small, "sixteen-bytes-ok", "v", NULL), RK_OK);
    char big[102];
    memset(big, 'x', 101);
    big[101] = '\0';
    assert_int_equal(rk_cache_set_str(small, "keep", big, NULL), RK_ERR_TOO_LARGE);
    assert_non_null(strstr(rk_last_error(), "100"));
    big[100] = '\0';
    assert_int_equal(rk_cache_set_str(small, "hundred", big, NULL), RK_OK);

    /* Bad TTLs. */
    assert_int_equal(rk_cache_set_str(small, "keep", "x", &(rk_cache_set_options){.ttl_ms = -5}), RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_str(small, "keep", "x", &(rk_cache_set_options){.ttl_s = -2}), RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_str(small, "keep", "x", &(rk_cache_set_options){.ttl_s = INT64_MIN}),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_str(small, "keep", "x", &(rk_cache_set_options){.ttl_s = INT64_MAX}),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_set_str(small, "keep", "x", &(rk_cache_set_options){.ttl_ms = INT64_MAX}),
                     RK_ERR_INVALID);

    /* Bad handle options. */
    rk_cache *bad = (rk_cache *)1;
    assert_int_equal(rk_cache_new(NULL, NULL, &bad), RK_ERR_INVALID);
    assert_null(bad);
    assert_int_equal(rk_cache_new(client, NULL, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "has space"}, &bad), RK_ERR_INVALID);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "glob*"}, &bad), RK_ERR_INVALID);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = ""}, &bad), RK_ERR_INVALID);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.default_ttl_ms = -3}, &bad), RK_ERR_INVALID);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.max_value_bytes = (size_t)1 << 30}, &bad),
                     RK_ERR_INVALID);

    /* Nothing above touched the stored value. */
    assert_int_equal(rk_cache_get_str(small, "keep", &s), RK_OK);
    assert_string_equal(s, "precious");
    rk_free(s);
    assert_int_equal(rk_cache_ttl_ms(small, "keep", &ttl), RK_OK);
    assert_true(ttl > 0);
    rk_cache_free(small);
    rk_cache_free(NULL);
}

/* Two namespaces never see each other's keys. */
static void test_namespaces_are_isolated(void **state)
{
    (void)state;
    rk_cache *a, *b;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "a"}, &a), RK_OK);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "b"}, &b), RK_OK);
    assert_int_equal(rk_cache_set_str(a, "k", "from a", NULL), RK_OK);
    char *s = NULL;
    assert_int_equal(rk_cache_get_str(b, "k", &s), RK_MISS);
    assert_int_equal(rk_cache_set_str(b, "k", "from b", NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(a, "k", &s), RK_OK);
    assert_string_equal(s, "from a");
    rk_free(s);
    assert_int_equal(rk_cache_delete(b, "k"), RK_OK);
    assert_int_equal(rk_cache_exists(a, "k"), RK_OK);
    rk_cache_free(a);
    rk_cache_free(b);
}

/* With Redis gone, reads degrade to a flagged miss and writes fail with a
 * retryable status; nothing crashes, nothing blocks past its deadline. */
static void test_server_down(void **state)
{
    (void)state;
    rk_test_server *gone = rk_test_server_start(NULL);
    assert_non_null(gone);
    rk_client *c;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(gone)}, &c), RK_OK);
    rk_cache *k;
    assert_int_equal(rk_cache_new(c, NULL, &k), RK_OK);
    assert_int_equal(rk_cache_set_str(k, "x", "1", NULL), RK_OK);
    rk_test_server_stop(gone);

    char *s = (char *)"untouched";
    rk_status st = rk_cache_get_str(k, "x", &s);
    assert_int_equal(st, RK_DEGRADED);
    assert_true(rk_status_is_miss(st));
    assert_false(rk_status_is_error(st));
    assert_non_null(strstr(rk_last_error(), "degraded"));
    assert_null(s);
    int64_t ttl = 5, n = 5;
    double d = 5;
    assert_int_equal(rk_cache_exists(k, "x"), RK_DEGRADED);
    assert_int_equal(rk_cache_ttl_ms(k, "x", &ttl), RK_DEGRADED);
    assert_int_equal(ttl, 5);
    assert_int_equal(rk_cache_get_i64(k, "x", &n), RK_DEGRADED);
    assert_int_equal(rk_cache_get_double(k, "x", &d), RK_DEGRADED);
    st = rk_cache_set_str(k, "x", "2", NULL);
    assert_true(rk_status_is_error(st) && rk_status_is_retryable(st));
    assert_int_equal(rk_cache_delete(k, "x"), RK_ERR_UNAVAILABLE);
    rk_cache_free(k);
    rk_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_seed_example, rk_test_group_flush),
        cmocka_unit_test_setup(test_exists_and_ttl, rk_test_group_flush),
        cmocka_unit_test_setup(test_default_ttl_and_no_expiry, rk_test_group_flush),
        cmocka_unit_test_setup(test_ttl_expires, rk_test_group_flush),
        cmocka_unit_test_setup(test_typed_values, rk_test_group_flush),
        cmocka_unit_test_setup(test_type_mismatch, rk_test_group_flush),
        cmocka_unit_test_setup(test_raw_mode_interop, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_input, rk_test_group_flush),
        cmocka_unit_test_setup(test_namespaces_are_isolated, rk_test_group_flush),
        cmocka_unit_test(test_server_down),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
