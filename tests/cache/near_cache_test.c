/*
 * near_cache_test.c — the near cache of rk_cache (rk_cache_options.
 * near_cache) against a real redis-server: a hit makes no round trip
 * (INFO commandstats), another client's write and FLUSHALL reach it as
 * invalidations, the fill race (the key changes while the filling read is
 * out) is provoked deterministically and the fill is dropped, the
 * tracking connection killed (CLIENT KILL) or the server restarted flush
 * it and it recovers with no stale read afterwards, the Redis TTL and the
 * local cap are honoured, the byte budget holds under a fill storm, a
 * child after fork() starts empty, and own writes are read back at once.
 *
 * Waits are bounded polls (wait_until), never sleep-and-hope.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "cache.h"
#include "near.h"
#include "near_tracking.h"
#include "support/clock.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

/* AddressSanitizer's allocator is not fork-safe while other threads run
 * (the tracking thread, the readers): a child can hang on its lock; and
 * ThreadSanitizer refuses to start threads in a child forked while others
 * ran. The fork tests run in the plain build, and are skipped under both. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RK_FORK_UNSAFE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define RK_FORK_UNSAFE 1
#endif
#endif

static int group_setup(void **state)
{
    return rk_test_group_setup(
        state, &(rk_test_group){.server = &server, .client = &client,
                                .client_options = {.reconnect_base_ms = 1, .reconnect_max_ms = 20}});
}

/* A near-cache handle, live (its subscription made) before it is returned. */
static rk_cache *near_cache(const rk_cache_options *extra)
{
    rk_cache_options o = extra ? *extra : (rk_cache_options){0};
    o.near_cache = true;
    rk_cache *c = rk_test_cache_new(client, &o);
    for (int i = 0; i < 500 && !rk__near_is_live(c->near); i++) rk_test_sleep_ms(10);
    assert_true(rk__near_is_live(c->near));
    return c;
}

static rk_cache_metrics metrics(rk_cache *c)
{
    rk_cache_metrics m;
    assert_int_equal(rk_cache_metrics_get(c, &m), RK_OK);
    return m;
}

/* Write key through c and read it back until the near cache holds it: the
 * server announces our own write too (an invalidation that may arrive
 * after the first read filled the entry), so wait for that first. */
static void set_and_hold(rk_cache *c, const char *key, const char *value)
{
    uint64_t before = metrics(c).near_invalidations;
    assert_int_equal(rk_cache_set_str(c, key, value, NULL), RK_OK);
    for (int i = 0; i < 300 && metrics(c).near_invalidations == before; i++) rk_test_sleep_ms(10);
    assert_true(metrics(c).near_invalidations > before);
    rk_test_assert_cached(c, key, value);
}

/* Read key until it is want, at most 3 s; true when it was. */
static bool reads_within(rk_cache *c, const char *key, const char *want)
{
    for (int i = 0; i < 300; i++) {
        char *v = NULL;
        rk_status st = rk_cache_get_str(c, key, &v);
        bool ok = st == RK_OK && strcmp(v, want) == 0;
        rk_free(v);
        if (ok) return true;
        rk_test_sleep_ms(10);
    }
    return false;
}

static void test_hit_makes_no_round_trip(void **state)
{
    (void)state;
    rk_cache *c = near_cache(NULL);
    set_and_hold(c, "k", "v1"); /* a miss: fills */
    long long gets = rk_test_server_command_calls(server, "get");
    for (int i = 0; i < 100; i++) rk_test_assert_cached(c, "k", "v1");
    assert_int_equal(rk_test_server_command_calls(server, "get"), gets);
    rk_cache_metrics m = metrics(c);
    assert_true(m.near_hits >= 100);
    assert_true(m.near_fills >= 1);
    assert_true(m.hits >= 101);

    /* Typed numbers and raw bytes through it as well. */
    assert_int_equal(rk_cache_set_i64(c, "n", 42, NULL), RK_OK);
    int64_t n = 0;
    assert_int_equal(rk_cache_get_i64(c, "n", &n), RK_OK);
    assert_int_equal(rk_cache_get_i64(c, "n", &n), RK_OK);
    assert_int_equal(n, 42);
    char *s = NULL;
    assert_int_equal(rk_cache_get_str(c, "n", &s), RK_ERR_TYPE); /* the type check holds on a hit */
    assert_null(s);
    /* A miss is not kept: the key written next is read at once. */
    assert_int_equal(rk_cache_get_str(c, "absent", &s), RK_MISS);
    assert_int_equal(rk_cache_set_str(c, "absent", "now", NULL), RK_OK);
    rk_test_assert_cached(c, "absent", "now");
    rk_cache_free(c);
}

