/*
 * redkit/async.h — commands sent ahead of their replies: futures.
 *
 * rk_client_command() makes its thread wait for the reply, so a thread
 * has one command in flight. rk_client_send() queues the command and
 * returns an rk_future at once; rk_future_wait() later waits for the
 * reply. One thread can so keep hundreds of commands in flight, and they
 * travel together: commands sent while others are awaited go out in one
 * write, and one read brings many replies. This is what node-redis does
 * with promises and rueidis with DoMulti, in C terms: send, then wait.
 *
 *     rk_future *f[100];
 *     for (int i = 0; i < 100; i++)
 *         rk_client_send(client, 2, (const char *[]){"GET", keys[i]}, NULL, &f[i]);
 *     for (int i = 0; i < 100; i++) {
 *         rk_reply *r;
 *         if (f[i] && rk_future_wait(f[i], &r) == RK_OK) { use(r); rk_reply_free(r); }
 *     }
 *
 * (Check rk_client_send's status: on failure *out is NULL.)
 *
 * When the command goes out: at once when its connection is idle;
 * otherwise with the connection's next write, which the thread doing
 * its I/O makes as soon as its write or read in progress ends, or which
 * rk_future_wait makes when nobody else is doing the I/O. The futures of
 * one connection are answered in the order they were sent, and a
 * future's reply never reaches another future or call.
 *
 * Deadlines: a future's deadline is set when it is sent (the client's
 * command_timeout_ms, or opts->timeout_ms) and rk_future_wait returns by
 * then, whatever the server does. Waiting after the deadline returns
 * RK_ERR_TIMEOUT at once; whether the command was applied is then
 * unknown, as for any timed-out call. Futures are never retried.
 *
 * Ownership: every future from rk_client_send must be given back exactly
 * once, by rk_future_wait (which waits) or rk_future_free (which does
 * not), before the client is freed. rk_client_free closes the client's
 * connections at once: commands sent and not waited for may be lost with
 * them (a socket closed with replies unread is reset), so wait for those
 * that must be applied.
 *
 * Thread safety: a future belongs to one thread at a time (it may be
 * handed to another thread and waited there); the client is shared as
 * usual. A future made before fork() cannot be waited in the child
 * (RK_ERR_INVALID): the connection it was sent on is the parent's.
 */
#ifndef REDKIT_ASYNC_H
#define REDKIT_ASYNC_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_future rk_future;

/*
 * rk_client_send — queue one command (argc, argv and argvlen as for
 * rk_client_command) and return at once with *out, a future to wait for
 * its reply. The command is copied: argv may be released on return.
 *
 * Returns RK_OK, or: RK_ERR_INVALID (NULL client or out, bad arguments,
 * a command that changes the state of a shared connection — see
 * rk_client_command — or a blocking command such as BLPOP, which holds a
 * connection of its own: use rk_client_command_opts); RK_ERR_UNAVAILABLE
 * (the circuit breaker is open, or no connection could be made);
 * RK_ERR_TIMEOUT (no connection within the deadline); RK_ERR_NOMEM. On
 * failure *out is NULL and nothing was sent.
 *
 * It does not wait for the reply, with two exceptions, and never past the
 * future's deadline: it may wait for a connection to Redis when its
 * shared connection has none yet, and for the socket to take the command
 * when it goes out at once (a command larger than the socket's buffer,
 * a server not reading: if the server has not taken it by the deadline,
 * the connection is closed, since half a command cannot be taken back).
 * While the client recovers from an outage (circuit half-open), the one
 * send that is the circuit breaker's probe runs to completion before it
 * returns, so that the breaker learns the outcome at once. A client
 * made with shared_connections = -1 has no shared connection: its
 * rk_client_send always runs the command to completion, and the future
 * is ready.
 */
RK_EXPORT rk_status rk_client_send(rk_client *client, int argc, const char *const *argv, const size_t *argvlen,
                                   rk_future **out);

/*
 * rk_client_send_opts — rk_client_send() with options for this command
 * only (opts NULL = defaults): opts->timeout_ms is the future's deadline,
 * counted from now. A negative or too large timeout_ms is RK_ERR_INVALID.
 */
RK_EXPORT rk_status rk_client_send_opts(rk_client *client, const rk_command_options *opts, int argc,
                                        const char *const *argv, const size_t *argvlen, rk_future **out);

/*
 * rk_future_wait — wait for the future's reply, until its deadline at
 * most, and give the future back: f is freed whatever this returns.
 *
 * reply receives the reply on RK_OK, the caller's to free with
 * rk_reply_free(). An error reply is RK_ERR_SERVER (RK_ERR_AUTH,
 * RK_ERR_UNAVAILABLE as for rk_client_command) with the server's text in
 * rk_last_error() and *reply NULL; RK_ERR_TIMEOUT when the deadline
 * passes first (the reply, if it comes, is discarded); RK_ERR_UNAVAILABLE
 * or RK_ERR_PROTOCOL when the connection failed; RK_ERR_INVALID for a NULL
 * f or reply (f, if not NULL, is still given back) or a future made
 * before fork() waited in the child. On failure *reply is NULL.
 *
 * The thread that waits may do the connection's I/O for every caller
 * waiting on it, as rk_client_command does.
 */
RK_EXPORT rk_status rk_future_wait(rk_future *f, rk_reply **reply);

/*
 * rk_future_ready — true when the future's reply (or its failure) is in,
 * so that rk_future_wait will not wait. It does no I/O: a future nobody
 * waits for is answered only as the connection's I/O is done by others.
 * False for NULL.
 */
RK_EXPORT bool rk_future_ready(const rk_future *f);

/*
 * rk_future_free — give a future back without waiting: its reply is
 * discarded, now or when it arrives. A command not yet written still
 * goes out, with its connection's next write. rk_future_free(NULL) does
 * nothing.
 */
RK_EXPORT void rk_future_free(rk_future *f);

#ifdef __cplusplus
}
#endif

#endif
