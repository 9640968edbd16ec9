/*
 * fetch_test.c — rk_cache_fetch (get-or-compute) against real
 * redis-servers started by the fixture: one computation per key across
 * 16 threads and across two processes, waits bounded by lock_ms, the
 * Redis lock (pre-held, expiring, compare-and-delete, PTTL), XFetch early
 * refresh on a hot key, serve-stale on a failing computation,
 * stale-while-revalidate, Redis killed and paused (this process's copies,
 * degraded computations), raw mode, and bad input; and the regressions of
 * the get-or-compute review: copies forgotten on delete, on a key found
 * absent, on tag invalidation and clear; their byte budget; TTL sums
 * saturating at 2^62 ms; one read counted per fetch and a callback's
 * failure counted in compute_errors only; a waiter without stale_ms that
 * gets a failed refresh's error, not its stale value.
 *
 * Every assertion is on statuses, values, flags and counts — never on how
 * long something took. Computations are counted inside the callbacks (an
 * atomic, or INCR on a Redis key for the two-process test) and compared
 * with the handle's counters. Sleeps only make races real or let a short
 * TTL pass; every loop is bounded in count.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "cache.h" /* src/: the handle's counters, rk__xfetch_early */
#include "fetch_state.h" /* src/: the clock skew hook */
#include "error.h" /* src/: rk__fail, for the callbacks' messages */
#include "value.h" /* src/: a hand-made META block */
#include "support/clock.h"
#include "support/fixture.h"
#include "support/fork_check.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

#define PREFIX "shop"
#define COUNTER(c, field) atomic_load(&(c)->counters.field)

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                       .client_options = {.key_prefix = PREFIX, .pool_size = 8}});
}

/* ---- compute callbacks ---------------------------------------------------- */

/* A computation: counts itself, takes sleep_ms, then answers with value,
 * or with status when status is not RK_OK. */
typedef struct job {
    atomic_int runs;
    int sleep_ms;
    const char *value;
    rk_status status;
    int64_t ttl_ms;          /* rk_cache_computed_set_ttl_ms when non-zero */
    bool set_nothing;        /* return RK_OK without a value */
    rk_client *incr_client;  /* INCR incr_key on each run (two-process test) */
    const char *incr_key;
    /* lock checks made while computing */
    rk_test_server *lock_server;
    const char *lock_key;
    long long lock_pttl;     /* PTTL of lock_key seen during the computation */
    bool lock_is_ours;       /* it did not hold the pre-set "other" token */
    const char *intruder;    /* after sleeping, overwrite the lock with this token */
    rk_cache *await_cache;   /* before sleeping, wait (at most 10 s) until ... */
    int await_waiters;       /* ... this many callers of await_cache wait for it */
} job;

static rk_status compute(const char *key, rk_cache_computed *out, void *ctx)
{
    job *j = ctx;
    (void)key;
    atomic_fetch_add(&j->runs, 1);
    if (j->incr_client) {
        const char *argv[2] = {"INCR", j->incr_key};
        rk_reply *r = NULL;
        if (rk_client_command(j->incr_client, 2, argv, NULL, &r) == RK_OK) rk_reply_free(r);
    }
    if (j->lock_server) {
        redisReply *r = rk_test_server_command(j->lock_server, "PTTL %s", j->lock_key);
        if (r && r->type == REDIS_REPLY_INTEGER) j->lock_pttl = r->integer;
        if (r) freeReplyObject(r);
        r = rk_test_server_command(j->lock_server, "GET %s", j->lock_key);
        j->lock_is_ours = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "other") != 0;
        if (r) freeReplyObject(r);
    }
    /* Bounded: 2000 rounds of 5 ms. A waiter counts lock_waits just before
     * it starts waiting, so the sleep below begins with it waiting. */
    for (int i = 0; j->await_cache && i < 2000 && (int)COUNTER(j->await_cache, lock_waits) < j->await_waiters; i++)
        rk_test_sleep_ms(5);
    if (j->sleep_ms) rk_test_sleep_ms(j->sleep_ms);
    if (j->intruder) {
        redisReply *r = rk_test_server_command(j->lock_server, "SET %s %s PX 10000", j->lock_key, j->intruder);
        if (r) freeReplyObject(r);
    }
    if (j->status != RK_OK) return rk__fail(j->status, "the database is down (test)");
    if (j->set_nothing) return RK_OK;
    rk_status st = rk_cache_computed_set(out, j->value, strlen(j->value));
    if (st == RK_OK && j->ttl_ms) st = rk_cache_computed_set_ttl_ms(out, j->ttl_ms);
    return st;
}

/* One fetch of key into a freshly allocated string (or NULL). */
static rk_status fetch(rk_cache *c, const char *key, job *j, const rk_cache_fetch_options *o, char **got,
                       rk_cache_fetch_info *info)
{
    void *v = NULL;
    size_t n = 0;
    rk_status st = rk_cache_fetch(c, key, compute, j, o, &v, &n, info);
    *got = v;
    if (st != RK_OK && (v != NULL || n != 0)) fail_msg("output not cleared on %s", rk_strerror(st));
    if (st == RK_OK && (!v || strlen(v) != n)) fail_msg("value not NUL-terminated at len");
    return st;
}

static void fetch_expect(rk_cache *c, const char *key, job *j, const rk_cache_fetch_options *o, const char *want,
                         rk_cache_fetch_info *info)
{
    char *got = NULL;
    rk_status st = fetch(c, key, j, o, &got, info);
    if (st != RK_OK) fail_msg("fetch: %s: %s", rk_strerror(st), rk_last_error());
    assert_string_equal(got, want);
    rk_free(got);
}

/* Fetch options that keep a value a minute fresh and a minute stale (so
 * this process keeps a copy of it). */
static const rk_cache_fetch_options keep = {.ttl_ms = 60000, .stale_ms = 60000};

/* ---- basics ----------------------------------------------------------------- */

static void test_miss_then_hit(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    job j = {.value = "{\"id\":7}"};
    rk_cache_fetch_options o = {.ttl_ms = 60000, .stale_ms = 30000};
    rk_cache_fetch_info info;

    fetch_expect(c, "user:7", &j, &o, "{\"id\":7}", &info);
    assert_true(info.computed);
    assert_false(info.waited || info.stale || info.degraded || info.early);
    fetch_expect(c, "user:7", &j, &o, "{\"id\":7}", &info);
    assert_false(info.computed || info.waited || info.stale || info.degraded || info.early);
    assert_int_equal(atomic_load(&j.runs), 1);

    /* rk_cache_get reads the fetched value: the payload only, no META. */
    void *v;
    size_t n;
    assert_int_equal(rk_cache_get(c, "user:7", &v, &n), RK_OK);
    assert_int_equal(n, strlen("{\"id\":7}"));
    assert_memory_equal(v, "{\"id\":7}", n);
    rk_free(v);

    /* The Redis TTL is the fresh TTL plus the stale window. */
    long long pttl = rk_test_server_integer(server, "PTTL %s", PREFIX ":cache:user:7");
    assert_true(pttl > 60000 && pttl <= 90000);
    /* The lock was released. */
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", PREFIX ":cache#lock:user:7"), 0);

    assert_int_equal(COUNTER(c, computations), 1);
    assert_int_equal(COUNTER(c, misses), 1);
    assert_int_equal(COUNTER(c, hits), 1 + 1 /* rk_cache_get */);
    assert_int_equal(COUNTER(c, sets), 1);
    assert_int_equal(COUNTER(c, bytes_in), strlen("{\"id\":7}"));
    assert_true(COUNTER(c, bytes_stored) > COUNTER(c, bytes_in)); /* header + META */

    /* A value set by rk_cache_set (no META) is a plain hit. */
    assert_int_equal(rk_cache_set_str(c, "plain", "p", NULL), RK_OK);
    fetch_expect(c, "plain", &j, &o, "p", &info);
    assert_false(info.computed);
    assert_int_equal(atomic_load(&j.runs), 1);
    rk_cache_free(c);
}

