/*
 * options_test.c — the range of every size and time option of a cache
 * handle (rk_cache_options) and of a fetch (rk_cache_fetch_options), at
 * and past each bound, and the values users reach for when they mean
 * "never" or "none" (SIZE_MAX, INT64_MAX, a negative number cast to
 * size_t). No server: rk_cache_new() and the checks of rk_cache_fetch()
 * send nothing, so a client that never connects is enough.
 *
 * Regression: max_key_bytes = SIZE_MAX once made strnlen(key, max + 1)
 * wrap to 0, so every key became "<prefix>:<ns>:" and a read of "alice"
 * returned bob's value. The probe below builds both keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <string.h>

#include <redkit/redkit.h>

#include "keys.h"

static rk_client *client;

static int setup(void **state)
{
    (void)state;
    return rk_client_new(&(rk_client_options){.key_prefix = "p1"}, &client) == RK_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rk_client_free(client);
    return 0;
}

/* rk_cache_new with opts: the status, and no handle unless RK_OK. */
static rk_status try_new(const rk_cache_options *opts)
{
    rk_cache *c = (rk_cache *)1;
    rk_status st = rk_cache_new(client, opts, &c);
    if (st == RK_OK) {
        assert_non_null(c);
        rk_cache_free(c);
    } else {
        assert_null(c);
        assert_true(rk_last_error()[0] != '\0');
    }
    return st;
}

static void test_max_key_bytes(void **state)
{
    (void)state;
    assert_int_equal(try_new(&(rk_cache_options){.max_key_bytes = 0}), RK_OK); /* default */
    assert_int_equal(try_new(&(rk_cache_options){.max_key_bytes = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.max_key_bytes = RK_MAX_KEY_BYTES}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.max_key_bytes = RK_MAX_KEY_BYTES + 1}), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "max_key_bytes"));
    assert_int_equal(try_new(&(rk_cache_options){.max_key_bytes = SIZE_MAX}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.max_key_bytes = (size_t)-2}), RK_ERR_INVALID);
}

/* The probe of the bug: alice and bob stay two keys, at the largest limit
 * a handle takes, and in the key builder itself at SIZE_MAX. */
static void test_size_max_probe_keeps_keys_apart(void **state)
{
    (void)state;
    rk_cache *c;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.max_key_bytes = RK_MAX_KEY_BYTES}, &c), RK_OK);
    char a[64], b[64];
    size_t alen, blen;
    assert_int_equal(rk_cache_key_build(c, "alice", a, sizeof a, &alen), RK_OK);
    assert_int_equal(rk_cache_key_build(c, "bob", b, sizeof b, &blen), RK_OK);
    assert_string_equal(a, "p1:cache:alice");
    assert_string_equal(b, "p1:cache:bob");
    rk_cache_free(c);

    static const char head[] = "p1:cache:";
    rk__key ka, kb;
    assert_int_equal(rk__key_make(&ka, head, sizeof head - 1, "alice", SIZE_MAX), RK_OK);
    assert_int_equal(rk__key_make(&kb, head, sizeof head - 1, "bob", SIZE_MAX), RK_OK);
    assert_int_equal(ka.len, sizeof head - 1 + 5);
    assert_string_equal(ka.str, "p1:cache:alice");
    assert_string_equal(kb.str, "p1:cache:bob");
    rk__key_release(&ka);
    rk__key_release(&kb);
}

/* rk_cache_key_build honours the handle's own max_key_bytes, where
 * rk_key_build applies the default. */
