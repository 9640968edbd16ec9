/*
 * hostile_reply_test.c — replies no Redis sends, from a tiny garbage
 * server (tests/support/garbage_server.h): a bulk string announced at
 * 1 GiB and sent at full speed or in a trickle, an array of 2^31 - 1
 * elements, nested arrays whose counts add up past the bound, arrays
 * nested 40 deep, and a bulk string within the bound that never ends;
 * each as the answer to a command on an open connection, and the first
 * also as the answer to a new connection's handshake.
 *
 * Each must end with the right status (RK_ERR_TOO_LARGE for the
 * announced sizes, RK_ERR_PROTOCOL for the nesting, RK_ERR_TIMEOUT for
 * the trickle within the bound), no call past its deadline, the peak
 * resident memory of the process (VmHWM, reset before each scenario)
 * growing by less than twice max_reply_bytes, and the circuit breaker
 * closed after the oversized replies: a server that sent one is answering,
 * and the connection is simply closed. Both paths are run: the shared
 * connections (lanes) and connections leased per call.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "client.h" /* rk__client_max_reply */
#include "support/clock.h"
#include "support/garbage_server.h"
#include "support/redis_server.h"

#define BOUND ((size_t)4 << 20)
#define COMMAND_MS 1000
#define CONNECT_MS 300
/* Slack over a call's deadline for scheduling on a loaded 2-core machine
 * (load averages of 12 seen) and sanitizer builds: never the client's own
 * waiting. */
#define MARGIN_MS 800
#define CALLS 3
#define GIB ((size_t)1 << 30)

/* Peak resident memory of this process, in bytes (VmHWM); -1 unknown. */
static long long peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Start a new peak (Linux: "5" in clear_refs resets VmHWM to VmRSS). */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

typedef struct scenario {
    const char *name;
    rk_garbage_script script;
    rk_status want;
    bool breaker_untouched; /* the breaker must not have counted it */
} scenario;

static void run(const scenario *sc, int shared)
{
    rk_garbage_server *g = rk_garbage_server_start(&sc->script);
    assert_non_null(g);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rk_garbage_server_port(g));
    rk_client *c = NULL;
    rk_client_options o = {.url = url, .command_timeout_ms = COMMAND_MS, .connect_timeout_ms = CONNECT_MS,
                           .max_reply_bytes = BOUND, .shared_connections = shared, .reconnect_base_ms = 1,
                           .reconnect_max_ms = 1};
    assert_int_equal(rk_client_new(&o, &c), RK_OK);

    reset_peak();
    long long before = peak_rss();
    const char *argv[] = {"GET", "k"};
    int64_t longest = 0;
    for (int i = 0; i < CALLS; i++) {
        rk_reply *r = NULL;
        int64_t t0 = rk_test_now_ms();
        rk_status st = rk_client_command(c, 2, argv, NULL, &r);
        int64_t took = rk_test_now_ms() - t0;
        rk_reply_free(r);
        if (took > longest) longest = took;
        if (st != sc->want)
            fail_msg("%s (shared %d), call %d: %s (%s), want %s", sc->name, shared, i, rk_strerror(st),
                     rk_last_error(), rk_strerror(sc->want));
        if (took > COMMAND_MS + CONNECT_MS + MARGIN_MS)
            fail_msg("%s (shared %d), call %d: took %lld ms", sc->name, shared, i, (long long)took);
    }
    long long after = peak_rss();
    printf("%s (shared %d): peak RSS +%lld KiB (bound %zu KiB), longest call %lld ms\n", sc->name, shared,
           before >= 0 && after >= 0 ? (after - before) / 1024 : -1, BOUND / 1024, (long long)longest);
    if (before >= 0 && after >= 0 && after - before >= (long long)(2 * BOUND))
        fail_msg("%s (shared %d): peak RSS grew by %lld KiB, bound %zu KiB", sc->name, shared,
                 (after - before) / 1024, BOUND / 1024);

    rk_client_stats stats;
    assert_int_equal(rk_client_stats_get(c, &stats), RK_OK);
    if (sc->breaker_untouched) {
        assert_int_equal(stats.circuit, RK_CIRCUIT_CLOSED);
        assert_int_equal(stats.circuit_opened, 0);
        assert_int_equal(stats.fast_failed, 0);
    }
    /* Each bad reply cost its connection. */
    if (sc->want != RK_ERR_TIMEOUT) assert_true(rk_garbage_server_connections(g) >= CALLS);
    rk_client_free(c);
    rk_garbage_server_stop(g);
}

