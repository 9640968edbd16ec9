/*
 * async_test.c — futures (redkit/async.h: rk_client_send, rk_future_wait,
 * rk_future_ready, rk_future_free) against a real redis-server:
 *
 *  - hundreds of futures in flight from one thread, waited in order and in
 *    reverse, on one shared connection and on two; on one connection the
 *    replies come in the order the commands were sent;
 *  - error replies in the middle (RK_ERR_SERVER with the server's text);
 *  - bad arguments, and the commands futures refuse (blocking, stateful);
 *  - futures given back without waiting (fire and forget, half waited),
 *    with no reply ever reaching another future or call;
 *  - threads with blocking calls and threads with futures on one client;
 *    futures sent by one thread and waited by another;
 *  - liveness: a thread waiting on a future whose write it shares with
 *    futures nobody waits for gets its reply (the hand-off and early-ring
 *    paths of mux.c);
 *  - deadlines against a paused server, waiting after the deadline; a
 *    send or a wait whose write the paused server does not take still
 *    returns by the future's deadline;
 *  - the circuit breaker's probe sent as a future and held unwaited;
 *  - rk_future_ready driven by somebody else's I/O;
 *  - fork(): a future sent before it cannot be waited in the child;
 *  - a client without shared connections (shared_connections = -1);
 *  - the server killed with futures in flight, then restarted;
 *  - an allocation-failure walk over send and wait.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <redkit/async.h>
#include <redkit/redkit.h>

#include "support/clock.h"
#include "support/fail_alloc.h"
#include "support/fixture.h"
#include "support/fork_check.h"
#include "support/redis_server.h"

/* Slack for liveness bounds (never a timing assertion): scheduling on a
 * loaded 2-core machine and sanitizer builds. */
#define MARGIN_MS 2000

static rk_test_server *server;

static int setup(void **state) { return rk_test_group_setup(state, &(rk_test_group){.server = &server}); }

/* After each test: the server running again, whatever the test left it
 * as (paused, or killed) when it failed half-way. */
static int resume_server(void **state)
{
    (void)state;
    if (rk_test_server_pid(server) == -1) return rk_test_server_restart(server, NULL) ? 0 : -1;
    rk_test_server_signal(server, SIGCONT);
    return 0;
}

static rk_client *client_with(const rk_client_options *extra)
{
    rk_client_options o = extra ? *extra : (rk_client_options){0};
    o.url = rk_test_server_url(server);
    return rk_test_client_new(&o);
}

/* ---- helpers ------------------------------------------------------------ */

static rk_future *send_argv(rk_client *c, const rk_command_options *o, int argc, const char *const *argv)
{
    rk_future *f = (rk_future *)1;
    rk_status st = o ? rk_client_send_opts(c, o, argc, argv, NULL, &f) : rk_client_send(c, argc, argv, NULL, &f);
    if (st != RK_OK) fail_msg("rk_client_send %s: %s: %s", argv[0], rk_strerror(st), rk_last_error());
    assert_non_null(f);
    assert_true(f != (rk_future *)1);
    return f;
}

#define SEND(c, ...) send_argv((c), NULL, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), \
                               (const char *[]){__VA_ARGS__})
#define SEND_OPTS(c, o, ...) \
    send_argv((c), (o), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), (const char *[]){__VA_ARGS__})

/* Wait for f: it must answer RK_OK with a reply of this type and text. */
static void expect(rk_future *f, rk_reply_type type, const char *want)
{
    rk_reply *r = (rk_reply *)1;
    rk_status st = rk_future_wait(f, &r);
    if (st != RK_OK) fail_msg("waiting for \"%s\": %s: %s", want, rk_strerror(st), rk_last_error());
    assert_non_null(r);
    if (r->type != type || !r->str || strcmp(r->str, want) != 0) {
        char got[128];
        snprintf(got, sizeof got, "%s", r->str ? r->str : "(no text)");
        int got_type = (int)r->type;
        rk_reply_free(r);
        fail_msg("wanted \"%s\" (type %d), got \"%s\" (type %d)", want, (int)type, got, got_type);
    }
    rk_reply_free(r);
}

static void expect_str(rk_future *f, const char *want) { expect(f, RK_REPLY_STRING, want); }
static void expect_ok(rk_future *f) { expect(f, RK_REPLY_STATUS, "OK"); }

/* Wait for f: it must fail with st, *reply NULL, and rk_last_error()
 * containing text (when not NULL). */
static void expect_fail(rk_future *f, rk_status want, const char *text)
{
    rk_reply *r = (rk_reply *)1;
    rk_status st = rk_future_wait(f, &r);
    if (st != want) {
        if (st == RK_OK) rk_reply_free(r);
        fail_msg("wanted %s, got %s: %s", rk_strerror(want), rk_strerror(st), rk_last_error());
    }
    assert_null(r);
    if (text && !strstr(rk_last_error(), text)) fail_msg("\"%s\" does not contain \"%s\"", rk_last_error(), text);
}

/* Blocking calls through the same client. */
static void command_expect(rk_client *c, int argc, const char **argv, rk_reply_type type, const char *want)
{
    rk_reply *r = NULL;
    rk_status st = rk_client_command(c, argc, argv, NULL, &r);
    if (st != RK_OK) fail_msg("%s: %s: %s", argv[0], rk_strerror(st), rk_last_error());
    if (r->type != type || !r->str || strcmp(r->str, want) != 0) {
        char got[128];
        snprintf(got, sizeof got, "%s", r->str ? r->str : "(no text)");
        rk_reply_free(r);
        fail_msg("%s %s: wanted \"%s\", got \"%s\"", argv[0], argc > 1 ? argv[1] : "", want, got);
    }
    rk_reply_free(r);
}

static void set_blocking(rk_client *c, const char *key, const char *val)
{
    command_expect(c, 3, (const char *[]){"SET", key, val}, RK_REPLY_STATUS, "OK");
}

static void get_blocking(rk_client *c, const char *key, const char *want)
{
    command_expect(c, 2, (const char *[]){"GET", key}, RK_REPLY_STRING, want);
}

static rk_client_stats stats(rk_client *c)
{
    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    return st;
}

/* ---- 1. many futures in flight ------------------------------------------ */

#define MANY 500
#define KEY_MAX 48
#define VAL_MAX 64

/* MANY futures in flight at once from this thread: SETs of new keys and
 * GETs of keys written before, alternately; waited in order or in
 * reverse. Each reply is its own command's. */
static void many_in_flight(rk_client *c, const char *tag, bool reverse)
{
    static char key[MANY][KEY_MAX], val[MANY][VAL_MAX];
    rk_future *f[MANY];
    for (int i = 0; i < MANY; i++) {
        bool get = i % 2;
        snprintf(key[i], KEY_MAX, "async:%s:%s:%d", tag, get ? "old" : "new", i);
        snprintf(val[i], VAL_MAX, "%s value %d of %s", get ? "old" : "new", i, tag);
        if (get) set_blocking(c, key[i], val[i]);
    }
    for (int i = 0; i < MANY; i++) f[i] = i % 2 ? SEND(c, "GET", key[i]) : SEND(c, "SET", key[i], val[i]);
    for (int j = 0; j < MANY; j++) {
        int i = reverse ? MANY - 1 - j : j;
        if (i % 2) expect_str(f[i], val[i]);
        else expect_ok(f[i]);
    }
    /* The SETs were applied. */
    for (int i = 0; i < MANY; i += 2) get_blocking(c, key[i], val[i]);
}

/* One shared connection: the futures are answered in the order they were
 * sent, so SET k then GET k, both in flight, reads what was just set. */
static void same_key_in_order(rk_client *c, bool reverse)
{
    static char val[MANY][VAL_MAX];
    rk_future *f[MANY];
    for (int i = 0; i < MANY; i += 2) {
        snprintf(val[i], VAL_MAX, "value %d (%s)", i, reverse ? "reverse" : "in order");
        f[i] = SEND(c, "SET", "async:order", val[i]);
        f[i + 1] = SEND(c, "GET", "async:order");
    }
    for (int j = 0; j < MANY; j++) {
        int i = reverse ? MANY - 1 - j : j;
        if (i % 2) expect_str(f[i], val[i - 1]);
        else expect_ok(f[i]);
    }
}

