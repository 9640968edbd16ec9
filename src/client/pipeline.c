/*
 * pipeline.c — the public pipeline, transaction and WATCH API
 * (redkit/pipeline.h).
 *
 * A pipeline keeps its commands encoded, one after the other, in one
 * buffer: executing it is one write of that buffer (with MULTI before and
 * EXEC after for a transaction) and n replies read in order. A plain batch
 * goes to a shared connection like any call (its bytes stay together in
 * the connection's output, so nothing interleaves); a transaction and a
 * WATCH take a connection of their own, because MULTI and WATCH are state
 * of the connection, and WATCH must hold across the caller's reads.
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/pipeline.h>

#include "alloc.h"
#include "client.h"
#include "clock.h"
#include "commands.h"
#include "error.h"
#include "mux.h"
#include "reply.h"

struct rk_pipeline {
    char *buf; /* the encoded commands */
    size_t len, cap;
    size_t n;             /* commands */
    rk_reply **replies;   /* n of them after a successful exec, else NULL */
};

struct rk_watch {
    rk_client *client;
    rk__conn *conn;
    int64_t deadline_ns;
};

static const char multi_cmd[] = "*1\r\n$5\r\nMULTI\r\n";
static const char exec_cmd[] = "*1\r\n$4\r\nEXEC\r\n";
static const char unwatch_cmd[] = "*1\r\n$7\r\nUNWATCH\r\n";

#define MAX_WATCH_KEYS 1024
#define DEFAULT_ATTEMPTS 5
#define MAX_ATTEMPTS 1000

static void drop_replies(rk_pipeline *p)
{
    if (!p->replies) return;
    for (size_t i = 0; i < p->n; i++) rk_reply_free(p->replies[i]);
    rk__free(p->replies);
    p->replies = NULL;
}

rk_status rk_pipeline_new(rk_pipeline **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_pipeline_new: out is NULL");
    *out = rk__calloc(1, sizeof **out);
    return *out ? RK_OK : rk__fail(RK_ERR_NOMEM, "rk_pipeline_new: out of memory");
}

/* Check argv as rk_client_command does and encode it: *cmd is the
 * caller's (redisFreeCommand). blocking_ok = a blocking command may run. */
static rk_status encode(const char *fn, int argc, const char *const *argv, const size_t *argvlen, bool blocking_ok,
                        char **cmd, size_t *len)
{
    size_t small[RK__SMALL_ARGS], *lens;
    rk__cmd_kind kind;
    rk_status st = rk__command_prepare(fn, argc, argv, argvlen, small, &lens, &kind);
    if (st != RK_OK) return st;
    char shown[RK__NAME_SHOWN_MAX];
    if (kind == RK__CMD_BLOCKING && !blocking_ok)
        st = rk__fail(RK_ERR_INVALID, "%s: %s may block and would hold the batch's connection: use "
                                      "rk_client_command_opts() with a timeout of its own",
                      fn, rk__printable_name(shown, argv[0], lens[0]));
    if (st == RK_OK) {
        int n = redisFormatCommandArgv(cmd, argc, (const char **)argv, lens);
        if (n < 0) st = rk__fail(RK_ERR_NOMEM, "%s: out of memory encoding the command", fn);
        else *len = (size_t)n;
    }
    rk__command_lens_free(lens, argvlen, small);
    return st;
}

rk_status rk_pipeline_add(rk_pipeline *p, int argc, const char *const *argv, const size_t *argvlen)
{
    if (!p) return rk__fail(RK_ERR_INVALID, "rk_pipeline_add: pipeline is NULL");
    char *cmd;
    size_t len = 0;
    rk_status st = encode("rk_pipeline_add", argc, argv, argvlen, false, &cmd, &len);
    if (st != RK_OK) return st;
    if (p->cap - p->len < len) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap - p->len < len) cap *= 2;
        char *grown = rk__realloc(p->buf, cap);
        if (!grown) {
            redisFreeCommand(cmd);
            return rk__fail(RK_ERR_NOMEM, "rk_pipeline_add: out of memory");
        }
        p->buf = grown;
        p->cap = cap;
    }
    drop_replies(p);
    memcpy(p->buf + p->len, cmd, len);
    p->len += len;
    p->n++;
    redisFreeCommand(cmd);
    return RK_OK;
}

