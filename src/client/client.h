/*
 * client.h — what the modules (cache, sessions, ...) use of a client: run
 * commands through the pool, and read the key prefix.
 */
#ifndef RK_SRC_CLIENT_H
#define RK_SRC_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <redkit/client.h>

/* Run one command (argv as in rk_client_command; argvlen required) and
 * return its reply. A top-level error reply becomes RK_ERR_SERVER (or
 * RK_ERR_AUTH for NOAUTH) with the text prefixed by argv[0]. is_read = the
 * command only reads, so it may be retried once on a fresh connection when
 * a pooled one turns out dead; writes never are. */
rk_status rk__client_run(rk_client *client, int argc, const char **argv, const size_t *argvlen, bool is_read,
                         rk_reply **reply);

/* One command of a pipeline. */
typedef struct rk__cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
} rk__cmd;

/* Send n commands in one write and read their n replies (one round trip,
 * one deadline for the whole batch). On RK_OK replies[0..n-1] are the
 * caller's (free each with rk_reply_free); error replies stay replies, for
 * the caller to judge one by one. On failure every replies[i] is NULL and
 * none of the writes may be assumed applied or not. is_read as in
 * rk__client_run (a batch of reads may be retried once as a whole). */
rk_status rk__client_pipeline(rk_client *client, size_t n, const rk__cmd *cmds, bool is_read,
                              rk_reply **replies);

/* rk__client_pipeline under an absolute deadline_ns (the CLOCK_MONOTONIC
 * nanoseconds of rk__client_deadline()) instead of one command timeout
 * from now: for a call made of several round trips that promises one
 * deadline in all (take it once with rk__client_deadline(), pass it to
 * each). A deadline already past is RK_ERR_TIMEOUT before anything is
 * sent, so no write of the batch happened. As for every request, time
 * spent opening a connection is added to the deadline. */
rk_status rk__client_pipeline_until(rk_client *client, size_t n, const rk__cmd *cmds, bool is_read,
                                    rk_reply **replies, int64_t deadline_ns);

/* n commands already encoded (len bytes of RESP), never retried, under
 * deadline_ns; on a shared connection, or on one of their own when
 * exclusive (MULTI ... EXEC). Replies as rk__client_pipeline's. For
 * pipeline.c. */
rk_status rk__client_encoded(rk_client *client, const char *buf, size_t len, size_t n, rk_reply **replies,
                             int64_t deadline_ns, bool exclusive);

/* A reply of a shape its command cannot produce was met (the caller
 * returns RK_ERR_PROTOCOL): close the connections it may have come from —
 * the shared ones once their queues drain, the idle ones now. */
void rk__client_protocol_error(rk_client *client);

/* The deadline of a call starting now: now + command_timeout_ms, on
 * CLOCK_MONOTONIC, in nanoseconds. */
int64_t rk__client_deadline(const rk_client *client);

/* One deadline for several calls of one public function: while a cap is
 * set on this thread (nonzero, CLOCK_MONOTONIC ns), no call to any client
 * ends later than it, and a call that starts after it fails at once with
 * RK_ERR_TIMEOUT, sending nothing and counting towards neither the
 * breaker nor the backoff. Sets the cap to exactly cap (0 = none) and
 * returns the previous one, for the caller to put back. A module that
 * calls user code under a cap lifts it around the call (the user's own
 * redkit calls keep their own deadlines). */
int64_t rk__deadline_cap_swap(int64_t cap);

/* Raise the client's max_reply_bytes to at least bytes (capped at
 * RK_MAX_MAX_REPLY_BYTES); never lowers it. For a module whose replies
 * may be larger than the user's bound allows (a cache's values).
 * Thread-safe; connections already open see it at their next read. */
void rk__client_raise_max_reply(rk_client *client, size_t bytes);

/* The client's max_reply_bytes now. */
size_t rk__client_max_reply(rk_client *client);

/* Open a connection of the caller's own, outside the pool, with the
 * client's address, credentials, database and TLS, within the client's
 * connect timeout: for a module that keeps one connection subscribed (the
 * near cache's invalidations). The pool's breaker and backoff do not
 * apply; the caller paces its retries and closes it with rk__conn_close(). */
struct rk__conn;
rk_status rk__client_open_conn(rk_client *client, struct rk__conn **out);

/* The client's reconnect delay (full jitter between 0 and
 * min(reconnect_max_ms, reconnect_base_ms * 2^(attempt-1))) for the
 * attempt-th consecutive failure of a dedicated connection, rand a random
 * number: for the modules that pace their own reconnects (pubsub.c). */
int rk__client_backoff_ms(const rk_client *client, int attempt, uint64_t rand);

/* Prefix followed by ':' ("" when there is no prefix), and its length. */
const char *rk__client_key_head(const rk_client *client, size_t *len);

/* ---- Metrics (implemented in client.c, used by src/metrics/metrics.c) ---------- */
/* (Module handles register through registry.h.) */

struct rk__hist;

/* The latency histogram of the client's requests (recorded in request()). */
const struct rk__hist *rk__client_latency(const rk_client *client);

/* The database number the client SELECTs. */
int rk__client_db(const rk_client *client);

/* True the first time it is called with a given bit on this client, false
 * ever after (thread-safe): "warn once per client per condition". */
bool rk__client_warn_once(rk_client *client, unsigned bit);

/* Pass message to the client's log callback if it has one and level is at
 * or above its log_level. The thread's last error is kept. */
void rk__client_log(rk_client *client, rk_log_level level, const char *message);

#endif
