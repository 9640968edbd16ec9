/*
 * mux.h — a connection shared by many threads: commands combined into
 * writes, replies handed back in order (see mux.c for the design).
 *
 * Internal to src/client/: client.c owns the lanes and the pool they take
 * their connections from; the functions it provides to mux.c are declared
 * here too.
 */
#ifndef RK_SRC_MUX_H
#define RK_SRC_MUX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/client.h>

#include "conn.h"
#include "error.h"
#include "health.h"

/* What one call carries through the pool and a lane. */
typedef struct rk__call {
    int64_t deadline_ns; /* the caller gets its answer (or a failure) by then */
    int64_t start_ns;    /* metrics: the clock read that set the deadline */
    int64_t dead_ns;     /* a shared connection on which this call's reply
                            has not come by then is dead: max(deadline,
                            start + command_timeout) */
    bool probe;          /* this call is the circuit's half-open probe */
    bool gated;          /* the circuit breaker has already let it through */
    bool exclusive;      /* a lease of its own (may take an idle lane's connection) */
    bool reused;         /* its connection was not opened for it */
    bool unsent;         /* it failed before its command was queued (no
                            connection could be had): safe to try again
                            on another lane, writes included */
    rk__conn *gone;      /* rk__lane_send's write failed: the connection to
                            give back, with gone_st, when the call ends */
    rk_status gone_st;
    rk__events ev;
} rk__call;

/* A call's place in a lane's queue: on its caller's stack for a blocking
 * call, inside an rk_future for one sent ahead (async.c). Once queued it
 * belongs to the lane until `done`; a caller that gives up first leaves a
 * heap copy behind (a "tombstone", replies NULL) whose replies are read
 * and discarded, so that the queue stays aligned with the stream. */
typedef struct rk__slot rk__slot;
struct rk__slot {
    rk__slot *next;
    size_t n, got;        /* replies expected, received */
    rk_reply **replies;   /* the caller's array; NULL for a tombstone */
    int64_t dead_ns;
    uint32_t write;       /* the lane's write that carries the command: its bell */
    _Atomic bool done;    /* set last, after everything the caller reads */
    _Atomic bool nominated; /* woken to take the driver's role over */
    bool waiting;         /* a thread sleeps on it (lock held to read or
                             write): only such a slot can be nominated */
    bool ahead;           /* sent ahead of its wait (rk__lane_send) */
    uint32_t bit;         /* its waiting thread's futex bitset bit */
    rk_status st;
    char msg[RK__ERRMSG_MAX]; /* rk_last_error() for a failure */
};

/* Bells per lane (see rk__lane): more than the writes a lane ever has in
 * flight, so that two writes rarely share one. */
#define RK__LANE_BELLS 64

/* One shared connection and the queue of calls waiting on it. */
typedef struct rk__lane {
    pthread_mutex_t lock;
    pthread_cond_t ready;      /* a connection was opened, or failed to be */
    /* Guarded by lock: */
    rk__conn *conn;            /* NULL: none; the next call takes one from the pool */
    bool connecting;           /* a caller is getting conn from the pool */
    bool driving;              /* a caller is doing the lane's I/O */
    char *out, *spare;         /* bytes queued for the next write; the
                                  driver's buffer being written */
    size_t out_len, out_cap, spare_cap;
    rk__slot *head, *tail;     /* calls whose replies are awaited, in order */
    uint32_t written;          /* writes made; a call queued now goes out in written + 1 */
    _Atomic int load;          /* queued calls, read without the lock to pick a lane */
    _Atomic bool up;           /* conn is set: read without the lock to pick a lane */
    /* Where waiting callers sleep: futex words, one per write modulo
     * RK__LANE_BELLS, and how many sleep on each (mux.c). */
    _Atomic uint32_t bells[RK__LANE_BELLS];
    _Atomic int sleepers[RK__LANE_BELLS];
    /* When each write went out (written % RK__LANE_BELLS; guarded by
     * lock), and the client's command timeout: a command sent ahead
     * (rk_client_send) may go out well after it was queued, and its
     * reply is not overdue before the timeout has run from then
     * (mux.c, overdue_at). */
    int64_t write_ns[RK__LANE_BELLS];
    int64_t timeout_ns;
} rk__lane;

/* A mutex and a condition variable that waits on CLOCK_MONOTONIC:
 * RK_OK or RK_ERR_SYSTEM (nothing left initialised). */
rk_status rk__lock_init(pthread_mutex_t *lock, pthread_cond_t *cond);

/* timeout_ns: the client's command timeout (see rk__lane.write_ns). */
rk_status rk__lane_init(rk__lane *lane, int64_t timeout_ns);
/* Close the connection and free the buffers; nobody may be using it. */
void rk__lane_destroy(rk__lane *lane);

/*
 * Run n already-encoded commands (len bytes) on the lane: queue them,
 * write them together with whatever else is queued, and wait for their n
 * replies (caller-owned on RK_OK). On failure every replies[i] is NULL and
 * rk_last_error() says why. A caller whose deadline passes gets
 * RK_ERR_TIMEOUT and its replies are discarded when they arrive; the
 * connection is closed (every waiter failed) only when the oldest reply
 * awaited is past its dead_ns, or on a transport or protocol failure. A
 * write the server does not take by the writing caller's deadline stops
 * there (plain connections), the rest put back for the next write.
 * k->reused is set when the connection was already open.
 */
