/*
 * near_tracking.h — the tracking connection of one near cache
 * (src/cache/near_tracking.c): a thread that keeps a connection subscribed
 * to the invalidations of one key prefix and applies them to the near
 * cache, which it turns live while subscribed and off otherwise.
 */
#ifndef RK_SRC_CACHE_NEAR_TRACKING_H
#define RK_SRC_CACHE_NEAR_TRACKING_H

#include <stddef.h>
#include <stdint.h>

#include <redkit/client.h>

#include "near.h"

typedef struct rk__tracker rk__tracker;

/* What a tracker tells its owner, on the tracker's thread. */
typedef struct rk__tracker_sink {
    void *ctx;
    /* The server says key changed (or expired, or was evicted). */
    void (*invalidate)(void *ctx, const char *key, size_t len);
    /* Forget everything: why, and whether invalidations now flow (live:
     * a subscription was just made; not live: the connection broke). */
    void (*flush)(void *ctx, rk__near_flush_reason why, bool live);
} rk__tracker_sink;

/* Start the thread for sink, tracking keys that begin with prefix
 * (copied), on connections opened from client (which must outlive the
 * tracker). The owner hears flush(..., true) once the first subscription
 * stands; this call does not wait for it. RK_OK, RK_ERR_NOMEM or
 * RK_ERR_SYSTEM. */
rk_status rk__tracker_start_sink(rk_client *client, const rk__tracker_sink *sink, const char *prefix,
                                 size_t prefix_len, rk__tracker **out);

/* rk__tracker_start_sink() for a near cache: invalidations drop its keys,
 * and it is live exactly while the subscription stands. */
rk_status rk__tracker_start(rk_client *client, rk__near *near, const char *prefix, size_t prefix_len,
                            rk__tracker **out);

/* Stop the thread (within about 100 ms), close its connection, free t.
 * The near cache is left off. NULL is a no-op. */
void rk__tracker_stop(rk__tracker *t);

/* In a child process after fork(): forget t without touching its thread
 * (gone) or its locks, closing the child's copy of its socket without
 * sending anything. */
void rk__tracker_abandon(rk__tracker *t);

/* Tests only (NULL otherwise): called on the tracking thread after each
 * key an invalidation named has been dropped. */
extern void (*_Atomic rk__tracker_test_on_invalidate)(const char *key, size_t len);

/* How many times the subscription was made (1 after the first, +1 per
 * reconnect): for tests that wait for recovery. */
uint64_t rk__tracker_subscriptions(const rk__tracker *t);

#endif
