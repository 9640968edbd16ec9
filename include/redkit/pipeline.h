/*
 * redkit/pipeline.h — batches of commands in one round trip, MULTI/EXEC
 * transactions, and optimistic locking with WATCH.
 *
 * An rk_pipeline is a list of commands of your own (as for
 * rk_client_command) and, once executed, their replies. rk_pipeline_exec()
 * sends them all in one write under one deadline and reads every reply:
 * an error reply to one command is that command's reply, and the others
 * still run. With .transaction set the batch is wrapped in MULTI ... EXEC
 * on a connection of its own (never a shared one), so it is applied all
 * or nothing. rk_client_watch() adds WATCH: it runs a callback of yours
 * that reads the watched keys and queues the writes, executes them as a
 * transaction, and starts over, a bounded number of times, when another
 * client changed a watched key in between.
 *
 * Keys are sent as they are: no prefix or namespace is added.
 *
 * Thread safety: an rk_pipeline belongs to one thread at a time; the
 * client may be shared as usual.
 */
#ifndef REDKIT_PIPELINE_H
#define REDKIT_PIPELINE_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_pipeline rk_pipeline;

/*
 * rk_pipeline_new — an empty pipeline in *out, freed with
 * rk_pipeline_free(). Returns RK_OK, RK_ERR_INVALID (out NULL) or
 * RK_ERR_NOMEM.
 */
RK_EXPORT rk_status rk_pipeline_new(rk_pipeline **out);

/*
 * rk_pipeline_add — append one command (argv, argvlen as for
 * rk_client_command(): argvlen NULL = strlen of each). The arguments are
 * encoded and copied now; none of them need outlive the call. Replies of
 * an earlier execution are dropped. The same commands are refused as by
 * rk_client_command() (SUBSCRIBE, MULTI, WATCH, SELECT, ...: RK_ERR_INVALID
 * naming the API to use), and so are blocking commands (BLPOP, ...), which
 * would hold the batch's connection. Returns RK_OK, RK_ERR_INVALID or
 * RK_ERR_NOMEM; on failure the pipeline is unchanged.
 */
RK_EXPORT rk_status rk_pipeline_add(rk_pipeline *p, int argc, const char *const *argv, const size_t *argvlen);

/* rk_pipeline_count — the number of commands added (0 for NULL). */
RK_EXPORT size_t rk_pipeline_count(const rk_pipeline *p);

/* Options of rk_pipeline_exec(); zeroed = defaults. */
typedef struct rk_pipeline_options {
    int timeout_ms;   /* the whole batch's deadline; 0 = command_timeout_ms */
    bool transaction; /* wrap in MULTI ... EXEC: all or nothing */
} rk_pipeline_options;

/*
 * rk_pipeline_exec — send every command of p in one write and read their
 * replies (opts NULL = defaults). On RK_OK rk_pipeline_reply(p, i) gives
 * command i's reply, an RK_REPLY_ERROR one for a command Redis refused
 * (in a transaction: refused when it ran; the others were still applied,
 * as Redis does). A transaction Redis refused as a whole (a command it
 * rejected while queueing: EXECABORT) is RK_ERR_SERVER with the reason in
 * rk_last_error(), and none of it was applied. Other failures:
 * RK_ERR_INVALID (NULL, an empty pipeline, a bad timeout),
 * RK_ERR_TIMEOUT, RK_ERR_UNAVAILABLE (whether any command was applied is
 * then unknown; the batch is never retried), RK_ERR_AUTH,
 * RK_ERR_PROTOCOL, RK_ERR_NOMEM. The commands stay in p: it can be
 * executed again.
 */
RK_EXPORT rk_status rk_pipeline_exec(rk_client *client, rk_pipeline *p, const rk_pipeline_options *opts);

/*
 * rk_pipeline_reply — command i's reply after a successful
 * rk_pipeline_exec(); NULL when i is out of range or there is none. The
 * reply belongs to the pipeline: valid until it is changed (add, reset,
 * exec) or freed.
 */
RK_EXPORT const rk_reply *rk_pipeline_reply(const rk_pipeline *p, size_t i);

/* rk_pipeline_reset — remove every command and reply, keeping the memory
 * for reuse. NULL is a no-op. */
RK_EXPORT void rk_pipeline_reset(rk_pipeline *p);

/* rk_pipeline_free — release the pipeline and its replies. NULL is a no-op. */
RK_EXPORT void rk_pipeline_free(rk_pipeline *p);

/* ---- WATCH ----------------------------------------------------------------- */

/* The connection a rk_client_watch() callback reads on. */
typedef struct rk_watch rk_watch;

/*
 * The callback of rk_client_watch(): read what it needs through
 * rk_watch_command() (on the connection holding the WATCH), then queue the
 * writes into `queued` (empty on entry) with rk_pipeline_add(). Return
 * RK_OK to execute them as a transaction (nothing queued: nothing is
 * executed and rk_client_watch() returns RK_OK), anything else to give up:
 * rk_client_watch() then returns that status. It may be called again,
 * from the start, after a conflict.
 */
typedef rk_status (*rk_watch_fn)(rk_watch *w, rk_pipeline *queued, void *user);

/*
 * rk_watch_command — run one command on the watch's connection, inside
 * the callback (a read of a watched key, typically). Arguments, reply and
 * statuses as rk_client_command(), whose refusals apply too.
 */
RK_EXPORT rk_status rk_watch_command(rk_watch *w, int argc, const char *const *argv, const size_t *argvlen,
                                     rk_reply **reply);

/* Options of rk_client_watch(); zeroed = defaults. */
typedef struct rk_watch_options {
    int timeout_ms;   /* each attempt's deadline; 0 = command_timeout_ms */
    int max_attempts; /* attempts before RK_ERR_CONFLICT; 0 = 5; 1..1000 */
} rk_watch_options;

/*
 * rk_client_watch — optimistic locking: WATCH the n keys (keys[i] of
 * key_lens[i] bytes; key_lens NULL = strlen), call fn(w, queued, user),
 * then run what it queued as MULTI ... EXEC on the same connection, a
 * connection of its own. When another client changed a watched key in
 * between, EXEC does nothing and the whole is tried again (fn included),
 * up to max_attempts times. On RK_OK `queued` holds the replies of the
 * commands as rk_pipeline_exec() gives them. Returns RK_OK,
 * RK_ERR_CONFLICT (every attempt met a change), fn's own status, or a
 * status of rk_pipeline_exec(). n is 1..1024.
 */
RK_EXPORT rk_status rk_client_watch(rk_client *client, size_t n, const char *const *keys, const size_t *key_lens,
                                    rk_watch_fn fn, void *user, rk_pipeline *queued,
                                    const rk_watch_options *opts);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_PIPELINE_H */
