/*
 * health.c — reconnect schedule and circuit breaker (see health.h).
 *
 * One schedule serves both: after a failed connect attempt the next one
 * waits a full-jitter backoff delay, and while the circuit is open the
 * same delay is its cool-down before the half-open probe. Only one attempt
 * runs at a time once something has failed, so a pool of many connections
 * reconnects through one probe instead of a burst against a server that is
 * just coming back — and because the delay is random, many clients that
 * lost the same server spread out too.
 *
 * Transport failures (a connect that failed, a request that timed out or
 * lost its connection) count towards the breaker; a server's error reply
 * is a success of the transport and resets the count.
 */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"
#include "health.h"
#include "rand.h"

void rk__health_init(rk__health *h, int base_ms, int max_ms, int threshold, uint64_t seed)
{
    *h = (rk__health){.base_ms = base_ms, .max_ms = max_ms, .threshold = threshold,
                      .rng = seed ? seed : 0x9E3779B97F4A7C15u};
}

/* Jitter needs spread, not secrecy. */
static uint64_t next_rand(rk__health *h) { return rk__splitmix64(&h->rng); }

int rk__backoff_ms(int base_ms, int max_ms, int attempt, uint64_t rand)
{
    int64_t cap = base_ms;
    for (int i = 1; i < attempt && cap < max_ms; i++) cap *= 2;
    if (cap > max_ms) cap = max_ms;
    return (int)(rand % (uint64_t)(cap + 1));
}

void rk__events_add(rk__events *ev, rk_event_type type, rk_status st, int attempt, int delay_ms,
                    const char *fmt, ...)
{
    if (!ev || ev->n >= RK__EVENTS_MAX) return;
    int i = ev->n++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->msg[i], sizeof ev->msg[i], fmt, ap);
    va_end(ap);
    ev->ev[i] = (rk_event){.type = type, .status = st, .attempt = attempt, .delay_ms = delay_ms,
                           .message = ev->msg[i]};
}

static int64_t ms_until(int64_t then_ns, int64_t now_ns) { return (then_ns - now_ns + 999999) / 1000000; }

/* Schedule the next attempt after one more failure. */
static int schedule(rk__health *h, int64_t now_ns)
{
    h->attempt++;
    int delay = rk__backoff_ms(h->base_ms, h->max_ms, h->attempt, next_rand(h));
    h->retry_at_ns = now_ns + (int64_t)delay * 1000000;
    return delay;
}

static void open_circuit(rk__health *h, rk_status st, int delay, rk__events *ev)
{
    h->probing = false;
    if (h->circuit == RK_CIRCUIT_OPEN) return;
    h->circuit = RK_CIRCUIT_OPEN;
    h->opened++;
    rk__events_add(ev, RK_EVENT_CIRCUIT_OPEN, st, h->attempt, delay,
                   "circuit open after %d consecutive failures: failing fast, next probe in %d ms", h->failures,
                   delay);
}

static bool over_threshold(const rk__health *h)
{
    return h->threshold > 0 && h->failures >= h->threshold;
}

rk__gate rk__health_enter(rk__health *h, int64_t now_ns, rk__events *ev)
{
    if (h->circuit == RK_CIRCUIT_CLOSED) return RK__GO;
    if (h->circuit == RK_CIRCUIT_OPEN) {
        if (now_ns < h->retry_at_ns) {
            rk__fail(RK_ERR_UNAVAILABLE, "circuit open: failing fast, next probe in %lld ms",
                     (long long)ms_until(h->retry_at_ns, now_ns));
            return RK__FAIL;
        }
        h->circuit = RK_CIRCUIT_HALF_OPEN;
        h->probing = false;
        rk__events_add(ev, RK_EVENT_CIRCUIT_HALF_OPEN, RK_OK, h->attempt, 0,
                       "circuit half-open: letting one probe through");
    }
    if (h->probing) {
        rk__fail(RK_ERR_UNAVAILABLE, "circuit half-open: failing fast while a probe is in flight");
        return RK__FAIL;
    }
    h->probing = true;
    return RK__PROBE;
}

