/*
 * proxy_test.c — tests of the fault-injection proxy (tests/support/
 * fault_proxy.c) on its own, with hiredis as the client and a private
 * redis-server behind it. The fault tests of the library trust the proxy to
 * break the network exactly as asked, so each mode is checked here first,
 * with a client whose behaviour is known: a proxy bug must not look like a
 * library bug.
 *
 * One server serves the whole group; every test gets a fresh proxy in PASS.
 * Contexts and raw sockets are registered as they are opened and released in
 * the teardown, so a failing test leaks nothing and leaves nothing running.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "fault_proxy.h"
#include "fixture.h"
#include "redis_server.h"

#define MAX_TRACKED 64

static rk_test_server *server;
static rk_fault_proxy *proxy;
static redisContext *contexts[MAX_TRACKED];
static int ncontexts;
static int raw_fds[MAX_TRACKED];
static int nraw;

static struct timeval tv_ms(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* ---------------------------------------------------------------- fixture */

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server});
}

static int setup(void **state)
{
    (void)state;
    if (!rk_test_server_flush(server)) return -1;
    proxy = rk_fault_proxy_start(rk_test_server_port(server));
    return proxy ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < ncontexts; i++) redisFree(contexts[i]);
    ncontexts = 0;
    for (int i = 0; i < nraw; i++) close(raw_fds[i]);
    nraw = 0;
    rk_fault_proxy_stop(proxy);
    proxy = NULL;
    return 0;
}

/* --------------------------------------------------------------- helpers */

/*
 * A hiredis connection to `port` with a command timeout of timeout_ms,
 * freed by the teardown. Fails the test if it cannot connect.
 */
static redisContext *connect_port(int port, int timeout_ms)
{
    assert_true(ncontexts < MAX_TRACKED);
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv_ms(2000));
    assert_non_null(c);
    contexts[ncontexts++] = c;
    if (c->err) fail_msg("connect to %d: %s", port, c->errstr);
    assert_int_equal(redisSetTimeout(c, tv_ms(timeout_ms)), REDIS_OK);
    return c;
}

static redisContext *connect_proxy(int timeout_ms)
{
    return connect_port(rk_fault_proxy_port(proxy), timeout_ms);
}

/* Run a command that must answer with a status or bulk string equal to want. */
static void expect_reply(redisContext *c, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) fail_msg("%s: failed: %s (err %d)", fmt, c->errstr, c->err);
    bool ok = (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
              r->len == strlen(want) && memcmp(r->str, want, r->len) == 0;
    char got[80];
    snprintf(got, sizeof got, "type %d, %zu bytes: %.40s", r->type, (size_t)r->len, r->str ? r->str : "");
    freeReplyObject(r);
    if (!ok) fail_msg("%s: unexpected reply (%s)", fmt, got);
}

/* Run a command that must fail; returns hiredis's error code for it. */
static int expect_failure(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r) {
        int type = r->type;
        freeReplyObject(r);
        fail_msg("%s: expected a failure, got a reply of type %d", fmt, type);
    }
    assert_int_not_equal(c->err, 0);
    return c->err;
}

/* Store a value of `len` bytes ('a'..'z' repeating) under key, on the server. */
static char *make_value(size_t len)
{
    char *v = test_malloc(len + 1);
    for (size_t i = 0; i < len; i++) v[i] = (char)('a' + i % 26);
    v[len] = '\0';
    return v;
}

static void store(const char *key, const char *value)
{
    redisReply *r = rk_test_server_command(server, "SET %s %s", key, value);
    assert_non_null(r);
    bool ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    assert_true(ok);
}

/* A plain blocking socket to the proxy (5 s receive timeout), closed by the teardown. */
static int raw_connect(void)
{
    assert_true(nraw < MAX_TRACKED);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    raw_fds[nraw++] = fd;
    struct timeval tv = tv_ms(5000);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rk_fault_proxy_port(proxy))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/*
 * Send req, then read until `want` bytes came, EOF, or an error/timeout.
 * Returns the bytes read (into out, at most cap); *reads counts the read()
 * calls that returned data, *eof tells whether the stream ended.
 */