size_t rk_pipeline_count(const rk_pipeline *p) { return p ? p->n : 0; }

const rk_reply *rk_pipeline_reply(const rk_pipeline *p, size_t i)
{
    return p && p->replies && i < p->n ? p->replies[i] : NULL;
}

void rk_pipeline_reset(rk_pipeline *p)
{
    if (!p) return;
    drop_replies(p);
    p->len = 0;
    p->n = 0;
}

void rk_pipeline_free(rk_pipeline *p)
{
    if (!p) return;
    drop_replies(p);
    rk__free(p->buf);
    rk__free(p);
}

static rk_status deadline_of(rk_client *c, const char *fn, int timeout_ms, int64_t *deadline_ns)
{
    if (timeout_ms < 0 || timeout_ms > RK_MAX_TIMEOUT_MS)
        return rk__fail(RK_ERR_INVALID, "%s: timeout_ms %d is outside 0..%d", fn, timeout_ms, RK_MAX_TIMEOUT_MS);
    *deadline_ns = timeout_ms ? rk__now_ns() + (int64_t)timeout_ms * 1000000 : rk__client_deadline(c);
    return RK_OK;
}

/* MULTI, the commands, EXEC: a buffer the caller frees. */
static char *wrap(const rk_pipeline *p, size_t *len)
{
    *len = sizeof multi_cmd - 1 + p->len + sizeof exec_cmd - 1;
    char *tx = rk__malloc(*len);
    if (!tx) return NULL;
    memcpy(tx, multi_cmd, sizeof multi_cmd - 1);
    memcpy(tx + sizeof multi_cmd - 1, p->buf, p->len);
    memcpy(tx + sizeof multi_cmd - 1 + p->len, exec_cmd, sizeof exec_cmd - 1);
    return tx;
}

/* The n + 2 replies of MULTI, the commands (QUEUED) and EXEC, freed here:
 * EXEC's elements become p's replies. RK_ERR_CONFLICT when EXEC answered
 * nil (a watched key changed). */
static rk_status take_exec(rk_pipeline *p, rk_reply **r)
{
    size_t n = p->n;
    rk_reply *exec = r[n + 1];
    rk_status st = RK_OK;
    if (r[0]->type == RK_REPLY_ERROR) {
        st = rk__fail(rk__reply_error_status(r[0]->str, r[0]->len), "MULTI: %.*s", (int)r[0]->len, r[0]->str);
    } else if (exec->type == RK_REPLY_NIL) {
        st = rk__fail(RK_ERR_CONFLICT, "EXEC: a watched key was changed; nothing was applied");
    } else if (exec->type == RK_REPLY_ERROR) {
        const rk_reply *why = NULL;
        for (size_t i = 1; i <= n && !why; i++)
            if (r[i]->type == RK_REPLY_ERROR) why = r[i];
        st = rk__fail(rk__reply_error_status(exec->str, exec->len), "EXEC: %.*s%s%.*s (nothing was applied)",
                      (int)(exec->len < RK__ERROR_TEXT_MAX ? exec->len : RK__ERROR_TEXT_MAX), exec->str,
                      why ? "; first refused: " : "",
                      why ? (int)(why->len < RK__ERROR_TEXT_MAX ? why->len : RK__ERROR_TEXT_MAX) : 0,
                      why ? why->str : "");
    } else if (exec->type != RK_REPLY_ARRAY || exec->elements != n) {
        st = rk__fail(RK_ERR_PROTOCOL, "EXEC: a reply that is not an array of %zu", n);
    } else {
        p->replies = exec->element;
        exec->element = NULL;
        exec->elements = 0;
    }
    for (size_t i = 0; i < n + 2; i++) rk_reply_free(r[i]);
    return st;
}