static void test_many_futures_in_flight(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.command_timeout_ms = 10000}); /* two lanes */
    many_in_flight(c, "two", false);
    many_in_flight(c, "two-rev", true);
    assert_int_equal(stats(c).disconnects, 0);
    rk_client_free(c);

    c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 10000});
    many_in_flight(c, "one", false);
    many_in_flight(c, "one-rev", true);
    same_key_in_order(c, false);
    same_key_in_order(c, true);
    rk_client_stats st = stats(c);
    assert_int_equal(st.disconnects, 0);
    assert_int_equal(st.connects, 1);
    rk_client_free(c);
}

/* ---- 2. error replies in the middle --------------------------------------- */

static void errors_in_the_middle(rk_client *c, const char *key, bool reverse)
{
    rk_future *f[4];
    f[0] = SEND(c, "SET", key, "1");
    f[1] = SEND(c, "LPUSH", key, "x"); /* WRONGTYPE */
    f[2] = SEND(c, "NOSUCHCOMMAND", key);
    f[3] = SEND(c, "GET", key);
    for (int j = 0; j < 4; j++) {
        int i = reverse ? 3 - j : j;
        switch (i) {
        case 0: expect_ok(f[0]); break;
        case 1: expect_fail(f[1], RK_ERR_SERVER, "WRONGTYPE"); break;
        case 2: expect_fail(f[2], RK_ERR_SERVER, "unknown command"); break;
        default: expect_str(f[3], "1"); break;
        }
    }
}

static void test_error_replies_in_the_middle(void **state)
{
    (void)state;
    /* One lane: the four are applied in the order sent. */
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 5000});
    errors_in_the_middle(c, "async:err:a", false);
    errors_in_the_middle(c, "async:err:b", true);
    /* An error reply is the command's, not the connection's: it stays. */
    rk_future *f = SEND(c, "GET", "async:err:a");
    expect_str(f, "1");
    assert_int_equal(stats(c).disconnects, 0);
    rk_client_free(c);
}

/* ---- 3. bad arguments, refused commands ------------------------------------ */

static void refused(rk_client *c, const rk_command_options *o, int argc, const char **argv, const char *advice)
{
    rk_future *f = (rk_future *)1;
    rk_status st = o ? rk_client_send_opts(c, o, argc, argv, NULL, &f) : rk_client_send(c, argc, argv, NULL, &f);
    if (st != RK_ERR_INVALID) {
        if (st == RK_OK) rk_future_free(f);
        fail_msg("%s: %s, wanted RK_ERR_INVALID", argc > 0 && argv && argv[0] ? argv[0] : "(bad argv)", rk_strerror(st));
    }
    assert_null(f);
    if (advice && !strstr(rk_last_error(), advice)) fail_msg("\"%s\" does not name %s", rk_last_error(), advice);
}

static void refusals(rk_client *c)
{
    const char *get[] = {"GET", "async:bad"}, *with_null[] = {"GET", NULL};
    /* NULL client, out, argv; argc out of range; a NULL argument. */
    refused(NULL, NULL, 2, get, "NULL");
    refused(NULL, &(rk_command_options){.timeout_ms = 100}, 2, get, "NULL");
    assert_int_equal(rk_client_send(c, 2, get, NULL, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_send_opts(c, NULL, 2, get, NULL, NULL), RK_ERR_INVALID);
    refused(c, NULL, 2, NULL, "argv");
    refused(c, NULL, 0, get, "argc");
    refused(c, NULL, -1, get, "argc");
    refused(c, NULL, 2, with_null, "argv[1]");
    /* Deadlines outside 0..RK_MAX_TIMEOUT_MS. */
    refused(c, &(rk_command_options){.timeout_ms = -1}, 2, get, "timeout_ms");
    refused(c, &(rk_command_options){.timeout_ms = -300000}, 2, get, "timeout_ms");
    refused(c, &(rk_command_options){.timeout_ms = RK_MAX_TIMEOUT_MS + 1}, 2, get, "timeout_ms");
    /* Blocking commands: a connection of their own, through the blocking API. */
    refused(c, NULL, 3, (const char *[]){"BLPOP", "async:q", "0"}, "rk_client_command_opts");
    refused(c, &(rk_command_options){.timeout_ms = 1000}, 3, (const char *[]){"brpop", "async:q", "1"},
            "rk_client_command_opts");
    refused(c, NULL, 6, (const char *[]){"XREAD", "BLOCK", "10", "STREAMS", "async:s", "$"},
            "rk_client_command_opts");
    refused(c, NULL, 3, (const char *[]){"WAIT", "1", "0"}, "rk_client_command_opts");
    /* Stateful commands: the API that does the job is named. */
    refused(c, NULL, 2, (const char *[]){"SUBSCRIBE", "news"}, "rk_pubsub");
    refused(c, NULL, 1, (const char *[]){"multi"}, "rk_pipeline_exec");
    refused(c, NULL, 2, (const char *[]){"SELECT", "1"}, "rk_client_options.db");
    refused(c, NULL, 2, (const char *[]){"WATCH", "k"}, "rk_client_watch");
    refused(c, NULL, 3, (const char *[]){"CLIENT", "REPLY", "OFF"}, "replies");
}

static void test_bad_arguments(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.command_timeout_ms = 5000});
    refusals(c);
    /* Nothing refused reached the server. */
    assert_int_equal(rk_test_server_command_calls(server, "blpop"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "brpop"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "subscribe"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "multi"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "select"), 0);

    /* The limits themselves are fine; opts NULL is the defaults. */
    set_blocking(c, "async:bad", "fine");
    expect_str(SEND_OPTS(c, &(rk_command_options){.timeout_ms = RK_MAX_TIMEOUT_MS}, "GET", "async:bad"), "fine");
    expect_str(SEND_OPTS(c, &(rk_command_options){.timeout_ms = 0}, "GET", "async:bad"), "fine");
    expect_str(send_argv(c, NULL, 2, (const char *[]){"GET", "async:bad"}), "fine");
    rk_future *f = (rk_future *)1;
    assert_int_equal(rk_client_send_opts(c, NULL, 2, (const char *[]){"GET", "async:bad"}, NULL, &f), RK_OK);
    expect_str(f, "fine");
    /* argvlen given: binary-safe, the lengths win over the NUL. */
    const char *set[] = {"SET", "async:bin", "a\0b"};
    const size_t setlen[] = {3, 9, 3};
    f = NULL;
    assert_int_equal(rk_client_send(c, 3, set, setlen, &f), RK_OK);
    expect_ok(f);
    const char *get[] = {"GET", "async:bin"};
    const size_t getlen[] = {3, 9};
    f = NULL;
    assert_int_equal(rk_client_send(c, 2, get, getlen, &f), RK_OK);
    rk_reply *bin = NULL;
    assert_int_equal(rk_future_wait(f, &bin), RK_OK);
    assert_int_equal(bin->type, RK_REPLY_STRING);
    assert_int_equal(bin->len, 3);
    assert_memory_equal(bin->str, "a\0b", 3);
    rk_reply_free(bin);

    /* rk_future_wait and friends with NULLs. */
    rk_reply *r = (rk_reply *)1;
    assert_int_equal(rk_future_wait(NULL, &r), RK_ERR_INVALID);
    assert_null(r);
    f = SEND(c, "GET", "async:bad");
    assert_int_equal(rk_future_wait(f, NULL), RK_ERR_INVALID); /* f given back all the same (ASan: no leak) */
    assert_non_null(strstr(rk_last_error(), "reply"));
    assert_false(rk_future_ready(NULL));
    rk_future_free(NULL);
    assert_int_equal(rk_future_wait(NULL, NULL), RK_ERR_INVALID);

    /* The client is none the worse: the reply of the future given back
     * with a NULL reply went nowhere. */
    set_blocking(c, "async:bad2", "after");
    expect_str(SEND(c, "GET", "async:bad2"), "after");
    get_blocking(c, "async:bad", "fine");
    rk_client_free(c);

    /* The same refusals on a client without shared connections. */
    c = client_with(&(rk_client_options){.shared_connections = -1, .command_timeout_ms = 5000});
    refusals(c);
    assert_int_equal(rk_test_server_command_calls(server, "blpop"), 0);
    rk_client_free(c);
}