static size_t raw_exchange(int fd, const char *req, char *out, size_t cap, size_t want, int *reads, bool *eof)
{
    size_t len = strlen(req);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    size_t got = 0;
    *reads = 0;
    *eof = false;
    /* Bounded: every pass reads at least one byte, or ends. */
    while (got < want && got < cap) {
        ssize_t n = recv(fd, out + got, cap - got, 0);
        if (n == 0) {
            *eof = true;
            break;
        }
        if (n < 0) break;
        got += (size_t)n;
        (*reads)++;
    }
    return got;
}

/* A loopback port nothing listens on (bound, read, released). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------------------ tests */

static void test_pass_round_trip(void **state)
{
    (void)state;
    redisContext *c = connect_proxy(2000);
    expect_reply(c, "PONG", "PING");
    expect_reply(c, "OK", "SET %s %s", "greeting", "hello world");
    expect_reply(c, "hello world", "GET %s", "greeting");
    assert_int_equal(rk_fault_proxy_connections(proxy), 1);
    rk_fault_proxy_stop(NULL); /* a no-op */
}

/* Any number of client connections, each on its own upstream connection. */
static void test_pass_many_connections(void **state)
{
    (void)state;
    enum { N = 20 };
    redisContext *c[N];
    for (int i = 0; i < N; i++) c[i] = connect_proxy(2000);
    for (int i = 0; i < N; i++) expect_reply(c[i], "OK", "SET key:%d value:%d", i, i);
    char want[32];
    for (int i = N - 1; i >= 0; i--) {
        snprintf(want, sizeof want, "value:%d", i);
        expect_reply(c[i], want, "GET key:%d", i);
    }
    assert_int_equal(rk_fault_proxy_connections(proxy), N);

    /* Each upstream connection is a separate client of the server. */
    redisReply *r = rk_test_server_command(server, "CLIENT LIST");
    assert_non_null(r);
    int lines = 0;
    for (const char *s = r->str; s && (s = strchr(s, '\n')); s++) lines++;
    freeReplyObject(r);
    assert_true(lines >= N + 1); /* ours plus the admin connection */
}

static void test_latency(void **state)
{
    (void)state;
    redisContext *fast = connect_proxy(50);
    redisContext *patient = connect_proxy(1000);
    rk_fault_proxy_set(proxy, RK_FAULT_LATENCY, 200);

    int64_t t0 = rk_test_now_ms();
    assert_int_equal(expect_failure(fast, "PING"), REDIS_ERR_IO); /* the timeout */
    assert_true(rk_test_now_ms() - t0 < 190);

    t0 = rk_test_now_ms();
    expect_reply(patient, "PONG", "PING");
    int64_t took = rk_test_now_ms() - t0;
    assert_true(took >= 390); /* 200 ms each way */
    assert_true(took < 1000);

    /* Order is kept across a mode change: the GET sent in PASS is not
     * forwarded before the SET still held by the latency. */
    expect_reply(patient, "OK", "SET %s %s", "k", "v1");
    assert_int_equal(redisAppendCommand(patient, "SET k v2"), REDIS_OK);
    assert_int_equal(redisBufferWrite(patient, &(int){0}), REDIS_OK);
    rk_fault_proxy_set(proxy, RK_FAULT_PASS, 0);
    assert_int_equal(redisAppendCommand(patient, "GET k"), REDIS_OK);
    void *rv = NULL;
    assert_int_equal(redisGetReply(patient, &rv), REDIS_OK);
    freeReplyObject(rv);
    rv = NULL;
    assert_int_equal(redisGetReply(patient, &rv), REDIS_OK);
    redisReply *r = rv;
    bool ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, "v2") == 0;
    freeReplyObject(r);
    assert_true(ok);

    t0 = rk_test_now_ms();
    expect_reply(connect_proxy(1000), "PONG", "PING");
    assert_true(rk_test_now_ms() - t0 < 200);
}