static void test_cache_key_build(void **state)
{
    (void)state;
    rk_cache *small, *big;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "s", .max_key_bytes = 4}, &small), RK_OK);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "b", .max_key_bytes = 4096}, &big), RK_OK);
    char buf[4200];
    size_t len = 0;
    assert_int_equal(rk_cache_key_build(small, "abcd", buf, sizeof buf, &len), RK_OK);
    assert_string_equal(buf, "p1:s:abcd");
    assert_int_equal(len, 9);
    assert_int_equal(rk_cache_key_build(small, "abcde", buf, sizeof buf, &len), RK_ERR_TOO_LARGE);

    char key[2001];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    assert_int_equal(rk_key_build(client, "b", key, buf, sizeof buf, &len), RK_ERR_TOO_LARGE); /* default 1024 */
    assert_int_equal(rk_cache_key_build(big, key, buf, sizeof buf, &len), RK_OK);
    assert_int_equal(len, 5 + 2000);
    assert_int_equal(memcmp(buf, "p1:b:kkk", 8), 0);

    /* Length only, a buffer one byte short, bad arguments. */
    assert_int_equal(rk_cache_key_build(small, "ab", NULL, 0, &len), RK_ERR_TOO_LARGE);
    assert_int_equal(len, 7);
    assert_int_equal(rk_cache_key_build(small, "ab", buf, 7, &len), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_key_build(small, "ab", buf, 8, &len), RK_OK);
    assert_int_equal(rk_cache_key_build(NULL, "ab", buf, 8, &len), RK_ERR_INVALID);
    assert_int_equal(rk_cache_key_build(small, "", buf, 8, &len), RK_ERR_INVALID);
    assert_int_equal(rk_cache_key_build(small, NULL, buf, 8, &len), RK_ERR_INVALID);
    assert_int_equal(rk_cache_key_build(small, "ab", NULL, 8, &len), RK_ERR_INVALID);
    assert_int_equal(rk_cache_key_build(small, "ab", buf, 8, NULL), RK_ERR_INVALID);
    rk_cache_free(small);
    rk_cache_free(big);
}

static void test_default_ttl_ms(void **state)
{
    (void)state;
    const int64_t max = (int64_t)1 << 62;
    assert_int_equal(try_new(&(rk_cache_options){.default_ttl_ms = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.default_ttl_ms = RK_TTL_NONE}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.default_ttl_ms = max}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.default_ttl_ms = max + 1}), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "default_ttl_ms"));
    assert_int_equal(try_new(&(rk_cache_options){.default_ttl_ms = INT64_MAX}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.default_ttl_ms = -2}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.default_ttl_ms = INT64_MIN}), RK_ERR_INVALID);
}

static void test_max_value_bytes(void **state)
{
    (void)state;
    const size_t limit = ((size_t)512 << 20) - 14; /* Redis's bulk limit minus the largest header */
    assert_int_equal(try_new(&(rk_cache_options){.max_value_bytes = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.max_value_bytes = limit}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.max_value_bytes = limit + 1}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.max_value_bytes = SIZE_MAX}), RK_ERR_INVALID);
}

static void test_compress_options(void **state)
{
    (void)state;
    /* Every threshold means something: SIZE_MAX (RK_CACHE_COMPRESS_OFF) and
     * anything over max_value_bytes never compress. */
    assert_int_equal(try_new(&(rk_cache_options){.compress_threshold = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.compress_threshold = RK_CACHE_COMPRESS_OFF}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.compress_threshold = SIZE_MAX - 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.compress_level = 19}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.compress_level = -7}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.compress_level = 20}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.compress_level = -8}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.compress_level = INT_MAX}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.compress_level = INT_MIN}), RK_ERR_INVALID);
}

static void test_time_options(void **state)
{
    (void)state;
    assert_int_equal(try_new(&(rk_cache_options){.lock_ms = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.lock_ms = 3600000}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.lock_ms = 3600001}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.lock_ms = -1}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.lock_ms = INT64_MAX}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.lock_ms = INT64_MIN}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.clear_budget_ms = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.clear_budget_ms = 60000}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.clear_budget_ms = 60001}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.clear_budget_ms = -1}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.clear_budget_ms = INT_MAX}), RK_ERR_INVALID);
}

