/*
 * mux_test.c — the shared connections (src/client/mux.c) against a real
 * redis-server: stateful commands refused, blocking commands on a
 * connection of their own with a per-call timeout, a caller timing out on
 * a shared connection while others keep working (no reply ever delivered
 * to the wrong caller, the connection kept), reads that block in the
 * kernel ending by their deadline, and fork() safety.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "support/clock.h"
#include "support/fixture.h"
#include "support/fork_check.h"
#include "support/redis_server.h"

/* Slack over a call's deadline: scheduling on a loaded 2-core machine and
 * sanitizer builds. */
#define MARGIN_MS 400

static rk_test_server *server;

static int setup(void **state) { return rk_test_group_setup(state, &(rk_test_group){.server = &server}); }

static rk_client *client_with(const rk_client_options *extra)
{
    rk_client_options o = extra ? *extra : (rk_client_options){0};
    o.url = rk_test_server_url(server);
    return rk_test_client_new(&o);
}

static rk_status set_get(rk_client *c, const char *key, const char *val, bool *wrong)
{
    const char *set[] = {"SET", key, val}, *get[] = {"GET", key};
    rk_reply *r = NULL;
    rk_status st = rk_client_command(c, 3, set, NULL, &r);
    rk_reply_free(r);
    if (st != RK_OK) return st;
    if ((st = rk_client_command(c, 2, get, NULL, &r)) != RK_OK) return st;
    *wrong = r->type != RK_REPLY_STRING || strcmp(r->str, val) != 0;
    rk_reply_free(r);
    return RK_OK;
}

/* ---- stateful commands -------------------------------------------------- */

static void test_stateful_commands_refused(void **state)
{
    (void)state;
    rk_client *c = client_with(NULL);
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "k", "before", NULL), RK_OK);

    static const struct {
        int argc;
        const char *argv[3];
        const char *advice;
    } refused[] = {
        {2, {"SUBSCRIBE", "news"}, "pub/sub needs a connection of its own"},
        {2, {"psubscribe", "n*"}, "pub/sub"},
        {1, {"MONITOR"}, "monitor"},
        {1, {"multi"}, "rk_pipeline_exec"},
        {2, {"WATCH", "k"}, "rk_client_watch"},
        {2, {"SELECT", "1"}, "options.db"},
        {2, {"AUTH", "x"}, "password"},
        {1, {"RESET"}, "rk_client_free"},
        {3, {"CLIENT", "REPLY", "OFF"}, "replies"},
        {3, {"client", "tracking", "on"}, "client-side caching"},
        {1, {"READONLY"}, "replica"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        rk_reply *r = (rk_reply *)1;
        assert_int_equal(rk_client_command(c, refused[i].argc, refused[i].argv, NULL, &r), RK_ERR_INVALID);
        assert_null(r);
        if (!strstr(rk_last_error(), refused[i].advice))
            fail_msg("%s: \"%s\" does not name %s", refused[i].argv[0], rk_last_error(), refused[i].advice);
    }
    /* Nothing reached the server, and the cache keeps working. */
    assert_int_equal(rk_test_server_command_calls(server, "subscribe"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "multi"), 0);
    assert_int_equal(rk_cache_set_str(cache, "k", "after", NULL), RK_OK);
    rk_test_assert_cached(cache, "k", "after");
    /* CLIENT subcommands that change nothing still pass. */
    const char *id[] = {"CLIENT", "ID"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 2, id, NULL, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_INTEGER);
    rk_reply_free(r);
    rk_cache_free(cache);
    rk_client_free(c);
}

/* ---- blocking commands ---------------------------------------------------- */

struct pusher {
    rk_client *client;
    rk_status st;
};

static void *push_later(void *arg)
{
    struct pusher *p = arg;
    rk_test_sleep_ms(150);
    const char *lpush[] = {"LPUSH", "mux:q", "hello"};
    rk_reply *r = NULL;
    p->st = rk_client_command(p->client, 3, lpush, NULL, &r);
    rk_reply_free(r);
    return NULL;
}