rk_status rk_pipeline_exec(rk_client *c, rk_pipeline *p, const rk_pipeline_options *opts)
{
    if (!c || !p) return rk__fail(RK_ERR_INVALID, "rk_pipeline_exec: NULL argument");
    if (p->n == 0) return rk__fail(RK_ERR_INVALID, "rk_pipeline_exec: the pipeline is empty");
    static const rk_pipeline_options defaults = {0};
    if (!opts) opts = &defaults;
    int64_t deadline = 0;
    rk_status st = deadline_of(c, "rk_pipeline_exec", opts->timeout_ms, &deadline);
    if (st != RK_OK) return st;
    drop_replies(p);
    size_t total = opts->transaction ? p->n + 2 : p->n;
    rk_reply **r = rk__calloc(total, sizeof *r);
    if (!r) return rk__fail(RK_ERR_NOMEM, "rk_pipeline_exec: out of memory");
    if (!opts->transaction) {
        st = rk__client_encoded(c, p->buf, p->len, p->n, r, deadline, false);
        if (st == RK_OK) p->replies = r;
        else rk__free(r);
        return st;
    }
    size_t len = 0;
    char *tx = wrap(p, &len);
    if (!tx) {
        rk__free(r);
        return rk__fail(RK_ERR_NOMEM, "rk_pipeline_exec: out of memory");
    }
    st = rk__client_encoded(c, tx, len, total, r, deadline, true);
    rk__free(tx);
    if (st == RK_OK) st = take_exec(p, r);
    rk__free(r);
    return st;
}

/* ---- WATCH ------------------------------------------------------------------- */

rk_status rk_watch_command(rk_watch *w, int argc, const char *const *argv, const size_t *argvlen, rk_reply **reply)
{
    if (reply) *reply = NULL;
    if (!w || !reply) return rk__fail(RK_ERR_INVALID, "rk_watch_command: NULL argument");
    char *cmd;
    size_t len = 0;
    rk_status st = encode("rk_watch_command", argc, argv, argvlen, false, &cmd, &len);
    if (st != RK_OK) return st;
    st = rk__conn_request(w->conn, cmd, len, 1, reply, w->deadline_ns);
    redisFreeCommand(cmd);
    if (st == RK_OK && (*reply)->type == RK_REPLY_ERROR) {
        char shown[RK__NAME_SHOWN_MAX];
        st = rk__reply_fail(*reply, rk__printable_name(shown, argv[0], argvlen ? argvlen[0] : strlen(argv[0])));
        *reply = NULL;
    }
    return st;
}

/* One attempt of rk_client_watch on a leased connection. */
static rk_status watch_once(rk_client *c, rk__conn *conn, int64_t deadline, const char *watch, size_t watch_len,
                            rk_watch_fn fn, void *user, rk_pipeline *p)
{
    rk_reply *r = NULL;
    rk_status st = rk__conn_request(conn, watch, watch_len, 1, &r, deadline);
    if (st != RK_OK) return st;
    if (r->type == RK_REPLY_ERROR) return rk__reply_fail(r, "WATCH");
    rk_reply_free(r);
    rk_pipeline_reset(p);
    rk_watch w = {.client = c, .conn = conn, .deadline_ns = deadline};
    st = fn(&w, p, user);
    if (st != RK_OK || p->n == 0) {
        /* Leave the connection as it was found: no key watched. */
        if (!rk__conn_broken(conn)) {
            char saved[RK__ERRMSG_MAX];
            snprintf(saved, sizeof saved, "%s", rk_last_error());
            if (rk__conn_request(conn, unwatch_cmd, sizeof unwatch_cmd - 1, 1, &r, deadline) == RK_OK)
                rk_reply_free(r);
            rk__fail_str(st, saved);
        }
        return st;
    }
    size_t len = 0;
    char *tx = wrap(p, &len);
    rk_reply **rs = rk__calloc(p->n + 2, sizeof *rs);
    if (!tx || !rs) {
        rk__free(tx);
        rk__free(rs);
        rk__conn_set_broken(conn); /* still watching: not to be reused */
        return rk__fail(RK_ERR_NOMEM, "rk_client_watch: out of memory");
    }
    st = rk__conn_request(conn, tx, len, p->n + 2, rs, deadline);
    rk__free(tx);
    if (st == RK_OK) st = take_exec(p, rs);
    rk__free(rs);
    return st;
}