static void test_compute_miss_and_empty_answers(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    char *got = (char *)"untouched";

    /* RK_MISS from compute: nothing cached, RK_MISS returned. */
    job none = {.status = RK_MISS};
    assert_int_equal(fetch(c, "nobody", &none, NULL, &got, NULL), RK_MISS);
    assert_null(got);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", PREFIX ":cache:nobody"), 0);
    assert_int_equal(COUNTER(c, compute_errors), 0);

    /* RK_OK without a value is a bug in the callback, said clearly. */
    job empty = {.set_nothing = true};
    assert_int_equal(fetch(c, "k", &empty, NULL, &got, NULL), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "rk_cache_computed_set"));
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", PREFIX ":cache:k"), 0);

    /* An empty value is a value. */
    job blank = {.value = ""};
    fetch_expect(c, "blank", &blank, NULL, "", NULL);
    fetch_expect(c, "blank", &blank, NULL, "", NULL);
    assert_int_equal(atomic_load(&blank.runs), 1);

    /* Per-value TTL from the callback. */
    job short_lived = {.value = "x", .ttl_ms = 5000};
    fetch_expect(c, "short", &short_lived, &(rk_cache_fetch_options){.ttl_ms = 600000}, "x", NULL);
    long long pttl = rk_test_server_integer(server, "PTTL %s", PREFIX ":cache:short");
    assert_true(pttl > 0 && pttl <= 5000);

    /* A key holding a number is not recomputed over. */
    assert_int_equal(rk_cache_set_i64(c, "n", 42, NULL), RK_OK);
    job j = {.value = "v"};
    assert_int_equal(fetch(c, "n", &j, NULL, &got, NULL), RK_ERR_TYPE);
    assert_int_equal(atomic_load(&j.runs), 0);
    rk_cache_free(c);
}

static void test_bad_input(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    job j = {.value = "v"};
    void *v = (void *)"untouched";
    size_t n = 5;
    rk_cache_fetch_info info = {.computed = true};

    assert_int_equal(rk_cache_fetch(NULL, "k", compute, &j, NULL, &v, &n, &info), RK_ERR_INVALID);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_false(info.computed);
    assert_int_equal(rk_cache_fetch(c, NULL, compute, &j, NULL, &v, &n, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "", compute, &j, NULL, &v, &n, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", NULL, &j, NULL, &v, &n, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", compute, &j, NULL, NULL, &n, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", compute, &j, NULL, &v, NULL, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", compute, &j, &(rk_cache_fetch_options){.ttl_ms = -5}, &v, &n, NULL),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", compute, &j, &(rk_cache_fetch_options){.ttl_s = -2}, &v, &n, NULL),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", compute, &j, &(rk_cache_fetch_options){.stale_ms = -1}, &v, &n, NULL),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", compute, &j, &(rk_cache_fetch_options){.beta = NAN}, &v, &n, NULL),
                     RK_ERR_INVALID);
    assert_int_equal(
        rk_cache_fetch(c, "k", compute, &j, &(rk_cache_fetch_options){.ttl_ms = (int64_t)1 << 62, .stale_ms = 10}, &v, &n,
                       NULL),
        RK_ERR_INVALID);
    assert_int_equal(rk_cache_fetch(c, "k", compute, &j, &(rk_cache_fetch_options){.ntags = 1}, &v, &n, NULL),
                     RK_ERR_INVALID);
    char long_key[2000];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_int_equal(rk_cache_fetch(c, long_key, compute, &j, NULL, &v, &n, NULL), RK_ERR_TOO_LARGE);
    assert_null(v);
    assert_int_equal(atomic_load(&j.runs), 0); /* nothing computed for bad input */
    redisReply *r = rk_test_server_command(server, "DBSIZE");
    assert_non_null(r);
    assert_int_equal(r->integer, 0); /* nothing stored */
    freeReplyObject(r);

    /* A negative beta only turns XFetch off. */
    fetch_expect(c, "k", &j, &(rk_cache_fetch_options){.beta = -1}, "v", NULL);

    assert_int_equal(rk_cache_computed_set(NULL, "v", 1), RK_ERR_INVALID);
    assert_int_equal(rk_cache_computed_set_ttl_ms(NULL, 100), RK_ERR_INVALID);
    rk_cache_free(c);
}

/* Callbacks that misuse rk_cache_computed_set. */
static rk_status bad_setter(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key;
    rk_status *seen = ctx;
    seen[0] = rk_cache_computed_set(out, NULL, 3);
    seen[1] = rk_cache_computed_set_ttl_ms(out, -7);
    seen[2] = rk_cache_computed_set(out, "0123456789abcdef", 16); /* over max_value_bytes = 8 */
    seen[3] = rk_cache_computed_set(out, "ok", 2);
    seen[4] = rk_cache_computed_set_ttl_ms(out, RK_TTL_NONE);
    return RK_OK;
}

static void test_computed_set_checks(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, &(rk_cache_options){.max_value_bytes = 8});
    rk_status seen[5];
    void *v;
    size_t n;
    assert_int_equal(rk_cache_fetch(c, "k", bad_setter, seen, NULL, &v, &n, NULL), RK_OK);
    assert_int_equal(seen[0], RK_ERR_INVALID);
    assert_int_equal(seen[1], RK_ERR_INVALID);
    assert_int_equal(seen[2], RK_ERR_TOO_LARGE);
    assert_int_equal(seen[3], RK_OK);
    assert_int_equal(seen[4], RK_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(v, "ok", 2);
    rk_free(v);
    assert_int_equal(rk_test_server_integer(server, "PTTL %s", PREFIX ":cache:k"), -1); /* RK_TTL_NONE */
    rk_cache_free(c);
}

/* ---- single flight ----------------------------------------------------------- */

typedef struct caller {
    rk_cache *cache;
    job *job;
    const char *key;
    rk_cache_fetch_options opts;
    pthread_barrier_t *start;
    int rounds;              /* fetches to make (XFetch threads) */
    int pause_ms;            /* between them */
    /* results */
    rk_status st;
    char value[64];
    rk_cache_fetch_info info;
    int not_ok, waited, computed, early, stale, degraded, wrong;
} caller;

static void *call_once(void *arg)
{
    caller *cl = arg;
    pthread_barrier_wait(cl->start);
    char *got = NULL;
    void *v = NULL;
    size_t n = 0;
    cl->st = rk_cache_fetch(cl->cache, cl->key, compute, cl->job, &cl->opts, &v, &n, &cl->info);
    got = v;
    snprintf(cl->value, sizeof cl->value, "%s", got ? got : "(null)");
    rk_free(got);
    return NULL;
}

static void run_callers(caller *cl, int n, void *(*fn)(void *))
{
    pthread_t t[32];
    pthread_barrier_t start;
    assert_true(n <= 32);
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        cl[i].start = &start;
        assert_int_equal(pthread_create(&t[i], NULL, fn, &cl[i]), 0);
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
}

static void test_single_flight_16_threads(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    job j = {.value = "computed-once", .sleep_ms = 100};
    rk_test_server_ok(server, "CONFIG RESETSTAT");
    caller cl[16];
    for (int i = 0; i < 16; i++)
        cl[i] = (caller){.cache = c, .job = &j, .key = "cold", .opts = {.ttl_ms = 60000}};
    run_callers(cl, 16, call_once);

    int computed = 0, waited = 0;
    for (int i = 0; i < 16; i++) {
        if (cl[i].st != RK_OK) fail_msg("caller %d: %s", i, rk_strerror(cl[i].st));
        assert_string_equal(cl[i].value, "computed-once");
        computed += cl[i].info.computed;
        waited += cl[i].info.waited;
        assert_false(cl[i].info.degraded || cl[i].info.stale);
    }
    assert_int_equal(atomic_load(&j.runs), 1);
    assert_int_equal(computed, 1);
    assert_int_equal(COUNTER(c, computations), 1);
    assert_int_equal(COUNTER(c, sets), 1);
    /* Everyone who did not compute either waited for it, or came late
     * enough to find it stored. */
    assert_true(waited + computed <= 16);
    assert_int_equal(COUNTER(c, lock_waits), waited);
    /* The waiters waited in this process: only the leader went for the
     * Redis lock (SET NX), stored the value (SET) and released the lock
     * (EVALSHA, and EVAL if the server did not know the script yet). */
    assert_int_equal(rk_test_server_command_calls(server, "set"), 2);
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 1);
    assert_true(rk_test_server_command_calls(server, "eval") <= 1);
    rk_cache_free(c);
}