static void test_blocking_command_per_call_timeout(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.command_timeout_ms = 300});
    /* BLPOP ... 0 blocks forever on the server: the per-call timeout ends
     * it, and its connection (its own) is closed. */
    const char *forever[] = {"BLPOP", "mux:none", "0"};
    rk_reply *r = NULL;
    int64_t t0 = rk_test_now_ms();
    assert_int_equal(rk_client_command_opts(c, &(rk_command_options){.timeout_ms = 200}, 3, forever, NULL, &r),
                     RK_ERR_TIMEOUT);
    assert_null(r);
    int64_t took = rk_test_now_ms() - t0;
    assert_true(took >= 190 && took <= 200 + MARGIN_MS);

    /* A BLPOP that waits longer than the client's command timeout gets its
     * value, and meanwhile ordinary calls are not held behind it. */
    struct pusher p = {c, RK_ERR_INVALID};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, push_later, &p), 0);
    const char *blpop[] = {"BLPOP", "mux:q", "5"};
    assert_int_equal(rk_client_command_opts(c, &(rk_command_options){.timeout_ms = 6000}, 3, blpop, NULL, &r),
                     RK_OK);
    pthread_join(t, NULL);
    assert_int_equal(p.st, RK_OK);
    assert_int_equal(r->type, RK_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[1]->str, "hello");
    rk_reply_free(r);

    /* Bad timeouts. */
    assert_int_equal(rk_client_command_opts(c, &(rk_command_options){.timeout_ms = -1}, 3, blpop, NULL, &r),
                     RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "timeout_ms"));
    /* XREAD with BLOCK is blocking too; without, it is not. */
    const char *xread[] = {"XREAD", "BLOCK", "50", "STREAMS", "mux:s", "$"};
    assert_int_equal(rk_client_command_opts(c, &(rk_command_options){.timeout_ms = 2000}, 6, xread, NULL, &r),
                     RK_OK);
    assert_int_equal(r->type, RK_REPLY_NIL);
    rk_reply_free(r);
    rk_client_free(c);
}

/* ---- one caller times out on a shared connection ---------------------- */

#define WORKERS 15
#define WORKER_OPS 10000

struct worker {
    rk_client *client;
    int id;
    int ops, wrong, errors;
    char first_error[256];
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char key[32], val[64];
    snprintf(key, sizeof key, "mux:w%d", w->id);
    for (int i = 0; i < WORKER_OPS / 2; i++) {
        snprintf(val, sizeof val, "worker %d value %d", w->id, i);
        bool wrong = false;
        rk_status st = set_get(w->client, key, val, &wrong);
        if (st != RK_OK && w->errors++ == 0)
            snprintf(w->first_error, sizeof w->first_error, "%s: %s", rk_strerror(st), rk_last_error());
        if (wrong) w->wrong++;
        w->ops += 2;
    }
    return NULL;
}

static void test_caller_timeout_keeps_shared_connection(void **state)
{
    (void)state;
    /* One shared connection, a long command timeout for the workers. */
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 5000});
    const char *set[] = {"SET", "mux:short", "short value"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 3, set, NULL, &r), RK_OK);
    rk_reply_free(r);

    pthread_t t[WORKERS];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){.client = c, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    /* Meanwhile a caller with a 20 ms timeout meets a paused server, again
     * and again: it times out, the late replies come after SIGCONT and
     * must go nowhere. */
    const char *get[] = {"GET", "mux:short"};
    int timeouts = 0;
    for (int i = 0; i < 20; i++) {
        rk_test_sleep_ms(20);
        assert_true(rk_test_server_signal(server, SIGSTOP));
        rk_status st = rk_client_command_opts(c, &(rk_command_options){.timeout_ms = 20}, 2, get, NULL, &r);
        assert_true(rk_test_server_signal(server, SIGCONT));
        if (st == RK_ERR_TIMEOUT) timeouts++;
        else assert_int_equal(st, RK_OK); /* sent and answered before the pause took hold */
        if (st == RK_OK) {
            assert_string_equal(r->str, "short value");
            rk_reply_free(r);
        }
    }
    assert_true(timeouts >= 10);
    for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < WORKERS; i++) {
        if (w[i].errors) fail_msg("worker %d: %d errors, first: %s", i, w[i].errors, w[i].first_error);
        assert_int_equal(w[i].wrong, 0);
        assert_int_equal(w[i].ops, WORKER_OPS);
    }
    /* Its own value, never somebody else's, now that it waits long enough. */
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_OK);
    assert_string_equal(r->str, "short value");
    rk_reply_free(r);
    /* The connection was never closed. */
    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    assert_int_equal(st.disconnects, 0);
    assert_int_equal(st.connects, 1);
    assert_true(st.timeouts >= (uint64_t)timeouts);
    rk_client_free(c);
}

