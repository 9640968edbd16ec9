/*
 * reply_test.c — the reply reader and the error-code mapping (src/reply.c),
 * with the regressions the reply fuzzer found:
 *
 *  - a reply announcing a huge array must not allocate for every announced
 *    element before they arrive (14 bytes once asked for 16 GiB);
 *  - an error reply is RK_ERR_AUTH only when its code, the first word, is
 *    exactly NOAUTH or WRONGPASS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/read.h>

#include <redkit/redkit.h>

#include "reply.h"

#define MIB ((size_t)1 << 20)

/* An allocator that refuses any single block over 1 MiB and remembers the
 * largest request, so a test can say "nothing big was asked for". */
static size_t largest;

static void *big_refusing_malloc(size_t size, void *user)
{
    (void)user;
    if (size > largest) largest = size;
    return size > MIB ? NULL : malloc(size);
}

static void *big_refusing_calloc(size_t n, size_t size, void *user)
{
    (void)user;
    if (size && n > SIZE_MAX / size) return NULL;
    if (n * size > largest) largest = n * size;
    return n * size > MIB ? NULL : calloc(n, size);
}

static void *big_refusing_realloc(void *p, size_t size, void *user)
{
    (void)user;
    if (size > largest) largest = size;
    return size > MIB ? NULL : realloc(p, size);
}

static void plain_free(void *p, void *user)
{
    (void)user;
    free(p);
}

static const rk_allocator big_refusing = {big_refusing_malloc, big_refusing_calloc, big_refusing_realloc,
                                          plain_free, NULL};

static void test_huge_array_count_allocates_as_elements_arrive(void **state)
{
    (void)state;
    largest = 0;
    redisReader *r = rk__reader_new();
    assert_non_null(r);
    const char *in = "*2147483647\r\n:1\r\n:2\r\n";
    assert_int_equal(redisReaderFeed(r, in, strlen(in)), REDIS_OK);
    void *reply = NULL;
    /* Not complete yet, and no error: the reader waits for more. */
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_null(reply);
    assert_true(largest <= MIB);
    redisReaderFree(r);
}

static void test_arrays_still_read_whole(void **state)
{
    (void)state;
    redisReader *r = rk__reader_new();
    assert_non_null(r);
    /* More elements than the first slot allocation, nested. */
    char in[4096];
    size_t n = (size_t)snprintf(in, sizeof in, "*40\r\n");
    for (int i = 0; i < 39; i++) n += (size_t)snprintf(in + n, sizeof in - n, ":%d\r\n", i);
    n += (size_t)snprintf(in + n, sizeof in - n, "*2\r\n$3\r\nabc\r\n$-1\r\n");
    assert_int_equal(redisReaderFeed(r, in, n), REDIS_OK);
    void *out = NULL;
    assert_int_equal(redisReaderGetReply(r, &out), REDIS_OK);
    rk_reply *reply = out;
    assert_non_null(reply);
    assert_int_equal(reply->type, RK_REPLY_ARRAY);
    assert_int_equal(reply->elements, 40);
    for (int i = 0; i < 39; i++) {
        assert_int_equal(reply->element[i]->type, RK_REPLY_INTEGER);
        assert_int_equal(reply->element[i]->integer, i);
    }
    rk_reply *inner = reply->element[39];
    assert_int_equal(inner->type, RK_REPLY_ARRAY);
    assert_int_equal(inner->elements, 2);
    assert_int_equal(inner->element[0]->len, 3);
    assert_memory_equal(inner->element[0]->str, "abc", 3);
    assert_int_equal(inner->element[1]->type, RK_REPLY_NIL);
    rk_reply_free(reply);
    redisReaderFree(r);
}

static void test_error_codes(void **state)
{
    (void)state;
    struct {
        const char *text;
        rk_status want;
    } cases[] = {
        {"NOAUTH Authentication required.", RK_ERR_AUTH},
        {"WRONGPASS invalid username-password pair", RK_ERR_AUTH},
        {"NOAUTH", RK_ERR_AUTH},
        {"NOAUTHX something", RK_ERR_SERVER},
        {"WRONGPASSWORD x", RK_ERR_SERVER},
        {"NOPERM this user has no permissions", RK_ERR_SERVER},
        {"ERR unknown command", RK_ERR_SERVER},
        {"", RK_ERR_SERVER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_status got = rk__reply_error_status(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want) fail_msg("\"%s\": got %s", cases[i].text, rk_strerror(got));
    }
}

int main(void)
{
    if (rk_set_allocator(&big_refusing) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_array_count_allocates_as_elements_arrive),
        cmocka_unit_test(test_arrays_still_read_whole),
        cmocka_unit_test(test_error_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
