/*
 * conn.h — one connection to Redis: a socket redkit owns (plain, or under
 * TLS through tls.h), hiredis's reader for decoding, and a deadline on
 * every operation.
 *
 * A connection knows nothing of pools, modules or keys. It is used by one
 * thread at a time (the pool guarantees that). Once any operation on it
 * fails in a way that leaves the stream in an unknown state (timeout,
 * reset, protocol error) it is marked broken and must be closed: its next
 * reply could be the late answer to the request that failed.
 */
#ifndef RK_SRC_CONN_H
#define RK_SRC_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/client.h>

#include "clock.h"

#include "tls.h"

/* Where and how to connect; the strings and the TLS context belong to the
 * caller (the client) and must outlive every connection opened with them. */
typedef struct rk__conn_config {
    const char *host;
    int port;
    const char *unix_path;
    const char *username;
    const char *password;
    int db;
    const char *client_name;
    rk__tls_ctx *tls;        /* TLS over TCP when set; NULL = plain */
    /* The largest reply a connection accepts (reply_guard.h), read at
     * every read, so that it may be raised while connections are open;
     * NULL or 0 = RK_DEFAULT_MAX_REPLY_BYTES. A reply over it fails the
     * read with RK_ERR_TOO_LARGE and marks the connection broken. */
    const _Atomic size_t *max_reply_bytes;
} rk__conn_config;

typedef struct rk__conn rk__conn;

/* rk__fd_wait(), the wait on a socket, is in fdwait.h (below tls.c too). */
#include "fdwait.h"

struct addrinfo;

/* Resolve a host name (IP literals are the caller's to skip) to the TCP
 * addresses of port, waiting at most until deadline_ns: glibc's
 * getaddrinfo_a() runs the lookup on a thread of its own and the caller
 * waits for its completion notice on a condition variable, so a slow DNS
 * server costs no more than the deadline. Returns RK_OK with *out the list (the caller's, freed with
 * freeaddrinfo()), or with *out NULL: RK_ERR_TIMEOUT ("resolving <host>:
 * timed out"; at once when the deadline has already passed),
 * RK_ERR_UNAVAILABLE (the name does not resolve: "resolve <host>: <the
 * resolver's reason>"), RK_ERR_NOMEM, RK_ERR_SYSTEM (this machine failed
 * the lookup: the process is out of descriptors, or the resolver reported
 * a system error — never the server's fault). host is copied. A
 * lookup given up at the deadline is cancelled, or, once glibc has started
 * it, left to finish in the background, where its memory is freed when it
 * ends. Thread-safe. */
rk_status rk__resolve(const char *host, int port, int64_t deadline_ns, struct addrinfo **out);

/* Before the first lookup of a host name (an IP literal needs none):
 * make sure glibc's resolver threads can exit even when the process has
 * run out of file descriptors by then — that exit loads libgcc_s.so.1,
 * and a failed load aborts the process; see conn.c. Once per process;
 * cheap after that. Thread-safe. */
void rk__resolver_prepare(const char *host);

/* Lookups whose memory is still held: those in progress, and those given
 * up on that glibc has not finished yet. For tests. */
long rk__resolve_pending(void);

/* Open a connection and run the handshake (the TLS handshake when
 * cfg->tls is set, then AUTH, SELECT, CLIENT SETNAME sent as one pipeline)
 * before deadline_ns. The pipeline always makes one round trip (a PING
 * when there is nothing else to send): a server at maxclients accepts,
 * writes its refusal and closes, and a TLS 1.3 server refuses a client
 * certificate only after the client's half of the handshake is done; both
 * refusals must arrive here, not on the first command. On error *out is
 * NULL and the last error says what failed: RK_ERR_UNAVAILABLE (refused,
 * unreachable, reset, a name that does not resolve, and a server that
 * answers any handshake command with "ERR max number of clients reached"
 * or "DENIED": "<peer> refused the connection: <its text>"), RK_ERR_TIMEOUT (the host name's lookup included),
 * RK_ERR_AUTH (any error reply to AUTH: "AUTH refused by <peer>: <error
 * code>", never the server's text, which could quote the password),
 * RK_ERR_TLS, RK_ERR_SERVER (SELECT or CLIENT SETNAME refused; the
 * server's text, with any trace of the password masked), RK_ERR_PROTOCOL,
 * RK_ERR_INVALID (a Unix path too long), RK_ERR_NOMEM, RK_ERR_SYSTEM,
 * RK_ERR_TOO_LARGE (a handshake reply over cfg->max_reply_bytes). */
