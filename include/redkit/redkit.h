/*
 * redkit/redkit.h — the umbrella header: include this one.
 *
 * redkit gives a C or C++ service its whole Redis integration: a client
 * shared between threads (client.h), REDIS_URL parsing (url.h), namespaced
 * keys (keys.h), a TTL cache (cache.h) and its metrics (metrics.h);
 * alloc.h plugs in your own allocator. Each header carries the full
 * contract of its functions; docs/ has a guide per header.
 */
#ifndef REDKIT_REDKIT_H
#define REDKIT_REDKIT_H

#include "common.h"
#include "status.h"
#include "alloc.h"
#include "url.h"
#include "client.h"
#include "pipeline.h"
#include "async.h"
#include "pubsub.h"
#include "keys.h"
#include "cache.h"
#include "ratelimit.h"
#include "metrics.h"
#include "sessions.h"
#include "apikeys.h"

#endif /* REDKIT_REDKIT_H */
