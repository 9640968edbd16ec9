/*
 * fault_test.c — the client against a dying, pausing and misbehaving
 * redis-server: kill -9 and restart under load, SIGSTOP, a blackholing,
 * resetting, truncating and slicing proxy, a password change, DEBUG SLEEP
 * and CLIENT PAUSE.
 *
 * Assertions on time are upper bounds only (a call must end by its
 * deadline plus a margin); how fast things are lives in bench/.
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

#include <redkit/redkit.h>

#include "support/capture.h"
#include "support/clock.h"
#include "support/fault_proxy.h"
#include "support/fixture.h"
#include "support/loader.h"
#include "support/redis_server.h"

/* Slack over a call's deadline: scheduling on a loaded 2-core machine and
 * sanitizer builds, never the client's own waiting. */
#define MARGIN_MS 400

static rk_client *new_client(const char *url, const rk_client_options *extra)
{
    rk_client_options o = extra ? *extra : (rk_client_options){0};
    o.url = url;
    return rk_test_client_new(&o);
}

static char *url_for_port(char *buf, size_t cap, int port)
{
    snprintf(buf, cap, "redis://127.0.0.1:%d", port);
    return buf;
}

/* ---- kill -9 and restart under load ------------------------------------ */

static void test_kill9_and_restart_under_load(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    const int command_ms = 200, connect_ms = 200;
    rk_client *c = new_client(rk_test_server_url(s), &(rk_client_options){
        .pool_size = 4, .command_timeout_ms = command_ms, .connect_timeout_ms = connect_ms,
        .reconnect_base_ms = 20, .reconnect_max_ms = 200});
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);

    char val[100];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    /* No call outlives its deadline: command, plus connect if it had to
     * open a connection. */
    rk_test_kill_restart_under_load(s, cache, val, command_ms + connect_ms + MARGIN_MS);

    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    assert_true(st.disconnects > 0);
    assert_true(st.reconnects > 0);
    assert_int_equal(st.circuit, RK_CIRCUIT_CLOSED);
    assert_int_equal(rk_cache_set_str(cache, "after", "ok", NULL), RK_OK);
    rk_cache_free(cache);
    rk_client_free(c);
    rk_test_server_stop(s);
}

/* ---- a paused server or a blackhole: timeouts, then the circuit -------- */

static void check_circuit_cycle(rk_client *c, rk_test_events *rec, void (*heal)(void *), void *heal_arg)
{
    /* Each call ends by its deadline; three failures open the circuit.
     * The first call's timeout is one; reconnecting, each connect attempt
     * (its handshake round trip times out) is one more, and a call whose
     * deadline falls before the next attempt's time fails fast without
     * counting: calls go on, 20 ms apart, until the circuit opens (the
     * backoff here is 200..400 ms: within a few seconds). */
    int64_t give_up = rk_test_now_ms() + 5000;
    for (int i = 0; i < 250 && rk_client_circuit(c) != RK_CIRCUIT_OPEN && rk_test_now_ms() < give_up; i++) {
        int64_t t0 = rk_test_now_ms();
        rk_status st = rk_client_ping(c);
        assert_true(st == RK_ERR_TIMEOUT || st == RK_ERR_UNAVAILABLE);
        assert_true(rk_test_now_ms() - t0 <= 150 + 150 + MARGIN_MS);
        rk_test_sleep_ms(20);
    }
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_OPEN);
    assert_true(rk_test_events_count(rec, RK_EVENT_CIRCUIT_OPEN) >= 1);
    /* Open: calls fail fast without the network. The cool-down is drawn
     * with full jitter, so it may be short enough to end during the loop:
     * the half-open probe then meets the fault again (a timeout) and
     * reopens the circuit with a longer envelope. Count the fast failures
     * until there are 100, allowing a few probes. */
    rk_client_stats before, after;
    rk_client_stats_get(c, &before);
    int fast = 0, probes = 0;
    for (int i = 0; i < 200 && fast < 100; i++) {
        int64_t t0 = rk_test_now_ms();
        rk_status st = rk_client_ping(c);
        if (st == RK_ERR_UNAVAILABLE) {
            fast++;
            assert_true(rk_test_now_ms() - t0 <= MARGIN_MS);
        } else {
            assert_int_equal(st, RK_ERR_TIMEOUT); /* a probe, bounded by its deadline */
            assert_true(rk_test_now_ms() - t0 <= 150 + 150 + MARGIN_MS);
            probes++;
        }
    }
    assert_int_equal(fast, 100);
    assert_true(probes <= 5);
    rk_client_stats_get(c, &after);
    assert_true(after.fast_failed >= before.fast_failed + 100);
    assert_true(after.connects <= before.connects + (uint64_t)probes);

    heal(heal_arg);
    assert_true(rk_test_client_recovers(c, 5000));
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_CLOSED);
    assert_true(rk_test_events_count(rec, RK_EVENT_CIRCUIT_HALF_OPEN) >= 1);
    assert_true(rk_test_events_count(rec, RK_EVENT_CIRCUIT_CLOSED) >= 1);
}

