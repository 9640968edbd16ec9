/*
 * reply_guard_test.c — the announced-size check (src/transport/reply_guard.c)
 * on hand-written streams: hostile headers refused at once, pipelined
 * replies judged one by one, payload bytes never read as headers, and the
 * same verdict however the stream is cut into reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <redkit/redkit.h>

#include "reply_guard.h"

#define PEER "127.0.0.1:1"

/* The whole stream in one read. */
static rk_status scan_all(const char *s, size_t len, size_t limit)
{
    rk__reply_guard g;
    rk__reply_guard_init(&g);
    return rk__reply_guard_scan(&g, s, len, limit, PEER);
}

/* The stream one byte per read: the first status that is not RK_OK. */
static rk_status scan_bytes(const char *s, size_t len, size_t limit)
{
    rk__reply_guard g;
    rk__reply_guard_init(&g);
    for (size_t i = 0; i < len; i++) {
        rk_status st = rk__reply_guard_scan(&g, s + i, 1, limit, PEER);
        if (st != RK_OK) return st;
    }
    return RK_OK;
}

static void expect(const char *s, size_t limit, rk_status want)
{
    size_t len = strlen(s);
    assert_int_equal(scan_all(s, len, limit), want);
    assert_int_equal(scan_bytes(s, len, limit), want);
}

static void test_hostile_headers_refused_at_once(void **state)
{
    (void)state;
    size_t limit = (size_t)64 << 20;
    /* Only the headers: nothing of the payload is needed to refuse. */
    expect("$1073741824\r\n", limit, RK_ERR_TOO_LARGE);
    assert_non_null(strstr(rk_last_error(), "max_reply_bytes"));
    assert_non_null(strstr(rk_last_error(), PEER));
    expect("*2147483647\r\n", limit, RK_ERR_TOO_LARGE);
    expect("*1\r\n*1\r\n$999999999\r\n", limit, RK_ERR_TOO_LARGE);
    /* 64 bytes per announced element: 1M elements fit 64 MiB, 1M + 1 not. */
    expect("*1048575\r\n", limit, RK_OK);
    expect("*1048577\r\n", limit, RK_ERR_TOO_LARGE);
    /* Just under and over a small bound, payload included. */
    expect("$4000\r\n", 4096, RK_OK);
    expect("$4096\r\n", 4096, RK_ERR_TOO_LARGE);
}

static void test_nested_arrays_add_up(void **state)
{
    (void)state;
    /* Each array alone is fine; together they are not. */
    char s[8192] = "*100\r\n";
    for (int i = 0; i < 100; i++) strcat(s, "*10\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n");
    assert_int_equal(scan_all(s, strlen(s), 64 * 100 + 64 * 10 * 50), RK_ERR_TOO_LARGE);
    assert_int_equal(scan_all(s, strlen(s), (size_t)1 << 20), RK_OK);
}

static void test_endless_line_refused(void **state)
{
    (void)state;
    char s[6000];
    s[0] = '+';
    memset(s + 1, 'a', sizeof s - 2);
    s[sizeof s - 1] = '\0';
    expect(s, 4096, RK_ERR_TOO_LARGE);
    s[0] = '$'; /* a header line without end, too */
    memset(s + 1, '1', sizeof s - 2);
    expect(s, 4096, RK_ERR_TOO_LARGE);
}

static void test_pipelined_replies_judged_one_by_one(void **state)
{
    (void)state;
    /* Ten replies of ~3000 bytes each under a 4096-byte bound. */
    char payload[3001];
    memset(payload, 'x', 3000);
    payload[3000] = '\0';
    char s[40000] = "";
    for (int i = 0; i < 10; i++) {
        strcat(s, "$3000\r\n");
        strcat(s, payload);
        strcat(s, "\r\n");
    }
    expect(s, 4096, RK_OK);
    /* Arrays of small elements, then an error, an integer, a nil, a status. */
    expect("*3\r\n:1\r\n$-1\r\n*0\r\n-ERR no\r\n:5\r\n$-1\r\n*-1\r\n+OK\r\n", 4096, RK_OK);
}

static void test_payload_is_not_parsed(void **state)
{
    (void)state;
    /* A value that looks like a hostile header is only data. */
    const char *s = "$13\r\n$1073741824\r\n\r\n+OK\r\n";
    expect(s, 4096, RK_OK);
    /* A lone LF belongs to the line, as the reader sees it. */
    expect("+a\n$1073741824\r\n+OK\r\n", 4096, RK_OK);
    expect("+a\r$1073741824\r\n", 4096, RK_OK);
}

static void test_depth_and_garbage(void **state)
{
    (void)state;
    char s[200] = "";
    for (int i = 0; i < RK__REPLY_MAX_DEPTH; i++) strcat(s, "*1\r\n");
    expect(s, 4096, RK_OK);
    strcat(s, "*1\r\n");
    expect(s, 4096, RK_ERR_PROTOCOL);
    /* Not RESP2: left to the reader, which refuses it. */
    expect("?what\r\n$1073741824\r\n", 4096, RK_OK);
    expect("$12x\r\n", 4096, RK_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_headers_refused_at_once),
        cmocka_unit_test(test_nested_arrays_add_up),
        cmocka_unit_test(test_endless_line_refused),
        cmocka_unit_test(test_pipelined_replies_judged_one_by_one),
        cmocka_unit_test(test_payload_is_not_parsed),
        cmocka_unit_test(test_depth_and_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
