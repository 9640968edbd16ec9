/*
 * near_tracking.c — the connection that keeps a near cache coherent: Redis
 * tells it which keys of the handle's namespace changed, and it removes
 * them from the near cache (contract in near_tracking.h).
 *
 * Why broadcasting on a connection of its own. Debian's hiredis reads
 * only RESP2, where invalidations travel as pub/sub messages to a
 * connection that CLIENT TRACKING ... REDIRECT names. Three modes were
 * possible (docs/cache.md, "Near cache", has the figures):
 *
 *  - default tracking on the data connections remembers every key each
 *    connection read (server memory per key and connection) and is lost,
 *    silently, whenever a multiplexed data connection reconnects;
 *  - OPTIN needs CLIENT CACHING YES right before each filling read on the
 *    same connection, a pair a multiplexed connection cannot promise;
 *  - BCAST with the handle's "<prefix>:<ns>:" as PREFIX needs no server
 *    memory per key and no extra command per read, and the data
 *    connections never take part: the tracking state lives on this one
 *    connection, which redirects to itself. Its cost is a message for
 *    every write under the namespace, which for a cache is mostly a write
 *    of a value that readers hold anyway.
 *
 * The tracker calls its owner through a small sink (near_tracking.h).
 * (The API-key module hears revocations through the general rk_pubsub of
 * src/client/pubsub.c instead: a channel of its own, not key tracking.)
 *
 * So: one thread per near-cache handle owns one connection that runs
 * CLIENT ID, CLIENT TRACKING on REDIRECT <its own id> BCAST PREFIX <ns
 * head>, SUBSCRIBE __redis__:invalidate. The near cache is live only while
 * that subscription stands: before it (and after every reconnect) the near
 * cache is flushed and goes live; when the connection fails, or a PING
 * goes unanswered, it is flushed and stays off until the next
 * subscription. A nil payload (FLUSHALL, FLUSHDB) flushes it too.
 *
 * The thread waits in slices of STOP_POLL_MS so that rk__tracker_stop()
 * (at rk_cache_free) returns within one slice.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "clock.h"
#include "client.h"
#include "conn.h"
#include "error.h"
#include "forkgen.h"
#include "near_tracking.h"
#include "rand.h"

#define STOP_POLL_MS 100      /* longest wait between looks at the stop flag */
#define PING_EVERY_MS 1000    /* a quiet connection is pinged this often */
#define PING_TIMEOUT_MS 2000  /* and declared dead when nothing came back */
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 1000

void (*_Atomic rk__tracker_test_on_invalidate)(const char *key, size_t len);

struct rk__tracker {
    rk_client *client;
    rk__tracker_sink sink;
    char *prefix;
    size_t prefix_len;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;                  /* under lock */
    _Atomic uint64_t subscriptions;
    rk__conn *_Atomic conn;     /* the connection now, for rk__tracker_abandon() */
};

static int64_t now_ms(void) { return rk__now_ns() / 1000000; }

/* Sleep ms, or less when asked to stop; true when asked to stop. */
static bool nap(rk__tracker *t, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&t->lock);
    while (!t->stop && pthread_cond_timedwait(&t->wake, &t->lock, &until) == 0) {}
    bool stop = t->stop;
    pthread_mutex_unlock(&t->lock);
    return stop;
}

static bool stopping(rk__tracker *t)
{
    pthread_mutex_lock(&t->lock);
    bool stop = t->stop;
    pthread_mutex_unlock(&t->lock);
    return stop;
}