/* A client whose circuit opens after three failed 150 ms calls and
 * probes again 200..400 ms later, with its events recorded. */
static rk_client *circuit_client(const char *url, rk_test_events *rec)
{
    return new_client(url, &(rk_client_options){
        .command_timeout_ms = 150, .connect_timeout_ms = 150, .breaker_threshold = 3,
        .reconnect_base_ms = 200, .reconnect_max_ms = 400, .on_event = rk_test_events_record, .event_user = rec});
}

static void sigcont(void *s) { assert_true(rk_test_server_signal(s, SIGCONT)); }

static void test_sigstop_opens_and_probe_closes_circuit(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_test_events rec = RK_TEST_EVENTS_INIT;
    rk_client *c = circuit_client(rk_test_server_url(s), &rec);
    assert_int_equal(rk_client_ping(c), RK_OK);
    assert_true(rk_test_server_signal(s, SIGSTOP));
    check_circuit_cycle(c, &rec, sigcont, s);
    rk_client_free(c);
    rk_test_server_stop(s);
}

static void pass(void *p) { rk_fault_proxy_set(p, RK_FAULT_PASS, 0); }

static void test_blackhole_opens_and_probe_closes_circuit(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_fault_proxy *p = rk_fault_proxy_start(rk_test_server_port(s));
    assert_non_null(p);
    char url[64];
    rk_test_events rec = RK_TEST_EVENTS_INIT;
    rk_client *c = circuit_client(url_for_port(url, sizeof url, rk_fault_proxy_port(p)), &rec);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_fault_proxy_set(p, RK_FAULT_BLACKHOLE, 0);
    check_circuit_cycle(c, &rec, pass, p);
    rk_client_free(c);
    rk_fault_proxy_stop(p);
    rk_test_server_stop(s);
}

/* ---- the reconnect schedule, seen from outside ------------------------- */