/* ---- 4. futures given back without waiting --------------------------------- */

#define FORGOTTEN 200

static void half_waited(rk_client *c, const char *tag)
{
    char key[FORGOTTEN][KEY_MAX], val[FORGOTTEN][VAL_MAX];
    rk_future *f[FORGOTTEN];
    for (int i = 0; i < FORGOTTEN; i++) {
        snprintf(key[i], KEY_MAX, "async:%s:%d", tag, i);
        snprintf(val[i], VAL_MAX, "%s value %d", tag, i);
        set_blocking(c, key[i], val[i]);
    }
    for (int i = 0; i < FORGOTTEN; i++) f[i] = SEND(c, "GET", key[i]);
    /* Odd ones given back (their replies still to come: tombstones), even
     * ones waited, in order. */
    for (int i = 1; i < FORGOTTEN; i += 2) rk_future_free(f[i]);
    for (int i = 0; i < FORGOTTEN; i += 2) expect_str(f[i], val[i]);
    /* The discarded replies reached nobody: blocking calls and futures
     * after them get their own. */
    for (int i = FORGOTTEN - 1; i >= 0; i -= 3) {
        get_blocking(c, key[i], val[i]);
        expect_str(SEND(c, "GET", key[(i + 1) % FORGOTTEN]), val[(i + 1) % FORGOTTEN]);
    }
}

static void test_free_without_waiting(void **state)
{
    (void)state;
    /* One lane: a later call on the client is applied after the
     * forgotten ones, so their effect can be read back. */
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 5000});
    char key[KEY_MAX], val[VAL_MAX];
    /* Fire and forget: the first goes out at send (lane idle), the rest
     * queue behind its unread reply and go out when given back. */
    for (int i = 0; i < FORGOTTEN; i++) {
        snprintf(key, sizeof key, "async:ff:%d", i);
        snprintf(val, sizeof val, "fired %d", i);
        rk_future_free(SEND(c, "SET", key, val));
    }
    for (int i = 0; i < FORGOTTEN; i++) {
        snprintf(key, sizeof key, "async:ff:%d", i);
        snprintf(val, sizeof val, "fired %d", i);
        get_blocking(c, key, val);
    }
    half_waited(c, "half1");

    /* Given back once ready: the reply that came is freed (ASan: no leak). */
    rk_future *f[10];
    for (int i = 0; i < 10; i++) f[i] = SEND(c, "GET", "async:half1:7");
    command_expect(c, 1, (const char *[]){"PING"}, RK_REPLY_STATUS, "PONG"); /* reads all ten first */
    for (int i = 0; i < 10; i++) {
        assert_true(rk_future_ready(f[i]));
        rk_future_free(f[i]);
    }
    expect_str(SEND(c, "GET", "async:half1:8"), "half1 value 8");
    rk_client_stats st = stats(c);
    assert_int_equal(st.disconnects, 0); /* tombstones do not cost the connection */
    assert_int_equal(st.connects, 1);
    rk_client_free(c);

    /* Two lanes. */
    c = client_with(&(rk_client_options){.command_timeout_ms = 5000});
    half_waited(c, "half2");
    /* Given back with their commands still unwritten (behind replies
     * nobody has read): every INCR still goes out ("A command not yet
     * written still goes out"), without anybody waiting on the client.
     * Checked before the client is freed: closing a socket with replies
     * unread resets it, and the server may drop what it had not read. */
    for (int i = 0; i < 50; i++) rk_future_free(SEND(c, "INCR", "async:ff:counter"));
    long long counter = -1;
    for (int i = 0; i < 200 && counter != 50; i++) { /* bounded: about 2 s */
        counter = rk_test_server_integer(server, "INCRBY async:ff:counter 0");
        if (counter != 50) rk_test_sleep_ms(10);
    }
    assert_int_equal(counter, 50);
    assert_int_equal(stats(c).disconnects, 0);
    /* Freed with the INCRs' replies unread: nothing leaks (ASan). */
    rk_client_free(c);
}

/* ---- 5. threads with blocking calls and threads with futures --------------- */

#define MIX_THREADS 8
#define MIX_OPS 2000
#define MIX_DEPTH 16

struct mixer {
    rk_client *client;
    int id;
    int ops, wrong, errors;
    char first[256];
};

static void mix_note(struct mixer *m, rk_status st, const char *what)
{
    if (m->errors++ == 0) snprintf(m->first, sizeof m->first, "%s: %s: %s", what, rk_strerror(st), rk_last_error());
}

static bool is_text(const rk_reply *r, rk_reply_type type, const char *want)
{
    return r && r->type == type && r->str && strcmp(r->str, want) == 0;
}

static void *mix_blocking(void *arg)
{
    struct mixer *m = arg;
    char key[KEY_MAX], val[VAL_MAX];
    for (int i = 0; i < MIX_OPS / 2; i++) {
        snprintf(key, sizeof key, "async:mix:%d:%d", m->id, i % 64);
        snprintf(val, sizeof val, "blocking thread %d op %d", m->id, i);
        const char *set[] = {"SET", key, val}, *get[] = {"GET", key};
        rk_reply *r = NULL;
        rk_status st = rk_client_command(m->client, 3, set, NULL, &r);
        if (st != RK_OK) mix_note(m, st, "SET");
        else if (!is_text(r, RK_REPLY_STATUS, "OK")) m->wrong++;
        rk_reply_free(r);
        m->ops++;
        if (st != RK_OK) continue;
        if ((st = rk_client_command(m->client, 2, get, NULL, &r)) != RK_OK) mix_note(m, st, "GET");
        else if (!is_text(r, RK_REPLY_STRING, val)) m->wrong++;
        rk_reply_free(r);
        m->ops++;
    }
    return NULL;
}

/* MIX_DEPTH futures in flight: each place alternates a SET of a value
 * unique to the thread and op, then (once the SET is answered, since two
 * futures may travel on two lanes) a GET that must read it back. */
static void *mix_futures(void *arg)
{
    struct mixer *m = arg;
    struct {
        rk_future *f;
        bool get;
        char key[KEY_MAX], val[VAL_MAX];
    } place[MIX_DEPTH];
    memset(place, 0, sizeof place);
    for (int i = 0; i < MIX_OPS + MIX_DEPTH; i++) {
        int p = i % MIX_DEPTH;
        if (place[p].f) {
            rk_reply *r = NULL;
            rk_status st = rk_future_wait(place[p].f, &r);
            place[p].f = NULL;
            m->ops++;
            bool was_get = place[p].get;
            if (st != RK_OK) mix_note(m, st, was_get ? "GET" : "SET");
            else if (was_get ? !is_text(r, RK_REPLY_STRING, place[p].val) : !is_text(r, RK_REPLY_STATUS, "OK"))
                m->wrong++;
            rk_reply_free(r);
            place[p].get = !was_get && st == RK_OK;
        }
        if (i >= MIX_OPS) continue;
        if (!place[p].get) {
            snprintf(place[p].key, KEY_MAX, "async:mix:%d:p%d", m->id, p);
            snprintf(place[p].val, VAL_MAX, "future thread %d op %d", m->id, i);
        }
        const char *set[] = {"SET", place[p].key, place[p].val}, *get[] = {"GET", place[p].key};
        rk_status st = place[p].get ? rk_client_send(m->client, 2, get, NULL, &place[p].f)
                                    : rk_client_send(m->client, 3, set, NULL, &place[p].f);
        if (st != RK_OK) {
            mix_note(m, st, "send");
            m->ops++;
            place[p].get = false;
        }
    }
    return NULL;
}

static void test_threads_blocking_and_futures(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.command_timeout_ms = 10000});
    pthread_t t[MIX_THREADS];
    struct mixer m[MIX_THREADS];
    for (int i = 0; i < MIX_THREADS; i++) {
        m[i] = (struct mixer){.client = c, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, i % 2 ? mix_futures : mix_blocking, &m[i]), 0);
    }
    for (int i = 0; i < MIX_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < MIX_THREADS; i++) {
        if (m[i].errors) fail_msg("thread %d: %d errors, first: %s", i, m[i].errors, m[i].first);
        if (m[i].wrong) fail_msg("thread %d: %d wrong replies", i, m[i].wrong);
        assert_int_equal(m[i].ops, MIX_OPS);
    }
    assert_int_equal(stats(c).disconnects, 0);
    rk_client_free(c);
}

