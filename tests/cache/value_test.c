/*
 * value_test.c — the typed value format and number text, without a
 * server (src/cache/value.c is pure).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "value.h"

static void test_header_round_trip(void **state)
{
    (void)state;
    for (int t = RK__V_BYTES; t <= RK__V_DOUBLE; t++) {
        unsigned char buf[8];
        rk__value_header((rk__vtype)t, buf);
        memcpy(buf + 2, "xyz", 3);
        rk__vtype type = 0;
        size_t off = 99;
        assert_int_equal(rk__value_decode(buf, 5, false, &type, &off), RK_OK);
        assert_int_equal(type, t);
        assert_int_equal(off, RK__VALUE_HEADER);
        assert_string_not_equal(rk__vtype_name(type), "unknown");
    }
}

static void test_decode_refuses_foreign_values(void **state)
{
    (void)state;
    rk__vtype type;
    size_t off;
    assert_int_equal(rk__value_decode("", 0, false, &type, &off), RK_ERR_TYPE);
    assert_int_equal(rk__value_decode("\xFE", 1, false, &type, &off), RK_ERR_TYPE);
    assert_int_equal(rk__value_decode("hello", 5, false, &type, &off), RK_ERR_TYPE);
    assert_int_equal(rk__value_decode("\xFE\x00", 2, false, &type, &off), RK_ERR_TYPE);  /* type 0 */
    assert_int_equal(rk__value_decode("\xFE\x05", 2, false, &type, &off), RK_ERR_TYPE);  /* type 5 */
    assert_int_equal(rk__value_decode("\xFE\x12", 2, false, &type, &off), RK_ERR_TYPE);  /* a flag */
    assert_non_null(strstr(rk_last_error(), "flag"));
    /* Raw mode takes anything as bytes. */
    assert_int_equal(rk__value_decode("hello", 5, true, &type, &off), RK_OK);
    assert_int_equal(type, RK__V_BYTES);
    assert_int_equal(off, 0);
    assert_int_equal(rk__value_decode("", 0, true, &type, &off), RK_OK);
}

static void test_int64_text(void **state)
{
    (void)state;
    const int64_t values[] = {0, 1, -1, 1234567890123LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char buf[RK__NUMBER_TEXT_MAX + 1];
        size_t n = rk__i64_to_text(values[i], buf);
        int64_t back = 0;
        assert_int_equal(rk__text_to_i64(buf, n, &back), RK_OK);
        assert_true(back == values[i]);
    }
    const char *bad[] = {"", "-", "+1", " 1", "1 ", "1.0", "0x10", "9223372036854775808",
                         "-9223372036854775809", "123456789012345678901", "1a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 5;
        assert_int_equal(rk__text_to_i64(bad[i], strlen(bad[i]), &v), RK_ERR_TYPE);
        assert_int_equal(v, 5);
    }
}

static void test_double_text(void **state)
{
    (void)state;
    const double values[] = {0.0, -0.0, 0.1, 1.0 / 3, -1e308, 4.9e-324, 123456789.125};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char buf[RK__NUMBER_TEXT_MAX + 1];
        size_t n = rk__double_to_text(values[i], buf);
        double back = 1;
        assert_int_equal(rk__text_to_double(buf, n, &back), RK_OK);
        assert_memory_equal(&back, &values[i], sizeof back);
    }
    const char *bad[] = {"", " 1", "1 ", "abc", "1e999", "nan", "inf", "1e-999",
                         "1.000000000000000000000000000000001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 5;
        assert_int_equal(rk__text_to_double(bad[i], strlen(bad[i]), &v), RK_ERR_TYPE);
        assert_true(v == 5);
    }
}

/* Found by value_fuzz: strtod skips all of isspace(), so "\f-8" was read as
 * -8 although the parser promises that the whole text is the number. Text
 * starting with any white space, or with anything no number starts with,
 * is refused. */
static void test_double_refuses_leading_space(void **state)
{
    (void)state;
    const char *bad[] = {" 1", "\t1", "\n1", "\v1", "\f1", "\r1", "\f-8", "\r\n2.5", "inf", "x1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 5;
        assert_int_equal(rk__text_to_double(bad[i], strlen(bad[i]), &v), RK_ERR_TYPE);
        assert_true(v == 5);
    }
    const char *good[] = {"-8", "+8", ".5", "8."};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        double v = 5;
        assert_int_equal(rk__text_to_double(good[i], strlen(good[i]), &v), RK_OK);
    }
}