/* The same with the computation failing: the one error is shared. */
static void test_single_flight_shares_errors(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    job j = {.status = RK_ERR_SERVER, .sleep_ms = 100};
    caller cl[8];
    for (int i = 0; i < 8; i++) cl[i] = (caller){.cache = c, .job = &j, .key = "failing"};
    run_callers(cl, 8, call_once);
    int waited = 0;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cl[i].st, RK_ERR_SOURCE);
        waited += cl[i].info.waited;
    }
    /* Those who waited share the failure; a late caller may compute again. */
    assert_int_equal(atomic_load(&j.runs), 8 - waited);
    assert_true(waited > 0);
    assert_int_equal(COUNTER(c, compute_errors), atomic_load(&j.runs));
    /* The callback's status is its own failure, not Redis's: counted in
     * compute_errors only, however many callers it reached. */
    assert_int_equal(COUNTER(c, errors[RK_ERR_SERVER]), 0);
    rk_cache_free(c);
}

/* A leader slower than lock_ms: its waiters give up with RK_ERR_TIMEOUT
 * rather than compute a second time. The leader's computation goes on for
 * 1 s (5 lock_ms) after the first waiter has started waiting, whenever the
 * threads get to run on a loaded machine, so that one at least gives up. */
static void test_inprocess_wait_is_bounded(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, &(rk_cache_options){.lock_ms = 200});
    job j = {.value = "slow", .sleep_ms = 1000, .await_cache = c, .await_waiters = 1};
    caller cl[4];
    for (int i = 0; i < 4; i++) cl[i] = (caller){.cache = c, .job = &j, .key = "slow"};
    run_callers(cl, 4, call_once);
    int computed = 0, timeouts = 0;
    for (int i = 0; i < 4; i++) {
        if (cl[i].info.computed) {
            computed++;
            assert_int_equal(cl[i].st, RK_OK);
        } else if (cl[i].st == RK_ERR_TIMEOUT) {
            timeouts++;
            assert_true(cl[i].info.waited);
            assert_string_equal(cl[i].value, "(null)");
        } else { /* a caller that came after the value landed */
            assert_int_equal(cl[i].st, RK_OK);
            assert_string_equal(cl[i].value, "slow");
        }
    }
    assert_int_equal(computed, 1);
    assert_int_equal(atomic_load(&j.runs), 1);
    assert_true(timeouts > 0);
    assert_int_equal(COUNTER(c, errors[RK_ERR_TIMEOUT]), timeouts);
    rk_cache_free(c);
}

/* A callback that fetches its own key is refused, not left to wait for
 * itself. */
static rk_status recursive(const char *key, rk_cache_computed *out, void *ctx)
{
    rk_cache *c = ctx;
    void *v = NULL;
    size_t n;
    rk_status inner = rk_cache_fetch(c, key, recursive, ctx, NULL, &v, &n, NULL);
    rk_free(v);
    char text[32];
    snprintf(text, sizeof text, "inner=%d", (int)inner);
    return rk_cache_computed_set(out, text, strlen(text));
}

static void test_fetch_from_own_callback(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    void *v = NULL;
    size_t n;
    assert_int_equal(rk_cache_fetch(c, "self", recursive, c, NULL, &v, &n, NULL), RK_OK);
    char want[32];
    snprintf(want, sizeof want, "inner=%d", (int)RK_ERR_INVALID);
    assert_string_equal(v, want);
    rk_free(v);
    rk_cache_free(c);
}

/* ---- across processes ---------------------------------------------------------- */

#define PROC_THREADS 8

/* 8 threads on one client of this process's own, released together by a
 * byte on go_fd. Returns the number of callers that did not get value. */
static int process_side(const char *url, int go_fd, int *computed)
{
    rk_client *pc = NULL;
    rk_cache *c = NULL;
    if (rk_client_new(&(rk_client_options){.url = url, .key_prefix = PREFIX, .pool_size = 8}, &pc) != RK_OK)
        return 100;
    if (rk_cache_new(pc, NULL, &c) != RK_OK) return 101;
    job j = {.value = "one-for-all", .sleep_ms = 300, .incr_client = pc, .incr_key = "fetch-test:computations"};
    caller cl[PROC_THREADS];
    for (int i = 0; i < PROC_THREADS; i++)
        cl[i] = (caller){.cache = c, .job = &j, .key = "shared", .opts = {.ttl_ms = 60000}};
    char go;
    if (read(go_fd, &go, 1) != 1) return 102;
    pthread_t t[PROC_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, PROC_THREADS);
    for (int i = 0; i < PROC_THREADS; i++) {
        cl[i].start = &start;
        if (pthread_create(&t[i], NULL, call_once, &cl[i]) != 0) return 103;
    }
    int bad = 0;
    for (int i = 0; i < PROC_THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += cl[i].st != RK_OK || strcmp(cl[i].value, "one-for-all") != 0;
    }
    pthread_barrier_destroy(&start);
    *computed = atomic_load(&j.runs);
    rk_cache_free(c);
    rk_client_free(pc);
    return bad;
}

static void test_two_processes(void **state)
{
    (void)state;
    int go[2];
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the child: no cmocka, its own client, _exit (no atexit: the server is the parent's) */
        close(go[1]);
        int computed = 0;
        int bad = process_side(rk_test_server_url(server), go[0], &computed);
        _exit(bad > 0 ? (bad > 99 ? bad : 10 + bad) : 0);
    }
    close(go[0]);
    /* Both sides start together: the child reads one byte, we another. */
    int self[2];
    assert_int_equal(pipe(self), 0);
    assert_int_equal(write(go[1], "gg", 1), 1);
    assert_int_equal(write(self[1], "g", 1), 1);
    int computed_here = 0;
    int bad = process_side(rk_test_server_url(server), self[0], &computed_here);
    close(self[0]);
    close(self[1]);
    close(go[1]);

    int status = rk_test_wait_child(pid, 15000);
    if (status == -1) fail_msg("child did not finish");
    assert_int_equal(bad, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Exactly one computation across both processes. */
    redisReply *r = rk_test_server_command(server, "GET fetch-test:computations");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1");
    freeReplyObject(r);
    assert_true(computed_here <= 1);
}

/* ---- the Redis lock --------------------------------------------------------------- */

static void set_lock(const char *key, const char *token, int px)
{
    redisReply *r = rk_test_server_command(server, "SET %s %s PX %d", key, token, px);
    assert_non_null(r);
    freeReplyObject(r);
}

static void test_lock_held_elsewhere_expires(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, &(rk_cache_options){.lock_ms = 5000});
    const char *lock = PREFIX ":cache#lock:report";
    set_lock(lock, "other", 300); /* "another process" computing, then dying */
    job j = {.value = "mine", .lock_server = server, .lock_key = lock};
    rk_cache_fetch_info info;
    fetch_expect(c, "report", &j, NULL, "mine", &info);
    assert_true(info.computed);
    assert_true(info.waited);
    assert_int_equal(atomic_load(&j.runs), 1);
    assert_int_equal(COUNTER(c, computations), 1);
    assert_int_equal(COUNTER(c, lock_waits), 1);
    /* While computing we held the lock, with at most lock_ms to live ... */
    assert_true(j.lock_is_ours);
    assert_true(j.lock_pttl > 0 && j.lock_pttl <= 5000);
    /* ... and it is gone now. */
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", lock), 0);
    rk_cache_free(c);
}

/* The other process stores the value and releases its lock: we take its
 * value and compute nothing. */
static void *other_process(void *arg)
{
    (void)arg;
    rk_test_sleep_ms(200);
    rk_cache *c = NULL;
    if (rk_cache_new(client, NULL, &c) == RK_OK) {
        rk_cache_set_str(c, "page", "theirs", &(rk_cache_set_options){.ttl_s = 60});
        rk_cache_free(c);
    }
    redisReply *r = rk_test_server_command(server, "DEL %s", PREFIX ":cache#lock:page");
    if (r) freeReplyObject(r);
    return NULL;
}

