/*
 * conn_fault_test.c — the client against servers that are up but refuse,
 * or keep dropping its connections: maxclients reached (with and without
 * a password), CLIENT KILL in a loop, 2 working connections out of 8, and
 * a connection torn down while other threads call.
 *
 * Each scenario runs 8 calling threads for a few seconds. Assertions on
 * time are upper bounds only (no call may end past its deadline plus a
 * margin for scheduling); how fast things are lives in bench/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#include "conn.h"
#include "support/clock.h"
#include "support/fixture.h"
#include "support/redis_server.h"

#define THREADS 8
#define RUN_MS 3000

/* Slack over a call's deadline: scheduling on a loaded 2-core machine and
 * sanitizer builds, never the client's own waiting. */
#define MARGIN_MS 400

#define COMMAND_MS 300
#define CONNECT_MS 200

/* The longest a call may take: its command timeout, plus the connect
 * timeout for each of the (at most two: a read is retried once on a fresh
 * connection) connections it may have had to open, which extend its
 * deadline by the time they took. */
#define CALL_BUDGET_MS (COMMAND_MS + 2 * CONNECT_MS + MARGIN_MS)

/* ---- an admin connection the test holds --------------------------------- */

static redisContext *admin_open(rk_test_server *s, const char *password)
{
    struct timeval tv = {.tv_sec = 2};
    redisContext *a = redisConnectWithTimeout("127.0.0.1", rk_test_server_port(s), tv);
    assert_non_null(a);
    assert_int_equal(a->err, 0);
    redisSetTimeout(a, tv);
    if (password) {
        redisReply *r = redisCommand(a, "AUTH %s", password);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    return a;
}

static void admin_ok(redisContext *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(a, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

/* A field of INFO stats. */
static long long info_stat(redisContext *a, const char *field)
{
    redisReply *r = redisCommand(a, "INFO stats");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char key[64];
    snprintf(key, sizeof key, "\r\n%s:", field);
    const char *at = strstr(r->str, key);
    assert_non_null(at);
    long long v = strtoll(at + strlen(key), NULL, 10);
    freeReplyObject(r);
    return v;
}

/* Connection attempts the server has seen: accepted and refused. */
static long long attempts(redisContext *a)
{
    return info_stat(a, "total_connections_received") + info_stat(a, "rejected_connections");
}

/* ---- calling threads ---------------------------------------------------- */

typedef struct load {
    rk_client *client;
    const char *get;  /* GET this key instead of PING */
    int64_t stop_ms;
    _Atomic long ok, failed, auth, late;
    _Atomic long worst_ms;
} load;

static void *caller(void *arg)
{
    load *l = arg;
    /* Bounded in count as well as in time. */
    for (int i = 0; i < 1000000 && rk_test_now_ms() < l->stop_ms; i++) {
        int64_t t0 = rk_test_now_ms();
        rk_status st;
        if (l->get) {
            const char *argv[] = {"GET", l->get};
            rk_reply *r = NULL;
            st = rk_client_command(l->client, 2, argv, NULL, &r);
            rk_reply_free(r);
        } else {
            st = rk_client_ping(l->client);
        }
        long took = (long)(rk_test_now_ms() - t0);
        if (st == RK_OK) atomic_fetch_add(&l->ok, 1);
        else atomic_fetch_add(&l->failed, 1);
        if (st == RK_ERR_AUTH) atomic_fetch_add(&l->auth, 1);
        if (took > CALL_BUDGET_MS) atomic_fetch_add(&l->late, 1);
        long w = atomic_load(&l->worst_ms);
        while (took > w && !atomic_compare_exchange_weak(&l->worst_ms, &w, took)) {
        }
    }
    return NULL;
}

static void load_start(load *l, rk_client *c, const char *get, pthread_t *t)
{
    *l = (load){.client = c, .get = get, .stop_ms = rk_test_now_ms() + RUN_MS};
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, caller, l), 0);
}

static void load_join(load *l, pthread_t *t, const char *what)
{
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    long ok = atomic_load(&l->ok), failed = atomic_load(&l->failed);
    printf("# %s: %ld ok, %ld failed (%.2f%% ok), %ld late, worst %ld ms\n", what, ok, failed,
           ok + failed ? 100.0 * (double)ok / (double)(ok + failed) : 0.0, atomic_load(&l->late),
           atomic_load(&l->worst_ms));
    assert_int_equal(atomic_load(&l->late), 0);
}

static rk_client *new_client(rk_test_server *s, const rk_client_options *extra)
{
    rk_client_options o = extra ? *extra : (rk_client_options){0};
    o.url = rk_test_server_url(s);
    o.command_timeout_ms = COMMAND_MS;
    o.connect_timeout_ms = CONNECT_MS;
    return rk_test_client_new(&o);
}

/* ---- 1. a server that refuses: maxclients reached ----------------------- */

/*
 * The bound on connection attempts. After a failed attempt the client
 * makes the next one alone and only after a full-jitter delay drawn from
 * [0, min(max, base * 2^(k-1))] for the k-th consecutive failure (the
 * defaults: base 50 ms, max 5 s). Over RUN_MS = 3 s the expected number of
 * attempts is about 1 + log2(3000 / 25) ≈ 8, whatever the number of
 * threads; 60 (20 per second) leaves room for unlucky draws of the jitter
 * and is still three orders of magnitude below the hammering this test
 * was written for (8–17 thousand attempts per second).
 */
#define REFUSED_ATTEMPTS_MAX 60

static void refusing_server(const char *password)
{
    const char *args[] = {"--requirepass", password, NULL};
    rk_test_server *s = rk_test_server_start(password ? args : NULL);
    assert_non_null(s);
    if (password) rk_test_server_set_admin_password(s, password);
    redisContext *a = admin_open(s, password);
    /* The admin connection is one of the two: the client gets one. */
    admin_ok(a, "CONFIG SET maxclients 2");
    rk_client *c = new_client(s, &(rk_client_options){.password = password});

    long long before = attempts(a);
    load l;
    pthread_t t[THREADS];
    load_start(&l, c, NULL, t);
    load_join(&l, t, password ? "maxclients 2, password" : "maxclients 2");
    long long made = attempts(a) - before;
    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    printf("# connection attempts in %d ms: %lld (client: %llu connects, %llu failed)\n", RUN_MS, made,
           (unsigned long long)st.connects, (unsigned long long)st.connect_failures);
    assert_true(made >= 1);
    assert_true(made <= REFUSED_ATTEMPTS_MAX);
    assert_int_equal(atomic_load(&l.auth), 0);
    /* The one connection the server accepted served calls throughout. */
    assert_true(atomic_load(&l.ok) > 0);

    /* A connect attempt refused this way says what it is. */
    rk_client *c2 = new_client(s, &(rk_client_options){.password = password, .shared_connections = -1});
    admin_ok(a, "CONFIG SET maxclients 1");
    rk_client_free(c); /* frees the slot the admin's connection does not hold */
    rk_status ps = rk_client_ping(c2);
    assert_int_equal(ps, RK_ERR_UNAVAILABLE);
    assert_non_null(strstr(rk_last_error(), "max number of clients"));
    rk_client_free(c2);
    redisFree(a);
    rk_test_server_stop(s);
}

static void test_refusing_server(void **state)
{
    (void)state;
    refusing_server(NULL);
}

static void test_refusing_server_with_password(void **state)
{
    (void)state;
    refusing_server("s3cret-pass");
}

/* ---- 6. CLIENT KILL every 100 ms: one event, one failure ---------------- */

static void client_kill_loop(const rk_client_options *o, const char *what)
{
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    redisContext *a = admin_open(s, NULL);
    rk_client *c = new_client(s, o);
    load l;
    pthread_t t[THREADS];
    load_start(&l, c, NULL, t);
    int kills = 0;
    for (int i = 0; i < RUN_MS / 100 + 5 && rk_test_now_ms() < l.stop_ms; i++) {
        rk_test_sleep_ms(100);
        /* Every connection of the client at once (all but the admin's). */
        admin_ok(a, "CLIENT KILL TYPE normal SKIPME yes");
        kills++;
    }
    load_join(&l, t, what);
    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    printf("# %d kills: circuit opened %llu times, %llu disconnects, %llu fast failures\n", kills,
           (unsigned long long)st.circuit_opened, (unsigned long long)st.disconnects,
           (unsigned long long)st.fast_failed);
    assert_true(kills >= RUN_MS / 100 / 2);
    assert_true(st.disconnects > 0);
    assert_int_equal(st.circuit_opened, 0);
    assert_int_equal(st.circuit, RK_CIRCUIT_CLOSED);
    rk_client_free(c);
    redisFree(a);
    rk_test_server_stop(s);
}

static void test_client_kill_loop_shared(void **state)
{
    (void)state;
    client_kill_loop(NULL, "CLIENT KILL every 100 ms, shared connections");
}

static void test_client_kill_loop_exclusive(void **state)
{
    (void)state;
    /* Eight connections, each with a call in flight, dropped at once. */
    client_kill_loop(&(rk_client_options){.pool_size = 8, .shared_connections = -1},
                     "CLIENT KILL every 100 ms, pool of 8");
}

/* ---- 7. two working connections out of eight ---------------------------- */

static void two_of_eight(const rk_client_options *o, const char *what)
{
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    redisContext *a = admin_open(s, NULL);
    /* The admin's connection and two of the client's. */
    admin_ok(a, "CONFIG SET maxclients 3");
    rk_client *c = new_client(s, o);
    load l;
    pthread_t t[THREADS];
    load_start(&l, c, NULL, t);
    load_join(&l, t, what);
    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    printf("# circuit opened %llu times, %llu fast failures, %llu connect failures, %llu disconnects\n",
           (unsigned long long)st.circuit_opened, (unsigned long long)st.fast_failed,
           (unsigned long long)st.connect_failures, (unsigned long long)st.disconnects);
    long ok = atomic_load(&l.ok), failed = atomic_load(&l.failed);
    assert_true(ok > 0);
    assert_true(ok * 100 >= (ok + failed) * 99);
    rk_client_free(c);
    redisFree(a);
    rk_test_server_stop(s);
}

static void test_two_of_eight_exclusive(void **state)
{
    (void)state;
    /* Every call leases a connection of its own from a pool of 8. */
    two_of_eight(&(rk_client_options){.pool_size = 8, .shared_connections = -1}, "2 of 8, exclusive");
}

static void test_two_of_eight_shared(void **state)
{
    (void)state;
    /* Four shared connections, two of which the server refuses. */
    two_of_eight(&(rk_client_options){.pool_size = 8, .shared_connections = 4}, "2 of 4 lanes");
}

/* ---- 8. teardown outside the locks -------------------------------------- */

/* While a connection is being closed (the library's close hook runs in
 * the closing thread), another thread must be able to read the client's
 * stats (the pool lock) and complete a call (the lane's lock, or the pool
 * lock to open a connection). If the closing thread held either, the
 * helper could not finish until the hook returned. */
static rk_client *probe_client;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t probe_cond = PTHREAD_COND_INITIALIZER;
static int probe_asked, probe_done;
static _Atomic int hooks_run, hooks_blocked;
static _Atomic bool probe_quit;
static __thread bool is_helper;

static void *probe_helper(void *arg)
{
    (void)arg;
    is_helper = true;
    pthread_mutex_lock(&probe_lock);
    while (!atomic_load(&probe_quit)) {
        if (probe_asked == probe_done) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50000000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&probe_cond, &probe_lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&probe_lock);
        rk_client_stats st;
        rk_client_stats_get(probe_client, &st);
        rk_client_ping(probe_client); /* its outcome does not matter: that it ends does */
        pthread_mutex_lock(&probe_lock);
        probe_done++;
        pthread_cond_broadcast(&probe_cond);
    }
    pthread_mutex_unlock(&probe_lock);
    return NULL;
}