static void test_blackhole(void **state)
{
    (void)state;
    redisContext *old = connect_proxy(300);
    expect_reply(old, "PONG", "PING");
    rk_fault_proxy_set(proxy, RK_FAULT_BLACKHOLE, 0);

    int64_t t0 = rk_test_now_ms();
    assert_int_equal(expect_failure(old, "PING"), REDIS_ERR_IO);
    assert_true(rk_test_now_ms() - t0 >= 250);

    /* New connections are accepted, then hear nothing either. */
    redisContext *fresh = connect_proxy(300);
    t0 = rk_test_now_ms();
    assert_int_equal(expect_failure(fresh, "PING"), REDIS_ERR_IO);
    assert_true(rk_test_now_ms() - t0 >= 250);
    assert_int_equal(rk_fault_proxy_connections(proxy), 2);

    rk_fault_proxy_set(proxy, RK_FAULT_PASS, 0);
    expect_reply(connect_proxy(2000), "PONG", "PING");
    assert_int_equal(rk_fault_proxy_connections(proxy), 3);
}

/* Held bytes are delivered, in order, once the blackhole lifts. */
static void test_blackhole_holds(void **state)
{
    (void)state;
    redisContext *c = connect_proxy(2000);
    rk_fault_proxy_set(proxy, RK_FAULT_BLACKHOLE, 0);
    assert_int_equal(redisAppendCommand(c, "ECHO held"), REDIS_OK);
    assert_int_equal(redisBufferWrite(c, &(int){0}), REDIS_OK);
    struct timespec pause = {0, 100 * 1000000L};
    nanosleep(&pause, NULL);
    rk_fault_proxy_set(proxy, RK_FAULT_PASS, 0);
    void *rv = NULL;
    assert_int_equal(redisGetReply(c, &rv), REDIS_OK);
    redisReply *r = rv;
    bool ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, "held") == 0;
    freeReplyObject(r);
    assert_true(ok);
}

static void test_reset(void **state)
{
    (void)state;
    redisContext *old = connect_proxy(2000);
    expect_reply(old, "PONG", "PING");
    rk_fault_proxy_set(proxy, RK_FAULT_RESET, 0);

    int64_t t0 = rk_test_now_ms();
    assert_int_equal(expect_failure(old, "PING"), REDIS_ERR_IO);
    assert_true(rk_test_now_ms() - t0 < 1000); /* a reset, not a timeout */

    /* The kernel completes the handshake, then the proxy resets the
     * connection on accept: depending on timing, hiredis sees the reset
     * while it finishes connecting or on the first command. */
    t0 = rk_test_now_ms();
    redisContext *fresh = redisConnectWithTimeout("127.0.0.1", rk_fault_proxy_port(proxy), tv_ms(2000));
    assert_non_null(fresh);
    contexts[ncontexts++] = fresh;
    if (!fresh->err) {
        assert_int_equal(redisSetTimeout(fresh, tv_ms(2000)), REDIS_OK);
        expect_failure(fresh, "PING");
    }
    assert_int_equal(fresh->err, REDIS_ERR_IO);
    assert_true(rk_test_now_ms() - t0 < 1000);
    assert_int_equal(rk_fault_proxy_connections(proxy), 2);

    rk_fault_proxy_set(proxy, RK_FAULT_PASS, 0);
    expect_reply(connect_proxy(2000), "PONG", "PING");
}

static void test_close_after(void **state)
{
    (void)state;
    char *value = make_value(100);
    store("big", value);

    /* Bytes sent before the mode was set do not count. */
    redisContext *c = connect_proxy(2000);
    expect_reply(c, "PONG", "PING");
    rk_fault_proxy_set(proxy, RK_FAULT_CLOSE_AFTER, 10);
    assert_int_equal(expect_failure(c, "GET big"), REDIS_ERR_EOF);

    /* Exactly 10 bytes, then a clean end of stream. */
    int fd = raw_connect();
    char buf[256];
    int reads;
    bool eof;
    size_t got = raw_exchange(fd, "GET big\r\n", buf, sizeof buf, sizeof buf, &reads, &eof);
    assert_true(eof);
    assert_int_equal(got, 10);
    assert_memory_equal(buf, "$100\r\nabcd", 10);

    rk_fault_proxy_set(proxy, RK_FAULT_PASS, 0);
    expect_reply(connect_proxy(2000), value, "GET big");
    test_free(value);
}