static void test_backoff_grows_jitters_and_resets(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_test_events rec = RK_TEST_EVENTS_INIT;
    /* Breaker off, and a deadline long enough to wait out each delay, so
     * every ping makes exactly one connect attempt. */
    rk_client *c = new_client(rk_test_server_url(s), &(rk_client_options){
        .command_timeout_ms = 3000, .connect_timeout_ms = 200, .breaker_threshold = -1,
        .reconnect_base_ms = 10, .reconnect_max_ms = 80, .on_event = rk_test_events_record, .event_user = &rec});
    assert_int_equal(rk_client_ping(c), RK_OK);
    assert_true(rk_test_server_signal(s, SIGKILL));

    for (int i = 0; i < 14; i++) assert_int_equal(rk_client_ping(c), RK_ERR_UNAVAILABLE);
    int delays[32], n = 0;
    pthread_mutex_lock(&rec.lock);
    for (int i = 0; i < rec.n && n < 32; i++) {
        if (rec.ev[i].type != RK_EVENT_RECONNECT_SCHEDULED) continue;
        assert_int_equal(rec.ev[i].attempt, n + 1); /* consecutive attempts */
        int cap = 10;
        for (int k = 1; k <= n && cap < 80; k++) cap *= 2;
        if (cap > 80) cap = 80;
        assert_in_range(rec.ev[i].delay_ms, 0, cap); /* inside the growing envelope */
        delays[n++] = rec.ev[i].delay_ms;
    }
    pthread_mutex_unlock(&rec.lock);
    assert_true(n >= 14);
    int distinct = 0, late_max = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++) seen = seen || delays[j] == delays[i];
        distinct += !seen;
        if (i >= 4 && delays[i] > late_max) late_max = delays[i];
    }
    assert_true(distinct >= 5);  /* jittered */
    assert_true(late_max > 10);  /* grew past the base */

    /* Back up: it reconnects, and the schedule starts again from the base. */
    assert_true(rk_test_server_restart(s, NULL));
    assert_true(rk_test_client_recovers(c, 5000));
    assert_true(rk_test_events_count(&rec, RK_EVENT_CONNECTED) >= 1);
    int before = rec.n;
    assert_true(rk_test_server_signal(s, SIGKILL));
    assert_int_equal(rk_client_ping(c), RK_ERR_UNAVAILABLE);
    assert_int_equal(rk_client_ping(c), RK_ERR_UNAVAILABLE);
    bool found = false;
    pthread_mutex_lock(&rec.lock);
    for (int i = before; i < rec.n && !found; i++) {
        if (rec.ev[i].type != RK_EVENT_RECONNECT_SCHEDULED) continue;
        assert_int_equal(rec.ev[i].attempt, 1);
        assert_in_range(rec.ev[i].delay_ms, 0, 10);
        found = true;
    }
    pthread_mutex_unlock(&rec.lock);
    assert_true(found);
    rk_client_free(c);
    rk_test_server_stop(s);
}

/* ---- a write that timed out is not sent again -------------------------- */

static long long server_counter(rk_test_server *s)
{
    redisReply *r = rk_test_server_command(s, "GET counter");
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static void test_timed_out_write_is_not_resent(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_fault_proxy *p = rk_fault_proxy_start(rk_test_server_port(s));
    assert_non_null(p);
    char url[64];
    rk_client *c = new_client(url_for_port(url, sizeof url, rk_fault_proxy_port(p)),
                              &(rk_client_options){.command_timeout_ms = 100, .breaker_threshold = -1});
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    assert_int_equal(rk_client_ping(c), RK_OK);

    rk_fault_proxy_set(p, RK_FAULT_LATENCY, 300);
    const char *incr[] = {"INCR", "counter"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 2, incr, NULL, &r), RK_ERR_TIMEOUT);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", NULL), RK_ERR_TIMEOUT);

    /* The delayed commands do arrive, once each. */
    for (int i = 0; i < 60 && server_counter(s) == 0; i++) rk_test_sleep_ms(50);
    for (int i = 0; i < 60 && rk_test_server_command_calls(s, "set") == 0; i++) rk_test_sleep_ms(50);
    rk_test_sleep_ms(500);
    assert_int_equal(server_counter(s), 1);
    assert_int_equal(rk_test_server_command_calls(s, "set"), 1);

    /* And the client carries on once the network is fast again. */
    rk_test_proxy_heal(p, c, 3000);
    assert_int_equal(rk_client_command(c, 2, incr, NULL, &r), RK_OK);
    assert_int_equal(r->integer, 2);
    rk_reply_free(r);
    rk_cache_free(cache);
    rk_client_free(c);
    rk_fault_proxy_stop(p);
    rk_test_server_stop(s);
}

/* ---- replies cut into pieces, connections reset or truncated ----------- */

