/*
 * health_test.c — the reconnect schedule and circuit breaker as a pure
 * state machine, driven with a made-up clock: no server, no sleeping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "health.h"

#define MS 1000000LL

static void test_backoff_envelope(void **state)
{
    (void)state;
    /* The largest random value gives the envelope: base * 2^(n-1), capped. */
    const int want[] = {50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    for (int n = 1; n <= 10; n++) {
        assert_int_equal(rk__backoff_ms(50, 5000, n, (uint64_t)want[n - 1]), want[n - 1]);
        assert_int_equal(rk__backoff_ms(50, 5000, n, (uint64_t)want[n - 1] + 1), 0); /* wraps: never above */
        assert_int_equal(rk__backoff_ms(50, 5000, n, 0), 0); /* full jitter reaches 0 */
    }
    /* Huge attempt numbers do not overflow. */
    assert_int_equal(rk__backoff_ms(50, 5000, 1000000, (uint64_t)5000), 5000);
}

/* Recorded delays: within the growing envelope, jittered, and capped. */
static void test_schedule_grows_and_jitters(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 50, 5000, -1, 42);
    rk__events ev = {0};
    int64_t now = 1000 * MS;
    int delays[40], distinct = 0;
    for (int i = 0; i < 40; i++) {
        ev.n = 0;
        rk__health_connect_failed(&h, now, RK_ERR_UNAVAILABLE, false, &ev);
        assert_int_equal(ev.n, 1);
        assert_int_equal(ev.ev[0].type, RK_EVENT_RECONNECT_SCHEDULED);
        assert_int_equal(ev.ev[0].attempt, i + 1);
        delays[i] = ev.ev[0].delay_ms;
        int cap = 50;
        for (int k = 1; k <= i && cap < 5000; k++) cap *= 2;
        if (cap > 5000) cap = 5000;
        assert_in_range(delays[i], 0, cap);
        assert_true(h.retry_at_ns == now + (int64_t)delays[i] * MS);
        for (int j = 0; j < i; j++)
            if (delays[j] == delays[i]) goto seen;
        distinct++;
    seen:;
    }
    assert_true(distinct > 20); /* jittered, not all equal */
    /* Late attempts use the whole capped range: some delay exceeds what
     * the first attempts could ever wait. */
    int late_max = 0;
    for (int i = 20; i < 40; i++) late_max = delays[i] > late_max ? delays[i] : late_max;
    assert_true(late_max > 200);
    /* Success resets the schedule. */
    rk__health_connected(&h, false, &ev);
    assert_int_equal(h.attempt, 0);
    ev.n = 0;
    rk__health_connect_failed(&h, now, RK_ERR_UNAVAILABLE, false, &ev);
    assert_in_range(ev.ev[0].delay_ms, 0, 50);
}

static void test_one_attempt_at_a_time(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 100, 1000, -1, 7);
    int64_t now = 0, until = 0;
    /* Healthy: everyone connects. */
    assert_int_equal(rk__health_may_connect(&h, now, now + 500 * MS, false, &until), RK__GO);
    rk__health_connect_failed(&h, now, RK_ERR_UNAVAILABLE, false, NULL);
    int64_t retry = h.retry_at_ns;
    /* Before the retry time: wait if it fits the deadline, else fail fast. */
    if (retry > now) {
        assert_int_equal(rk__health_may_connect(&h, now, retry - 1, false, &until), RK__FAIL);
        assert_int_equal(rk__health_may_connect(&h, now, retry + 1, false, &until), RK__WAIT);
        assert_true(until == retry);
    }
    /* At the retry time one caller gets the attempt, the others wait. */
    now = retry;
    assert_int_equal(rk__health_may_connect(&h, now, now + 500 * MS, false, &until), RK__PROBE);
    assert_int_equal(rk__health_may_connect(&h, now, now + 500 * MS, false, &until), RK__WAIT);
    rk__health_connected(&h, true, NULL);
    assert_false(h.probing);
    assert_int_equal(rk__health_may_connect(&h, now, now + 500 * MS, false, &until), RK__GO);
}