static void test_lock_holder_stores_value(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    set_lock(PREFIX ":cache#lock:page", "other", 10000);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_process, NULL), 0);
    job j = {.value = "mine"};
    rk_cache_fetch_info info;
    fetch_expect(c, "page", &j, NULL, "theirs", &info);
    pthread_join(t, NULL);
    assert_true(info.waited);
    assert_false(info.computed);
    assert_int_equal(atomic_load(&j.runs), 0);
    rk_cache_free(c);
}

/* A lock held past our lock_ms: we stop waiting and compute anyway. */
static void test_lock_wait_is_bounded(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, &(rk_cache_options){.lock_ms = 300});
    set_lock(PREFIX ":cache#lock:stuck", "other", 60000);
    job j = {.value = "anyway"};
    rk_cache_fetch_info info;
    fetch_expect(c, "stuck", &j, NULL, "anyway", &info);
    assert_true(info.waited && info.computed);
    assert_int_equal(atomic_load(&j.runs), 1);
    /* Not ours: left alone. */
    redisReply *r = rk_test_server_command(server, "GET %s", PREFIX ":cache#lock:stuck");
    assert_non_null(r);
    assert_string_equal(r->str, "other");
    freeReplyObject(r);
    rk_cache_free(c);
}

/* Our lock expires while we compute and someone else takes it: releasing
 * must not delete theirs (compare-and-delete). */
static void test_unlock_is_compare_and_delete(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, &(rk_cache_options){.lock_ms = 200});
    const char *lock = PREFIX ":cache#lock:slow";
    job j = {.value = "slow", .sleep_ms = 400, .lock_server = server, .lock_key = lock, .intruder = "intruder"};
    fetch_expect(c, "slow", &j, NULL, "slow", NULL);
    assert_true(j.lock_pttl > 0 && j.lock_pttl <= 200);
    redisReply *r = rk_test_server_command(server, "GET %s", lock);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "intruder");
    freeReplyObject(r);
    rk_cache_free(c);
}

/* ---- XFetch -------------------------------------------------------------------------- */

static void test_xfetch_formula(void **state)
{
    (void)state;
    /* now - delta * beta * ln(u) >= expiry */
    assert_false(rk__xfetch_early(1000, 2000, 100, 1.0, 1.0));    /* ln 1 = 0: only at expiry */
    assert_true(rk__xfetch_early(2000, 2000, 100, 1.0, 1.0));
    assert_true(rk__xfetch_early(1900, 2000, 100, 1.0, exp(-1.0)));   /* 1900 + 100 * 1 */
    assert_false(rk__xfetch_early(1899, 2000, 100, 1.0, exp(-1.0)));
    assert_true(rk__xfetch_early(1800, 2000, 100, 2.0, exp(-1.0)));   /* beta 2 doubles the lead */
    assert_false(rk__xfetch_early(1799, 2000, 100, 2.0, exp(-1.0)));
    assert_true(rk__xfetch_early(1900, 2000, 100, 0.0, exp(-1.0)));   /* beta 0 = 1.0 */
    assert_false(rk__xfetch_early(1999, 2000, 100, -1.0, 1e-300));    /* off */
    assert_false(rk__xfetch_early(1999, 0, 100, 1.0, 1e-300));        /* no expiry */
    assert_false(rk__xfetch_early(1999, 2000, 100, 1.0, 0.0));        /* u out of range */
    assert_true(rk__xfetch_early(0, 2000, 100, 1.0, 1e-300));         /* ln(1e-300) = -690: far early */
}

typedef struct hot_reader {
    rk_cache *cache;
    job *job;
    pthread_barrier_t *start;
    int rounds;              /* reads to make at least ... */
    int max_rounds;          /* ... and at most, until some reader has seen an early refresh */
    int64_t until_ms;        /* no read past max_rounds is started after this (rk_test_now_ms) */
    atomic_int *early_seen;  /* shared by the readers */
    int not_ok, waited, computed, early, stale, wrong;
} hot_reader;

static void *read_hot(void *arg)
{
    hot_reader *h = arg;
    pthread_barrier_wait(h->start);
    /* Bounded in count (max_rounds) and time (until_ms). On a loaded or
     * sanitized machine a read takes longer, so fewer draws fall just
     * before each expiry: the readers go on past rounds until one of them
     * has refreshed early. */
    for (int i = 0; i < h->max_rounds; i++) {
        if (i >= h->rounds && (atomic_load(h->early_seen) > 0 || rk_test_now_ms() >= h->until_ms)) break;
        void *v = NULL;
        size_t n = 0;
        rk_cache_fetch_info info;
        rk_status st = rk_cache_fetch(h->cache, "hot", compute, h->job,
                                      &(rk_cache_fetch_options){.ttl_ms = 300, .stale_ms = 2000}, &v, &n, &info);
        h->not_ok += st != RK_OK;
        h->wrong += st == RK_OK && strcmp(v, "hot-value") != 0;
        h->waited += info.waited;
        h->computed += info.computed;
        h->early += info.early;
        h->stale += info.stale;
        if (info.early) atomic_fetch_add(h->early_seen, 1);
        rk_free(v);
        rk_test_sleep_ms(5);
    }
    return NULL;
}

/* A hot key with a 300 ms TTL, computed in ~30 ms, read by 4 threads for
 * at least 150 reads each, a few TTLs (longer, up to 3000 reads each or
 * 30 s, until one read has refreshed it early): it is recomputed early,
 * and after the first computation no reader misses or waits. (The
 * decision itself, at every boundary, is fetch_decide_test.c's.) */
static void test_xfetch_hot_key(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    job j = {.value = "hot-value", .sleep_ms = 30};
    rk_cache_fetch_info info;
    fetch_expect(c, "hot", &j, &(rk_cache_fetch_options){.ttl_ms = 300, .stale_ms = 2000}, "hot-value", &info);
    assert_true(info.computed);
    uint64_t misses = COUNTER(c, misses);
    assert_int_equal(misses, 1);

    hot_reader h[4];
    pthread_t t[4];
    pthread_barrier_t start;
    atomic_int early_seen = 0;
    pthread_barrier_init(&start, NULL, 4);
    for (int i = 0; i < 4; i++) {
        h[i] = (hot_reader){.cache = c, .job = &j, .start = &start, .rounds = 150, .max_rounds = 3000,
                            .until_ms = rk_test_now_ms() + 30000, .early_seen = &early_seen};
        assert_int_equal(pthread_create(&t[i], NULL, read_hot, &h[i]), 0);
    }
    int computed = 0, early = 0, stale = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(h[i].not_ok, 0);
        assert_int_equal(h[i].wrong, 0);
        assert_int_equal(h[i].waited, 0); /* never a miss to wait on */
        computed += h[i].computed;
        early += h[i].early;
        stale += h[i].stale;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(COUNTER(c, misses), 1); /* only the very first call */
    assert_true(computed > 0);
    assert_true(early > 0);
    assert_int_equal(atomic_load(&j.runs), 1 + computed);
    assert_int_equal(COUNTER(c, computations), 1 + computed);
    assert_int_equal(COUNTER(c, early), early);
    assert_int_equal(COUNTER(c, stale), stale);
    print_message("xfetch: %d computations after the first, %d early, %d stale reads\n", computed, early, stale);
    rk_cache_free(c);
}

/* beta < 0 turns early refresh off. The value is made by hand with a
 * META block claiming a computation of 10^9 ms and 60 s to live, so that
 * with XFetch on, every draw but one in ~16000 refreshes it. */