static void test_sliced_resets_and_truncated_replies(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_fault_proxy *p = rk_fault_proxy_start(rk_test_server_port(s));
    assert_non_null(p);
    char url[64];
    rk_client *c = new_client(url_for_port(url, sizeof url, rk_fault_proxy_port(p)),
                              &(rk_client_options){.command_timeout_ms = 5000, .breaker_threshold = -1});
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    char big[3000];
    for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('a' + i % 26);
    big[sizeof big - 1] = '\0';
    assert_int_equal(rk_cache_set_str(cache, "big", big, NULL), RK_OK);
    const char *hset[] = {"HSET", "h", "a", "1", "b", "2", "c", "3", "d", "4"};
    rk_reply *r;
    assert_int_equal(rk_client_command(c, 10, hset, NULL, &r), RK_OK);
    rk_reply_free(r);

    /* Every reply arrives one byte at a time: still parsed whole. */
    rk_fault_proxy_set(p, RK_FAULT_SLICE, 0);
    rk_test_assert_cached(cache, "big", big);
    char *got = NULL;
    const char *hgetall[] = {"HGETALL", "h"};
    assert_int_equal(rk_client_command(c, 2, hgetall, NULL, &r), RK_OK);
    assert_int_equal(r->elements, 8);
    rk_reply_free(r);
    assert_int_equal(rk_cache_get_str(cache, "absent", &got), RK_MISS);

    /* Reset: the call fails at once, nothing hangs; then it recovers. */
    rk_fault_proxy_set(p, RK_FAULT_RESET, 0);
    const char *get[] = {"GET", "cache:big"};
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_ERR_UNAVAILABLE);
    rk_test_proxy_heal(p, c, 3000);

    /* The reply is cut short: an error, never a half value. */
    rk_fault_proxy_set(p, RK_FAULT_CLOSE_AFTER, 10);
    r = NULL;
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_ERR_UNAVAILABLE);
    assert_null(r);
    got = NULL;
    assert_int_equal(rk_cache_get_str(cache, "big", &got), RK_DEGRADED);
    assert_null(got);
    rk_test_proxy_heal(p, c, 3000);
    rk_test_assert_cached(cache, "big", big);
    rk_cache_free(cache);
    rk_client_free(c);
    rk_fault_proxy_stop(p);
    rk_test_server_stop(s);
}

/* ---- the server restarts with another password -------------------------- */

static void test_restart_with_new_password(void **state)
{
    (void)state;
    const char *first[] = {"--requirepass", "first-pass", NULL};
    const char *second[] = {"--requirepass", "second-pass", NULL};
    rk_test_server *s = rk_test_server_start(first);
    assert_non_null(s);
    char url[128];
    snprintf(url, sizeof url, "redis://:first-pass@127.0.0.1:%d", rk_test_server_port(s));
    rk_client *c = new_client(url, &(rk_client_options){.command_timeout_ms = 300, .reconnect_base_ms = 10,
                                                        .reconnect_max_ms = 50});
    assert_int_equal(rk_client_ping(c), RK_OK);
    assert_true(rk_test_server_restart(s, second));
    rk_status st = RK_OK;
    for (int i = 0; i < 50 && st != RK_ERR_AUTH; i++) {
        st = rk_client_ping(c);
        if (st != RK_ERR_AUTH) rk_test_sleep_ms(20);
    }
    assert_int_equal(st, RK_ERR_AUTH);
    assert_null(strstr(rk_last_error(), "first-pass"));
    assert_true(rk_test_server_restart(s, first));
    assert_true(rk_test_client_recovers(c, 5000));
    rk_client_free(c);
    rk_test_server_stop(s);
}

/* ---- a busy server: DEBUG SLEEP and CLIENT PAUSE ----------------------- */

static void *debug_sleep(void *s)
{
    redisReply *r = rk_test_server_command(s, "DEBUG SLEEP 0.6");
    if (r) freeReplyObject(r);
    return NULL;
}