/* Futures sent by one thread, given to another and waited (or given
 * back) there, while the sender goes on with blocking calls. */
#define HANDED 200

struct handed {
    rk_future **f;
    char (*val)[VAL_MAX];
    int wrong, errors;
};

static void *wait_handed(void *arg)
{
    struct handed *h = arg;
    for (int i = 0; i < HANDED; i++) {
        if (i % 5 == 4) {
            rk_future_free(h->f[i]);
            continue;
        }
        rk_reply *r = NULL;
        rk_status st = rk_future_wait(h->f[i], &r);
        if (st != RK_OK) h->errors++;
        else if (!is_text(r, RK_REPLY_STRING, h->val[i])) h->wrong++;
        rk_reply_free(r);
    }
    return NULL;
}

static void test_futures_waited_in_another_thread(void **state)
{
    (void)state;
    static rk_future *f[HANDED];
    static char key[HANDED][KEY_MAX], val[HANDED][VAL_MAX];
    for (int lanes = 1; lanes <= 2; lanes++) {
        rk_client *c = client_with(&(rk_client_options){.shared_connections = lanes, .command_timeout_ms = 10000});
        for (int i = 0; i < HANDED; i++) {
            snprintf(key[i], KEY_MAX, "async:handed:%d:%d", lanes, i);
            snprintf(val[i], VAL_MAX, "handed %d value %d", lanes, i);
            set_blocking(c, key[i], val[i]);
        }
        for (int i = 0; i < HANDED; i++) f[i] = SEND(c, "GET", key[i]);
        struct handed h = {.f = f, .val = val};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, wait_handed, &h), 0);
        for (int i = 0; i < HANDED; i += 7) get_blocking(c, key[i], val[i]);
        pthread_join(t, NULL);
        assert_int_equal(h.errors, 0);
        assert_int_equal(h.wrong, 0);
        rk_client_free(c);
    }
}

/* ---- 6. liveness: a waiter sharing its write with futures nobody waits ---- */

#define B_HOLD_MS 5000

struct liveness {
    rk_client *client;
    /* A: one future, waited. */
    _Atomic int a_phase; /* 0 before its send, 1 sent (about to wait), 2 its wait returned */
    rk_status a_st;
    bool a_right;
    char a_err[256];
    int64_t a_wait_ms;
    /* B: futures sent after A's, held unwaited until A is done. */
    int b_max;
    bool b_until_a_done; /* stop sending once A is done */
    bool b_first;        /* send at once, not after A's send */
    _Atomic bool b_sent;
    int b_count, b_send_errors;
    bool b_released_on_signal;
    rk_future **b_f;
};

static void *live_a(void *arg)
{
    struct liveness *l = arg;
    const char *get[] = {"GET", "async:live:a"};
    rk_future *f = NULL;
    rk_status st = rk_client_send(l->client, 2, get, NULL, &f);
    if (st != RK_OK) {
        l->a_st = st;
        snprintf(l->a_err, sizeof l->a_err, "send: %s", rk_last_error());
        atomic_store(&l->a_phase, 2);
        return NULL;
    }
    atomic_store(&l->a_phase, 1);
    rk_reply *r = NULL;
    int64_t t0 = rk_test_now_ms();
    l->a_st = rk_future_wait(f, &r);
    l->a_wait_ms = rk_test_now_ms() - t0;
    if (l->a_st != RK_OK) snprintf(l->a_err, sizeof l->a_err, "wait: %s", rk_last_error());
    l->a_right = l->a_st == RK_OK && is_text(r, RK_REPLY_STRING, "a value");
    rk_reply_free(r);
    atomic_store(&l->a_phase, 2);
    return NULL;
}

static void *live_b(void *arg)
{
    struct liveness *l = arg;
    int64_t end = rk_test_now_ms() + B_HOLD_MS;
    /* Right after A's send. */
    for (int i = 0; i < 10000000 && !l->b_first && atomic_load(&l->a_phase) == 0 && rk_test_now_ms() < end; i++)
        sched_yield();
    char key[KEY_MAX];
    for (int i = 0; i < l->b_max; i++) {
        if (l->b_until_a_done && atomic_load(&l->a_phase) == 2) break;
        snprintf(key, sizeof key, "async:live:b:%d", i % 16);
        const char *get[] = {"GET", key};
        rk_future *f = NULL;
        if (rk_client_send(l->client, 2, get, NULL, &f) != RK_OK) l->b_send_errors++;
        else l->b_f[l->b_count++] = f;
    }
    atomic_store(&l->b_sent, true);
    /* Held, not waited, until A is done or B_HOLD_MS pass. */
    int64_t hold_until = rk_test_now_ms() + B_HOLD_MS;
    for (int i = 0; i < 100000 && atomic_load(&l->a_phase) != 2 && rk_test_now_ms() < hold_until; i++)
        rk_test_sleep_ms(1);
    l->b_released_on_signal = atomic_load(&l->a_phase) == 2;
    for (int i = 0; i < l->b_count; i++) rk_future_free(l->b_f[i]);
    return NULL;
}

static void liveness_check(struct liveness *l, const char *what)
{
    if (l->b_send_errors) fail_msg("%s: B: %d sends failed", what, l->b_send_errors);
    if (l->a_st != RK_OK) fail_msg("%s: A: %s: %s", what, rk_strerror(l->a_st), l->a_err);
    if (!l->a_right) fail_msg("%s: A: wrong value", what);
    if (!l->b_released_on_signal)
        fail_msg("%s: A's wait returned only after B gave its %d futures back (%lld ms): A was left asleep", what,
                 l->b_count, (long long)l->a_wait_ms);
}

/* C: a blocking call that drives the lane. */
static void *live_c(void *arg)
{
    struct mixer *m = arg;
    const char *get[] = {"GET", "async:live:c"};
    rk_reply *r = NULL;
    rk_status st = rk_client_command(m->client, 2, get, NULL, &r);
    if (st != RK_OK) mix_note(m, st, "C's GET");
    else if (!is_text(r, RK_REPLY_STRING, "c value")) m->wrong++;
    rk_reply_free(r);
    return NULL;
}

#define LIVE_ROUNDS 30
#define LIVE_B_MAX 1000

static void test_waiter_sharing_a_write_with_unwaited_futures(void **state)
{
    (void)state;
    static rk_future *held[LIVE_B_MAX];
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 10000});
    set_blocking(c, "async:live:a", "a value");
    set_blocking(c, "async:live:c", "c value");

    /* A sends and waits; B sends futures right after, as long as A waits,
     * and holds them. Whoever writes B's futures or reads their replies,
     * A must get its reply without B's help. */
    for (int round = 0; round < LIVE_ROUNDS; round++) {
        struct liveness l = {.client = c, .b_max = LIVE_B_MAX / 4, .b_until_a_done = true, .b_f = held};
        pthread_t a, b;
        assert_int_equal(pthread_create(&a, NULL, live_a, &l), 0);
        assert_int_equal(pthread_create(&b, NULL, live_b, &l), 0);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        char what[32];
        snprintf(what, sizeof what, "round %d", round);
        liveness_check(&l, what);
    }

    /* The same, made certain with a third caller C that drives: with the
     * server paused, C's blocking GET is written and C waits for its
     * reply in the read; A's future and B's 1000 are queued behind it,
     * for one write, which C makes once its own reply is in; A is asleep
     * (C drives). C then reads a few rounds more and leaves with most of
     * B's replies unread. Nobody waits on those, so nobody reads on:
     * - A's future first (even rounds): C hands A its reply, and must
     *   ring A's bell then, though the rest of the write is unanswered;
     * - B's futures first (odd rounds): C must hand the driver's role to
     *   A, the oldest caller that waits, not to B's futures ahead of it. */
    for (int round = 0; round < 4; round++) {
        bool b_first = round % 2;
        struct liveness l = {.client = c, .b_max = LIVE_B_MAX, .b_first = b_first, .b_f = held};
        assert_true(rk_test_server_signal(server, SIGSTOP));
        struct mixer cm = {.client = c};
        pthread_t a, b, cc;
        assert_int_equal(pthread_create(&cc, NULL, live_c, &cm), 0);
        rk_test_sleep_ms(150); /* C is in its read */
        if (b_first) {
            assert_int_equal(pthread_create(&b, NULL, live_b, &l), 0);
            for (int i = 0; i < 5000 && !atomic_load(&l.b_sent); i++) rk_test_sleep_ms(1);
        }
        assert_int_equal(pthread_create(&a, NULL, live_a, &l), 0);
        for (int i = 0; i < 5000 && atomic_load(&l.a_phase) == 0; i++) rk_test_sleep_ms(1);
        rk_test_sleep_ms(150); /* A is asleep */
        if (!b_first) {
            assert_int_equal(pthread_create(&b, NULL, live_b, &l), 0);
            for (int i = 0; i < 5000 && !atomic_load(&l.b_sent); i++) rk_test_sleep_ms(1);
        }
        assert_true(rk_test_server_signal(server, SIGCONT));
        pthread_join(cc, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        if (cm.errors) fail_msg("C: %s", cm.first);
        assert_int_equal(cm.wrong, 0);
        char what[48];
        snprintf(what, sizeof what, "paused round %d (%s first)", round, b_first ? "B" : "A");
        liveness_check(&l, what);
        assert_int_equal(l.b_count, LIVE_B_MAX);
    }
    /* B's discarded replies went nowhere. */
    get_blocking(c, "async:live:a", "a value");
    expect_str(SEND(c, "GET", "async:live:c"), "c value");
    assert_int_equal(stats(c).disconnects, 0);
    rk_client_free(c);
}