static void test_xfetch_off(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rk__value_meta meta = {.expires_at_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + 60000,
                           .compute_ms = 1000000000};
    unsigned char buf[RK__VALUE_HEADER_MAX + 8];
    size_t h = rk__value_encode_header(RK__V_BYTES, RK__VF_META, &meta, buf);
    memcpy(buf + h, "crafted", 7);
    redisReply *r = rk_test_server_command(server, "SET %s %b PX 60000", PREFIX ":cache:k", buf, h + 7);
    assert_non_null(r);
    freeReplyObject(r);

    job j = {.value = "recomputed"};
    rk_cache_fetch_info info;
    for (int i = 0; i < 100; i++) fetch_expect(c, "k", &j, &(rk_cache_fetch_options){.beta = -1}, "crafted", NULL);
    assert_int_equal(atomic_load(&j.runs), 0);
    assert_int_equal(COUNTER(c, early), 0);

    /* On (beta 0 = 1.0): refreshed early, the first time or very soon. */
    bool refreshed = false;
    for (int i = 0; i < 10 && !refreshed; i++) {
        char *got = NULL;
        assert_int_equal(fetch(c, "k", &j, NULL, &got, &info), RK_OK);
        refreshed = info.early;
        if (refreshed) {
            assert_true(info.computed);
            assert_string_equal(got, "recomputed");
        }
        rk_free(got);
    }
    assert_true(refreshed);
    assert_int_equal(atomic_load(&j.runs), 1);
    assert_int_equal(COUNTER(c, early), 1);
    rk_cache_free(c);
}

/* ---- serve-stale ------------------------------------------------------------------------ */

/* Wait (bounded) until the key's logical expiry has passed. */
static void let_expire(int ttl_ms) { rk_test_sleep_ms(ttl_ms + 50); }

static void test_failing_compute_serves_stale(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    rk_cache_fetch_options o = {.ttl_ms = 100, .stale_ms = 60000, .beta = -1};
    job good = {.value = "old"};
    fetch_expect(c, "k", &good, &o, "old", NULL);
    let_expire(100);

    job bad = {.status = RK_ERR_SERVER};
    rk_cache_fetch_info info;
    fetch_expect(c, "k", &bad, &o, "old", &info);
    assert_true(info.stale);
    assert_false(info.computed);
    assert_false(info.degraded);
    assert_non_null(strstr(rk_last_error(), "stale"));
    assert_int_equal(atomic_load(&bad.runs), 1);
    assert_int_equal(COUNTER(c, compute_errors), 1);
    assert_int_equal(COUNTER(c, stale), 1);
    assert_int_equal(COUNTER(c, errors[RK_ERR_SERVER]), 0); /* served: not an error of the call */
    assert_int_equal(info.source_status, RK_ERR_SERVER); /* why the stale value was served */
    /* The stale value stays until a computation succeeds. */
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", PREFIX ":cache:k"), 1);
    fetch_expect(c, "k", &good, &o, "old", &info); /* recomputed: same text, fresh now */
    assert_true(info.computed);
    assert_false(info.stale);

    /* Without serve-stale the computation's own status comes back. */
    char *got = (char *)"untouched";
    assert_int_equal(fetch(c, "cold", &bad, &(rk_cache_fetch_options){.ttl_ms = 100}, &got, &info), RK_ERR_SOURCE);
    assert_int_equal(info.source_status, RK_ERR_SERVER);
    assert_null(got);
    assert_non_null(strstr(rk_last_error(), "the database is down"));
    /* A value past its fresh life, read by a call without stale_ms, is not
     * served stale either. */
    fetch_expect(c, "k2", &good, &o, "old", NULL);
    let_expire(100);
    assert_int_equal(fetch(c, "k2", &bad, &(rk_cache_fetch_options){.ttl_ms = 100}, &got, &info), RK_ERR_SOURCE);
    assert_int_equal(info.source_status, RK_ERR_SERVER);
    assert_false(info.stale);
    rk_cache_free(c);
}

/* Past its fresh life, inside the stale window: one caller recomputes,
 * the others are served the stale value at once (no waiting). */
static void test_stale_while_revalidate(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    rk_cache_fetch_options o = {.ttl_ms = 100, .stale_ms = 60000, .beta = -1};
    job first = {.value = "v1"};
    fetch_expect(c, "k", &first, &o, "v1", NULL);
    let_expire(100);

    job j = {.value = "v2", .sleep_ms = 300};
    caller cl[8];
    for (int i = 0; i < 8; i++) cl[i] = (caller){.cache = c, .job = &j, .key = "k", .opts = o};
    run_callers(cl, 8, call_once);
    int computed = 0, stale = 0;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cl[i].st, RK_OK);
        assert_false(cl[i].info.waited);
        if (cl[i].info.computed) {
            computed++;
            assert_string_equal(cl[i].value, "v2");
            assert_false(cl[i].info.stale);
        } else if (cl[i].info.stale) {
            stale++;
            assert_string_equal(cl[i].value, "v1");
        } else {
            assert_string_equal(cl[i].value, "v2"); /* came after the refresh */
        }
    }
    assert_int_equal(computed, 1);
    assert_int_equal(atomic_load(&j.runs), 1);
    assert_true(stale > 0);
    assert_int_equal(COUNTER(c, stale), stale);
    rk_cache_free(c);
}

/* ---- Redis down -------------------------------------------------------------------------- */

static void test_redis_down(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_client *dc = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(s), .command_timeout_ms = 200,
                                                        .connect_timeout_ms = 200, .pool_size = 8},
                                   &dc),
                     RK_OK);
    rk_cache *c = rk_test_cache_new(dc, &(rk_cache_options){.local_copies = 3});
    rk_cache_fetch_options brief = {.ttl_ms = 100, .stale_ms = 60000};
    job j = {.value = "first"};
    fetch_expect(c, "x", &j, &keep, "first", NULL); /* the oldest copy: evicted by the 4th */
    fetch_expect(c, "a", &j, &brief, "first", NULL);
    fetch_expect(c, "b", &j, &keep, "first", NULL);
    fetch_expect(c, "c", &j, &keep, "first", NULL);
    fetch_expect(c, "nocopy", &j, &(rk_cache_fetch_options){.ttl_ms = 60000}, "first", NULL); /* no stale: no copy */
    assert_int_equal(atomic_load(&j.runs), 5);
    let_expire(100); /* "a" is past its fresh life */

    assert_true(rk_test_server_signal(s, SIGKILL));
    job later = {.value = "second"};
    rk_cache_fetch_info info;

    /* An in-process copy past its fresh life: served stale, degraded. */
    fetch_expect(c, "a", &later, &brief, "first", &info);
    assert_true(info.degraded && info.stale);
    assert_false(info.computed);
    assert_non_null(strstr(rk_last_error(), "copy"));
    /* A fresh copy: degraded, not stale. */
    fetch_expect(c, "b", &later, &keep, "first", &info);
    assert_true(info.degraded);
    assert_false(info.stale || info.computed);
    assert_int_equal(atomic_load(&later.runs), 0);

    /* No copy (evicted; never kept; stale off for this call): computed,
     * degraded, RK_OK. */
    fetch_expect(c, "x", &later, &keep, "second", &info);
    assert_true(info.degraded && info.computed);
    assert_false(info.stale);
    fetch_expect(c, "nocopy", &later, &keep, "second", &info);
    assert_true(info.degraded && info.computed);
    fetch_expect(c, "c", &later, &(rk_cache_fetch_options){.ttl_ms = 60000}, "second", &info);
    assert_true(info.degraded && info.computed);
    assert_int_equal(atomic_load(&later.runs), 3);

    /* A failing computation with no copy: its error. */
    job bad = {.status = RK_ERR_SERVER};
    char *got;
    assert_int_equal(fetch(c, "never", &bad, &keep, &got, &info), RK_ERR_SOURCE);
    assert_true(info.degraded);

    /* Single flight still holds while Redis is down. */
    job slow = {.value = "cold-down", .sleep_ms = 500};
    caller cl[8];
    for (int i = 0; i < 8; i++) cl[i] = (caller){.cache = c, .job = &slow, .key = "cold", .opts = keep};
    run_callers(cl, 8, call_once);
    int computed = 0;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cl[i].st, RK_OK);
        assert_string_equal(cl[i].value, "cold-down");
        assert_true(cl[i].info.degraded);
        computed += cl[i].info.computed;
    }
    assert_int_equal(computed, 1);
    assert_int_equal(atomic_load(&slow.runs), 1);
    assert_true(COUNTER(c, degraded) >= 2 + 3 + 1 + 8);

    /* Back up: normal service, and what was computed while down was not
     * stored (there was nowhere to store it). */
    assert_true(rk_test_server_restart(s, NULL));
    job again = {.value = "third"};
    bool up = false;
    for (int i = 0; i < 100 && !up; i++) { /* the client reconnects by itself, with backoff */
        rk_status st = fetch(c, "x", &again, &keep, &got, &info);
        up = st == RK_OK && !info.degraded;
        rk_free(got);
        if (!up) rk_test_sleep_ms(50);
    }
    assert_true(up);
    assert_true(info.computed);
    rk_cache_free(c);
    rk_client_free(dc);
    rk_test_server_stop(s);
}