rk_status rk__conn_open(const rk__conn_config *cfg, int64_t deadline_ns, rk__conn **out);

/* Close the socket and free everything. NULL is a no-op. */
void rk__conn_close(rk__conn *conn);

/* Test hook: called by rk__conn_close() first, in the closing thread
 * (tests check that no shared lock is held then). NULL: none. */
extern void (*rk__conn_close_test_hook)(const rk__conn *conn);

/* Send `len` bytes of already-encoded commands and read `n` replies into
 * replies[0..n-1] (caller-owned on RK_OK; freed and NULLed otherwise).
 * Error replies are returned as replies, not as failures. Any failure marks
 * the connection broken. */
rk_status rk__conn_request(rk__conn *conn, const char *cmd, size_t len, size_t n,
                           rk_reply **replies, int64_t deadline_ns);

/* The pieces of rk__conn_request, for a connection shared by many
 * callers (src/client/mux.c), where one caller writes what several queued
 * and replies are read one at a time:
 *  - rk__conn_send: write len bytes; any failure marks the connection
 *    broken (a partial write leaves the stream unknown).
 *  - rk__conn_read_reply: the next reply, reading as needed until
 *    deadline_ns. RK_ERR_TIMEOUT does NOT mark the connection broken: a
 *    reply's part that arrived stays buffered for the next call; every
 *    other failure does.
 *  - rk__conn_buffered_reply: the next reply if one is already complete
 *    in the buffer (*out NULL otherwise), without any system call. */
rk_status rk__conn_send(rk__conn *conn, const char *buf, size_t len, int64_t deadline_ns);
/* rk__conn_send that may stop half-way on a plain connection: RK_OK when
 * all len bytes are written; RK_ERR_TIMEOUT when deadline_ns passed first,
 * with *sent bytes written, the connection NOT marked broken and the
 * stream intact (the caller must write buf + *sent next, before anything
 * else). A TLS connection cannot stop inside a record: it writes all or
 * fails, by tls_deadline_ns. Every other failure marks it broken. */
rk_status rk__conn_send_some(rk__conn *conn, const char *buf, size_t len, int64_t deadline_ns,
                             int64_t tls_deadline_ns, size_t *sent);
rk_status rk__conn_read_reply(rk__conn *conn, rk_reply **out, int64_t deadline_ns);
rk_status rk__conn_buffered_reply(rk__conn *conn, rk_reply **out);

/* Mark the connection broken (it will be closed, never reused). */
void rk__conn_set_broken(rk__conn *conn);

/* rk__conn_request() of one command given as arguments (formatted here):
 * send it and read n replies (n may be 0: send only, for a subscribed
 * connection whose answers come as pushed messages). */
rk_status rk__conn_command(rk__conn *conn, int argc, const char **argv, const size_t *argvlen, size_t n,
                           rk_reply **replies, int64_t deadline_ns);

/* For a subscribed connection, which the server writes to unasked: wait
 * until deadline_ns for the next message. RK_OK with *reply (the caller
 * frees it); RK_MISS when none began to arrive by then — the connection
 * stays usable; any other status is a failure that marks it broken. */
rk_status rk__conn_next_push(rk__conn *conn, rk_reply **reply, int64_t deadline_ns);

/* rk__conn_next_push() that also returns RK_MISS, at once, when wake_fd
 * (a pipe's read end; -1 for none) becomes readable: the owner of a
 * subscribed connection is woken to send, or to stop. The caller drains
 * wake_fd. */
rk_status rk__conn_next_push_wake(rk__conn *conn, int wake_fd, rk_reply **reply, int64_t deadline_ns);

/* In a child after fork(): free conn without sending anything on it (no
 * TLS close_notify): the parent's copy of the socket stays in use. */
void rk__conn_abandon(rk__conn *conn);

/* True once the connection must not be reused. */
bool rk__conn_broken(const rk__conn *conn);

/* When the connection last completed a request (or was opened). */
int64_t rk__conn_last_used(const rk__conn *conn);

/* When the connection was opened (its handshake completed). */
int64_t rk__conn_opened(const rk__conn *conn);

/* Without blocking: has the peer closed or reset the connection, or sent
 * something unasked (a RESP2 server never does)? One poll(); over TLS, if
 * the socket is readable, one non-blocking SSL_peek that consumes only
 * records without application data (TLS 1.3 session tickets). */
bool rk__conn_peer_gone(rk__conn *conn);

/* "host:port" or the socket path, for messages. */
const char *rk__conn_peer(const rk__conn *conn);

#endif