/* CLIENT ID, then tracking redirected to itself and the subscription. */
static rk_status subscribe(rk__tracker *t, rk__conn *conn)
{
    int64_t deadline = rk__now_ns() + (int64_t)PING_TIMEOUT_MS * 1000000;
    rk_reply *r;
    const char *id_argv[] = {"CLIENT", "ID"};
    rk_status st = rk__conn_command(conn, 2, id_argv, NULL, 1, &r, deadline);
    if (st != RK_OK) return st;
    if (r->type != RK_REPLY_INTEGER) {
        rk_reply_free(r);
        return rk__fail(RK_ERR_PROTOCOL, "near cache: CLIENT ID: unexpected reply");
    }
    char id[32];
    snprintf(id, sizeof id, "%lld", r->integer);
    rk_reply_free(r);

    const char *track[] = {"CLIENT", "TRACKING", "on", "REDIRECT", id, "BCAST", "PREFIX", t->prefix};
    size_t track_len[] = {6, 8, 2, 8, strlen(id), 5, 6, t->prefix_len};
    st = rk__conn_command(conn, 8, track, track_len, 1, &r, deadline);
    if (st != RK_OK) return st;
    if (r->type == RK_REPLY_ERROR) {
        st = rk__fail(RK_ERR_SERVER, "near cache: CLIENT TRACKING refused: %.*s", (int)(r->len < 200 ? r->len : 200),
                      r->str);
        rk_reply_free(r);
        return st;
    }
    rk_reply_free(r);
    const char *sub[] = {"SUBSCRIBE", "__redis__:invalidate"};
    st = rk__conn_command(conn, 2, sub, NULL, 1, &r, deadline);
    if (st != RK_OK) return st;
    bool ok = r->type == RK_REPLY_ARRAY && r->elements == 3;
    rk_reply_free(r);
    return ok ? RK_OK : rk__fail(RK_ERR_PROTOCOL, "near cache: SUBSCRIBE: unexpected reply");
}

/* One pushed message. Returns false when the stream cannot be trusted
 * anymore (an unexpected shape). */
static bool handle(rk__tracker *t, rk_reply *m)
{
    if (m->type != RK_REPLY_ARRAY || m->elements < 2 || m->element[0]->type != RK_REPLY_STRING) return false;
    const rk_reply *kind = m->element[0];
    if (kind->len == 4 && memcmp(kind->str, "pong", 4) == 0) return true;
    if (!(kind->len == 7 && memcmp(kind->str, "message", 7) == 0) || m->elements != 3) return false;
    const rk_reply *payload = m->element[2];
    if (payload->type == RK_REPLY_NIL) {
        t->sink.flush(t->sink.ctx, RK__NEAR_FLUSH_SERVER, true); /* FLUSHALL / FLUSHDB */
        return true;
    }
    if (payload->type != RK_REPLY_ARRAY) return false;
    for (size_t i = 0; i < payload->elements; i++) {
        const rk_reply *k = payload->element[i];
        if (k->type != RK_REPLY_STRING) continue;
        t->sink.invalidate(t->sink.ctx, k->str, k->len);
        void (*hook)(const char *, size_t) = rk__tracker_test_on_invalidate;
        if (hook) hook(k->str, k->len);
    }
    return true;
}

/* Read messages until the connection fails, falls silent or we stop. */
static void listen_on(rk__tracker *t, rk__conn *conn)
{
    int64_t heard = now_ms(), pinged = 0;
    for (;;) {
        if (stopping(t)) return;
        rk_reply *m;
        rk_status st = rk__conn_next_push(conn, &m, rk__now_ns() + (int64_t)STOP_POLL_MS * 1000000);
        int64_t now = now_ms();
        if (st == RK_OK) {
            bool ok = handle(t, m);
            rk_reply_free(m);
            if (!ok) return;
            heard = now;
            pinged = 0;
            continue;
        }
        if (st != RK_MISS) return;
        if (pinged && now - pinged > PING_TIMEOUT_MS) return; /* a server that stopped answering */
        if (!pinged && now - heard > PING_EVERY_MS) {
            const char *ping[] = {"PING"};
            if (rk__conn_command(conn, 1, ping, NULL, 0, NULL, rk__now_ns() + (int64_t)PING_TIMEOUT_MS * 1000000) != RK_OK)
                return;
            pinged = now;
        }
    }
}