/* ---- 7. deadlines ------------------------------------------------------------ */

/* Wait for f, which must time out, within its deadline and a margin. */
static void expect_timeout_by(rk_future *f, int64_t by_ms)
{
    int64_t t0 = rk_test_now_ms();
    expect_fail(f, RK_ERR_TIMEOUT, NULL);
    int64_t took = rk_test_now_ms() - t0;
    if (took > by_ms + MARGIN_MS) fail_msg("RK_ERR_TIMEOUT after %lld ms, deadline %lld ms", (long long)took,
                                           (long long)by_ms);
}

static void test_deadlines_against_a_paused_server(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 5000});
    set_blocking(c, "async:dl", "deadline value");
    const rk_command_options short300 = {.timeout_ms = 300}, short200 = {.timeout_ms = 200};

    assert_true(rk_test_server_signal(server, SIGSTOP));
    /* One, then several in flight: each by its own deadline. */
    expect_timeout_by(SEND_OPTS(c, &short300, "GET", "async:dl"), 300);
    rk_future *f[5];
    for (int i = 0; i < 5; i++) f[i] = SEND_OPTS(c, &short300, "GET", "async:dl");
    int64_t t0 = rk_test_now_ms();
    for (int i = 0; i < 5; i++) expect_timeout_by(f[i], 300);
    assert_true(rk_test_now_ms() - t0 <= 300 + MARGIN_MS);
    /* Waited after its deadline: RK_ERR_TIMEOUT at once (the client's
     * 5 s command timeout is far off). */
    rk_future *late = SEND_OPTS(c, &short200, "SET", "async:dl:late", "late value");
    rk_test_sleep_ms(400);
    expect_timeout_by(late, 0);
    /* Again, for a GET. */
    rk_future *late2 = SEND_OPTS(c, &short200, "GET", "async:dl");
    rk_test_sleep_ms(400);
    expect_timeout_by(late2, 0);
    assert_true(rk_test_server_signal(server, SIGCONT));

    /* The late replies go nowhere: new futures and calls get their own. */
    for (int i = 0; i < 20; i++) {
        char key[KEY_MAX], val[VAL_MAX];
        snprintf(key, sizeof key, "async:dl:%d", i);
        snprintf(val, sizeof val, "after the pause %d", i);
        expect_ok(SEND(c, "SET", key, val));
        rk_future *g = SEND(c, "GET", key);
        rk_future *h = SEND(c, "GET", "async:dl");
        expect_str(g, val);
        expect_str(h, "deadline value");
    }
    get_blocking(c, "async:dl", "deadline value");
    rk_client_stats st = stats(c);
    assert_true(st.timeouts >= 8);
    assert_int_equal(st.disconnects, 0); /* short per-call deadlines do not cost the connection */
    rk_client_free(c);

    /* The client's own command timeout as the deadline (no options): the
     * connection is declared dead this time, and the client recovers. */
    c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 300});
    set_blocking(c, "async:dl2", "second client");
    assert_true(rk_test_server_signal(server, SIGSTOP));
    rk_future *g[3];
    for (int i = 0; i < 3; i++) g[i] = SEND(c, "GET", "async:dl2");
    for (int i = 0; i < 3; i++) expect_timeout_by(g[i], 300);
    assert_true(rk_test_server_signal(server, SIGCONT));
    assert_true(rk_test_client_recovers(c, 5000));
    for (int i = 0; i < 10; i++) expect_str(SEND(c, "GET", "async:dl2"), "second client");
    rk_client_free(c);
}

/* One blocking SET and GET of the thread's own value. */
static void *mix_blocking_once(void *arg)
{
    struct mixer *m = arg;
    const char *set[] = {"SET", "async:rd:t", "thread value"}, *get[] = {"GET", "async:rd:t"};
    rk_reply *r = NULL;
    rk_status st = rk_client_command(m->client, 3, set, NULL, &r);
    if (st != RK_OK) mix_note(m, st, "SET");
    rk_reply_free(r);
    r = NULL;
    if ((st = rk_client_command(m->client, 2, get, NULL, &r)) != RK_OK) mix_note(m, st, "GET");
    else if (!is_text(r, RK_REPLY_STRING, "thread value")) m->wrong++;
    rk_reply_free(r);
    return NULL;
}

/* ---- 7b. deadlines when the write itself cannot go out -------------------------- */

/* More than a loopback socket's send and receive buffers hold together
 * (net.ipv4.tcp_wmem / tcp_rmem maxima: 4 MB and up to 32 MB), so that
 * writing it to a paused server blocks. */
#define BIG_VALUE (64u << 20)

/* What the big-write tests start from: a SET of a 64 MB value ready to
 * send (argv, lens), and a client with one shared connection, a long
 * command timeout and async:big:small set. Under ThreadSanitizer every
 * byte copied is instrumented: building and queueing a 64 MB command
 * takes seconds before any deadline starts, so these tests run in the
 * plain and ASan builds only. */
typedef struct big_write {
    char *value;
    const char *argv[3];
    size_t lens[3];
    rk_client *c;
} big_write;

static void big_write_setup(big_write *b)
{
    if (rk_test_under_tsan()) skip();
    b->value = malloc(BIG_VALUE);
    assert_non_null(b->value);
    memset(b->value, 'b', BIG_VALUE);
    *b = (big_write){.value = b->value, .argv = {"SET", "async:big", b->value}, .lens = {3, 9, BIG_VALUE}};
    b->c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 10000});
    set_blocking(b->c, "async:big:small", "small");
}

/* After a write that could not finish: the server back, the client
 * recovers, and the stream was not left half-written (a fresh
 * connection, right values). */
static void recovers_with_right_values(rk_client *c)
{
    assert_true(rk_test_server_signal(server, SIGCONT));
    assert_true(rk_test_client_recovers(c, 10000));
    for (int i = 0; i < 10; i++) {
        expect_ok(SEND(c, "SET", "async:big:after", "after the big write"));
        expect_str(SEND(c, "GET", "async:big:after"), "after the big write");
        expect_str(SEND(c, "GET", "async:big:small"), "small");
    }
}

/* End a big-write test whose server was paused: the value freed, the
 * server resumed and the client shown to recover, then freed. */
static void big_write_end(big_write *b)
{
    free(b->value);
    recovers_with_right_values(b->c);
    rk_client_free(b->c);
}

/* rk_client_send "returns at once" (it may wait for a connection, within
 * the deadline): on an idle lane it writes the command itself, and that
 * write must not outlast the future's deadline either, even when the
 * server takes nothing. */
