/*
 * reply_test.c — the reply reader and the error-code mapping (src/transport/reply.c),
 * with the regressions the reply fuzzer found:
 *
 *  - a reply announcing a huge array must not allocate for every announced
 *    element before they arrive (14 bytes once asked for 16 GiB);
 *  - an error reply is RK_ERR_AUTH only when its code, the first word, is
 *    exactly NOAUTH or WRONGPASS;
 *
 * and from a review: a stream the reply functions refuse is a protocol
 * error, not "out of memory"; command names in messages are bounded and
 * never read past their length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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
        /* "Not now" states: the server is up but not serving. */
        {"LOADING Redis is loading the dataset in memory", RK_ERR_UNAVAILABLE},
        {"BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
         RK_ERR_UNAVAILABLE},
        {"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", RK_ERR_UNAVAILABLE},
        {"TRYAGAIN Multiple keys request during rehashing of slot", RK_ERR_UNAVAILABLE},
        {"CLUSTERDOWN Hash slot not served", RK_ERR_UNAVAILABLE},
        {"CLUSTERDOWN The cluster is down", RK_ERR_UNAVAILABLE},
        {"BUSY", RK_ERR_UNAVAILABLE},
        /* Other codes that merely begin the same way are errors. */
        {"BUSYKEY Target key name already exists.", RK_ERR_SERVER},
        {"BUSYGROUP Consumer Group name already exists", RK_ERR_SERVER},
        {"LOADINGX x", RK_ERR_SERVER},
        {"OOM command not allowed when used memory > 'maxmemory'.", RK_ERR_SERVER},
        {"READONLY You can't write against a read only replica.", RK_ERR_SERVER},
        {"NOREPLICAS Not enough good replicas to write.", RK_ERR_SERVER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_status got = rk__reply_error_status(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want) fail_msg("\"%s\": got %s", cases[i].text, rk_strerror(got));
    }
    /* Refusals of writes that still let reads through. */
    char oom[] = "OOM command not allowed", ro[] = "READONLY You can't write", err[] = "ERR OOMish", oomx[] = "OOMX";
    rk_reply r = {.type = RK_REPLY_ERROR, .str = oom, .len = strlen(oom)};
    assert_true(rk__reply_refuses_writes(&r));
    r.str = ro, r.len = strlen(ro);
    assert_true(rk__reply_refuses_writes(&r));
    char norep[] = "NOREPLICAS Not enough good replicas to write.";
    r.str = norep, r.len = strlen(norep);
    assert_true(rk__reply_refuses_writes(&r));
    r.str = err, r.len = strlen(err);
    assert_false(rk__reply_refuses_writes(&r));
    r.str = oomx, r.len = strlen(oomx);
    assert_false(rk__reply_refuses_writes(&r));
    r.type = RK_REPLY_STATUS, r.str = oom, r.len = strlen(oom);
    assert_false(rk__reply_refuses_writes(&r));
    assert_false(rk__reply_refuses_writes(NULL));
}

/* A reply the reply functions refuse as malformed — more elements than its
 * array announced, or a RESP3 type — surfaces from hiredis as "out of
 * memory" (a reply function has no other way to fail). The functions flag
 * it, so the connection reports RK_ERR_PROTOCOL, not RK_ERR_NOMEM, and the
 * breaker counts it as the transport failure it is. The hiredis reader
 * itself never lets such a stream through to the functions in 0.14, so
 * they are called here the way the reader calls them. */
static void test_malformed_is_flagged_apart_from_no_memory(void **state)
{
    (void)state;
    redisReader *r = rk__reader_new();
    assert_non_null(r);
    bool malformed = false;
    rk__reader_report_malformed(r, &malformed);

    redisReadTask parent = {.type = REDIS_REPLY_ARRAY, .elements = 1, .idx = -1, .privdata = r->privdata};
    rk_reply *array = r->fn->createArray(&parent, 1);
    assert_non_null(array);
    parent.obj = array;
    redisReadTask child = {.type = REDIS_REPLY_INTEGER, .idx = 0, .parent = &parent, .privdata = r->privdata};
    assert_non_null(r->fn->createInteger(&child, 7));
    assert_false(malformed);
    child.idx = 1; /* a second element of an array of one */
    assert_null(r->fn->createInteger(&child, 8));
    assert_true(malformed);
    assert_int_equal(array->elements, 1);
    r->fn->freeObject(array);

    /* A type RESP2 does not have (14 is hiredis 1.x's RESP3 double). */
    malformed = false;
    redisReadTask top = {.type = 14, .idx = -1, .privdata = r->privdata};
    assert_null(r->fn->createString(&top, "1.5", 3));
    assert_true(malformed);

    /* What the connection makes of a failed reader: the flag decides. */
    r->err = REDIS_ERR_OOM;
    snprintf(r->errstr, sizeof r->errstr, "Out of memory");
    assert_int_equal(rk__reader_fail(r, "10.0.0.5:6379"), RK_ERR_PROTOCOL);
    assert_non_null(strstr(rk_last_error(), "10.0.0.5:6379"));
    assert_non_null(strstr(rk_last_error(), "malformed"));
    malformed = false; /* a genuine allocation failure */
    assert_int_equal(rk__reader_fail(r, "10.0.0.5:6379"), RK_ERR_NOMEM);
    r->err = REDIS_ERR_PROTOCOL;
    snprintf(r->errstr, sizeof r->errstr, "Protocol error, got \"!\" as reply type byte");
    assert_int_equal(rk__reader_fail(r, "10.0.0.5:6379"), RK_ERR_PROTOCOL);
    assert_non_null(strstr(rk_last_error(), "reply type byte"));
    redisReaderFree(r);

    /* A reader nobody watches still refuses, without a flag to set. */
    r = rk__reader_new();
    assert_non_null(r);
    redisReadTask lone = {.type = 14, .idx = -1, .privdata = r->privdata};
    assert_null(r->fn->createString(&lone, "1.5", 3));
    r->err = REDIS_ERR_OOM;
    assert_int_equal(rk__reader_fail(r, "p"), RK_ERR_NOMEM);
    redisReaderFree(r);
}

/* Command names in messages: at most 64 bytes, unprintable bytes as '?',
 * never read past the length given (the name need not be NUL-terminated). */
static void test_printable_names(void **state)
{
    (void)state;
    char buf[RK__NAME_SHOWN_MAX];
    assert_string_equal(rk__printable_name(buf, "GETX", 3), "GET");
    assert_string_equal(rk__printable_name(buf, "A\nB\0C\x80", 6), "A?B?C?");
    assert_string_equal(rk__printable_name(buf, "", 0), "");
    char longer[100];
    memset(longer, 'y', sizeof longer);
    const char *shown = rk__printable_name(buf, longer, sizeof longer);
    assert_int_equal(strlen(shown), 64 + 3);
    assert_string_equal(shown + 64, "...");
    /* Exactly 64: no ellipsis. */
    assert_int_equal(strlen(rk__printable_name(buf, longer, 64)), 64);
}

int main(void)
{
    if (rk_set_allocator(&big_refusing) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_array_count_allocates_as_elements_arrive),
        cmocka_unit_test(test_arrays_still_read_whole),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_malformed_is_flagged_apart_from_no_memory),
        cmocka_unit_test(test_printable_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