static void *run(void *arg)
{
    rk__tracker *t = arg;
    int64_t backoff = BACKOFF_FIRST_MS;
    uint64_t rng = (uint64_t)rk__now_ns() ^ (uint64_t)(uintptr_t)t;
    while (!stopping(t)) {
        rk__conn *conn = NULL;
        rk_status st = rk__client_open_conn(t->client, &conn);
        atomic_store_explicit(&t->conn, conn, memory_order_release);
        if (st == RK_OK) st = subscribe(t, conn);
        if (st != RK_OK) {
            atomic_store_explicit(&t->conn, NULL, memory_order_release);
            rk__conn_close(conn);
            /* Full jitter, like the pool's reconnects. */
            int64_t wait = 1 + (int64_t)(rk__splitmix64(&rng) % (uint64_t)backoff);
            backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
            if (nap(t, wait)) break;
            continue;
        }
        backoff = BACKOFF_FIRST_MS;
        /* Subscribed: from here on every write under the prefix is
         * announced, so what was held before may be stale — start empty. */
        t->sink.flush(t->sink.ctx, RK__NEAR_FLUSH_CONNECTION, true);
        atomic_fetch_add_explicit(&t->subscriptions, 1, memory_order_relaxed);
        listen_on(t, conn);
        t->sink.flush(t->sink.ctx, RK__NEAR_FLUSH_CONNECTION, false);
        atomic_store_explicit(&t->conn, NULL, memory_order_release);
        rk__conn_close(conn);
    }
    return NULL;
}

static void near_invalidate(void *ctx, const char *key, size_t len) { rk__near_invalidate(ctx, key, len); }

static void near_flush(void *ctx, rk__near_flush_reason why, bool live) { rk__near_flush(ctx, why, live); }

rk_status rk__tracker_start(rk_client *client, rk__near *near, const char *prefix, size_t prefix_len,
                            rk__tracker **out)
{
    rk__tracker_sink sink = {.ctx = near, .invalidate = near_invalidate, .flush = near_flush};
    return rk__tracker_start_sink(client, &sink, prefix, prefix_len, out);
}

rk_status rk__tracker_start_sink(rk_client *client, const rk__tracker_sink *sink, const char *prefix,
                                 size_t prefix_len, rk__tracker **out)
{
    *out = NULL;
    rk__fork_watch(); /* the near caches compare rk__fork_generation() and reset lazily */
    rk__tracker *t = rk__calloc(1, sizeof *t);
    if (!t) return rk__fail(RK_ERR_NOMEM, "tracking: out of memory");
    t->client = client;
    t->sink = *sink;
    t->prefix_len = prefix_len;
    t->prefix = rk__malloc(prefix_len + 1);
    if (!t->prefix) {
        rk__free(t);
        return rk__fail(RK_ERR_NOMEM, "near cache: out of memory");
    }
    memcpy(t->prefix, prefix, prefix_len);
    t->prefix[prefix_len] = '\0';
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&t->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (e == 0 && (e = pthread_mutex_init(&t->lock, NULL)) != 0) pthread_cond_destroy(&t->wake);
    if (e == 0 && (e = pthread_create(&t->thread, NULL, run, t)) != 0) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->wake);
    }
    if (e != 0) {
        rk__free(t->prefix);
        rk__free(t);
        return rk__fail(RK_ERR_SYSTEM, "near cache: cannot start its thread (%d)", e);
    }
    *out = t;
    return RK_OK;
}

void rk__tracker_stop(rk__tracker *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    rk__free(t->prefix);
    rk__free(t);
}

uint64_t rk__tracker_subscriptions(const rk__tracker *t)
{
    return atomic_load_explicit(&((rk__tracker *)t)->subscriptions, memory_order_relaxed);
}

void rk__tracker_abandon(rk__tracker *t)
{
    /* In a child after fork() only the forking thread lives on: the
     * tracker's thread is gone, and its connection is the parent's. Close
     * the child's copy of the socket without a word (no TLS close_notify,
     * nothing the parent's stream would see) and free the memory. The
     * locks may have been held by the vanished thread: they are not
     * touched. */
    rk__conn *conn = atomic_load_explicit(&t->conn, memory_order_acquire);
    if (conn) rk__conn_abandon(conn);
    rk__free(t->prefix);
    rk__free(t);
}