rk__gate rk__health_may_connect(rk__health *h, int64_t now_ns, int64_t deadline_ns, bool probe,
                                int64_t *until_ns)
{
    if (h->attempt == 0 || probe) return RK__GO;
    if (h->probing) { /* another caller is connecting: wait to be woken */
        *until_ns = deadline_ns;
        return RK__WAIT;
    }
    if (now_ns < h->retry_at_ns) {
        if (h->retry_at_ns > deadline_ns) {
            rk__fail(RK_ERR_UNAVAILABLE, "reconnecting: next attempt in %lld ms, after this call's deadline",
                     (long long)ms_until(h->retry_at_ns, now_ns));
            return RK__FAIL;
        }
        *until_ns = h->retry_at_ns;
        return RK__WAIT;
    }
    h->probing = true;
    return RK__PROBE;
}

bool rk__transport_failure(rk_status st)
{
    return st == RK_ERR_TIMEOUT || st == RK_ERR_UNAVAILABLE || st == RK_ERR_PROTOCOL;
}

void rk__health_connect_failed(rk__health *h, int64_t now_ns, rk_status st, bool probe, rk__events *ev)
{
    /* A refused handshake (AUTH, TLS, SELECT) is the server's answer too:
     * retrying it at full speed would only hammer it. */
    if (!rk__transport_failure(st) && st != RK_ERR_AUTH && st != RK_ERR_TLS && st != RK_ERR_SERVER) {
        rk__health_cancel_probe(h, probe);
        return;
    }
    h->failures++;
    int delay = schedule(h, now_ns);
    if (probe) h->probing = false;
    rk__events_add(ev, RK_EVENT_RECONNECT_SCHEDULED, st, h->attempt, delay,
                   "connect attempt %d failed (%s); next attempt in %d ms", h->attempt, rk_strerror(st), delay);
    if ((h->circuit == RK_CIRCUIT_HALF_OPEN && probe) || (h->circuit == RK_CIRCUIT_CLOSED && over_threshold(h)))
        open_circuit(h, st, delay, ev);
}

void rk__health_connected(rk__health *h, bool probe, rk__events *ev)
{
    /* A half-open probe is not done when it has connected: a server that
     * accepts connections but never answers (paused, or hung) would
     * otherwise reset the schedule on every probe and never back off. The
     * probe's request decides, in rk__health_request_done(). */
    if (probe && h->circuit == RK_CIRCUIT_HALF_OPEN) return;
    rk__events_add(ev, RK_EVENT_CONNECTED, RK_OK, h->attempt, 0,
                   h->attempt ? "reconnected after %d failed attempts" : "connected", h->attempt);
    h->attempt = 0;
    if (probe) h->probing = false;
}

void rk__health_request_done(rk__health *h, int64_t now_ns, rk_status st, bool transport_failed, bool probe,
                             rk__events *ev)
{
    if (transport_failed) {
        h->failures++;
        if ((h->circuit == RK_CIRCUIT_HALF_OPEN && probe) ||
            (h->circuit == RK_CIRCUIT_CLOSED && over_threshold(h)))
            open_circuit(h, st, schedule(h, now_ns), ev);
        return;
    }
    h->failures = 0;
    if (h->circuit == RK_CIRCUIT_HALF_OPEN && probe) {
        h->circuit = RK_CIRCUIT_CLOSED;
        h->closed++;
        h->attempt = 0;
        h->probing = false;
        rk__events_add(ev, RK_EVENT_CIRCUIT_CLOSED, RK_OK, 0, 0, "circuit closed: the probe succeeded");
    }
}

bool rk__health_new_failure(rk__health *h, int64_t now_ns, int64_t conn_opened_ns)
{
    if (conn_opened_ns != 0 && conn_opened_ns <= h->counted_ns) return false;
    h->counted_ns = now_ns;
    return true;
}

void rk__health_cancel_probe(rk__health *h, bool probe)
{
    if (probe) h->probing = false;
}
