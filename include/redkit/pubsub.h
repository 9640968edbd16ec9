/*
 * redkit/pubsub.h — Redis Pub/Sub: subscribe to channels and patterns,
 * hear their messages on a callback, publish.
 *
 *     static void on_message(const char *channel, const char *pattern,
 *                            const char *payload, size_t len, void *user) { ... }
 *
 *     rk_pubsub *ps;
 *     rk_pubsub_new(client, &(rk_pubsub_options){ .on_message = on_message }, &ps);
 *     rk_pubsub_subscribe(ps, "orders");
 *     rk_pubsub_psubscribe(ps, "news.*");
 *     rk_pubsub_sync(ps, 1000);        // optional: wait until Redis confirmed both
 *     long long receivers;
 *     rk_client_publish(client, "orders", "42", 2, &receivers);
 *     ...
 *     rk_pubsub_free(ps);
 *
 * A subscribed Redis connection can do nothing but subscribe, so an
 * rk_pubsub owns ONE dedicated connection of its own, opened with the
 * client's address, credentials, database and TLS (never one of the
 * client's shared connections), and ONE background thread that reads it.
 * Every callback of a handle runs on that thread, one at a time, in the
 * order Redis sent the messages; a callback that blocks delays the
 * handle's next messages (and a subscriber that falls far behind is
 * disconnected by Redis, client-output-buffer-limit pubsub: a LOST
 * event), so hand long work to a thread of your own.
 *
 * Subscriptions are remembered. When the connection drops (Redis
 * restarted, a network failure, CLIENT KILL, a server that stops
 * answering the handle's keep-alive PING), the thread tells on_event
 * RK_PUBSUB_LOST, reconnects with the client's backoff (exponential with
 * full jitter, between reconnect_base_ms and reconnect_max_ms), subscribes
 * to everything again and tells on_event RK_PUBSUB_RESUBSCRIBED: messages
 * published between the two events were missed, and a user that keeps
 * derived state (a cache) should treat it as possibly stale. If Redis is
 * down when the handle is made, rk_pubsub_new() still succeeds and the
 * thread connects in the background (RK_PUBSUB_SUBSCRIBED once it has).
 *
 * fork(): a handle made before fork() is inert in the child: the child
 * never reads or writes the parent's subscriber connection (its copy of
 * the socket is closed without a byte sent when the handle is freed),
 * no callback ever runs there, and every call but rk_pubsub_free()
 * returns RK_ERR_INVALID ("created before fork()"). A child that wants
 * messages makes a handle of its own. The parent is unaffected.
 *
 * Thread safety: every function may be called from any thread at any
 * time, including from the handle's own callbacks — except
 * rk_pubsub_free() and rk_pubsub_sync(), which a callback must not call on
 * its own handle (sync returns RK_ERR_INVALID there; free would wait for
 * itself).
 *
 * Metrics (rk_metrics_prometheus(), summed over the client's handles):
 * redkit_pubsub_messages_total, redkit_pubsub_connects_total,
 * redkit_pubsub_lost_total. Channel names appear in no metric label.
 */
#ifndef REDKIT_PUBSUB_H
#define REDKIT_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "status.h"
#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_pubsub rk_pubsub;

/* Longest channel or pattern name accepted, in bytes. */
#define RK_PUBSUB_MAX_NAME_BYTES 4096

/* What on_event is told. */
typedef enum rk_pubsub_event {
    /* The first connection is up and every subscription asked for so far
     * is confirmed by Redis. Once per handle. */
    RK_PUBSUB_SUBSCRIBED = 1,
    /* The connection was lost: messages published from now until
     * RK_PUBSUB_RESUBSCRIBED are not delivered. */
    RK_PUBSUB_LOST = 2,
    /* Reconnected, and every subscription is in place again. Messages may
     * have been missed since RK_PUBSUB_LOST. */
    RK_PUBSUB_RESUBSCRIBED = 3,
} rk_pubsub_event;

/*
 * A message. channel and payload are valid only during the call (copy
 * what you keep); payload is binary-safe (len bytes, plus a NUL after
 * them for convenience); pattern is the pattern that matched for a
 * psubscribe'd message, NULL for a channel subscription. Runs on the
 * handle's thread.
 */
typedef void (*rk_pubsub_message_fn)(const char *channel, const char *pattern, const char *payload, size_t len,
                                     void *user);

/* An event (see rk_pubsub_event), on the handle's thread. */
typedef void (*rk_pubsub_event_fn)(rk_pubsub_event event, void *user);

/* Options; a zeroed field means its default. Copied by rk_pubsub_new(). */
typedef struct rk_pubsub_options {
    rk_pubsub_message_fn on_message; /* required */
    rk_pubsub_event_fn on_event;     /* NULL: no events */
    void *user;                      /* passed to both callbacks */
} rk_pubsub_options;

