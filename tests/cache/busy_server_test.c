/*
 * busy_server_test.c — a healthy Redis that will not serve right now:
 * running a script past its time limit (BUSY), loading its data set after
 * a restart (LOADING), a replica whose master is gone (MASTERDOWN), a
 * cluster with no slot served (CLUSTERDOWN); and servers that serve reads
 * but refuse writes: out of memory under noeviction (OOM) and a replica
 * (READONLY).
 *
 * In the first four the cache must behave as when Redis is unavailable — a
 * read degrades (RK_DEGRADED), rk_cache_fetch computes and serves the
 * value flagged degraded — but the circuit breaker must stay closed: the
 * server answered every call. Under OOM the fetch lock's SET is refused,
 * and the fetch must still compute, serve flagged, and store nothing. No
 * call may outlive its deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#include "support/clock.h"
#include "support/fixture.h"
#include "support/redis_server.h"

#define COMMAND_MS 1000
#define CONNECT_MS 1000
/* Slack over a call's deadline for scheduling on a loaded 2-core machine
 * (load averages of 12 seen) and sanitizer builds: never the client's own
 * waiting. */
#define MARGIN_MS 800
/* More than the breaker's threshold (5): counting them would open it. */
#define ROUNDS 7

typedef struct handles {
    rk_client *client;
    rk_cache *cache;
} handles;

static int computed;

static rk_status compute(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key, (void)ctx;
    computed++;
    return rk_cache_computed_set(out, "computed", 8);
}

static handles open_handles(rk_test_server *s)
{
    handles h = {0};
    rk_client_options o = {.url = rk_test_server_url(s), .command_timeout_ms = COMMAND_MS,
                           .connect_timeout_ms = CONNECT_MS};
    assert_int_equal(rk_client_new(&o, &h.client), RK_OK);
    assert_int_equal(rk_cache_new(h.client, NULL, &h.cache), RK_OK);
    return h;
}

static void close_handles(handles *h)
{
    rk_cache_free(h->cache);
    rk_client_free(h->client);
}

static void check_deadline(const char *what, int64_t t0, int budget_ms)
{
    int64_t took = rk_test_now_ms() - t0;
    if (took > budget_ms + MARGIN_MS) fail_msg("%s took %lld ms (budget %d ms)", what, (long long)took, budget_ms);
}

/* A fetch of a key Redis cannot give or take: the value is computed and
 * served, flagged degraded, within the deadline of a read and a store. */
static void expect_computed_degraded(handles *h, const char *key, const char *state)
{
    void *val = NULL;
    size_t len = 0;
    rk_cache_fetch_info info;
    int before = computed;
    int64_t t0 = rk_test_now_ms();
    rk_status st = rk_cache_fetch(h->cache, key, compute, NULL, NULL, &val, &len, &info);
    check_deadline("a fetch", t0, 2 * COMMAND_MS + CONNECT_MS);
    if (st != RK_OK) fail_msg("%s: fetch: %s (%s)", state, rk_strerror(st), rk_last_error());
    assert_int_equal(len, 8);
    assert_memory_equal(val, "computed", 8);
    rk_free(val);
    assert_true(info.computed);
    assert_true(info.degraded);
    assert_int_equal(computed, before + 1);
}

/* The server is up but not serving: reads degrade, fetches compute and
 * serve flagged, the breaker stays closed. */