static void test_other_clients_writes_invalidate(void **state)
{
    (void)state;
    rk_cache *c = near_cache(NULL);
    assert_int_equal(rk_cache_set_str(c, "k", "old", NULL), RK_OK);
    rk_test_assert_cached(c, "k", "old");
    rk_test_assert_cached(c, "k", "old");

    /* Another handle (its own writes go to Redis) ... */
    rk_cache *other = rk_test_cache_new(client, NULL);
    assert_int_equal(rk_cache_set_str(other, "k", "new", NULL), RK_OK);
    assert_true(reads_within(c, "k", "new"));
    assert_int_equal(rk_cache_delete(other, "k"), RK_OK);
    char *v = NULL;
    for (int i = 0; i < 300 && rk_cache_get_str(c, "k", &v) == RK_OK; i++) {
        rk_free(v);
        v = NULL;
        rk_test_sleep_ms(10);
    }
    assert_int_equal(rk_cache_get_str(c, "k", &v), RK_MISS);
    rk_cache_free(other);

    /* ... and FLUSHALL, which the server announces with a nil. */
    assert_int_equal(rk_cache_set_str(c, "a", "1", NULL), RK_OK);
    rk_test_assert_cached(c, "a", "1");
    uint64_t flushes = metrics(c).near_flushes;
    rk_test_server_ok(server, "FLUSHALL");
    for (int i = 0; i < 300 && metrics(c).near_flushes == flushes; i++) rk_test_sleep_ms(10);
    assert_true(metrics(c).near_flushes > flushes);
    assert_int_equal(rk_cache_get_str(c, "a", &v), RK_MISS);
    assert_true(metrics(c).near_invalidations >= 2);
    rk_cache_free(c);
}

/* Own writes are read back at once, never the value they replaced. */
static void test_read_your_writes(void **state)
{
    (void)state;
    rk_cache *c = near_cache(NULL);
    for (int i = 0; i < 200; i++) {
        char want[16];
        snprintf(want, sizeof want, "v%d", i);
        assert_int_equal(rk_cache_set_str(c, "k", want, NULL), RK_OK);
        rk_test_assert_cached(c, "k", want);
        rk_test_assert_cached(c, "k", want);
    }
    rk_cache_entry e[2] = {{.key = "m1", .value = "x", .len = 1}, {.key = "m2", .value = "y", .len = 1}};
    assert_int_equal(rk_cache_mset(c, e, 2, NULL, NULL), RK_OK);
    void *v;
    size_t len;
    assert_int_equal(rk_cache_get(c, "m1", &v, &len), RK_OK);
    rk_free(v);
    e[0].value = "z";
    assert_int_equal(rk_cache_mset(c, e, 1, NULL, NULL), RK_OK);
    assert_int_equal(rk_cache_get(c, "m1", &v, &len), RK_OK);
    assert_memory_equal(v, "z", 1);
    rk_free(v);
    rk_cache_free(c);
}

/* Batches read through it: hits from memory, the rest from Redis in one
 * round trip (and they fill it); another type's key reads as absent, as
 * with MGET. */