/* A paused server: reads time out. The copy is served; without one the
 * value is computed and no second deadline is spent storing it. */
static void test_redis_paused(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_client *dc = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(s), .command_timeout_ms = 150,
                                                        .connect_timeout_ms = 150, .breaker_threshold = 100},
                                   &dc),
                     RK_OK);
    rk_cache *c = rk_test_cache_new(dc, NULL);
    job j = {.value = "before"};
    fetch_expect(c, "k", &j, &keep, "before", NULL);
    assert_true(rk_test_server_signal(s, SIGSTOP));

    rk_client_stats before, after;
    rk_cache_fetch_info info;
    fetch_expect(c, "k", &j, &keep, "before", &info);
    assert_true(info.degraded);
    assert_false(info.computed);

    rk_client_stats_get(dc, &before);
    rk_cache_metrics m0, m1;
    assert_int_equal(rk_cache_metrics_get(c, &m0), RK_OK);
    fetch_expect(c, "other", &j, &keep, "before", &info);
    assert_true(info.degraded && info.computed);
    rk_client_stats_get(dc, &after);
    /* Served (RK_OK) but not stored: a store error, not an error of the
     * call — redkit_cache_errors_total must not fire while the caller is
     * served. */
    assert_int_equal(rk_cache_metrics_get(c, &m1), RK_OK);
    assert_int_equal(m1.store_errors, m0.store_errors + 1);
    assert_int_equal(m1.errors_total, m0.errors_total);
    /* At most one command deadline was spent on the paused server: after
     * a read that timed out, the value is not stored. */
    assert_true(after.timeouts - before.timeouts <= 1);
    assert_int_equal(atomic_load(&j.runs), 2);

    assert_true(rk_test_server_signal(s, SIGCONT));
    rk_cache_free(c);
    rk_client_free(dc);
    rk_test_server_stop(s);
}

/* ---- this process's copies: forgetting, byte budget, TTL limits --------------------------- */

/* A private server that tests pause (SIGSTOP) and resume, a client that
 * gives up on it soon (300 ms: long enough for a loaded machine to answer
 * when Redis runs) and never opens its circuit, so that each phase of a
 * test sees Redis either answering or timing out, and a cache on it. */
typedef struct pausable {
    rk_test_server *s;
    rk_client *client;
    rk_cache *cache;
} pausable;

/* cache_options: for the cache; NULL = defaults. */
static pausable pausable_start(const rk_cache_options *cache_options)
{
    pausable p = {.s = rk_test_server_start(NULL)};
    assert_non_null(p.s);
    p.client = rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(p.s), .key_prefix = PREFIX,
                                                       .command_timeout_ms = 300, .connect_timeout_ms = 300,
                                                       .breaker_threshold = 1000, .pool_size = 4});
    p.cache = rk_test_cache_new(p.client, cache_options);
    return p;
}

static void pausable_stop(pausable *p)
{
    rk_cache_free(p->cache);
    rk_client_free(p->client);
    rk_test_server_stop(p->s);
}

static void redis_pause(pausable *p) { assert_true(rk_test_server_signal(p->s, SIGSTOP)); }

static void redis_resume(pausable *p)
{
    assert_true(rk_test_server_signal(p->s, SIGCONT));
    assert_true(rk_test_client_recovers(p->client, 5000));
}

/* Fetch key through o while Redis answers; a miss computes "first". This
 * process keeps a copy of the value, unless something makes it forget. */
static void fetch_first(rk_cache *c, const char *key, const rk_cache_fetch_options *o)
{
    job first = {.value = "first"};
    fetch_expect(c, key, &first, o, "first", NULL);
}

/* While Redis is paused: key is served from this process's copy. */
static void expect_copy(rk_cache *c, const char *key, const rk_cache_fetch_options *o, const char *want)
{
    job j = {.value = "recomputed"};
    rk_cache_fetch_info info;
    fetch_expect(c, key, &j, o, want, &info);
    assert_true(info.degraded);
    assert_false(info.computed);
    assert_int_equal(atomic_load(&j.runs), 0);
}

/* While Redis is paused: there is no copy of key, so it is computed. */
static void expect_no_copy(rk_cache *c, const char *key, const rk_cache_fetch_options *o)
{
    job j = {.value = "recomputed"};
    rk_cache_fetch_info info;
    fetch_expect(c, key, &j, o, "recomputed", &info);
    assert_true(info.degraded);
    assert_true(info.computed);
    assert_int_equal(atomic_load(&j.runs), 1);
}

/* A key deleted through this handle, whether it found the value
 * (RK_OK) or another process had deleted it first (RK_MISS), is never
 * served from a copy again; other keys' copies stay. */
static void test_delete_forgets_copy(void **state)
{
    (void)state;
    pausable p = pausable_start(NULL);
    rk_cache *c = p.cache;
    const char *tag = "catalog";
    rk_cache_fetch_options tagged = {.ttl_ms = 60000, .stale_ms = 60000, .tags = &tag, .ntags = 1};
    fetch_first(c, "deleted", &tagged);
    fetch_first(c, "deleted-elsewhere", &keep);
    fetch_first(c, "kept", &keep);
    assert_int_equal(rk_cache_delete(c, "deleted"), RK_OK);
    rk_test_server_ok(p.s, "DEL %s", PREFIX ":cache:deleted-elsewhere");
    bool existed = true;
    assert_int_equal(rk_cache_delete_ex(c, "deleted-elsewhere", &existed), RK_OK);
    assert_false(existed);

    redis_pause(&p);
    expect_copy(c, "kept", &keep, "first");
    expect_no_copy(c, "deleted", &keep);
    expect_no_copy(c, "deleted-elsewhere", &keep);
    redis_resume(&p);
    pausable_stop(&p);
}

/* A set or a batch set from this process makes the copy older than Redis's
 * value: it is dropped, never served while Redis is down. */
static void test_set_forgets_copy(void **state)
{
    (void)state;
    pausable p = pausable_start(NULL);
    rk_cache *c = p.cache;
    fetch_first(c, "overwritten", &keep);
    fetch_first(c, "batch-overwritten", &keep);
    fetch_first(c, "kept", &keep);
    assert_int_equal(rk_cache_set_str(c, "overwritten", "second", NULL), RK_OK);
    rk_cache_entry e = {"batch-overwritten", "second", 6};
    assert_int_equal(rk_cache_mset(c, &e, 1, NULL, NULL), RK_OK);

    redis_pause(&p);
    expect_copy(c, "kept", &keep, "first");
    expect_no_copy(c, "overwritten", &keep);
    expect_no_copy(c, "batch-overwritten", &keep);
    redis_resume(&p);
    pausable_stop(&p);
}

/* A fetch that finds the key absent in Redis drops its copy, even when
 * the computation that follows fails (deleted by another process). */
static void test_absent_key_forgets_copy(void **state)
{
    (void)state;
    pausable p = pausable_start(NULL);
    rk_cache *c = p.cache;
    fetch_first(c, "absent", &keep);
    rk_test_server_ok(p.s, "DEL %s", PREFIX ":cache:absent");
    job bad = {.status = RK_ERR_SERVER};
    char *got;
    assert_int_equal(fetch(c, "absent", &bad, &keep, &got, NULL), RK_ERR_SOURCE);
    assert_int_equal(atomic_load(&bad.runs), 1);

    redis_pause(&p);
    expect_no_copy(c, "absent", &keep);
    redis_resume(&p);
    pausable_stop(&p);
}

/* rk_cache_invalidate_tag and rk_cache_clear forget every copy (their
 * keys are not known in this process): none is served afterwards. */