static void close_hook(const rk__conn *conn)
{
    (void)conn;
    if (is_helper) return; /* the helper's own call closing a connection */
    atomic_fetch_add(&hooks_run, 1);
    pthread_mutex_lock(&probe_lock);
    int want = ++probe_asked;
    pthread_cond_broadcast(&probe_cond);
    int64_t until = rk_test_now_ms() + 2000;
    while (probe_done < want && rk_test_now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&probe_cond, &probe_lock, &ts);
    }
    if (probe_done < want) {
        atomic_fetch_add(&hooks_blocked, 1);
        probe_done = want; /* the helper is stuck: do not wait for it again */
    }
    pthread_mutex_unlock(&probe_lock);
}

static void teardown_outside_locks(const rk_client_options *o, const char *what)
{
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    redisContext *a = admin_open(s, NULL);
    rk_client *c = new_client(s, o);
    atomic_store(&hooks_run, 0);
    atomic_store(&hooks_blocked, 0);
    atomic_store(&probe_quit, false);
    /* Replies big enough that many are pending when the connection dies. */
    char *value = malloc(65536);
    assert_non_null(value);
    memset(value, 'x', 65536);
    admin_ok(a, "SET big %b", value, (size_t)65536);
    free(value);
    probe_client = c;
    pthread_t helper;
    assert_int_equal(pthread_create(&helper, NULL, probe_helper, NULL), 0);
    rk__conn_close_test_hook = close_hook;

    /* Many GETs of the big value in flight on the lane when it dies. */
    load l;
    pthread_t t[THREADS];
    load_start(&l, c, "big", t);
    int kills = 0;
    for (int i = 0; i < 20 && rk_test_now_ms() < l.stop_ms; i++) {
        rk_test_sleep_ms(150);
        admin_ok(a, "CLIENT KILL TYPE normal SKIPME yes");
        kills++;
    }
    load_join(&l, t, what);
    rk__conn_close_test_hook = NULL;
    atomic_store(&probe_quit, true);
    pthread_join(helper, NULL);
    printf("# %d kills, close hook ran %d times, blocked %d times\n", kills, atomic_load(&hooks_run),
           atomic_load(&hooks_blocked));
    assert_true(atomic_load(&hooks_run) > 0);
    assert_int_equal(atomic_load(&hooks_blocked), 0);
    rk_client_free(c);
    redisFree(a);
    rk_test_server_stop(s);
}

static void test_teardown_outside_lane_lock(void **state)
{
    (void)state;
    /* One lane, so that the helper's call needs the very lane whose
     * connection is being closed, or the pool to open another. */
    teardown_outside_locks(&(rk_client_options){.pool_size = 4, .shared_connections = 1}, "teardown, one lane");
}

static void test_teardown_outside_pool_lock(void **state)
{
    (void)state;
    /* Exclusive leases: connections go back to the pool, idle ones are
     * closed when the server is found gone. */
    teardown_outside_locks(&(rk_client_options){.pool_size = 4, .shared_connections = -1}, "teardown, pool");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusing_server),
        cmocka_unit_test(test_refusing_server_with_password),
        cmocka_unit_test(test_client_kill_loop_shared),
        cmocka_unit_test(test_client_kill_loop_exclusive),
        cmocka_unit_test(test_two_of_eight_exclusive),
        cmocka_unit_test(test_two_of_eight_shared),
        cmocka_unit_test(test_teardown_outside_lane_lock),
        cmocka_unit_test(test_teardown_outside_pool_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