static void test_busy_server(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_client *c = new_client(rk_test_server_url(s), &(rk_client_options){.command_timeout_ms = 150,
                                                                           .breaker_threshold = -1});
    assert_int_equal(rk_client_ping(c), RK_OK);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, debug_sleep, s), 0);
    rk_test_sleep_ms(100);
    int64_t t0 = rk_test_now_ms();
    assert_int_equal(rk_client_ping(c), RK_ERR_TIMEOUT);
    assert_true(rk_test_now_ms() - t0 <= 150 + MARGIN_MS);
    pthread_join(t, NULL);
    assert_true(rk_test_client_recovers(c, 3000));

    redisReply *r = rk_test_server_command(s, "CLIENT PAUSE 600");
    assert_non_null(r);
    freeReplyObject(r);
    t0 = rk_test_now_ms();
    const char *set[] = {"SET", "paused", "1"};
    rk_reply *reply = NULL;
    assert_int_equal(rk_client_command(c, 3, set, NULL, &reply), RK_ERR_TIMEOUT);
    assert_true(rk_test_now_ms() - t0 <= 150 + 150 + MARGIN_MS);
    assert_true(rk_test_client_recovers(c, 3000));
    rk_client_free(c);
    rk_test_server_stop(s);
}

/* ---- idle connections and the log ------------------------------------- */

static void test_idle_ping_and_log(void **state)
{
    (void)state;
    const char *args[] = {"--requirepass", "Log-Secret-99", NULL};
    rk_test_server *s = rk_test_server_start(args);
    assert_non_null(s);
    rk_test_server_set_admin_password(s, "Log-Secret-99");
    char url[128];
    snprintf(url, sizeof url, "redis://:Log-Secret-99@127.0.0.1:%d", rk_test_server_port(s));
    rk_test_log log = RK_TEST_LOG_INIT;
    rk_client *c = new_client(url, &(rk_client_options){
        .idle_ping_ms = 50, .command_timeout_ms = 300, .reconnect_base_ms = 10, .reconnect_max_ms = 50,
        .log = rk_test_log_capture, .log_user = &log, .log_level = RK_LOG_DEBUG});
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", NULL), RK_OK);
    long long pings = rk_test_server_command_calls(s, "ping");
    /* Used again at once: no PING. Idle past idle_ping_ms: one PING first. */
    char *v = NULL;
    assert_int_equal(rk_cache_get_str(cache, "k", &v), RK_OK);
    rk_free(v);
    assert_int_equal(rk_test_server_command_calls(s, "ping"), pings);
    rk_test_sleep_ms(120);
    assert_int_equal(rk_cache_get_str(cache, "k", &v), RK_OK);
    rk_free(v);
    assert_int_equal(rk_test_server_command_calls(s, "ping"), pings + 1);

    /* Through a kill and a restart, the log tells the story without the
     * password. */
    assert_true(rk_test_server_signal(s, SIGKILL));
    assert_int_equal(rk_cache_get_str(cache, "k", &v), RK_DEGRADED);
    assert_true(rk_test_server_restart(s, NULL));
    assert_true(rk_test_client_recovers(c, 5000));
    pthread_mutex_lock(&log.lock);
    assert_true(log.lines >= 3);
    assert_non_null(strstr(log.text, "connection closed"));
    assert_non_null(strstr(log.text, "reconnected"));
    assert_null(strstr(log.text, "Log-Secret-99"));
    pthread_mutex_unlock(&log.lock);
    rk_cache_free(cache);
    rk_client_free(c);
    rk_test_server_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_and_restart_under_load),
        cmocka_unit_test(test_sigstop_opens_and_probe_closes_circuit),
        cmocka_unit_test(test_blackhole_opens_and_probe_closes_circuit),
        cmocka_unit_test(test_backoff_grows_jitters_and_resets),
        cmocka_unit_test(test_timed_out_write_is_not_resent),
        cmocka_unit_test(test_sliced_resets_and_truncated_replies),
        cmocka_unit_test(test_restart_with_new_password),
        cmocka_unit_test(test_busy_server),
        cmocka_unit_test(test_idle_ping_and_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