rk_status rk__lane_call(rk_client *client, rk__lane *lane, rk__call *k, const char *cmd, size_t len, size_t n,
                        rk_reply **replies);

/*
 * The two halves of rk__lane_call, for a command sent ahead of its wait
 * (rk_client_send). rk__lane_send queues the commands like
 * rk__lane_call, in the slot s (which must stay where it is until
 * rk__lane_wait or rk__lane_forget), and writes them at once when the
 * lane is idle (nobody doing its I/O and no reply awaited); otherwise
 * they go out with the lane's next write, made by whoever drives it. On
 * failure nothing was queued. The slot's outcome, replies included,
 * reaches s->replies when `done` is set.
 */
rk_status rk__lane_send(rk_client *client, rk__lane *lane, rk__call *k, const char *cmd, size_t len, size_t n,
                        rk_reply **replies, rk__slot *s);

/* Wait for a slot queued by rk__lane_send, driving the lane if nobody
 * does, until it is complete or k->deadline_ns passes (at once if it has
 * passed: nothing is read or written then); as rk__lane_call from there
 * on, the call counted. The slot is out of the queue when it returns. */
rk_status rk__lane_wait(rk_client *client, rk__lane *lane, rk__call *k, rk__slot *s);

/* Give up a slot queued by rk__lane_send without waiting: its replies, if
 * in, are freed; if not, it is left as a tombstone and its replies are
 * discarded when they come. Never waits for a reply; writes what is
 * queued when nobody drives the lane (its command must still go out). */
void rk__lane_forget(rk_client *client, rk__lane *lane, rk__call *k, rk__slot *s);

/* In a child after fork(), with no other thread: drop the lane's
 * connection without sending anything, forget the queue (its callers are
 * the parent's threads), re-create the lock. */
void rk__lane_after_fork(rk__lane *lane);

/* The lane's connection if the lane is idle (nobody queued, driving or
 * connecting; never waits for its lock), taken from it; else NULL. For
 * an exclusive lease when the pool is exhausted. */
rk__conn *rk__lane_take_idle(rk__lane *lane);

/* Has the lane a connection (read without its lock: a hint)? */
bool rk__lane_up(rk__lane *lane);

/* Mark the lane's connection broken, so that it is closed once its queue
 * has drained and never reused (RK_ERR_PROTOCOL seen on it). */
void rk__lane_poison(rk__lane *lane);

/* ---- provided by client.c ---------------------------------------------- */

/* Borrow a pooled connection exclusively (health gates unless k->gated,
 * backoff, connect); extends k->deadline_ns and k->dead_ns by the time a
 * connect took. */
rk_status rk__pool_acquire(rk_client *client, rk__call *k, rk__conn **out);

/* Give an exclusively borrowed connection back: closed if broken (one
 * failure for the breaker when st is a transport failure), else idle
 * again; the call counted with st. */
void rk__pool_release(rk_client *client, rk__call *k, rk__conn *conn, rk_status st);

/* A connection unused for this long is checked before use (see client.c). */
#define RK__PEER_CHECK_AFTER_NS 1000000

/* Is a connection that sat idle still good (client.c's check: one poll(),
 * or a PING after idle_ping_ms)? When not, it has been closed and counted
 * (a DISCONNECTED event). */
bool rk__pool_check(rk_client *client, rk__conn *conn, int64_t deadline_ns);

/* A call on a lane ended with call_st: count it, and tell the breaker what
 * it has to learn (a probe's outcome; a success after failures). If conn
 * is set it goes back to the pool — closed if broken, counting conn_st as
 * one failure of the connection when it is a transport failure, however
 * many calls it failed. No lock needed by the caller; none is taken on
 * the common path (success, healthy, no connection to give back). */
void rk__pool_lane_end(rk_client *client, bool probe, rk_status call_st, rk__conn *conn, rk_status conn_st);

/* A call that was the circuit breaker's half-open probe (probe true)
 * ends without having run (it could not even be queued): the next call
 * may probe. Nothing for a call that was not the probe. */
void rk__pool_probe_cancel(rk_client *client, bool probe);

/* For rk_client_send (async.c): pass the circuit breaker's gate, choose a
 * lane as rk_client_command does, and rk__lane_send the commands there;
 * *lane receives the lane on RK_OK. k's deadlines and start_ns are the
 * caller's to set. Needs a client with lanes (rk__client_has_lanes). */
rk_status rk__client_send(rk_client *client, rk__call *k, const char *cmd, size_t len, size_t n,
                          rk_reply **replies, rk__slot *s, rk__lane **lane);
bool rk__client_has_lanes(const rk_client *client);
/* A call started at now with deadline_ns (0: the client's command
 * timeout from now); its dead_ns is the later of the deadline and the
 * command timeout from now (see rk__call). */
rk__call rk__client_call(const rk_client *client, int64_t now, int64_t deadline_ns);
/* Count one call's duration in the client's latency histogram. */
void rk__client_record_latency(rk_client *client, int64_t ns);

#endif