static void test_invalidate_and_clear_forget_copies(void **state)
{
    (void)state;
    pausable p = pausable_start(NULL);
    rk_cache *c = p.cache;
    const char *tag = "catalog";
    rk_cache_fetch_options tagged = {.ttl_ms = 60000, .stale_ms = 60000, .tags = &tag, .ntags = 1};

    fetch_first(c, "tagged", &tagged);
    size_t removed = 0;
    assert_int_equal(rk_cache_invalidate_tag(c, tag, &removed), RK_OK);
    assert_int_equal(removed, 1);
    redis_pause(&p);
    expect_no_copy(c, "tagged", &keep);
    redis_resume(&p);

    fetch_first(c, "cleared", &keep);
    fetch_first(c, "cleared", &keep); /* a hit: the copy is refreshed, not duplicated */
    uint64_t cursor = 0;
    removed = 0;
    for (int round = 0; round < 100; round++) { /* bounded: a handful of keys takes one round */
        size_t n;
        assert_int_equal(rk_cache_clear(c, &cursor, &n), RK_OK);
        removed += n;
        if (cursor == 0) break;
    }
    assert_int_equal(cursor, 0);
    assert_true(removed >= 1);
    redis_pause(&p);
    expect_no_copy(c, "cleared", &keep);
    redis_resume(&p);

    /* Values fetched after the invalidation are kept and served again. */
    fetch_first(c, "after", &keep);
    redis_pause(&p);
    expect_copy(c, "after", &keep, "first");
    redis_resume(&p);
    pausable_stop(&p);
}

/* The byte budget of the copies: the oldest go first, and a value larger
 * than the whole budget is not kept at all. */
static void test_copies_byte_budget(void **state)
{
    (void)state;
    /* Out of range: a negative number cast to size_t. */
    rk_cache *bad = NULL;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.local_copies_bytes = (size_t)-2}, &bad),
                     RK_ERR_INVALID);
    assert_null(bad);
    assert_non_null(strstr(rk_last_error(), "local_copies_bytes"));

    /* Room for three values of 20000 bytes (and their keys), not four. */
    pausable p = pausable_start(&(rk_cache_options){.local_copies_bytes = 64 * 1024});
    rk_cache *c = p.cache;
    static char text[100001];
    memset(text, 'x', 100000);
    text[100000] = '\0';
    job big = {.value = text};                    /* 100000 bytes: over the budget alone */
    job mid = {.value = text + 100000 - 20000};   /* 20000 bytes */
    fetch_expect(c, "k1", &mid, &keep, mid.value, NULL); /* the oldest: evicted by k4 */
    fetch_expect(c, "k2", &mid, &keep, mid.value, NULL);
    fetch_expect(c, "k3", &mid, &keep, mid.value, NULL);
    fetch_expect(c, "k4", &mid, &keep, mid.value, NULL);
    fetch_expect(c, "big", &big, &keep, big.value, NULL);

    redis_pause(&p);
    /* Served from copies first: a value computed while Redis is down is
     * kept too, and would evict the oldest. */
    expect_copy(c, "k4", &keep, mid.value);
    expect_copy(c, "k2", &keep, mid.value); /* k3 between them: fetch_state_test.c counts every entry */
    expect_no_copy(c, "big", &keep);
    expect_no_copy(c, "k1", &keep);
    redis_resume(&p);
    pausable_stop(&p);
}

/* A callback's TTL at the 2^62 ms maximum plus a stale window at it too
 * (allowed: the call's own TTL is none): the sums would overflow int64, so
 * each saturates at the maximum; the value is stored (Redis refuses an
 * expiry that overflows) and its copy is served. */
static void test_ttl_sums_saturate(void **state)
{
    (void)state;
    pausable p = pausable_start(NULL);
    rk_cache *c = p.cache;
    const int64_t max = (int64_t)1 << 62;
    rk_cache_fetch_options far = {.ttl_ms = RK_TTL_NONE, .stale_ms = max};
    job j = {.value = "long-lived", .ttl_ms = max};
    rk_cache_fetch_info info;
    fetch_expect(c, "far", &j, &far, "long-lived", &info);
    assert_true(info.computed);
    assert_false(info.degraded);
    assert_int_equal(rk_test_server_integer(p.s, "EXISTS %s", PREFIX ":cache:far"), 1);
    assert_true(rk_test_server_integer(p.s, "PTTL %s", PREFIX ":cache:far") > max / 2);
    fetch_expect(c, "far", &j, &far, "long-lived", &info); /* a hit */
    assert_false(info.computed || info.stale || info.early);
    assert_int_equal(atomic_load(&j.runs), 1);

    redis_pause(&p);
    expect_copy(c, "far", &far, "long-lived");
    redis_resume(&p);
    pausable_stop(&p);
}

/* ---- counters and waiters ---------------------------------------------------------------- */

/* Each fetch counts one of hits, misses or degraded — degraded only when
 * its first read could not ask Redis — and a callback's failure counts in
 * compute_errors, not in errors[] under the status it returned. Redis is
 * made to answer reads but time out on writes (CLIENT PAUSE WRITE), so a
 * fetch reads the key and then cannot take the lock. */
static void test_fetch_counts_each_read_once(void **state)
{
    (void)state;
    rk_client *tc = rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(server), .key_prefix = PREFIX,
                                                            .command_timeout_ms = 300, .breaker_threshold = 1000});
    rk_cache *c = rk_test_cache_new(tc, NULL);
    rk_cache_fetch_options o = {.ttl_ms = 100, .stale_ms = 60000, .beta = -1};
    job j = {.value = "v"};
    rk_cache_fetch_info info;
    fetch_expect(c, "stale", &j, &o, "v", NULL); /* miss 1 */
    let_expire(100);

    rk_test_server_ok(server, "CLIENT PAUSE 5000 WRITE");
    fetch_expect(c, "cold", &j, &o, "v", &info); /* miss 2, then the lock times out */
    assert_true(info.computed && info.degraded);
    fetch_expect(c, "stale", &j, &o, "v", &info); /* hit 1 (stale), then the lock times out */
    assert_true(info.stale && info.degraded);
    assert_false(info.computed);
    rk_test_server_ok(server, "CLIENT UNPAUSE");
    assert_true(rk_test_client_recovers(tc, 5000));
    assert_int_equal(COUNTER(c, misses), 2);
    assert_int_equal(COUNTER(c, hits), 1);
    assert_int_equal(COUNTER(c, degraded), 0);
    assert_int_equal(COUNTER(c, stale), 1);

    /* A database timing out is not Redis timing out. */
    job db_down = {.status = RK_ERR_TIMEOUT};
    char *got;
    assert_int_equal(fetch(c, "db", &db_down, NULL, &got, &info), RK_ERR_SOURCE);
    assert_int_equal(info.source_status, RK_ERR_TIMEOUT); /* the callback's own status */
    assert_non_null(strstr(rk_last_error(), "timeout")); /* named in the message */
    assert_false(info.degraded);
    assert_int_equal(COUNTER(c, compute_errors), 1);
    assert_int_equal(COUNTER(c, errors[RK_ERR_TIMEOUT]), 0);
    assert_int_equal(COUNTER(c, misses), 3);
    assert_int_equal(COUNTER(c, hits) + COUNTER(c, misses) + COUNTER(c, degraded), 4); /* one per fetch */
    rk_cache_free(c);
    rk_client_free(tc);
}

/* A refresher (with stale_ms) whose computation fails keeps its stale
 * value; a caller without stale_ms that waited for that computation gets
 * its failure, not the stale value. */
typedef struct refresher {
    rk_cache *cache;
    job *job;
    rk_status st;
    char value[64];
    rk_cache_fetch_info info;
} refresher;

static void *refresh_once(void *arg)
{
    refresher *r = arg;
    void *v = NULL;
    size_t n = 0;
    r->st = rk_cache_fetch(r->cache, "k", compute, r->job,
                           &(rk_cache_fetch_options){.ttl_ms = 100, .stale_ms = 60000, .beta = -1}, &v, &n, &r->info);
    snprintf(r->value, sizeof r->value, "%s", v ? (char *)v : "(null)");
    rk_free(v);
    return NULL;
}