/* The answer to the handshake's PING: the hostile reply comes to the
 * call's own command, on a connection in use. */
#define PONG "+PONG\r\n"

static const scenario scenarios[] = {
    {"1 GiB bulk at full speed", {.greeting = PONG, .head = "$1073741824\r\n", .fill = "xxxxxxxx", .fill_bytes = GIB},
     RK_ERR_TOO_LARGE, true},
    {"1 GiB bulk in a trickle", {.greeting = PONG, .head = "$1073741824\r\n", .fill = "x", .fill_bytes = GIB, .pause_ms = 10,
                                 .write_bytes = 1},
     RK_ERR_TOO_LARGE, true},
    {"2^31-1 elements", {.greeting = PONG, .head = "*2147483647\r\n", .fill = ":1\r\n", .fill_bytes = GIB}, RK_ERR_TOO_LARGE, true},
    {"nested counts adding up", {.greeting = PONG, .head = "*60000\r\n*60000\r\n", .fill = ":1\r\n", .fill_bytes = GIB},
     RK_ERR_TOO_LARGE, true},
    {"nested 40 deep", {.greeting = PONG, .head = "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
                                "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
                                "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
                                "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"},
     RK_ERR_PROTOCOL, false},
    {"endless bulk within the bound", {.greeting = PONG, .head = "$1000000\r\n", .fill = "yyyyyyyyyyyyyyyy", .fill_bytes = GIB,
                                       .pause_ms = 20, .write_bytes = 16},
     RK_ERR_TIMEOUT, false},
    /* The same bulk as the answer to the connection's handshake. */
    {"1 GiB bulk to the handshake", {.head = "$1073741824\r\n", .fill = "xxxxxxxx", .fill_bytes = GIB},
     RK_ERR_TOO_LARGE, true},
};

static void test_shared_connections(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) run(&scenarios[i], 0);
}

static void test_leased_connections(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) run(&scenarios[i], -1);
}

/* Against a real server: a value over a small bound is refused, the
 * client goes on working (a new connection, the breaker closed), and a
 * cache on the client raises the bound to hold its values. */
static void test_real_server_and_cache(void **state)
{
    (void)state;
    rk_test_server *srv = rk_test_server_start(NULL);
    assert_non_null(srv);
    rk_client *c = NULL;
    rk_client_options o = {.url = rk_test_server_url(srv), .max_reply_bytes = RK_MIN_MAX_REPLY_BYTES};
    assert_int_equal(rk_client_new(&o, &c), RK_OK);
    static char big[10000];
    memset(big, 'v', sizeof big);
    const char *set[] = {"SET", "big", big};
    const size_t setlen[] = {3, 3, sizeof big};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 3, set, setlen, &r), RK_OK);
    rk_reply_free(r);
    const char *get[] = {"GET", "big"};
    for (int i = 0; i < 8; i++) { /* more than the breaker's threshold */
        assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_ERR_TOO_LARGE);
        assert_non_null(strstr(rk_last_error(), "max_reply_bytes"));
    }
    assert_int_equal(rk_client_ping(c), RK_OK);
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_CLOSED);

    assert_int_equal(rk__client_max_reply(c), RK_MIN_MAX_REPLY_BYTES);
    rk_cache *cache = NULL;
    assert_int_equal(rk_cache_new(c, &(rk_cache_options){.max_value_bytes = 64 << 10}, &cache), RK_OK);
    assert_true(rk__client_max_reply(c) >= 4 * (64 << 10));
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_OK);
    assert_int_equal(r->len, sizeof big);
    rk_reply_free(r);
    assert_int_equal(rk_cache_set(cache, "v", big, sizeof big, NULL), RK_OK);
    void *v = NULL;
    size_t vlen = 0;
    assert_int_equal(rk_cache_get(cache, "v", &v, &vlen), RK_OK);
    assert_int_equal(vlen, sizeof big);
    rk_free(v);
    rk_cache_free(cache);
    rk_client_free(c);
    rk_test_server_stop(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_connections),
        cmocka_unit_test(test_leased_connections),
        cmocka_unit_test(test_real_server_and_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