static void test_send_of_a_big_command_to_a_paused_server_returns_by_its_deadline(void **state)
{
    (void)state;
    big_write b;
    big_write_setup(&b);
    assert_true(rk_test_server_signal(server, SIGSTOP));
    int64_t t0 = rk_test_now_ms();
    rk_future *f = NULL;
    rk_status st = rk_client_send_opts(b.c, &(rk_command_options){.timeout_ms = 300}, 3, b.argv, b.lens, &f);
    int64_t sent_ms = rk_test_now_ms() - t0;
    rk_status wst = RK_OK;
    if (st == RK_OK) {
        rk_reply *r = NULL;
        wst = rk_future_wait(f, &r);
        rk_reply_free(r);
    }
    int64_t total_ms = rk_test_now_ms() - t0;
    char why[256];
    snprintf(why, sizeof why, "%s", rk_last_error());
    big_write_end(&b);
    if (total_ms > 300 + MARGIN_MS)
        fail_msg("a 300 ms future to a paused server: rk_client_send took %lld ms (%s), its wait %lld ms more (%s: "
                 "%s); the write of the command was held to the client's 10 s command timeout, not the future's "
                 "deadline",
                 (long long)sent_ms, rk_strerror(st), (long long)(total_ms - sent_ms), rk_strerror(wst), why);
    assert_true(st == RK_OK || st == RK_ERR_TIMEOUT);
    assert_true(wst == RK_ERR_TIMEOUT || wst == RK_ERR_UNAVAILABLE);
}

/* A small future with a 300 ms deadline, in the same write as another
 * future's big command: its wait, which does the lane's I/O, returns by
 * its deadline whatever the server does. */
static void test_wait_returns_by_its_deadline_behind_a_big_write(void **state)
{
    (void)state;
    big_write b;
    big_write_setup(&b);
    rk_client *c = b.c;
    assert_true(rk_test_server_signal(server, SIGSTOP));
    /* A future given up leaves the lane busy (its reply awaited): what
     * is sent next is queued for the next write, not written at send. */
    expect_timeout_by(SEND_OPTS(c, &(rk_command_options){.timeout_ms = 100}, "GET", "async:big:small"), 100);
    rk_future *big = NULL;
    assert_int_equal(rk_client_send_opts(c, &(rk_command_options){.timeout_ms = 300}, 3, b.argv, b.lens, &big),
                     RK_OK);
    rk_future *small = SEND_OPTS(c, &(rk_command_options){.timeout_ms = 300}, "GET", "async:big:small");
    int64_t t0 = rk_test_now_ms();
    rk_reply *r = NULL;
    rk_status st = rk_future_wait(small, &r);
    int64_t took = rk_test_now_ms() - t0;
    rk_reply_free(r);
    char why[256];
    snprintf(why, sizeof why, "%s", rk_last_error());
    rk_future_free(big);
    big_write_end(&b);
    if (took > 300 + MARGIN_MS)
        fail_msg("a 300 ms future waited %lld ms (%s: %s): its wait wrote the big command queued before it, "
                 "held to the client's 10 s command timeout, not the future's deadline",
                 (long long)took, rk_strerror(st), why);
    assert_true(st == RK_ERR_TIMEOUT || st == RK_ERR_UNAVAILABLE);
}

/* A caller with a very short deadline that ends up writing another
 * future's big command to a healthy server stops at its own deadline;
 * the rest goes out with the next write and the connection lives on:
 * the others' futures are answered, and nothing disconnects. */
static void test_short_deadline_writer_costs_nobody_the_connection(void **state)
{
    (void)state;
    big_write b;
    big_write_setup(&b);
    rk_client *c = b.c;
    for (int round = 0; round < 3; round++) {
        rk_future *first = SEND(c, "GET", "async:big:small"); /* goes out at once: the lane is busy after */
        rk_future *big = NULL;
        assert_int_equal(rk_client_send(c, 3, b.argv, b.lens, &big), RK_OK);
        rk_future *hasty = SEND_OPTS(c, &(rk_command_options){.timeout_ms = 1}, "PING");
        rk_reply *r = NULL;
        rk_status st = rk_future_wait(hasty, &r); /* it drives: writes the big command until its deadline */
        rk_reply_free(r);
        assert_true(st == RK_OK || st == RK_ERR_TIMEOUT);
        expect_str(first, "small");
        expect_ok(big);
        expect_str(SEND(c, "GET", "async:big:small"), "small");
    }
    free(b.value);
    rk_client_stats stats;
    assert_int_equal(rk_client_stats_get(c, &stats), RK_OK);
    assert_int_equal(stats.disconnects, 0);
    assert_int_equal(stats.connects, 1);
    rk_client_free(c);
}

/* ---- 7c. the circuit breaker's probe sent as a future --------------------------- */

/* After an outage the first call is the breaker's probe and "runs
 * normally, with its own deadline; every other call fails fast while it
 * is in flight" (docs/resilience.md). A probe sent as a future and held
 * unwaited past its deadline — the server long back — must not keep
 * every other call of the client failing fast. */
static void test_probe_future_held_past_its_deadline(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1,
                                                     .command_timeout_ms = 1000,
                                                     .breaker_threshold = 1,
                                                     .reconnect_base_ms = 20,
                                                     .reconnect_max_ms = 100});
    set_blocking(c, "async:probe", "probe");
    assert_true(rk_test_server_signal(server, SIGKILL));
    for (int i = 0; i < 100 && rk_client_circuit(c) != RK_CIRCUIT_OPEN; i++) {
        rk_client_ping(c);
        rk_test_sleep_ms(10);
    }
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_OPEN);
    assert_true(rk_test_server_restart(server, NULL));
    /* The first send let through once the delay has passed is the probe. */
    rk_future *probe = NULL;
    for (int i = 0; i < 500 && !probe; i++)
        if (rk_client_send(c, 1, (const char *[]){"PING"}, NULL, &probe) != RK_OK) rk_test_sleep_ms(10);
    assert_non_null(probe);
    /* The probe ran to its end inside rk_client_send (async.h): the
     * breaker knows its outcome before the future is waited. */
    assert_true(rk_future_ready(probe));
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_CLOSED);
    rk_test_sleep_ms(1000 + 500); /* past the probe's deadline */
    rk_status st = RK_ERR_UNAVAILABLE;
    int64_t t0 = rk_test_now_ms();
    char last[256] = "";
    for (int i = 0; i < 300 && st != RK_OK && rk_test_now_ms() - t0 < 3000; i++) {
        rk_reply *r = NULL;
        st = rk_client_command(c, 2, (const char *[]){"GET", "async:probe"}, NULL, &r);
        rk_reply_free(r);
        if (st != RK_OK) {
            snprintf(last, sizeof last, "%s", rk_last_error());
            rk_test_sleep_ms(10);
        }
    }
    rk_reply *r = NULL;
    rk_status pst = rk_future_wait(probe, &r); /* given back in any case */
    /* Its outcome was kept: waiting past the deadline does not turn the
     * probe's PONG into a timeout. */
    assert_int_equal(pst, RK_OK);
    assert_int_equal(r->type, RK_REPLY_STATUS);
    rk_reply_free(r);
    bool recovered = rk_test_client_recovers(c, 5000);
    rk_client_free(c);
    if (st != RK_OK)
        fail_msg("the server back, the probe future held 1.5 s past its deadline and 3 s more: every call still "
                 "fails: %s (the probe, waited at last: %s)",
                 last, rk_strerror(pst));
    assert_true(recovered);
}

/* ---- 8. rk_future_ready ---------------------------------------------------- */

static void test_ready_when_somebody_else_drives(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 5000});
    set_blocking(c, "async:rd", "ready value");

    /* Not ready while the server cannot answer; and not ready after it
     * did, since nobody reads: ready does no I/O. */
    assert_true(rk_test_server_signal(server, SIGSTOP));
    rk_future *f = SEND(c, "GET", "async:rd");
    assert_false(rk_future_ready(f));
    rk_test_sleep_ms(50);
    assert_false(rk_future_ready(f));
    assert_true(rk_test_server_signal(server, SIGCONT));
    rk_test_sleep_ms(100);
    assert_false(rk_future_ready(f));
    /* A blocking call behind it reads its reply first. */
    command_expect(c, 1, (const char *[]){"PING"}, RK_REPLY_STATUS, "PONG");
    assert_true(rk_future_ready(f));
    expect_str(f, "ready value");

    /* Waiting for a later future answers the earlier ones. */
    rk_future *e[4];
    e[0] = SEND(c, "GET", "async:rd");
    e[1] = SEND(c, "LPUSH", "async:rd", "x");
    e[2] = SEND(c, "SET", "async:rd2", "second");
    e[3] = SEND(c, "GET", "async:rd2");
    expect_str(e[3], "second");
    for (int i = 0; i < 3; i++) assert_true(rk_future_ready(e[i]));
    expect_str(e[0], "ready value");
    expect_fail(e[1], RK_ERR_SERVER, "WRONGTYPE"); /* an error reply is ready too */
    expect_ok(e[2]);

    /* Driven from another thread: the waiting thread's blocking call. */
    f = SEND(c, "GET", "async:rd2");
    struct mixer m = {.client = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, mix_blocking_once, &m), 0);
    pthread_join(t, NULL);
    assert_int_equal(m.errors, 0);
    assert_int_equal(m.wrong, 0);
    assert_true(rk_future_ready(f));
    expect_str(f, "second");
    rk_client_free(c);
}