static void test_circuit_opens_probes_and_closes(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 100, 1000, 3, 9);
    rk__events ev = {0};
    int64_t now = 0;
    /* Two failures: still closed. Server errors reset the count. */
    rk__health_request_done(&h, now, RK_ERR_TIMEOUT, true, false, &ev);
    rk__health_request_done(&h, now, RK_ERR_TIMEOUT, true, false, &ev);
    rk__health_request_done(&h, now, RK_ERR_SERVER, false, false, &ev);
    assert_int_equal(h.failures, 0);
    assert_int_equal(h.circuit, RK_CIRCUIT_CLOSED);
    for (int i = 0; i < 3; i++) rk__health_request_done(&h, now, RK_ERR_TIMEOUT, true, false, &ev);
    assert_int_equal(h.circuit, RK_CIRCUIT_OPEN);
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.ev[0].type, RK_EVENT_CIRCUIT_OPEN);
    assert_int_equal(h.opened, 1);

    /* Open: fail fast until the probe time. */
    ev.n = 0;
    int64_t probe_at = h.retry_at_ns;
    assert_int_equal(rk__health_enter(&h, probe_at - 1, &ev), RK__FAIL);
    assert_non_null(strstr(rk_last_error(), "circuit open"));
    /* Then exactly one probe. */
    now = probe_at;
    assert_int_equal(rk__health_enter(&h, now, &ev), RK__PROBE);
    assert_int_equal(h.circuit, RK_CIRCUIT_HALF_OPEN);
    assert_int_equal(rk__health_enter(&h, now, &ev), RK__FAIL);
    /* The probe fails: open again, with a later probe time. */
    rk__health_request_done(&h, now, RK_ERR_TIMEOUT, true, true, &ev);
    assert_int_equal(h.circuit, RK_CIRCUIT_OPEN);
    assert_true(h.retry_at_ns >= now);
    /* Next probe succeeds: closed, schedule reset. */
    now = h.retry_at_ns;
    int attempt = h.attempt;
    assert_true(attempt >= 2);
    assert_int_equal(rk__health_enter(&h, now, &ev), RK__PROBE);
    rk__health_connected(&h, true, &ev);
    assert_true(h.probing); /* still the probe until its request is done */
    assert_int_equal(h.attempt, attempt); /* a connect alone proves nothing */
    rk__health_request_done(&h, now, RK_OK, false, true, &ev);
    assert_int_equal(h.circuit, RK_CIRCUIT_CLOSED);
    assert_int_equal(h.closed, 1);
    assert_int_equal(h.attempt, 0);
    assert_int_equal(rk__health_enter(&h, now, &ev), RK__GO);
}

static void test_failed_connects_open_the_circuit(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 10, 100, 2, 3);
    rk__events ev = {0};
    /* Local failures say nothing about the server: no count, no schedule. */
    rk__health_connect_failed(&h, 0, RK_ERR_NOMEM, false, &ev);
    rk__health_connect_failed(&h, 0, RK_ERR_SYSTEM, false, &ev);
    assert_int_equal(h.failures, 0);
    assert_int_equal(h.attempt, 0);
    assert_int_equal(ev.n, 0);
    rk__health_connect_failed(&h, 0, RK_ERR_UNAVAILABLE, false, &ev);
    assert_int_equal(h.circuit, RK_CIRCUIT_CLOSED);
    rk__health_connect_failed(&h, 0, RK_ERR_UNAVAILABLE, false, &ev);
    assert_int_equal(h.circuit, RK_CIRCUIT_OPEN);
    /* A half-open probe whose connect fails re-opens it. */
    int64_t now = h.retry_at_ns;
    assert_int_equal(rk__health_enter(&h, now, &ev), RK__PROBE);
    rk__health_connect_failed(&h, now, RK_ERR_UNAVAILABLE, true, &ev);
    assert_int_equal(h.circuit, RK_CIRCUIT_OPEN);
    assert_false(h.probing);
    /* A probe that gave up before trying lets the next caller probe. */
    now = h.retry_at_ns;
    assert_int_equal(rk__health_enter(&h, now, &ev), RK__PROBE);
    rk__health_cancel_probe(&h, true);
    assert_int_equal(rk__health_enter(&h, now, &ev), RK__PROBE);
}