static void test_local_copies(void **state)
{
    (void)state;
    assert_int_equal(try_new(&(rk_cache_options){.local_copies = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.local_copies = SIZE_MAX}), RK_OK); /* none */
    assert_int_equal(try_new(&(rk_cache_options){.local_copies = (size_t)PTRDIFF_MAX}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.local_copies = (size_t)PTRDIFF_MAX + 1}), RK_ERR_INVALID);
    assert_int_equal(try_new(&(rk_cache_options){.local_copies = (size_t)-2}), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "local_copies"));
    assert_int_equal(try_new(&(rk_cache_options){.local_copies_bytes = 1}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.local_copies_bytes = SIZE_MAX}), RK_OK); /* no copies */
    assert_int_equal(try_new(&(rk_cache_options){.local_copies_bytes = (size_t)PTRDIFF_MAX}), RK_OK);
    assert_int_equal(try_new(&(rk_cache_options){.local_copies_bytes = (size_t)-2}), RK_ERR_INVALID);
}

/* The near cache's limits are checked when it is on (and before it
 * connects, so no server is needed to see them refused). */
static void test_near_cache_options(void **state)
{
    (void)state;
    const rk_cache_options bad[] = {
        {.near_cache = true, .near_max_bytes = (64u << 10) - 1},
        {.near_cache = true, .near_max_bytes = (size_t)PTRDIFF_MAX + 1},
        {.near_cache = true, .near_max_bytes = SIZE_MAX},
        {.near_cache = true, .near_max_entries = ((size_t)1 << 32) + 1},
        {.near_cache = true, .near_max_entries = SIZE_MAX},
        {.near_cache = true, .near_max_ttl_ms = -1},
        {.near_cache = true, .near_max_ttl_ms = 86400001},
        {.near_cache = true, .near_max_ttl_ms = INT64_MAX},
        {.near_cache = true, .near_max_ttl_ms = INT64_MIN},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_status st = try_new(&bad[i]);
        if (st != RK_ERR_INVALID) fail_msg("near case %zu: %s", i, rk_strerror(st));
        assert_non_null(strstr(rk_last_error(), "near_max"));
    }
}

static rk_status never_called(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key;
    (void)out;
    (void)ctx;
    fail_msg("the compute callback ran for an invalid call");
    return RK_ERR_INVALID;
}

/* The per-call options of rk_cache_fetch are checked before anything is
 * sent or computed; the client never connects, so RK_ERR_INVALID is the
 * only answer these calls can give. */
static void test_fetch_options(void **state)
{
    (void)state;
    rk_cache *c;
    assert_int_equal(rk_cache_new(client, NULL, &c), RK_OK);
    void *v;
    size_t n;
    const int64_t max = (int64_t)1 << 62;
    const rk_cache_fetch_options bad[] = {
        {.ttl_ms = -2},
        {.ttl_ms = max + 1},
        {.ttl_ms = INT64_MAX},
        {.ttl_ms = INT64_MIN},
        {.ttl_s = INT64_MAX},
        {.ttl_s = max / 1000 + 1},
        {.ttl_s = -2},
        {.stale_ms = -1},
        {.stale_ms = INT64_MIN},
        {.stale_ms = INT64_MAX},
        {.ttl_ms = max, .stale_ms = 1},
        {.ttl_ms = 1000, .stale_ms = max},
        {.beta = NAN},
        {.beta = INFINITY},
        {.beta = -INFINITY},
        {.ntags = RK_CACHE_MAX_TAGS + 1},
        {.ntags = SIZE_MAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_status st = rk_cache_fetch(c, "k", never_called, NULL, &bad[i], &v, &n, NULL);
        if (st != RK_ERR_INVALID) fail_msg("case %zu: %s: %s", i, rk_strerror(st), rk_last_error());
        assert_null(v);
        assert_int_equal(n, 0);
    }
    rk_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_key_bytes),
        cmocka_unit_test(test_size_max_probe_keeps_keys_apart),
        cmocka_unit_test(test_cache_key_build),
        cmocka_unit_test(test_default_ttl_ms),
        cmocka_unit_test(test_max_value_bytes),
        cmocka_unit_test(test_compress_options),
        cmocka_unit_test(test_time_options),
        cmocka_unit_test(test_local_copies),
        cmocka_unit_test(test_fetch_options),
        cmocka_unit_test(test_near_cache_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
