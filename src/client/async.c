/*
 * async.c — commands sent ahead of their replies (redkit/async.h).
 *
 * A future is a blocking call cut in two. rk_client_send does the first
 * half of rk_client_command: it encodes the command and queues it on a
 * shared connection (a lane, mux.c), in a slot that lives inside the
 * future instead of on the caller's stack. rk_future_wait does the second
 * half: it waits for the slot like any caller of the lane, doing the
 * lane's I/O when nobody else does. Between the two the slot is in the
 * lane's queue, where the lane's driver hands it its reply like any
 * other; a future given back early leaves a tombstone there, as a caller
 * that timed out does, so that no reply can ever reach the wrong caller.
 *
 * Nothing here is a thread or an event loop: the callers' own threads do
 * the I/O, as for every call. What futures change is that one thread can
 * have many commands in one write, and many replies in one read.
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/async.h>

#include "alloc.h"
#include "clock.h"
#include "commands.h"
#include "error.h"
#include "forkgen.h"
#include "mux.h"
#include "reply.h"

struct rk_future {
    rk_client *client;
    rk__lane *lane;       /* NULL: run at send (a client without lanes,
                             or the circuit breaker's probe) */
    rk__call k;
    rk__slot slot;        /* in the lane's queue until done or given back */
    rk_reply *reply;
    unsigned generation;  /* rk__fork_generation() when sent */
    rk_status st;         /* the outcome of a command run at send */
    char name[RK__NAME_SHOWN_MAX]; /* the command's name, for messages */
};

static rk_status send_future(const char *fn, rk_client *c, const rk_command_options *o, int argc,
                             const char *const *argv, const size_t *argvlen, rk_future **out)
{
    if (out) *out = NULL;
    size_t small[RK__SMALL_ARGS], *lens;
    rk__cmd_kind kind;
    int timeout_ms;
    rk_status st = rk__command_begin(fn, c && out, o, argc, argv, argvlen, small, &lens, &kind, &timeout_ms);
    if (st != RK_OK) return st;
    rk_future *f = NULL;
    char *cmd = NULL;
    if (kind == RK__CMD_BLOCKING) {
        char shown[RK__NAME_SHOWN_MAX];
        st = rk__fail(RK_ERR_INVALID, "%s: %s may block and would hold up a shared connection: use "
                                      "rk_client_command_opts() with a timeout of its own",
                      fn, rk__printable_name(shown, argv[0], lens[0]));
        goto done;
    }
    if (!(f = rk__calloc(1, sizeof *f))) {
        st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    rk__fork_watch();
    f->client = c;
    f->generation = rk__fork_generation();
    rk__printable_name(f->name, argv[0], lens[0]);
    if (!rk__client_has_lanes(c)) {
        /* No shared connection to queue on: the command runs now, and the
         * future holds its outcome (and rk_last_error's text, in slot.msg). */
        rk_command_options run = {.timeout_ms = timeout_ms};
        f->st = rk_client_command_opts(c, &run, argc, argv, lens, &f->reply);
        if (f->st != RK_OK) snprintf(f->slot.msg, sizeof f->slot.msg, "%s", rk_last_error());
        atomic_store(&f->slot.done, true);
        *out = f;
        f = NULL;
        st = RK_OK;
        goto done;
    }
    int len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
    if (len < 0) {
        cmd = NULL;
        st = rk__fail(RK_ERR_NOMEM, "%s: out of memory encoding the command", fn);
        goto done;
    }
    int64_t now = rk__now_ns();
    f->k = rk__client_call(c, now, timeout_ms ? now + (int64_t)timeout_ms * 1000000 : 0);
    st = rk__client_send(c, &f->k, cmd, (size_t)len, 1, &f->reply, &f->slot, &f->lane);
    if (st == RK_OK && f->k.probe) {
        /* The circuit breaker's half-open probe: every other call fails
         * fast until its outcome is known, so it cannot wait for the
         * caller to get round to rk_future_wait. It runs to its end here
         * and the future holds the outcome. */
        f->st = rk__lane_wait(c, f->lane, &f->k, &f->slot);
        if (f->st != RK_OK) snprintf(f->slot.msg, sizeof f->slot.msg, "%s", rk_last_error());
        f->lane = NULL;
    }
    if (st == RK_OK) {
        *out = f;
        f = NULL;
    }
done:
    if (cmd) redisFreeCommand(cmd);
    rk__free(f);
    rk__command_lens_free(lens, argvlen, small);
    return st;
}

rk_status rk_client_send(rk_client *c, int argc, const char *const *argv, const size_t *argvlen, rk_future **out)
{
    return send_future("rk_client_send", c, NULL, argc, argv, argvlen, out);
}

rk_status rk_client_send_opts(rk_client *c, const rk_command_options *opts, int argc, const char *const *argv,
                              const size_t *argvlen, rk_future **out)
{
    return send_future("rk_client_send_opts", c, opts, argc, argv, argvlen, out);
}

/* Was f sent by this process (not inherited across fork())? */
static bool ours(const rk_future *f) { return f->generation == rk__fork_generation(); }

rk_status rk_future_wait(rk_future *f, rk_reply **reply)
{
    if (reply) *reply = NULL;
    if (!f) return rk__fail(RK_ERR_INVALID, "rk_future_wait: future is NULL");
    if (!reply) {
        rk_future_free(f);
        return rk__fail(RK_ERR_INVALID, "rk_future_wait: reply is NULL (the future was given back)");
    }
    rk_status st;
    if (!ours(f)) {
        /* Its lane was reset in this child; the slot is not queued here. */
        rk_reply_free(f->reply);
        f->reply = NULL;
        st = rk__fail(RK_ERR_INVALID, "rk_future_wait: the future was sent before fork(), by the parent "
                                      "process: its reply is the parent's");
    } else if (!f->lane) {
        st = f->st == RK_OK ? RK_OK : rk__fail_str(f->st, f->slot.msg);
    } else {
        st = rk__lane_wait(f->client, f->lane, &f->k, &f->slot);
        rk__client_record_latency(f->client, rk__now_ns() - f->k.start_ns);
    }
    if (st == RK_OK && f->reply->type == RK_REPLY_ERROR) {
        st = rk__reply_fail(f->reply, f->name);
        f->reply = NULL;
    }
    if (st == RK_OK) *reply = f->reply;
    else rk_reply_free(f->reply);
    rk__free(f);
    return st;
}

bool rk_future_ready(const rk_future *f) { return f && atomic_load(&f->slot.done); }

void rk_future_free(rk_future *f)
{
    if (!f) return;
    if (f->lane && ours(f)) {
        rk__lane_forget(f->client, f->lane, &f->k, &f->slot); /* frees a reply that came */
    } else {
        rk_reply_free(f->reply);
    }
    rk__free(f);
}