static void test_waiter_without_stale_gets_failure(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, NULL);
    job good = {.value = "old"};
    fetch_expect(c, "k", &good, &(rk_cache_fetch_options){.ttl_ms = 100, .stale_ms = 60000, .beta = -1}, "old", NULL);
    let_expire(100);

    /* The refresher's computation fails once the other caller waits for it. */
    job bad = {.status = RK_ERR_SERVER, .await_cache = c, .await_waiters = 1};
    refresher r = {.cache = c, .job = &bad};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, refresh_once, &r), 0);
    for (int i = 0; i < 2000 && atomic_load(&bad.runs) == 0; i++) rk_test_sleep_ms(5); /* bounded: 10 s */
    assert_int_equal(atomic_load(&bad.runs), 1);

    char *got = (char *)"untouched";
    rk_cache_fetch_info info;
    rk_status st = fetch(c, "k", &bad, &(rk_cache_fetch_options){.ttl_ms = 100}, &got, &info);
    pthread_join(t, NULL);
    if (st != RK_ERR_SOURCE) {
        char shown[64];
        snprintf(shown, sizeof shown, "%s", got ? got : "");
        rk_free(got);
        fail_msg("waiter: %s (%s), want RK_ERR_SOURCE", rk_strerror(st), shown);
    }
    assert_null(got);
    assert_true(info.waited);
    assert_false(info.stale);
    assert_non_null(strstr(rk_last_error(), "the database is down"));
    assert_int_equal(atomic_load(&bad.runs), 1); /* the waiter did not compute again */

    assert_int_equal(r.st, RK_OK);
    assert_string_equal(r.value, "old");
    assert_true(r.info.stale);
    assert_int_equal(COUNTER(c, compute_errors), 1);
    assert_int_equal(COUNTER(c, errors[RK_ERR_SERVER]), 0);
    rk_cache_free(c);
}

/* ---- raw mode -------------------------------------------------------------------------------- */

/* The server's clock in Unix ms, from TIME. */
static int64_t server_ms(void)
{
    redisReply *r = rk_test_server_command(server, "TIME");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int64_t ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* The logical expiry stored with key (its META block). */
static int64_t stored_expiry(const char *key)
{
    redisReply *r = rk_test_server_command(server, "GET %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    rk__value_view v;
    assert_int_equal(rk__value_parse(r->str, r->len, false, &v), RK_OK);
    assert_true(v.flags & RK__VF_META);
    freeReplyObject(r);
    return v.meta.expires_at_ms;
}

/*
 * Regression (#16): a writer whose clock is 2 minutes behind stored an
 * expiry 2 minutes early, and readers with the right clock recomputed a
 * value that had a minute left. Expiries are on the server's clock now:
 * the writer's skew (injected through the handle's clock hook, as if its
 * host clock were wrong) does not reach what it stores, and a reader
 * whose own clock is 2 minutes ahead does not see a fresh value expired
 * either. The tolerance on the stored expiry (10 s) is about clocks, not
 * speed: a minute TTL, a two-minute skew.
 */
static void test_writer_clock_skew(void **state)
{
    (void)state;
    rk_cache *writer = rk_test_cache_new(client, NULL);
    rk_cache *reader = rk_test_cache_new(client, NULL);
    rk_cache *ahead = rk_test_cache_new(client, NULL);
    rk__fetch_set_clock_skew(writer->fetch, -120000);
    rk__fetch_set_clock_skew(ahead->fetch, +120000);
    job j = {.value = "v"};
    const rk_cache_fetch_options o = {.ttl_ms = 60000, .beta = -1}; /* no early refresh: no dice */
    rk_cache_fetch_info info;

    fetch_expect(writer, "skew", &j, &o, "v", &info);
    assert_true(info.computed);
    int64_t exp = stored_expiry(PREFIX ":cache:skew"), now = server_ms();
    if (llabs((long long)(exp - (now + 60000))) > 10000)
        fail_msg("stored expiry is %lld ms from the server's now + TTL", (long long)(exp - (now + 60000)));

    fetch_expect(reader, "skew", &j, &o, "v", &info);
    assert_false(info.computed || info.stale);
    fetch_expect(ahead, "skew", &j, &o, "v", &info);
    assert_false(info.computed || info.stale);
    assert_int_equal(atomic_load(&j.runs), 1);
    assert_int_equal(COUNTER(reader, computations) + COUNTER(ahead, computations), 0);

    /* And a writer ahead stores no expiry 2 minutes late. */
    fetch_expect(ahead, "skew2", &j, &o, "v", &info);
    assert_true(info.computed);
    exp = stored_expiry(PREFIX ":cache:skew2");
    now = server_ms();
    if (llabs((long long)(exp - (now + 60000))) > 10000)
        fail_msg("stored expiry is %lld ms from the server's now + TTL", (long long)(exp - (now + 60000)));
    rk_cache_free(writer);
    rk_cache_free(reader);
    rk_cache_free(ahead);
}

static void test_raw_mode(void **state)
{
    (void)state;
    rk_cache *c = rk_test_cache_new(client, &(rk_cache_options){.ns = "rawns", .raw = true});
    job j = {.value = "plain bytes", .sleep_ms = 100};
    caller cl[8];
    for (int i = 0; i < 8; i++)
        cl[i] = (caller){.cache = c, .job = &j, .key = "r", .opts = {.ttl_ms = 60000, .stale_ms = 60000}};
    run_callers(cl, 8, call_once);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cl[i].st, RK_OK);
        assert_string_equal(cl[i].value, "plain bytes");
    }
    assert_int_equal(atomic_load(&j.runs), 1); /* single flight without META */
    /* Stored as plain bytes, with no stale window in its TTL. */
    redisReply *r = rk_test_server_command(server, "GET %s", PREFIX ":rawns:r");
    assert_non_null(r);
    assert_string_equal(r->str, "plain bytes");
    freeReplyObject(r);
    long long pttl = rk_test_server_integer(server, "PTTL %s", PREFIX ":rawns:r");
    assert_true(pttl > 0 && pttl <= 60000);
    rk_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xfetch_formula),
        cmocka_unit_test_setup(test_miss_then_hit, rk_test_group_flush),
        cmocka_unit_test_setup(test_compute_miss_and_empty_answers, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_input, rk_test_group_flush),
        cmocka_unit_test_setup(test_computed_set_checks, rk_test_group_flush),
        cmocka_unit_test_setup(test_single_flight_16_threads, rk_test_group_flush),
        cmocka_unit_test_setup(test_single_flight_shares_errors, rk_test_group_flush),
        cmocka_unit_test_setup(test_inprocess_wait_is_bounded, rk_test_group_flush),
        cmocka_unit_test_setup(test_fetch_from_own_callback, rk_test_group_flush),
        cmocka_unit_test_setup(test_two_processes, rk_test_group_flush),
        cmocka_unit_test_setup(test_lock_held_elsewhere_expires, rk_test_group_flush),
        cmocka_unit_test_setup(test_lock_holder_stores_value, rk_test_group_flush),
        cmocka_unit_test_setup(test_lock_wait_is_bounded, rk_test_group_flush),
        cmocka_unit_test_setup(test_unlock_is_compare_and_delete, rk_test_group_flush),
        cmocka_unit_test_setup(test_xfetch_hot_key, rk_test_group_flush),
        cmocka_unit_test_setup(test_xfetch_off, rk_test_group_flush),
        cmocka_unit_test_setup(test_failing_compute_serves_stale, rk_test_group_flush),
        cmocka_unit_test_setup(test_stale_while_revalidate, rk_test_group_flush),
        cmocka_unit_test_setup(test_raw_mode, rk_test_group_flush),
        cmocka_unit_test_setup(test_writer_clock_skew, rk_test_group_flush),
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_redis_paused),
        cmocka_unit_test(test_delete_forgets_copy),
        cmocka_unit_test(test_set_forgets_copy),
        cmocka_unit_test(test_absent_key_forgets_copy),
        cmocka_unit_test(test_invalidate_and_clear_forget_copies),
        cmocka_unit_test(test_copies_byte_budget),
        cmocka_unit_test(test_ttl_sums_saturate),
        cmocka_unit_test_setup(test_fetch_counts_each_read_once, rk_test_group_flush),
        cmocka_unit_test_setup(test_waiter_without_stale_gets_failure, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