/* ---- 9. fork ------------------------------------------------------------------ */

#define FORK_GETS 50

/* The child: the parent's futures are refused (or given back), its own
 * work. Returns the exit status: 0, or which check failed. No cmocka. */
static int child_side(rk_client *c, rk_future *inherited, rk_future *inherited_too, int round)
{
    rk_reply *r = (rk_reply *)1;
    int64_t t0 = rk_test_now_ms();
    if (rk_future_wait(inherited, &r) != RK_ERR_INVALID) return 10;
    if (r != NULL) return 11;
    if (!strstr(rk_last_error(), "fork")) return 12;
    if (rk_test_now_ms() - t0 > MARGIN_MS) return 13; /* at once, without the parent's connection */
    rk_future_free(inherited_too);
    char val[VAL_MAX];
    snprintf(val, sizeof val, "child value %d", round);
    const char *set[] = {"SET", "async:fork:child", val}, *get[] = {"GET", "async:fork:child"};
    rk_future *f = NULL;
    if (rk_client_send(c, 3, set, NULL, &f) != RK_OK) return 20;
    if (rk_future_wait(f, &r) != RK_OK) return 21;
    rk_reply_free(r);
    rk_future *g[FORK_GETS];
    for (int i = 0; i < FORK_GETS; i++)
        if (rk_client_send(c, 2, get, NULL, &g[i]) != RK_OK) return 22;
    int wrong = 0;
    for (int i = 0; i < FORK_GETS; i++) {
        r = NULL;
        if (rk_future_wait(g[i], &r) != RK_OK || !is_text(r, RK_REPLY_STRING, val)) wrong++;
        rk_reply_free(r);
    }
    rk_client_free(c);
    return wrong ? 30 : 0;
}

static void test_fork(void **state)
{
    (void)state;
    rk_test_fork_skip_under_tsan();
    for (int round = 0; round < 4; round++) {
        /* Rounds 0 and 2: the parent's futures still in flight at fork()
         * (server paused); 1 and 3: their replies already in. */
        bool in_flight = round % 2 == 0;
        rk_client *c = client_with(&(rk_client_options){.shared_connections = round < 2 ? 1 : 0,
                                                         .command_timeout_ms = 5000});
        char val[VAL_MAX];
        snprintf(val, sizeof val, "parent value %d", round);
        set_blocking(c, "async:fork:parent", val);
        if (in_flight) assert_true(rk_test_server_signal(server, SIGSTOP));
        rk_future *mine = SEND(c, "GET", "async:fork:parent");
        rk_future *mine_too = SEND(c, "GET", "async:fork:parent");
        if (!in_flight) {
            command_expect(c, 1, (const char *[]){"PING"}, RK_REPLY_STATUS, "PONG");
            /* On two lanes the PING may not have read them: whatever. */
        }
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) _exit(child_side(c, mine, mine_too, round));
        if (in_flight) assert_true(rk_test_server_signal(server, SIGCONT));
        expect_str(mine, val);
        expect_str(mine_too, val);
        for (int i = 0; i < 20; i++) expect_str(SEND(c, "GET", "async:fork:parent"), val);
        int status = rk_test_wait_child(pid, 20000);
        if (status == -1) fail_msg("round %d: the child did not finish", round);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0) fail_msg("round %d: the child failed check %d", round, WEXITSTATUS(status));
        /* The child sent nothing on the parent's connections. */
        assert_int_equal(stats(c).disconnects, 0);
        rk_client_free(c);
    }
    char val[VAL_MAX];
    snprintf(val, sizeof val, "child value %d", 3);
    redisReply *r = rk_test_server_command(server, "GET async:fork:child");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, val);
    freeReplyObject(r);
}

/* ---- 10. a client without shared connections --------------------------------- */

static void test_client_without_shared_connections(void **state)
{
    (void)state;
    rk_client *c = client_with(&(rk_client_options){.shared_connections = -1, .command_timeout_ms = 5000});
    /* Run at send: ready at once. */
    rk_future *f = SEND(c, "SET", "async:nl", "no lanes");
    assert_true(rk_future_ready(f));
    expect_ok(f);
    f = SEND(c, "GET", "async:nl");
    assert_true(rk_future_ready(f));
    expect_str(f, "no lanes");
    /* Run in order, so the same-key pairs read back. */
    rk_future *g[100];
    char val[50][VAL_MAX];
    for (int i = 0; i < 50; i++) {
        snprintf(val[i], VAL_MAX, "no lanes %d", i);
        g[2 * i] = SEND(c, "SET", "async:nl", val[i]);
        g[2 * i + 1] = SEND(c, "GET", "async:nl");
    }
    for (int i = 99; i >= 0; i--) {
        assert_true(rk_future_ready(g[i]));
        if (i % 2) expect_str(g[i], val[i / 2]);
        else expect_ok(g[i]);
    }
    /* An error reply keeps its text until waited, whatever ran between. */
    rk_future *e = SEND(c, "LPUSH", "async:nl", "x");
    expect_str(SEND(c, "GET", "async:nl"), "no lanes 49");
    expect_fail(SEND(c, "NOSUCHCOMMAND"), RK_ERR_SERVER, "unknown command");
    expect_fail(e, RK_ERR_SERVER, "WRONGTYPE");
    /* Given back unwaited, its reply with it (ASan: no leak). */
    rk_future_free(SEND(c, "GET", "async:nl"));
    /* A paused server: the send itself runs to its deadline; the future
     * holds the timeout. */
    assert_true(rk_test_server_signal(server, SIGSTOP));
    int64_t t0 = rk_test_now_ms();
    f = SEND_OPTS(c, &(rk_command_options){.timeout_ms = 300}, "GET", "async:nl");
    assert_true(rk_test_now_ms() - t0 <= 300 + MARGIN_MS);
    assert_true(rk_future_ready(f));
    expect_timeout_by(f, 0);
    assert_true(rk_test_server_signal(server, SIGCONT));
    assert_true(rk_test_client_recovers(c, 5000));
    expect_str(SEND(c, "GET", "async:nl"), "no lanes 49");
    rk_client_free(c);
}

/* ---- 11. the server killed with futures in flight ----------------------------- */

static bool acceptable_failure(rk_status st) { return st == RK_ERR_UNAVAILABLE || st == RK_ERR_TIMEOUT; }

/* New futures work again once the server is back (reconnects may be held
 * back for a while: bounded retries). */
static void works_again(rk_client *c, const char *tag)
{
    int64_t end = rk_test_now_ms() + 10000;
    rk_status st = RK_ERR_UNAVAILABLE;
    for (int i = 0; i < 1000 && st != RK_OK && rk_test_now_ms() < end; i++) {
        rk_future *f = NULL;
        if ((st = rk_client_send(c, 1, (const char *[]){"PING"}, NULL, &f)) == RK_OK) {
            rk_reply *r = NULL;
            if ((st = rk_future_wait(f, &r)) == RK_OK) rk_reply_free(r);
        }
        if (st != RK_OK) rk_test_sleep_ms(20);
    }
    if (st != RK_OK) fail_msg("%s: no future answered within 10 s of the restart: %s", tag, rk_last_error());
    char key[KEY_MAX], val[VAL_MAX];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "async:kill:%s:%d", tag, i);
        snprintf(val, sizeof val, "%s after restart %d", tag, i);
        expect_ok(SEND(c, "SET", key, val));
        expect_str(SEND(c, "GET", key), val);
    }
}