static void test_breaker_disabled(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 10, 100, -1, 3);
    for (int i = 0; i < 100; i++) rk__health_request_done(&h, 0, RK_ERR_TIMEOUT, true, false, NULL);
    assert_int_equal(h.circuit, RK_CIRCUIT_CLOSED);
    assert_int_equal(rk__health_enter(&h, 0, NULL), RK__GO);
}

/* One event, one failure: connections open when a failure was counted
 * fail with it and are not counted again; one opened after it counts. */
static void test_one_event_one_failure(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 10, 100, 3, 5);
    /* Eight connections opened at 1..8 ms, all dropped at 100 ms. */
    int counted = 0;
    for (int i = 1; i <= 8; i++)
        if (rk__health_new_failure(&h, (100 + i) * MS, i * MS)) {
            rk__health_request_done(&h, (100 + i) * MS, RK_ERR_UNAVAILABLE, true, false, NULL);
            counted++;
        }
    assert_int_equal(counted, 1);
    assert_int_equal(h.failures, 1);
    assert_int_equal(h.circuit, RK_CIRCUIT_CLOSED);
    /* A connection opened after that failure is a new event... */
    assert_true(rk__health_new_failure(&h, 300 * MS, 200 * MS));
    /* ...and one opened exactly when it was counted is not. */
    assert_false(rk__health_new_failure(&h, 400 * MS, 300 * MS));
    /* Unknown open time: always counted. */
    assert_true(rk__health_new_failure(&h, 500 * MS, 0));
    assert_true(rk__health_new_failure(&h, 500 * MS, 0));
}

/* Connect attempts made together (a pool filling up against a server at
 * maxclients) are one event too: only the first failure counts, as the
 * client's open_slot() asks with each attempt's start time. */
static void test_concurrent_connect_attempts_one_event(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 10, 100, 5, 5);
    rk__events ev = {0};
    /* Eight attempts started at 0..7 ms, refused at 10..17 ms. */
    for (int i = 0; i < 8; i++)
        if (rk__health_new_failure(&h, (10 + i) * MS, i * MS))
            rk__health_connect_failed(&h, (10 + i) * MS, RK_ERR_UNAVAILABLE, false, &ev);
    assert_int_equal(h.failures, 1);
    assert_int_equal(h.attempt, 1);
    assert_int_equal(h.circuit, RK_CIRCUIT_CLOSED);
}

/* Repeated kills, each after fresh connections served a request: the
 * count never builds up, the breaker stays closed. */
static void test_kills_between_successes_keep_it_closed(void **state)
{
    (void)state;
    rk__health h;
    rk__health_init(&h, 10, 100, 2, 5);
    int64_t t = 0;
    for (int kill = 0; kill < 50; kill++) {
        int64_t opened = t + 1 * MS;     /* reconnected */
        t += 100 * MS;                   /* killed */
        for (int conn = 0; conn < 8; conn++)
            if (rk__health_new_failure(&h, t + conn, opened + conn))
                rk__health_request_done(&h, t + conn, RK_ERR_UNAVAILABLE, true, false, NULL);
        rk__health_request_done(&h, t + 50 * MS, RK_OK, false, false, NULL); /* served again */
    }
    assert_int_equal(h.circuit, RK_CIRCUIT_CLOSED);
    assert_int_equal(h.opened, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_envelope),
        cmocka_unit_test(test_schedule_grows_and_jitters),
        cmocka_unit_test(test_one_attempt_at_a_time),
        cmocka_unit_test(test_circuit_opens_probes_and_closes),
        cmocka_unit_test(test_failed_connects_open_the_circuit),
        cmocka_unit_test(test_breaker_disabled),
        cmocka_unit_test(test_one_event_one_failure),
        cmocka_unit_test(test_concurrent_connect_attempts_one_event),
        cmocka_unit_test(test_kills_between_successes_keep_it_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