rk_status rk_client_watch(rk_client *c, size_t n, const char *const *keys, const size_t *key_lens, rk_watch_fn fn,
                          void *user, rk_pipeline *queued, const rk_watch_options *opts)
{
    if (!c || !keys || !fn || !queued) return rk__fail(RK_ERR_INVALID, "rk_client_watch: NULL argument");
    if (n < 1 || n > MAX_WATCH_KEYS)
        return rk__fail(RK_ERR_INVALID, "rk_client_watch: %zu keys is outside 1..%d", n, MAX_WATCH_KEYS);
    static const rk_watch_options defaults = {0};
    if (!opts) opts = &defaults;
    int attempts = opts->max_attempts ? opts->max_attempts : DEFAULT_ATTEMPTS;
    if (attempts < 1 || attempts > MAX_ATTEMPTS)
        return rk__fail(RK_ERR_INVALID, "rk_client_watch: max_attempts %d is outside 1..%d", attempts, MAX_ATTEMPTS);
    int64_t unused;
    rk_status st = deadline_of(c, "rk_client_watch", opts->timeout_ms, &unused);
    if (st != RK_OK) return st;

    const char **argv = rk__malloc((n + 1) * sizeof *argv);
    size_t *lens = rk__malloc((n + 1) * sizeof *lens);
    char *watch = NULL;
    int watch_len = -1;
    if (argv && lens) {
        argv[0] = "WATCH";
        lens[0] = 5;
        for (size_t i = 0; i < n; i++) {
            argv[i + 1] = keys[i];
            lens[i + 1] = keys[i] ? (key_lens ? key_lens[i] : strlen(keys[i])) : 0;
        }
        bool null_key = false;
        for (size_t i = 0; i < n; i++) null_key |= !keys[i];
        if (null_key) st = rk__fail(RK_ERR_INVALID, "rk_client_watch: a key is NULL");
        else watch_len = redisFormatCommandArgv(&watch, (int)n + 1, argv, lens);
    }
    rk__free(argv);
    rk__free(lens);
    if (st != RK_OK) return st;
    if (watch_len < 0) return rk__fail(RK_ERR_NOMEM, "rk_client_watch: out of memory");

    for (int attempt = 0; attempt < attempts; attempt++) {
        int64_t now = rk__now_ns();
        int64_t deadline = opts->timeout_ms ? now + (int64_t)opts->timeout_ms * 1000000 : rk__client_deadline(c);
        rk__call k = {.deadline_ns = deadline, .start_ns = now, .dead_ns = deadline, .exclusive = true};
        rk__conn *conn;
        if ((st = rk__pool_acquire(c, &k, &conn)) != RK_OK) break;
        st = watch_once(c, conn, k.deadline_ns, watch, (size_t)watch_len, fn, user, queued);
        rk__pool_release(c, &k, conn, st);
        if (st != RK_ERR_CONFLICT) break;
    }
    redisFreeCommand(watch);
    if (st == RK_ERR_CONFLICT)
        return rk__fail(RK_ERR_CONFLICT, "rk_client_watch: a watched key changed on each of %d attempts", attempts);
    return st;
}