static void test_mget_through_it(void **state)
{
    (void)state;
    rk_cache *c = near_cache(NULL);
    set_and_hold(c, "a", "1");
    assert_int_equal(rk_cache_set_str(c, "b", "2", NULL), RK_OK);
    rk_test_server_ok(server, "RPUSH cache:list x");
    const char *keys[] = {"a", "b", "absent", "list"};
    rk_cache_result res[4];
    assert_int_equal(rk_cache_mget(c, keys, 4, res), RK_OK);
    assert_int_equal(res[0].status, RK_OK);
    assert_memory_equal(res[0].value, "1", 1);
    assert_int_equal(res[1].status, RK_OK);
    assert_memory_equal(res[1].value, "2", 1);
    assert_int_equal(res[2].status, RK_MISS);
    assert_int_equal(res[3].status, RK_MISS);
    rk_cache_results_free(res, 4);
    /* Once held, a batch of them makes no read at all. */
    uint64_t inv = metrics(c).near_invalidations;
    for (int i = 0; i < 300 && metrics(c).near_invalidations == inv; i++) rk_test_sleep_ms(10); /* b's own */
    assert_int_equal(rk_cache_mget(c, keys, 2, res), RK_OK);
    rk_cache_results_free(res, 2);
    long long gets = rk_test_server_command_calls(server, "get");
    long long mgets = rk_test_server_command_calls(server, "mget");
    assert_int_equal(rk_cache_mget(c, keys, 2, res), RK_OK);
    assert_int_equal(res[0].status, RK_OK);
    assert_int_equal(res[1].status, RK_OK);
    rk_cache_results_free(res, 2);
    assert_int_equal(rk_test_server_command_calls(server, "get"), gets);
    assert_int_equal(rk_test_server_command_calls(server, "mget"), mgets);
    rk_cache_free(c);
}

/* ---- The fill race, provoked -------------------------------------------------- */

static rk_cache *race_cache;
static bool race_armed;

/* Between the filling read's reply (which holds "old") and its landing:
 * another client writes the key, and the invalidation is awaited. */
static void change_key_meanwhile(rk_cache *c, const char *key, size_t len)
{
    (void)key, (void)len;
    if (!race_armed || c != race_cache) return;
    race_armed = false;
    uint64_t before = metrics(c).near_invalidations;
    rk_test_server_ok(server, "SET %s new", "cache:k");
    for (int i = 0; i < 300 && metrics(c).near_invalidations == before; i++) rk_test_sleep_ms(10);
    assert_true(metrics(c).near_invalidations > before);
}

static void test_invalidation_overtaking_the_fill(void **state)
{
    (void)state;
    race_cache = near_cache(&(rk_cache_options){.raw = true}); /* the hook writes a plain value */
    assert_int_equal(rk_cache_set_str(race_cache, "k", "old", NULL), RK_OK);
    rk__cache_near_test_hook = change_key_meanwhile;
    race_armed = true;
    void *v;
    size_t len;
    assert_int_equal(rk_cache_get(race_cache, "k", &v, &len), RK_OK); /* the read that raced */
    assert_memory_equal(v, "old", 3);
    rk_free(v);
    rk__cache_near_test_hook = NULL;
    assert_false(race_armed);
    /* The fill was dropped: the next read goes to Redis and sees "new". */
    assert_int_equal(metrics(race_cache).near_fills_cancelled, 1);
    assert_int_equal(rk_cache_get(race_cache, "k", &v, &len), RK_OK);
    assert_memory_equal(v, "new", 3);
    rk_free(v);
    rk_cache_free(race_cache);
}

/* ---- The tracking connection lost --------------------------------------------- */

static void test_tracking_connection_killed(void **state)
{
    (void)state;
    rk_cache *c = near_cache(NULL);
    assert_int_equal(rk_cache_set_str(c, "k", "v1", NULL), RK_OK);
    rk_test_assert_cached(c, "k", "v1");
    uint64_t subs = rk__tracker_subscriptions(c->tracker);
    rk_test_server_ok(server, "CLIENT KILL TYPE pubsub");
    for (int i = 0; i < 500 && rk__tracker_subscriptions(c->tracker) == subs; i++) rk_test_sleep_ms(10);
    assert_true(rk__tracker_subscriptions(c->tracker) > subs);
    for (int i = 0; i < 500 && !rk__near_is_live(c->near); i++) rk_test_sleep_ms(10);
    assert_int_equal(metrics(c).near_entries, 0); /* flushed */
    /* Written while it was down or after: never the old value. */
    rk_test_server_ok(server, "SET cache:k raw");
    char *v = NULL;
    rk_status st = rk_cache_get_str(c, "k", &v);
    assert_int_equal(st, RK_OK); /* another client's value, read as text: not v1 */
    assert_string_equal(v, "raw");
    rk_free(v);
    assert_int_equal(rk_cache_set_str(c, "k", "v2", NULL), RK_OK);
    assert_true(reads_within(c, "k", "v2"));
    rk_cache_free(c);
}