static void expect_not_now(handles *h, const char *state)
{
    for (int i = 0; i < ROUNDS; i++) {
        char *v = NULL;
        int64_t t0 = rk_test_now_ms();
        rk_status st = rk_cache_get_str(h->cache, "k", &v);
        check_deadline("a read", t0, COMMAND_MS + CONNECT_MS);
        if (st != RK_DEGRADED) fail_msg("%s: read: %s (%s)", state, rk_strerror(st), rk_last_error());
        assert_null(v);

        const char *argv[] = {"GET", "k"};
        rk_reply *r = NULL;
        t0 = rk_test_now_ms();
        st = rk_client_command(h->client, 2, argv, NULL, &r);
        check_deadline("a command", t0, COMMAND_MS + CONNECT_MS);
        if (st != RK_ERR_UNAVAILABLE) fail_msg("%s: GET: %s (%s)", state, rk_strerror(st), rk_last_error());
        assert_true(rk_status_is_retryable(st));

        expect_computed_degraded(h, "f", state);
    }
    rk_client_stats stats;
    assert_int_equal(rk_client_stats_get(h->client, &stats), RK_OK);
    if (stats.circuit != RK_CIRCUIT_CLOSED || stats.circuit_opened != 0 || stats.fast_failed != 0)
        fail_msg("%s: the breaker counted a busy server (opened %llu, fast failures %llu)", state,
                 (unsigned long long)stats.circuit_opened, (unsigned long long)stats.fast_failed);
}

/* Wait until an admin PING gets the error reply `code`. */
static void wait_for_state(rk_test_server *s, const char *code)
{
    for (int i = 0; i < 100; i++) {
        redisReply *r = rk_test_server_command(s, "GET probe");
        bool there = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, code, strlen(code)) == 0;
        if (r) freeReplyObject(r);
        if (there) return;
        rk_test_sleep_ms(20);
    }
    fail_msg("the server never answered %s", code);
}

static void test_busy_script(void **state)
{
    (void)state;
    const char *args[] = {"--busy-reply-threshold", "50", NULL};
    rk_test_server *s = rk_test_server_start(args);
    assert_non_null(s);
    handles h = open_handles(s);
    assert_int_equal(rk_client_ping(h.client), RK_OK); /* connections open before the script */

    /* The endless script, sent without waiting for a reply that only
     * SCRIPT KILL will bring. */
    redisContext *loop = redisConnect("127.0.0.1", rk_test_server_port(s));
    assert_true(loop && !loop->err);
    assert_int_equal(redisAppendCommand(loop, "EVAL %s 0", "while true do end"), REDIS_OK);
    int done = 0;
    for (int i = 0; i < 100 && !done; i++) assert_int_equal(redisBufferWrite(loop, &done), REDIS_OK);
    assert_true(done);
    wait_for_state(s, "BUSY");

    expect_not_now(&h, "BUSY");

    rk_test_server_ok(s, "SCRIPT KILL");
    redisFree(loop);
    /* Served again at once: no breaker, no backoff to wait out. */
    for (int i = 0; i < 100 && rk_client_ping(h.client) != RK_OK; i++) rk_test_sleep_ms(10);
    assert_int_equal(rk_cache_set_str(h.cache, "k", "v", NULL), RK_OK);
    close_handles(&h);
    rk_test_server_stop(s);
}

static void test_loading(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    /* 12000 keys loaded at 0.5 ms each: six seconds of LOADING, far
     * longer than the checks take; the server answers (LOADING) between
     * every kilobyte it loads (about 50 keys, 25 ms), instead of every
     * 2 MB (more than this file). */
    rk_test_server_ok(s, "DEBUG POPULATE 12000 pop 10");
    rk_test_server_ok(s, "SAVE");
    handles h = open_handles(s);
    const char *slow[] = {"--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024", NULL};
    assert_true(rk_test_server_restart(s, slow));
    wait_for_state(s, "LOADING");

    expect_not_now(&h, "LOADING");

    close_handles(&h);
    rk_test_server_stop(s);
}

static void test_masterdown(void **state)
{
    (void)state;
    /* Port 1 on loopback refuses: the master is never reached. */
    const char *args[] = {"--replicaof", "127.0.0.1", "1", "--replica-serve-stale-data", "no", NULL};
    rk_test_server *s = rk_test_server_start(args);
    assert_non_null(s);
    wait_for_state(s, "MASTERDOWN");
    handles h = open_handles(s);

    expect_not_now(&h, "MASTERDOWN");

    close_handles(&h);
    rk_test_server_stop(s);
}

