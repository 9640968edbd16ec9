/*
 * keys_test.c — key naming and validation, and escaping keys for glob
 * patterns. No server: building a key needs a client's prefix, not a
 * connection. (The same rules against a real server, with hostile keys:
 * hostile_keys_test.c.)
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

/* A user key is a C string: the NUL ends it. Whatever follows a NUL in the
 * caller's buffer is not part of the key — the key stored is exactly the
 * bytes before it. */
static void test_nul_ends_the_key(void **state)
{
    (void)state;
    rk__key k;
    static const char with_nul[] = "ab\0cd";
    assert_int_equal(rk__key_make(&k, "p:c:", 4, with_nul, 1024), RK_OK);
    assert_int_equal(k.len, 6);
    assert_memory_equal(k.str, "p:c:ab", 7); /* the NUL that ends it included */
    rk__key_release(&k);
    /* The limit is checked on the part before the NUL, too. */
    assert_int_equal(rk__key_make(&k, "p:c:", 4, with_nul, 2), RK_OK);
    rk__key_release(&k);
    assert_int_equal(rk__key_make(&k, "p:c:", 4, "\0cd", 1024), RK_ERR_INVALID); /* empty */

    rk_client *shop;
    assert_int_equal(rk_client_new(&(rk_client_options){.key_prefix = "shop"}, &shop), RK_OK);
    char buf[64];
    size_t len = 0;
    assert_int_equal(rk_key_build(shop, "cache", with_nul, buf, sizeof buf, &len), RK_OK);
    assert_int_equal(len, strlen("shop:cache:ab"));
    assert_string_equal(buf, "shop:cache:ab");
    rk_client_free(shop);
}

/* Escape s (n bytes) into a buffer of exactly the size needed and check it
 * against want (wn bytes). */
static void check_escape(const char *s, size_t n, const char *want, size_t wn)
{
    size_t need = rk__key_glob_escape(s, n, NULL, 0);
    assert_int_equal(need, wn);
    char buf[128];
    assert_true(need < sizeof buf);
    memset(buf, 'Z', sizeof buf);
    assert_int_equal(rk__key_glob_escape(s, n, buf, need + 1), wn);
    assert_memory_equal(buf, want, wn);
    assert_int_equal(buf[wn], '\0');
    assert_int_equal(buf[wn + 1], 'Z'); /* nothing written past the NUL */
}

static void test_glob_escape(void **state)
{
    (void)state;
    check_escape("", 0, "", 0);
    check_escape("user:123", 8, "user:123", 8);
    check_escape("*", 1, "\\*", 2);
    check_escape("?", 1, "\\?", 2);
    check_escape("[a-z]", 5, "\\[a-z\\]", 7);
    check_escape("\\", 1, "\\\\", 2);
    check_escape("\\*", 2, "\\\\\\*", 4);
    check_escape("a*b?c", 5, "a\\*b\\?c", 7);
    check_escape("../x", 4, "../x", 4);
    check_escape("a\r\nb", 4, "a\r\nb", 4);
    check_escape("^-!{}", 5, "^-!{}", 5); /* special only inside a class */
    check_escape("a\0*", 3, "a\0\\*", 4); /* NUL copied, not an end */
    check_escape("\xff[", 2, "\xff\\[", 3);

    /* Every byte value: the special five doubled, the rest copied. */
    char all[256], out[512];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    assert_int_equal(rk__key_glob_escape(all, 256, out, sizeof out), 261);
    size_t j = 0;
    for (int i = 0; i < 256; i++) {
        if (strchr("*?[]\\", i) && i != 0) assert_int_equal(out[j++], '\\');
        assert_int_equal((unsigned char)out[j++], i);
    }
    assert_int_equal(j, 261);

    /* A buffer too small: truncated, NUL-terminated, the full length
     * returned, nothing written past buf_size. */
    char small[5];
    memset(small, 'Z', sizeof small);
    assert_int_equal(rk__key_glob_escape("a*b*c", 5, small, 4), 7);
    assert_memory_equal(small, "a\\*\0Z", 5);
    assert_int_equal(rk__key_glob_escape("abc", 3, small, 1), 3);
    assert_int_equal(small[0], '\0');
    assert_int_equal(rk__key_glob_escape("abc", 3, NULL, 0), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_with_and_without_prefix),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_key_make_bounds),
        cmocka_unit_test(test_nul_ends_the_key),
        cmocka_unit_test(test_glob_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