#define KILLED 100

static void test_server_killed_with_futures_in_flight(void **state)
{
    (void)state;
    /* Paused, then killed: no future can have been answered. */
    rk_client *c = client_with(&(rk_client_options){.shared_connections = 1, .command_timeout_ms = 3000});
    set_blocking(c, "async:kill", "before");
    assert_true(rk_test_server_signal(server, SIGSTOP));
    rk_future *f[KILLED];
    for (int i = 0; i < KILLED; i++) f[i] = i % 2 ? SEND(c, "GET", "async:kill") : SEND(c, "SET", "async:kill", "x");
    assert_true(rk_test_server_signal(server, SIGKILL));
    int64_t t0 = rk_test_now_ms();
    for (int i = 0; i < KILLED; i++) {
        rk_reply *r = NULL;
        rk_status st = rk_future_wait(f[i], &r);
        if (!acceptable_failure(st)) {
            rk_reply_free(r);
            fail_msg("future %d: %s: %s", i, rk_strerror(st), rk_last_error());
        }
        assert_null(r);
    }
    if (rk_test_now_ms() - t0 > 3000 + MARGIN_MS) fail_msg("the waits took %lld ms", (long long)(rk_test_now_ms() - t0));
    assert_true(rk_test_server_restart(server, NULL));
    works_again(c, "paused");
    rk_client_free(c);

    /* Killed while answering: the futures answered before it are right,
     * the others fail; never a wrong value. Two lanes; sends after the
     * kill may fail too. */
    c = client_with(&(rk_client_options){.command_timeout_ms = 3000});
    char val[KILLED][VAL_MAX];
    int ok = 0, failed = 0, send_failed = 0;
    for (int i = 0; i < KILLED; i++) {
        snprintf(val[i], VAL_MAX, "live kill %d", i);
        char key[KEY_MAX];
        snprintf(key, sizeof key, "async:kill:%d", i);
        set_blocking(c, key, val[i]);
    }
    for (int i = 0; i < KILLED; i++) {
        char key[KEY_MAX];
        snprintf(key, sizeof key, "async:kill:%d", i);
        if (i == KILLED / 2) assert_true(rk_test_server_signal(server, SIGKILL));
        f[i] = NULL;
        rk_status st = rk_client_send(c, 2, (const char *[]){"GET", key}, NULL, &f[i]);
        if (st != RK_OK) {
            if (!acceptable_failure(st)) fail_msg("send %d: %s: %s", i, rk_strerror(st), rk_last_error());
            assert_null(f[i]);
            send_failed++;
        }
    }
    t0 = rk_test_now_ms();
    for (int i = 0; i < KILLED; i++) {
        if (!f[i]) continue;
        rk_reply *r = NULL;
        rk_status st = rk_future_wait(f[i], &r);
        if (st == RK_OK) {
            bool right = is_text(r, RK_REPLY_STRING, val[i]);
            rk_reply_free(r);
            if (!right) fail_msg("future %d: a wrong value", i);
            ok++;
        } else if (acceptable_failure(st)) {
            assert_null(r);
            failed++;
        } else {
            fail_msg("future %d: %s: %s", i, rk_strerror(st), rk_last_error());
        }
    }
    if (rk_test_now_ms() - t0 > 3000 + MARGIN_MS) fail_msg("the waits took %lld ms", (long long)(rk_test_now_ms() - t0));
    assert_true(failed + send_failed >= KILLED / 2); /* nothing sent after the kill was answered */
    assert_int_equal(ok + failed + send_failed, KILLED);
    assert_true(rk_test_server_restart(server, NULL));
    works_again(c, "live");
    rk_client_free(c);
}

/* ---- 12. allocation failures ---------------------------------------------------- */

/* Each step succeeds, or fails with RK_ERR_NOMEM once the injected
 * failure has happened. */
#define STEP(expr)                                                                                      \
    do {                                                                                                \
        rk_status st_ = (expr);                                                                         \
        if (st_ != RK_OK && !(st_ == RK_ERR_NOMEM && rk_test_fail_hit()))                              \
            fail_msg("N=%ld: %s: %s: %s", rk_test_fail_at(), #expr, rk_strerror(st_), rk_last_error()); \
        steps_ok += st_ == RK_OK;                                                                       \
    } while (0)

/* Fail the Nth allocation, for N = 1, 2, ... until a run passes none:
 * client, sends (on lanes and without), waits and give-backs report
 * RK_ERR_NOMEM or succeed, never crash, and leak nothing. First in the
 * program: the allocator may only change while no redkit memory is live. */
static void test_allocation_failures(void **state)
{
    (void)state;
    assert_true(rk_test_server_flush(server));
    rk_test_server_ok(server, "SET async:nm value");
    assert_int_equal(rk_set_allocator(&rk_test_fail_allocator), RK_OK);
    long n = 1;
    for (; n < 5000; n++) {
        rk_test_fail_arm(n);
        int steps_ok = 0;
        for (int lanes = 0; lanes < 2; lanes++) {
            rk_client *c = NULL;
            rk_status st = rk_client_new(&(rk_client_options){.url = rk_test_server_url(server),
                                                              .shared_connections = lanes ? 1 : -1,
                                                              .command_timeout_ms = 5000},
                                         &c);
            if (st != RK_OK) {
                if (!rk_test_fail_hit()) fail_msg("N=%ld: rk_client_new: %s", n, rk_last_error());
                continue;
            }
            const char *set[] = {"SET", "async:nm", "value"}, *get[] = {"GET", "async:nm"};
            rk_future *f[4] = {NULL, NULL, NULL, NULL};
            STEP(rk_client_send(c, 3, set, NULL, &f[0]));
            STEP(rk_client_send(c, 2, get, NULL, &f[1]));
            STEP(rk_client_send(c, 2, get, NULL, &f[2]));
            STEP(rk_client_send_opts(c, &(rk_command_options){.timeout_ms = 4000}, 2, get, NULL, &f[3]));
            rk_future_free(f[2]);
            for (int i = 0; i < 4; i++) {
                if (i == 2 || !f[i]) continue;
                rk_reply *r = NULL;
                STEP(rk_future_wait(f[i], &r));
                if (r && !(i == 0 ? is_text(r, RK_REPLY_STATUS, "OK") : is_text(r, RK_REPLY_STRING, "value"))) {
                    rk_reply_free(r);
                    fail_msg("N=%ld: future %d: a wrong reply", n, i);
                }
                rk_reply_free(r);
            }
            rk_client_free(c);
        }
        bool hit = rk_test_fail_hit();
        rk_test_fail_disarm();
        if (rk_test_fail_live() != 0) fail_msg("N=%ld: %ld blocks leaked", n, rk_test_fail_live());
        if (!hit) {
            assert_int_equal(steps_ok, 2 * 7); /* the run without a failure: every step */
            break;
        }
    }
    fprintf(stderr, "allocation walk: %ld runs\n", n);
    assert_true(n > 10 && n < 5000);
    assert_int_equal(rk_set_allocator(NULL), RK_OK);
}

int main(void)
{
#define TEST(t) cmocka_unit_test_setup_teardown(t, rk_test_group_flush, resume_server)
    const struct CMUnitTest tests[] = {
        TEST(test_allocation_failures),
        TEST(test_many_futures_in_flight),
        TEST(test_error_replies_in_the_middle),
        TEST(test_bad_arguments),
        TEST(test_free_without_waiting),
        TEST(test_threads_blocking_and_futures),
        TEST(test_futures_waited_in_another_thread),
        TEST(test_waiter_sharing_a_write_with_unwaited_futures),
        TEST(test_deadlines_against_a_paused_server),
        TEST(test_send_of_a_big_command_to_a_paused_server_returns_by_its_deadline),
        TEST(test_wait_returns_by_its_deadline_behind_a_big_write),
        TEST(test_short_deadline_writer_costs_nobody_the_connection),
        TEST(test_probe_future_held_past_its_deadline),
        TEST(test_ready_when_somebody_else_drives),
        TEST(test_fork),
        TEST(test_client_without_shared_connections),
        TEST(test_server_killed_with_futures_in_flight),
    };
    return cmocka_run_group_tests(tests, setup, rk_test_group_teardown);
}