static void test_slice(void **state)
{
    (void)state;
    char *value = make_value(5000);
    store("big", value);
    rk_fault_proxy_set(proxy, RK_FAULT_SLICE, 0);

    redisContext *c = connect_proxy(5000);
    expect_reply(c, value, "GET big");

    /* A pipeline: 50 replies arriving a byte at a time, all parsed. */
    enum { N = 50 };
    for (int i = 0; i < N; i++) {
        if (i % 2) assert_int_equal(redisAppendCommand(c, "ECHO message-%d", i), REDIS_OK);
        else assert_int_equal(redisAppendCommand(c, "INCR counter"), REDIS_OK);
    }
    for (int i = 0; i < N; i++) {
        void *rv = NULL;
        if (redisGetReply(c, &rv) != REDIS_OK) fail_msg("reply %d: %s", i, c->errstr);
        redisReply *r = rv;
        char want[32];
        snprintf(want, sizeof want, "message-%d", i);
        bool ok = i % 2 ? r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0
                        : r->type == REDIS_REPLY_INTEGER && r->integer == i / 2 + 1;
        freeReplyObject(r);
        if (!ok) fail_msg("reply %d is wrong", i);
    }

    /* The reply really was split: a raw reader needs many reads for it. */
    int fd = raw_connect();
    static char buf[6000];
    int reads;
    bool eof;
    size_t want = 5000 + strlen("$5000\r\n\r\n");
    size_t got = raw_exchange(fd, "GET big\r\n", buf, sizeof buf, want, &reads, &eof);
    assert_int_equal(got, want);
    assert_memory_equal(buf + 7, value, 5000);
    assert_true(reads > 10);

    rk_fault_proxy_set(proxy, RK_FAULT_PASS, 0);
    int64_t t0 = rk_test_now_ms();
    expect_reply(connect_proxy(2000), value, "GET big");
    assert_true(rk_test_now_ms() - t0 < 200);
    test_free(value);
}

/* With the upstream down, a client connection is closed at once. */
static void test_upstream_down(void **state)
{
    (void)state;
    rk_fault_proxy *down = rk_fault_proxy_start(dead_port());
    assert_non_null(down);
    /* Connect before asserting, so the proxy is stopped even on failure. */
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rk_fault_proxy_port(down), tv_ms(2000));
    int connect_err = c ? c->err : -1;
    int err = 0;
    int64_t t0 = rk_test_now_ms();
    if (c && !c->err) {
        redisSetTimeout(c, tv_ms(2000));
        redisReply *r = redisCommand(c, "PING");
        if (r) freeReplyObject(r);
        err = r ? 0 : c->err;
    }
    int64_t took = rk_test_now_ms() - t0;
    int accepted = rk_fault_proxy_connections(down);
    redisFree(c);
    rk_fault_proxy_stop(down);

    assert_int_equal(connect_err, 0);
    assert_true(err == REDIS_ERR_EOF || err == REDIS_ERR_IO);
    assert_true(took < 1000);
    assert_int_equal(accepted, 1);
}

/* Stop is prompt, with connections open and bytes held in every direction. */
static void test_stop_prompt(void **state)
{
    (void)state;
    redisContext *c = connect_proxy(2000);
    expect_reply(c, "PONG", "PING");
    rk_fault_proxy_set(proxy, RK_FAULT_LATENCY, 5000);
    assert_int_equal(redisAppendCommand(c, "PING"), REDIS_OK);
    assert_int_equal(redisBufferWrite(c, &(int){0}), REDIS_OK);
    connect_proxy(2000);
    int64_t t0 = rk_test_now_ms();
    rk_fault_proxy_stop(proxy);
    proxy = NULL;
    assert_true(rk_test_now_ms() - t0 < 500);
    /* The client sees the end of its connection. */
    assert_int_not_equal(redisGetReply(c, &(void *){NULL}), REDIS_OK);
}

int main(void)
{
    /* hiredis 0.14 writes with write(): a reset socket must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pass_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pass_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blackhole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blackhole_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_prompt, setup, teardown),
    };
    return cmocka_run_group_tests_name("proxy", tests, group_setup, rk_test_group_teardown);
}
