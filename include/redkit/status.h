/*
 * redkit/status.h — the one status type every fallible redkit call returns.
 *
 * The numeric values are part of the ABI and are never reused or
 * renumbered: a program may store them, log them or switch on them across
 * library upgrades. New codes are only ever appended.
 *
 * A status names the class of failure; the detail ("connect to
 * 127.0.0.1:6379: connection refused", the server's own error text) is in
 * rk_last_error() for the calling thread. Neither ever contains a password,
 * a session ID or an API key.
 */
#ifndef REDKIT_STATUS_H
#define REDKIT_STATUS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rk_status {
    /* Success. */
    RK_OK = 0,
    /* A lookup found nothing: the key is absent or has expired. This is an
     * answer, not an error; rk_status_is_error(RK_MISS) is false. */
    RK_MISS = 1,

    /* A NULL pointer, an empty or oversized key, a malformed URL, an option
     * out of range. Nothing was sent to Redis. */
    RK_ERR_INVALID = 2,
    /* Redis could not be reached: connection refused or reset, or the
     * circuit breaker is open (the call failed fast). */
    RK_ERR_UNAVAILABLE = 3,
    /* The call's deadline passed before Redis answered, or before a pooled
     * connection came free. A write that timed out may or may not have
     * been applied. */
    RK_ERR_TIMEOUT = 4,
    /* Redis refused the credentials (AUTH), or requires some. */
    RK_ERR_AUTH = 5,
    /* TLS could not be set up (rediss:// URLs, rk_tls_options): a
     * certificate, key or CA file that does not load (from rk_client_new),
     * a handshake the server refused or that failed verification of its
     * certificate, or a refusal the server sends in the connection's first
     * round trip (a TLS 1.3 server rejecting the client certificate). Once
     * a connection is established, a TLS record that does not decrypt is
     * RK_ERR_PROTOCOL and a peer that closes or resets is
     * RK_ERR_UNAVAILABLE, as over plain TCP (see docs/tls.md). */
    RK_ERR_TLS = 6,
    /* Redis sent bytes that are not valid RESP, or a reply of a shape the
     * command cannot produce. The connection is closed. */
    RK_ERR_PROTOCOL = 7,
    /* Redis answered with an error reply (-ERR, -WRONGTYPE, -NOPERM, ...);
     * rk_last_error() holds the server's text. A command or key outside an
     * ACL user's rights (-NOPERM) is reported with this status too — there
     * is no dedicated one: look for "NOPERM" in rk_last_error(). An error
     * reply to a command comes from a healthy server: the connection is
     * kept and the circuit breaker does not count it. (One refusing the
     * connection handshake — SELECT, CLIENT SETNAME — is a failed connect
     * instead; see docs/client.md.) */
    RK_ERR_SERVER = 8,
    /* A stored value is not of the type asked for (a string read as an
     * int64, a foreign value read by a typed cache). Nothing was changed. */
    RK_ERR_TYPE = 9,
    /* A key or value exceeds the configured maximum, or a caller-provided
     * buffer is too small. */
    RK_ERR_TOO_LARGE = 10,
    /* An allocation failed. The operation had no effect on the caller's
     * objects; whether Redis saw it is stated by the function. */
    RK_ERR_NOMEM = 11,
    /* The operating system refused something redkit needed (creating a
     * socket, a thread primitive, reading the CSPRNG). */
    RK_ERR_SYSTEM = 12,
    /* A read could not ask Redis (unavailable, circuit open, timed out) and
     * answers "nothing here" instead of failing: a cache read degrades to a
     * miss, flagged, so a caller can tell it from a real RK_MISS and skip
     * writing back. Not an error: rk_status_is_error(RK_DEGRADED) is false,
     * rk_status_is_miss() is true. rk_last_error() says why. */
    RK_DEGRADED = 13,
    /* The application's own source failed: a compute callback of
     * rk_cache_fetch() returned an error (a database timeout, say). Redis
     * may be perfectly healthy, so this is never reported as
     * RK_ERR_UNAVAILABLE or RK_ERR_TIMEOUT; the callback's own status is
     * in rk_cache_fetch_info.source_status and its name, with the
     * callback's message, in rk_last_error(). Not retryable by redkit's
     * judgment: whether the source is worth asking again is the
     * application's. */
    RK_ERR_SOURCE = 14,
    /* Optimistic locking gave up: a key watched by rk_client_watch() was
     * changed by another client on every attempt. Nothing of the last
     * attempt was applied. */
    RK_ERR_CONFLICT = 15
} rk_status;

/*
 * rk_strerror — a short, static English name for a status, such as
 * "timeout" or "server error". Unknown values give "unknown status".
 * Never NULL; never free it. It does not touch rk_last_error() (nor do
 * rk_status_is_*() and rk_last_error() itself), so both may be arguments
 * of one printf, in either order. Thread-safe.
 */
RK_EXPORT const char *rk_strerror(rk_status status);

/*
 * rk_last_error — a detailed message about the most recent redkit call on
 * the calling thread that did not return RK_OK. Calls that succeed (RK_OK)
 * leave it unchanged; RK_MISS and RK_DEGRADED set it to a short
 * explanation.
 *
 * The string is owned by redkit and lives in thread-local storage: it stays
 * valid until the next redkit call on the same thread that can fail —
 * rk_strerror(), rk_status_is_*(), rk_version() and rk_last_error() leave
 * it alone. Copy it to keep it.
 * It never contains a password, a session ID or an API key. Never NULL
 * ("" when nothing has failed yet).
 */
RK_EXPORT const char *rk_last_error(void);

/*
 * rk_status_is_error — true for every status except RK_OK, RK_MISS and
 * RK_DEGRADED.
 */
RK_EXPORT bool rk_status_is_error(rk_status status);

/*
 * rk_status_is_miss — true for RK_MISS and RK_DEGRADED: "no value; compute
 * it yourself".
 */
RK_EXPORT bool rk_status_is_miss(rk_status status);

/*
 * rk_status_is_retryable — true when trying the same call again later may
 * succeed: RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT. For a write that failed
 * with RK_ERR_TIMEOUT the first attempt may have been applied; retry only
 * writes that are safe to repeat.
 */
RK_EXPORT bool rk_status_is_retryable(rk_status status);

/* Slots of a module's per-status error counters (rk_cache_metrics.errors,
 * ...): one per rk_status value; a status
 * numbered RK_METRICS_STATUS_SLOTS - 1 or above (none exists yet) is
 * counted in the last slot. */
#define RK_METRICS_STATUS_SLOTS 32

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_STATUS_H */