static void test_server_restart(void **state)
{
    (void)state;
    rk_cache *c = near_cache(NULL);
    assert_int_equal(rk_cache_set_str(c, "k", "before", NULL), RK_OK);
    rk_test_assert_cached(c, "k", "before");
    uint64_t subs = rk__tracker_subscriptions(c->tracker);
    assert_true(rk_test_server_signal(server, SIGKILL));
    assert_true(rk_test_server_restart(server, NULL));
    for (int i = 0; i < 500 && rk__tracker_subscriptions(c->tracker) == subs; i++) rk_test_sleep_ms(10);
    assert_true(rk__tracker_subscriptions(c->tracker) > subs);
    /* The restarted server is empty: the near cache must not say otherwise. */
    char *v = NULL;
    for (int i = 0; i < 300 && rk_cache_get_str(c, "k", &v) != RK_MISS; i++) {
        rk_free(v);
        v = NULL;
        rk_test_sleep_ms(10);
    }
    assert_int_equal(rk_cache_get_str(c, "k", &v), RK_MISS);
    assert_int_equal(rk_cache_set_str(c, "k", "after", NULL), RK_OK);
    assert_true(reads_within(c, "k", "after"));
    rk_cache_free(c);
}

/* ---- Lifetimes and budgets --------------------------------------------------- */

static void test_ttl_and_cap(void **state)
{
    (void)state;
    rk_cache *c = near_cache(&(rk_cache_options){.near_max_ttl_ms = 200});
    set_and_hold(c, "capped", "v");
    /* Reads are answered locally for a while ... */
    uint64_t hits = metrics(c).near_hits;
    for (int i = 0; i < 300 && metrics(c).near_hits == hits; i++) rk_test_assert_cached(c, "capped", "v");
    assert_true(metrics(c).near_hits > hits);
    /* ... and, past the cap, from Redis again, though the value has 60 s
     * left there and nothing changed it. */
    long long gets = rk_test_server_command_calls(server, "get");
    for (int i = 0; i < 300 && rk_test_server_command_calls(server, "get") == gets; i++) {
        rk_test_sleep_ms(10);
        rk_test_assert_cached(c, "capped", "v");
    }
    assert_true(rk_test_server_command_calls(server, "get") > gets);
    rk_cache_free(c);

    /* The Redis TTL: a value that expires in Redis is not served after. */
    c = near_cache(NULL);
    assert_int_equal(rk_cache_set_str(c, "short", "v", &(rk_cache_set_options){.ttl_ms = 150}), RK_OK);
    rk_test_assert_cached(c, "short", "v");
    char *v = NULL;
    for (int i = 0; i < 300 && rk_cache_get_str(c, "short", &v) == RK_OK; i++) {
        rk_free(v);
        v = NULL;
        rk_test_sleep_ms(5);
    }
    assert_int_equal(rk_cache_get_str(c, "short", &v), RK_MISS);
    rk_cache_free(c);
}

static void test_budget_holds(void **state)
{
    (void)state;
    const size_t budget = 64 << 10;
    rk_cache *c = near_cache(&(rk_cache_options){.near_max_bytes = budget, .near_max_entries = 1000});
    char value[700];
    memset(value, 'x', sizeof value);
    value[sizeof value - 1] = '\0';
    for (int i = 0; i < 600; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(rk_cache_set_str(c, key, value, NULL), RK_OK);
        rk_test_assert_cached(c, key, value);
        if (i % 50 == 0) assert_true(metrics(c).near_bytes <= budget);
    }
    rk_cache_metrics m = metrics(c);
    assert_true(m.near_bytes <= budget);
    assert_true(m.near_entries <= 1000);
    assert_true(m.near_evictions > 0);
    rk_cache_free(c);
}