static void test_clusterdown(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start_opts(&(rk_test_server_options){.cluster = true});
    assert_non_null(s);
    handles h = open_handles(s);
    assert_int_equal(rk_client_ping(h.client), RK_OK);
    /* No slot served: cluster_state:fail, every key command CLUSTERDOWN. */
    rk_test_server_ok(s, "CLUSTER DELSLOTSRANGE 0 16383");
    wait_for_state(s, "CLUSTERDOWN");

    expect_not_now(&h, "CLUSTERDOWN");

    rk_test_server_ok(s, "CLUSTER ADDSLOTSRANGE 0 16383");
    /* cluster_state:ok comes back with the cluster cron: up to seconds. */
    for (int i = 0; i < 1000 && rk_cache_set_str(h.cache, "k", "v", NULL) != RK_OK; i++) rk_test_sleep_ms(10);
    assert_int_equal(rk_cache_set_str(h.cache, "k", "v", NULL), RK_OK);
    close_handles(&h);
    rk_test_server_stop(s);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    handles h = open_handles(s);
    assert_int_equal(rk_cache_set_str(h.cache, "there", "stored", NULL), RK_OK);
    /* Over maxmemory with nothing to evict: every write is refused. */
    rk_test_server_ok(s, "CONFIG SET maxmemory 1mb maxmemory-policy noeviction");
    rk_test_server_ok(s, "DEBUG POPULATE 20000 pop 10");
    redisReply *r = rk_test_server_command(s, "SET probe x");
    assert_true(r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "OOM", 3) == 0);
    freeReplyObject(r);

    for (int i = 0; i < ROUNDS; i++) {
        /* Reads are served. */
        char *v = NULL;
        assert_int_equal(rk_cache_get_str(h.cache, "there", &v), RK_OK);
        assert_string_equal(v, "stored");
        rk_free(v);
        /* A fetch of a missing key: the lock is refused (OOM); it computes,
         * serves the value flagged, and stores nothing. */
        expect_computed_degraded(&h, "missing", "OOM");
        /* A fetch of a stored key is served from Redis. */
        void *val = NULL;
        size_t len = 0;
        rk_cache_fetch_info info;
        assert_int_equal(rk_cache_fetch(h.cache, "there", compute, NULL, NULL, &val, &len, &info), RK_OK);
        assert_int_equal(len, 6);
        rk_free(val);
        assert_false(info.computed);
    }
    char *v = NULL;
    assert_int_equal(rk_cache_get_str(h.cache, "missing", &v), RK_MISS); /* nothing stored */
    rk_cache_metrics m;
    assert_int_equal(rk_cache_metrics_get(h.cache, &m), RK_OK);
    assert_true(m.store_errors >= ROUNDS);
    assert_int_equal(rk_client_circuit(h.client), RK_CIRCUIT_CLOSED);
    close_handles(&h);
    rk_test_server_stop(s);
}

/* A replica with its master up serves reads and refuses writes
 * (READONLY): a fetch computes, serves flagged, stores nothing. */
static void test_readonly_replica(void **state)
{
    (void)state;
    rk_test_server *master = rk_test_server_start(NULL);
    assert_non_null(master);
    char port[16];
    snprintf(port, sizeof port, "%d", rk_test_server_port(master));
    const char *args[] = {"--replicaof", "127.0.0.1", port, NULL};
    rk_test_server *replica = rk_test_server_start(args);
    assert_non_null(replica);
    handles h = open_handles(replica);
    expect_computed_degraded(&h, "missing", "READONLY");
    char *v = NULL;
    assert_int_equal(rk_cache_get_str(h.cache, "missing", &v), RK_MISS); /* nothing stored */
    assert_int_equal(rk_client_circuit(h.client), RK_CIRCUIT_CLOSED);
    close_handles(&h);
    rk_test_server_stop(replica);
    rk_test_server_stop(master);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_script),
        cmocka_unit_test(test_loading),
        cmocka_unit_test(test_masterdown),
        cmocka_unit_test(test_clusterdown),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_readonly_replica),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