/* ---- a read that blocks in the kernel ends by its deadline ------------- */

static void timed_get(rk_client *c, int timeout_ms, rk_status want, int64_t min_ms, int64_t max_ms)
{
    const char *get[] = {"GET", "mux:slice"};
    rk_reply *r = NULL;
    int64_t t0 = rk_test_now_ms();
    rk_status st = rk_client_command_opts(c, &(rk_command_options){.timeout_ms = timeout_ms}, 2, get, NULL, &r);
    int64_t took = rk_test_now_ms() - t0;
    assert_int_equal(st, want);
    if (st == RK_OK) {
        assert_string_equal(r->str, "slice value");
        rk_reply_free(r);
    }
    if (took < min_ms || took > max_ms) fail_msg("took %lld ms, expected %lld..%lld", (long long)took,
                                                 (long long)min_ms, (long long)max_ms);
}

static void test_blocking_read_ends_by_deadline(void **state)
{
    (void)state;
    /* A plain connection reads in recv() under a receive timeout shorter
     * than the time left (conn.c): a paused server must still cost each
     * call its own deadline, no more and no less, whether the read's
     * timeout was set for this call's budget or a longer one. */
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 1000});
    const char *set[] = {"SET", "mux:slice", "slice value"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 3, set, NULL, &r), RK_OK);
    rk_reply_free(r);

    assert_true(rk_test_server_signal(server, SIGSTOP));
    timed_get(c, 0, RK_ERR_TIMEOUT, 990, 1000 + MARGIN_MS);
    assert_true(rk_test_server_signal(server, SIGCONT));
    timed_get(c, 0, RK_OK, 0, 1000 + MARGIN_MS); /* a fresh connection, long receive timeout */
    assert_true(rk_test_server_signal(server, SIGSTOP));
    timed_get(c, 300, RK_ERR_TIMEOUT, 290, 300 + MARGIN_MS); /* shorter than the socket's */
    timed_get(c, 150, RK_ERR_TIMEOUT, 140, 150 + MARGIN_MS);
    assert_true(rk_test_server_signal(server, SIGCONT));
    /* The late replies went nowhere; the connection stayed. */
    timed_get(c, 0, RK_OK, 0, 1000 + MARGIN_MS);
    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    assert_int_equal(st.connects, 2);
    rk_client_free(c);
}

/* ---- fork --------------------------------------------------------------- */

static rk_client *plain_client(void *unused)
{
    (void)unused;
    return client_with(NULL);
}

static void test_fork_parent_and_child_read_their_own(void **state)
{
    (void)state;
    rk_test_fork_check(plain_client, NULL, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stateful_commands_refused),
        cmocka_unit_test(test_blocking_command_per_call_timeout),
        cmocka_unit_test(test_caller_timeout_keeps_shared_connection),
        cmocka_unit_test(test_blocking_read_ends_by_deadline),
        cmocka_unit_test(test_fork_parent_and_child_read_their_own),
    };
    return cmocka_run_group_tests(tests, setup, rk_test_group_teardown);
}