static void test_bad_options(void **state)
{
    (void)state;
    rk_cache *c = NULL;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.near_cache = true, .near_max_bytes = 1000}, &c),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.near_cache = true, .near_max_ttl_ms = -1}, &c),
                     RK_ERR_INVALID);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.near_cache = true, .near_max_bytes = SIZE_MAX}, &c),
                     RK_ERR_INVALID);
    assert_null(c);
}

/* ---- fork ------------------------------------------------------------------------ */

static void test_child_starts_empty(void **state)
{
    (void)state;
#ifdef RK_FORK_UNSAFE
    skip();
#endif
    rk_cache *c = near_cache(NULL);
    set_and_hold(c, "k", "parent");
    for (int i = 0; i < 100 && metrics(c).near_entries == 0; i++) rk_test_assert_cached(c, "k", "parent");
    assert_int_equal(metrics(c).near_entries, 1);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The first read resets the child's near cache; it reads Redis. */
        char *v = NULL;
        int code = 0;
        rk_status st = rk_cache_get_str(c, "k", &v);
        if (st != RK_OK || strcmp(v, "parent") != 0) {
            fprintf(stderr, "child: %s: %s (%s)\n", rk_strerror(st), rk_last_error(), v ? v : "-");
            code = 1;
        }
        rk_free(v);
        if (metrics(c).near_entries != 0) code = 2;
        /* Its own tracking comes up, and then it caches for itself. */
        for (int i = 0; i < 500 && !rk__near_is_live(c->near); i++) rk_test_sleep_ms(10);
        if (!rk__near_is_live(c->near)) code = 3;
        _exit(code);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The parent's near cache is untouched and still coherent. */
    assert_true(rk__near_is_live(c->near));
    rk_test_assert_cached(c, "k", "parent");
    rk_test_server_ok(server, "SET cache:k raw");
    char *v = NULL;
    rk_status st = RK_OK;
    for (int i = 0; i < 300 && (st = rk_cache_get_str(c, "k", &v)) == RK_OK && strcmp(v, "raw") != 0; i++) {
        rk_free(v);
        v = NULL;
        rk_test_sleep_ms(10);
    }
    /* Another client's value, read as text (docs/cache.md): the new one. */
    assert_int_equal(st, RK_OK);
    assert_string_equal(v, "raw");
    rk_free(v);
    rk_cache_free(c);
}

/* ---- Two processes: a writer, and a reader with the near cache ----------------
 *
 * Process A (a child with a client of its own, no near cache) writes
 * "v<n>" with n rising to 100 keys, round after round. After each write is
 * answered it waits until process B's tracking thread has dropped the key
 * (B's hook counts, in shared memory, the invalidations it applied per
 * key), measures that delay, and only then publishes "B has been told
 * about version n". B's 8 reader threads read keys all along: a read
 * that starts after B was told about version n must return n or newer —
 * never the value it replaced. */
#define CHECK_KEYS 100
#define CHECK_ROUNDS 10
#define CHECK_READERS 8

typedef struct shared_state {
    _Atomic uint64_t applied[CHECK_KEYS]; /* invalidations B applied, per key */
    _Atomic uint64_t told[CHECK_KEYS];    /* the version B was told about */
    _Atomic int done;
    int64_t delay_ns[CHECK_KEYS * CHECK_ROUNDS];
    _Atomic int delays;
    int writer_failed;
} shared_state;

static shared_state *shared;

static void count_applied(const char *key, size_t len)
{
    /* "cache:chk:<i>" */
    if (len < 11 || len > 16 || memcmp(key, "cache:chk:", 10) != 0) return;
    int i = atoi(key + 10);
    if (i >= 0 && i < CHECK_KEYS) atomic_fetch_add(&shared->applied[i], 1);
}

