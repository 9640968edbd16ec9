/*
 * health.h — the client's view of whether Redis is reachable: the
 * reconnect schedule (exponential backoff with full jitter) and the
 * circuit breaker.
 *
 * A pure state machine: no locks, no clock, no I/O. The client calls it
 * under its pool lock and passes the time in, so the unit tests drive it
 * with made-up clocks instead of sleeping. What it decides is returned as
 * a gate; what happened is appended to an event queue that the client
 * delivers once it has released its lock.
 */
#ifndef RK_SRC_HEALTH_H
#define RK_SRC_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include <redkit/client.h>

#define RK__EVENTS_MAX 4

/* Events raised while the lock is held, delivered after it is released. */
typedef struct rk__events {
    int n;
    rk_event ev[RK__EVENTS_MAX];
    char msg[RK__EVENTS_MAX][200];
} rk__events;

typedef struct rk__health {
    int base_ms, max_ms;     /* reconnect schedule */
    int threshold;           /* failures that open the circuit; <= 0: never */
    int failures;            /* consecutive transport failures */
    int attempt;             /* consecutive failed connect attempts */
    int64_t retry_at_ns;     /* no connect attempt (or probe) before this */
    bool probing;            /* the one allowed attempt is in flight */
    rk_circuit_state circuit;
    uint64_t rng;            /* jitter source */
    uint64_t opened, closed; /* circuit transitions, for stats */
    int64_t counted_ns;      /* when a connection's failure was last counted */
} rk__health;

typedef enum rk__gate {
    RK__GO,    /* proceed normally */
    RK__PROBE, /* proceed as the single probe: report the outcome with probe=true */
    RK__WAIT,  /* wait (until *until, or for a wake-up) and ask again */
    RK__FAIL   /* fail fast: RK_ERR_UNAVAILABLE; rk_last_error() is set */
} rk__gate;

void rk__health_init(rk__health *h, int base_ms, int max_ms, int threshold, uint64_t seed);

/* Full-jitter delay for the attempt-th consecutive failure (attempt >= 1):
 * a value in [0, min(max, base * 2^(attempt-1))] picked by rand. Pure. */
int rk__backoff_ms(int base_ms, int max_ms, int attempt, uint64_t rand);

/* May a call use the pool at all? OPEN fails fast until the probe time,
 * then turns HALF_OPEN and lets exactly one caller through as the probe. */
rk__gate rk__health_enter(rk__health *h, int64_t now_ns, rk__events *ev);

/* May a call open a new connection? After failures only one attempt runs
 * at a time, and not before the scheduled time: a call whose deadline
 * falls before that time fails fast, others wait until *until_ns. The
 * half-open probe (probe = true) always may. */
rk__gate rk__health_may_connect(rk__health *h, int64_t now_ns, int64_t deadline_ns, bool probe,
                                int64_t *until_ns);

/* Did st come from the server or the network (a timeout, a lost or
 * refused connection, garbage on the wire)? Only such failures move the
 * schedule and the breaker. */
bool rk__transport_failure(rk_status st);

/* A connect attempt failed with st / succeeded. A failure that says
 * nothing about the server (out of memory, out of file descriptors) only
 * gives up the probe. */
void rk__health_connect_failed(rk__health *h, int64_t now_ns, rk_status st, bool probe, rk__events *ev);
void rk__health_connected(rk__health *h, bool probe, rk__events *ev);

/* A request finished: transport_failed = it timed out or lost its
 * connection (server error replies are successes of the transport). */
void rk__health_request_done(rk__health *h, int64_t now_ns, rk_status st, bool transport_failed, bool probe,
                             rk__events *ev);

/* A connection that was open at conn_opened_ns failed: is that a new
 * event for the breaker? One dropped connection with many calls in
 * flight, or one server-side kill of every connection, is one failure,
 * however many calls and connections it failed: a connection opened
 * before the last counted failure was already open when that failure
 * happened, and its own failure is taken for the same event (false). A
 * new event is marked counted at now_ns (true). conn_opened_ns 0: not
 * known, always new. */
bool rk__health_new_failure(rk__health *h, int64_t now_ns, int64_t conn_opened_ns);

/* Give up a probe that never ran (its caller timed out waiting). */
void rk__health_cancel_probe(rk__health *h, bool probe);

/* Append an event (message formatted like printf). */
void rk__events_add(rk__events *ev, rk_event_type type, rk_status st, int attempt, int delay_ms,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