/*
 * rk_pubsub_new — make a handle on client and start its thread, which
 * connects in the background (the call does not wait for Redis, and
 * succeeds while Redis is down). The handle holds a reference to client:
 * rk_client_free() before rk_pubsub_free() is allowed, and the client
 * then goes with the handle. opts is copied.
 * Returns RK_OK with *out the caller's (free with rk_pubsub_free()), or
 * RK_ERR_INVALID (a NULL argument, no on_message), RK_ERR_NOMEM,
 * RK_ERR_SYSTEM (no thread or pipe); *out is NULL on failure and no
 * callback ever runs.
 */
RK_EXPORT rk_status rk_pubsub_new(rk_client *client, const rk_pubsub_options *opts, rk_pubsub **out);

/*
 * rk_pubsub_free — stop the thread, close the connection, free the handle
 * and drop its reference to the client. Bounded even when Redis does not
 * answer: the thread never waits on the socket without also watching a
 * wake-up pipe, so it stops at once, unless it is in the middle of a
 * write (at most 500 ms) or of opening a connection (at most the
 * client's connect_timeout_ms). Must not be called from the handle's own
 * callback. No callback runs after
 * this returns. NULL is a no-op. In a child after fork(): frees the
 * memory, closing the child's copy of the socket without sending anything.
 */
RK_EXPORT void rk_pubsub_free(rk_pubsub *ps);

/*
 * Subscribe to a channel (rk_pubsub_subscribe) or a glob-style pattern
 * (rk_pubsub_psubscribe, Redis's PSUBSCRIBE syntax), or stop
 * (rk_pubsub_unsubscribe, rk_pubsub_punsubscribe). name is copied: 1 to
 * RK_PUBSUB_MAX_NAME_BYTES bytes, NUL-terminated. The call only records the
 * wish and wakes the thread, which sends it to Redis (now, or after the
 * next reconnect): it never waits for the network. Subscribing twice to a
 * name, or unsubscribing from a name not subscribed, is harmless. Names
 * are used as given: the client's key_prefix is not added.
 * RK_OK; RK_ERR_INVALID (NULL, empty or too long name; a handle made
 * before fork()); RK_ERR_NOMEM.
 */
RK_EXPORT rk_status rk_pubsub_subscribe(rk_pubsub *ps, const char *channel);
RK_EXPORT rk_status rk_pubsub_psubscribe(rk_pubsub *ps, const char *pattern);
RK_EXPORT rk_status rk_pubsub_unsubscribe(rk_pubsub *ps, const char *channel);
RK_EXPORT rk_status rk_pubsub_punsubscribe(rk_pubsub *ps, const char *pattern);

/*
 * rk_pubsub_sync — wait until Redis has confirmed every subscribe and
 * unsubscribe asked for on this handle before the call (messages published
 * after it returns RK_OK reach the callback), at most timeout_ms
 * (1..RK_MAX_TIMEOUT_MS; 0 = the client's command timeout).
 * RK_OK; RK_ERR_SERVER (everything is confirmed, but Redis refused a
 * subscription since the last rk_pubsub_sync() — an ACL user without
 * that channel, for instance: the message holds Redis's text; the other
 * subscriptions stand, and the refused one is asked again after each
 * reconnect); RK_ERR_TIMEOUT (not connected, or no confirmation in time:
 * the subscriptions stay asked for); RK_ERR_INVALID (NULL, a bad timeout,
 * called from the handle's own callback, a handle made before fork()).
 */
RK_EXPORT rk_status rk_pubsub_sync(rk_pubsub *ps, int timeout_ms);

/* Counters of one handle (since rk_pubsub_new). */
typedef struct rk_pubsub_stats {
    uint64_t messages;  /* messages passed to on_message */
    uint64_t connects;  /* connections made (1 + reconnects) */
    uint64_t lost;      /* connections lost after they were subscribed */
    uint64_t subscriptions; /* channels + patterns asked for now */
    int live;           /* 1 while connected with every subscription confirmed */
} rk_pubsub_stats;

/* Fill *out. RK_OK or RK_ERR_INVALID (NULL). */
RK_EXPORT rk_status rk_pubsub_stats_get(rk_pubsub *ps, rk_pubsub_stats *out);

/*
 * rk_client_publish — PUBLISH payload (len bytes, binary-safe; NULL only
 * with len 0) on channel (NUL-terminated, 1..RK_PUBSUB_MAX_NAME_BYTES,
 * used as given: no key prefix), through the client's shared connections
 * like any command, under the client's command timeout; never retried
 * (a publish is a write). On RK_OK *receivers (if not NULL) is the number
 * of subscribers Redis delivered it to (on this node). RK_ERR_INVALID,
 * RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, RK_ERR_SERVER (e.g. an ACL
 * refusal), RK_ERR_NOMEM.
 */
RK_EXPORT rk_status rk_client_publish(rk_client *client, const char *channel, const void *payload, size_t len,
                                      long long *receivers);

#ifdef __cplusplus
}
#endif

#endif