static void run_writer(const char *url)
{
    rk_client *wc;
    rk_cache *w;
    if (rk_client_new(&(rk_client_options){.url = url}, &wc) != RK_OK) _exit(10);
    if (rk_cache_new(wc, NULL, &w) != RK_OK) _exit(11);
    for (uint64_t round = 1; round <= CHECK_ROUNDS; round++) {
        for (int i = 0; i < CHECK_KEYS; i++) {
            char key[32], value[32];
            snprintf(key, sizeof key, "chk:%d", i);
            uint64_t version = round;
            snprintf(value, sizeof value, "v%llu", (unsigned long long)version);
            uint64_t before = atomic_load(&shared->applied[i]);
            if (rk_cache_set_str(w, key, value, NULL) != RK_OK) _exit(12);
            struct timespec t0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            int64_t start = (int64_t)t0.tv_sec * 1000000000 + t0.tv_nsec;
            int spins = 0;
            while (atomic_load(&shared->applied[i]) == before && spins++ < 2000000) {
                struct timespec ts = {0, 1000};
                nanosleep(&ts, NULL);
            }
            if (atomic_load(&shared->applied[i]) == before) _exit(13); /* never told */
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            int d = atomic_fetch_add(&shared->delays, 1);
            shared->delay_ns[d] = (int64_t)t1.tv_sec * 1000000000 + t1.tv_nsec - start;
            atomic_store(&shared->told[i], version);
        }
    }
    rk_cache_free(w);
    rk_client_free(wc);
    _exit(0);
}

typedef struct checker {
    rk_cache *c;
    unsigned seed;
    long reads, stale;
} checker;

static void *read_checked(void *arg)
{
    checker *k = arg;
    while (!atomic_load(&shared->done)) {
        int i = (int)(rand_r(&k->seed) % CHECK_KEYS);
        uint64_t floor = atomic_load(&shared->told[i]); /* before the read starts */
        char key[32];
        snprintf(key, sizeof key, "chk:%d", i);
        char *v = NULL;
        rk_status st = rk_cache_get_str(k->c, key, &v);
        if (st == RK_OK) {
            uint64_t got = strtoull(v + 1, NULL, 10);
            if (got < floor) k->stale++;
            k->reads++;
        }
        rk_free(v);
    }
    return NULL;
}

/* A hit storm in one process: 8 threads read 50 keys through the near
 * cache while another handle rewrites them; no read fails, and afterwards
 * every key reads its last version within a bounded time. (A reader may
 * see an older version after a newer one until the invalidation arrives:
 * the promise is about reads that start after it; test_two_process_checker
 * checks that.) It is also the test a ThreadSanitizer build runs (the
 * fork tests are skipped there). */
#define STORM_KEYS 50
#define STORM_READERS 8

typedef struct storm {
    rk_cache *c;
    _Atomic bool *done;
    unsigned seed;
    long reads, errors;
} storm;

static void *storm_read(void *arg)
{
    storm *k = arg;
    while (!atomic_load(k->done) && k->reads < 2000000) {
        int i = (int)(rand_r(&k->seed) % STORM_KEYS);
        char key[32];
        snprintf(key, sizeof key, "storm:%d", i);
        char *v = NULL;
        rk_status st = rk_cache_get_str(k->c, key, &v);
        if (st == RK_OK) {
            long got = strtol(v, NULL, 10);
            if (got < 0 || got > 40) k->errors++;
            k->reads++;
        } else if (st != RK_MISS) {
            k->errors++;
        }
        rk_free(v);
    }
    return NULL;
}

