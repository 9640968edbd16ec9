/*
 * option_ranges_test.c — every size and time field of rk_client_options
 * (and their URL forms) at and past its bounds, and the extreme values
 * users try for "never" or "off" (INT_MAX, INT_MIN, -1). No server:
 * rk_client_new() checks its options without connecting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

static rk_status try_new(const rk_client_options *o)
{
    rk_client *c = (rk_client *)1;
    rk_status st = rk_client_new(o, &c);
    if (st == RK_OK) {
        assert_non_null(c);
        rk_client_free(c);
    } else {
        assert_null(c);
        assert_true(rk_last_error()[0] != '\0');
    }
    return st;
}

typedef struct range_case {
    const char *name;
    int lo, hi;      /* the accepted range, 0 aside (0 = the default) */
    bool minus_one;  /* -1 accepted ("off") */
} range_case;

static rk_client_options with(const char *name, int v)
{
    rk_client_options o = {0};
    if (!strcmp(name, "port")) o.port = v;
    else if (!strcmp(name, "db")) o.db = v;
    else if (!strcmp(name, "connect_timeout_ms")) o.connect_timeout_ms = v;
    else if (!strcmp(name, "command_timeout_ms")) o.command_timeout_ms = v;
    else if (!strcmp(name, "pool_size")) o.pool_size = v;
    else if (!strcmp(name, "reconnect_base_ms")) o.reconnect_base_ms = v, o.reconnect_max_ms = RK_MAX_TIMEOUT_MS;
    else if (!strcmp(name, "reconnect_max_ms")) o.reconnect_max_ms = v, o.reconnect_base_ms = 1;
    else if (!strcmp(name, "breaker_threshold")) o.breaker_threshold = v;
    else if (!strcmp(name, "idle_ping_ms")) o.idle_ping_ms = v;
    else fail_msg("unknown option %s", name);
    return o;
}

static void test_int_fields(void **state)
{
    (void)state;
    const range_case cases[] = {
        {"port", 1, 65535, false},
        {"db", 1, INT_MAX, false},
        {"connect_timeout_ms", 1, RK_MAX_TIMEOUT_MS, false},
        {"command_timeout_ms", 1, RK_MAX_TIMEOUT_MS, false},
        {"pool_size", 1, RK_MAX_POOL_SIZE, false},
        {"reconnect_base_ms", 1, RK_MAX_TIMEOUT_MS, false},
        {"reconnect_max_ms", 1, RK_MAX_TIMEOUT_MS, false},
        {"breaker_threshold", 1, 1000000, true},
        {"idle_ping_ms", 1, RK_MAX_TIMEOUT_MS, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const range_case *rc = &cases[i];
        rk_client_options o;
        o = with(rc->name, rc->lo);
        if (try_new(&o) != RK_OK) fail_msg("%s = %d: %s", rc->name, rc->lo, rk_last_error());
        o = with(rc->name, rc->hi);
        if (try_new(&o) != RK_OK) fail_msg("%s = %d: %s", rc->name, rc->hi, rk_last_error());
        if (rc->hi < INT_MAX) {
            o = with(rc->name, rc->hi + 1);
            if (try_new(&o) != RK_ERR_INVALID) fail_msg("%s = %d accepted", rc->name, rc->hi + 1);
            assert_non_null(strstr(rk_last_error(), rc->name));
            o = with(rc->name, INT_MAX);
            if (try_new(&o) != RK_ERR_INVALID) fail_msg("%s = INT_MAX accepted", rc->name);
        }
        o = with(rc->name, -1);
        if (try_new(&o) != (rc->minus_one ? RK_OK : RK_ERR_INVALID)) fail_msg("%s = -1", rc->name);
        o = with(rc->name, -2);
        if (try_new(&o) != RK_ERR_INVALID) fail_msg("%s = -2 accepted", rc->name);
        o = with(rc->name, INT_MIN);
        if (try_new(&o) != RK_ERR_INVALID) fail_msg("%s = INT_MIN accepted", rc->name);
    }
    /* reconnect_max_ms below reconnect_base_ms. */
    assert_int_equal(try_new(&(rk_client_options){.reconnect_base_ms = 100, .reconnect_max_ms = 99}),
                     RK_ERR_INVALID);
}

/* The URL forms of the same fields: numbers past int, or past the range. */
static void test_url_fields(void **state)
{
    (void)state;
    const char *bad[] = {
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536",
        "redis://127.0.0.1:99999999999999999999",
        "redis://127.0.0.1/-1",
        "redis://127.0.0.1/99999999999",
        "redis://127.0.0.1?connect_timeout=0",
        "redis://127.0.0.1?connect_timeout=3600001",
        "redis://127.0.0.1?connect_timeout=18446744073709551616",
        "redis://127.0.0.1?command_timeout=-1",
        "redis://127.0.0.1?command_timeout=9223372036854775807",
        "redis://127.0.0.1?pool_size=0",
        "redis://127.0.0.1?pool_size=1025",
        "redis://127.0.0.1?pool_size=4294967297",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_status st = try_new(&(rk_client_options){.url = bad[i]});
        if (st != RK_ERR_INVALID) fail_msg("%s: %s", bad[i], rk_strerror(st));
    }
    const char *good[] = {
        "redis://127.0.0.1:65535/2147483647?connect_timeout=3600000&command_timeout=1&pool_size=1024",
        "redis://127.0.0.1:1?connect_timeout=1&command_timeout=3600000&pool_size=1",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        rk_status st = try_new(&(rk_client_options){.url = good[i]});
        if (st != RK_OK) fail_msg("%s: %s: %s", good[i], rk_strerror(st), rk_last_error());
    }
}

/* max_reply_bytes, a size_t: 0 = the default, else 4096 .. 1 TiB. */
static void test_max_reply_bytes(void **state)
{
    (void)state;
    rk_client *c = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.max_reply_bytes = RK_MIN_MAX_REPLY_BYTES - 1}, &c),
                     RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "max_reply_bytes"));
    assert_int_equal(rk_client_new(&(rk_client_options){.max_reply_bytes = RK_MAX_MAX_REPLY_BYTES + 1}, &c),
                     RK_ERR_INVALID);
    assert_int_equal(rk_client_new(&(rk_client_options){.max_reply_bytes = RK_MIN_MAX_REPLY_BYTES}, &c), RK_OK);
    rk_client_free(c);
    assert_int_equal(rk_client_new(&(rk_client_options){.max_reply_bytes = RK_MAX_MAX_REPLY_BYTES}, &c), RK_OK);
    rk_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_reply_bytes),
        cmocka_unit_test(test_int_fields),
        cmocka_unit_test(test_url_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