/* What the child of test_numbers_ignore_the_locale checks, under de_DE:
 * 0 when all is well, else the number of the check that failed. */
static int locale_checks(const char *dir)
{
    if (setenv("LOCPATH", dir, 1) != 0) return 1;
    locale_t de = newlocale(LC_ALL_MASK, "de_DE.UTF-8", (locale_t)0);
    if (!de) return 2;
    uselocale(de);
    char check[16];
    snprintf(check, sizeof check, "%.1f", 0.5);
    if (strcmp(check, "0,5") != 0) return 3; /* the locale really is in force */
    char buf[RK__NUMBER_TEXT_MAX + 1];
    if (rk__double_to_text(0.5, buf) != 3 || strcmp(buf, "0.5") != 0) return 4;
    double v = 0;
    if (rk__text_to_double("2.25", 4, &v) != RK_OK || v != 2.25) return 5;
    if (rk__text_to_double("2,25", 4, &v) != RK_ERR_TYPE) return 6;
    return 0;
}

/* A host program that chose a locale writing "0,5" must still store and
 * read "0.5": the text is shared with other processes. de_DE is compiled
 * at run time into a private directory (the `locales` package, installed
 * by scripts/deps, has its source), so the test never depends on what
 * locales the machine has generated. The checks run in a child that ends
 * with _exit(): glibc keeps what it parsed of LOCPATH for good, which
 * LeakSanitizer would report as a leak of this test. */
static void test_numbers_ignore_the_locale(void **state)
{
    (void)state;
    char dir[] = "/tmp/rk-locale-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
    int rc = system(cmd);
    /* localedef exits 1 for mere warnings, with the locale written. */
    assert_true(rc != -1);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(locale_checks(dir));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 2) fail_msg("could not load de_DE.UTF-8 (is the locales package installed?)");
    if (WEXITSTATUS(status) != 0) fail_msg("locale check %d failed", WEXITSTATUS(status));
}

/* Regression (#16): a META expiry is bytes from the network. One no
 * writer can produce — negative, or past 2^62 — is refused as a corrupt
 * value instead of reaching the fetch's "now - expiry" arithmetic, where
 * it overflowed (UBSan). 0 (no expiry) and 2^62 are accepted. */
static void test_meta_expiry_bounded(void **state)
{
    (void)state;
    const struct {
        uint64_t exp;
        rk_status want;
    } cases[] = {
        {0, RK_OK},
        {1700000000000ULL, RK_OK},
        {(uint64_t)1 << 62, RK_OK},
        {((uint64_t)1 << 62) + 1, RK_ERR_TYPE},
        {(uint64_t)INT64_MAX, RK_ERR_TYPE},
        {(uint64_t)INT64_MIN, RK_ERR_TYPE},
        {UINT64_MAX, RK_ERR_TYPE}, /* -1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char buf[RK__VALUE_HEADER_MAX + 1] = {RK__VALUE_MAGIC, RK__V_BYTES | RK__VF_META};
        for (int b = 0; b < 8; b++) buf[2 + b] = (unsigned char)(cases[i].exp >> (8 * b));
        buf[10] = 7;
        buf[RK__VALUE_HEADER_MAX] = 'v';
        rk__value_view v;
        rk_status st = rk__value_parse(buf, sizeof buf, false, &v);
        if (st != cases[i].want) fail_msg("expiry %llu: %s", (unsigned long long)cases[i].exp, rk_strerror(st));
        if (st == RK_OK) {
            assert_int_equal((uint64_t)v.meta.expires_at_ms, cases[i].exp);
            assert_int_equal(v.meta.compute_ms, 7);
        } else {
            assert_non_null(strstr(rk_last_error(), "expiry"));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_meta_expiry_bounded),
        cmocka_unit_test(test_decode_refuses_foreign_values),
        cmocka_unit_test(test_int64_text),
        cmocka_unit_test(test_double_text),
        cmocka_unit_test(test_double_refuses_leading_space),
        cmocka_unit_test(test_numbers_ignore_the_locale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