static void test_hit_storm_threads(void **state)
{
    (void)state;
    rk_cache *c = near_cache(NULL);
    rk_cache *writer = rk_test_cache_new(client, NULL);
    char key[32], val[32];
    for (int i = 0; i < STORM_KEYS; i++) {
        snprintf(key, sizeof key, "storm:%d", i);
        assert_int_equal(rk_cache_set_str(writer, key, "0", NULL), RK_OK);
    }
    _Atomic bool done = false;
    pthread_t th[STORM_READERS];
    storm k[STORM_READERS];
    for (int t = 0; t < STORM_READERS; t++) {
        k[t] = (storm){.c = c, .done = &done, .seed = (unsigned)t + 7};
        assert_int_equal(pthread_create(&th[t], NULL, storm_read, &k[t]), 0);
    }
    for (int round = 1; round <= 40; round++) {
        for (int i = 0; i < STORM_KEYS; i++) {
            snprintf(key, sizeof key, "storm:%d", i);
            snprintf(val, sizeof val, "%d", round);
            assert_int_equal(rk_cache_set_str(writer, key, val, NULL), RK_OK);
        }
        rk_test_sleep_ms(5);
    }
    atomic_store(&done, true);
    long reads = 0;
    for (int t = 0; t < STORM_READERS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(k[t].errors, 0);
        reads += k[t].reads;
    }
    assert_true(reads > 0);
    assert_true(metrics(c).near_hits > 0);
    for (int i = 0; i < STORM_KEYS; i++) {
        snprintf(key, sizeof key, "storm:%d", i);
        assert_true(reads_within(c, key, "40"));
    }
    rk_cache_free(writer);
    rk_cache_free(c);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_two_process_checker(void **state)
{
    (void)state;
#ifdef RK_FORK_UNSAFE
    skip();
#endif
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(shared != MAP_FAILED);
    memset(shared, 0, sizeof *shared);
    rk_cache *c = near_cache(NULL);
    for (int i = 0; i < CHECK_KEYS; i++) { /* version 0 everywhere, held */
        char key[32];
        snprintf(key, sizeof key, "chk:%d", i);
        assert_int_equal(rk_cache_set_str(c, key, "v0", NULL), RK_OK);
    }
    rk__tracker_test_on_invalidate = count_applied;

    pthread_t th[CHECK_READERS];
    checker k[CHECK_READERS];
    for (int t = 0; t < CHECK_READERS; t++) {
        k[t] = (checker){.c = c, .seed = (unsigned)t + 1};
        assert_int_equal(pthread_create(&th[t], NULL, read_checked, &k[t]), 0);
    }
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) run_writer(rk_test_server_url(server));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    atomic_store(&shared->done, 1);
    long reads = 0, stale = 0;
    for (int t = 0; t < CHECK_READERS; t++) {
        pthread_join(th[t], NULL);
        reads += k[t].reads;
        stale += k[t].stale;
    }
    rk__tracker_test_on_invalidate = NULL;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    int n = atomic_load(&shared->delays);
    assert_int_equal(n, CHECK_KEYS * CHECK_ROUNDS);
    qsort(shared->delay_ns, (size_t)n, sizeof shared->delay_ns[0], cmp_i64);
    rk_cache_metrics m = metrics(c);
    printf("near cache checker: %ld reads (%llu near hits), %ld stale; invalidation delay after the "
           "write's reply: p50 %.1f us, p99 %.1f us (%d writes)\n",
           reads, (unsigned long long)m.near_hits, stale, (double)shared->delay_ns[n / 2] / 1000.0,
           (double)shared->delay_ns[n * 99 / 100] / 1000.0, n);
    assert_int_equal(stale, 0);
    assert_true(reads > 0);
    assert_true(m.near_hits > 0);
    rk_cache_free(c);
    munmap(shared, sizeof *shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_hit_makes_no_round_trip, rk_test_group_flush),
        cmocka_unit_test_setup(test_other_clients_writes_invalidate, rk_test_group_flush),
        cmocka_unit_test_setup(test_read_your_writes, rk_test_group_flush),
        cmocka_unit_test_setup(test_mget_through_it, rk_test_group_flush),
        cmocka_unit_test_setup(test_invalidation_overtaking_the_fill, rk_test_group_flush),
        cmocka_unit_test_setup(test_tracking_connection_killed, rk_test_group_flush),
        cmocka_unit_test_setup(test_server_restart, rk_test_group_flush),
        cmocka_unit_test_setup(test_ttl_and_cap, rk_test_group_flush),
        cmocka_unit_test_setup(test_budget_holds, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_options, rk_test_group_flush),
        cmocka_unit_test_setup(test_hit_storm_threads, rk_test_group_flush),
        cmocka_unit_test_setup(test_child_starts_empty, rk_test_group_flush),
        cmocka_unit_test_setup(test_two_process_checker, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
