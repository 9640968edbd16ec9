/*
 * keys_test.c — key naming and validation. No server: building a key
 * needs a client's prefix, not a connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <redkit/redkit.h>

#include "keys.h"

static void test_build_with_and_without_prefix(void **state)
{
    (void)state;
    rk_client *plain, *shop;
    assert_int_equal(rk_client_new(NULL, &plain), RK_OK);
    assert_int_equal(rk_client_new(&(rk_client_options){.key_prefix = "shop"}, &shop), RK_OK);
    assert_string_equal(rk_client_key_prefix(shop), "shop");

    char buf[64];
    size_t len = 0;
    assert_int_equal(rk_key_build(shop, "cache", "user:123", buf, sizeof buf, &len), RK_OK);
    assert_string_equal(buf, "shop:cache:user:123");
    assert_int_equal(len, strlen("shop:cache:user:123"));
    assert_int_equal(rk_key_build(plain, "cache", "user:123", buf, sizeof buf, &len), RK_OK);
    assert_string_equal(buf, "cache:user:123");

    /* Asking for the length only, and a buffer one byte short. */
    assert_int_equal(rk_key_build(shop, "cache", "user:123", NULL, 0, &len), RK_ERR_TOO_LARGE);
    assert_int_equal(len, 19);
    assert_int_equal(rk_key_build(shop, "cache", "user:123", buf, 19, &len), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_key_build(shop, "cache", "user:123", buf, 20, &len), RK_OK);

    /* Bad input. */
    assert_int_equal(rk_key_build(NULL, "cache", "k", buf, sizeof buf, &len), RK_ERR_INVALID);
    assert_int_equal(rk_key_build(shop, "cache", "k", buf, sizeof buf, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_key_build(shop, "cache", "", buf, sizeof buf, &len), RK_ERR_INVALID);
    assert_int_equal(rk_key_build(shop, "cache", NULL, buf, sizeof buf, &len), RK_ERR_INVALID);
    assert_int_equal(rk_key_build(shop, "", "k", buf, sizeof buf, &len), RK_ERR_INVALID);
    assert_int_equal(rk_key_build(shop, "a b", "k", buf, sizeof buf, &len), RK_ERR_INVALID);
    assert_int_equal(rk_key_build(shop, "ns*", "k", buf, sizeof buf, &len), RK_ERR_INVALID);
    assert_int_equal(rk_key_build(shop, NULL, "k", buf, sizeof buf, &len), RK_ERR_INVALID);
    rk_client_free(plain);
    rk_client_free(shop);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(rk__key_check_name("ns", "cache"), RK_OK);
    assert_int_equal(rk__key_check_name("ns", "a-b_c.d9"), RK_OK);
    assert_int_equal(rk__key_check_name("ns", "a:b"), RK_ERR_INVALID); /* the separator */
    char long_name[RK_MAX_NAMESPACE_BYTES + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(rk__key_check_name("ns", long_name), RK_ERR_INVALID);
    long_name[RK_MAX_NAMESPACE_BYTES] = '\0';
    assert_int_equal(rk__key_check_name("ns", long_name), RK_OK);
    const char *bad[] = {"", "a b", "a*", "a?", "[a]", "a\\b", "a\n", "\xC3\xA9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(rk__key_check_name("ns", bad[i]), RK_ERR_INVALID);
}

static void test_key_make_bounds(void **state)
{
    (void)state;
    rk__key k;
    assert_int_equal(rk__key_make(&k, "p:c:", 4, "abc", 3), RK_OK);
    assert_string_equal(k.str, "p:c:abc");
    assert_int_equal(k.len, 7);
    rk__key_release(&k);
    assert_int_equal(rk__key_make(&k, "p:c:", 4, "abcd", 3), RK_ERR_TOO_LARGE);
    assert_null(k.str);

    /* A key longer than the stack buffer goes to the heap and back. */
    char big[1001];
    memset(big, 'k', 1000);
    big[1000] = '\0';
    assert_int_equal(rk__key_make(&k, "p:c:", 4, big, 1000), RK_OK);
    assert_int_equal(k.len, 1004);
    assert_memory_equal(k.str + 4, big, 1000);
    rk__key_release(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_with_and_without_prefix),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_key_make_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
