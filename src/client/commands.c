/*
 * commands.c — which raw commands may run on a shared connection.
 *
 * rk_client_command sends what the user gives it. On a connection that
 * every thread shares, a command that changes the connection's state
 * (SUBSCRIBE, MULTI, SELECT, ...) would change it for everybody: the
 * replies of other callers would come back QUEUED, or as pub/sub
 * messages, or from another database. Those are refused with the API that
 * does the job. Blocking commands (BLPOP, XREAD BLOCK, WAIT, ...) would
 * hold every caller queued behind them for as long as they block: they
 * run on a pooled connection of their own instead.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include <redkit/client.h>

#include "alloc.h"
#include "error.h"

#include "commands.h"

static bool is(const char *arg, size_t len, const char *name)
{
    size_t n = 0;
    while (name[n]) n++;
    return len == n && strncasecmp(arg, name, n) == 0;
}

typedef struct rule {
    const char *name;
    const char *advice;
} rule;

static const rule stateful[] = {
    {"SUBSCRIBE", "pub/sub needs a connection of its own: use rk_pubsub (redkit/pubsub.h) to subscribe"},
    {"PSUBSCRIBE", "pub/sub needs a connection of its own: use rk_pubsub (redkit/pubsub.h) to subscribe"},
    {"SSUBSCRIBE", "pub/sub needs a connection of its own: use rk_pubsub (redkit/pubsub.h) to subscribe"},
    {"UNSUBSCRIBE", "pub/sub needs a connection of its own: use rk_pubsub (redkit/pubsub.h) to subscribe"},
    {"PUNSUBSCRIBE", "pub/sub needs a connection of its own: use rk_pubsub (redkit/pubsub.h) to subscribe"},
    {"SUNSUBSCRIBE", "pub/sub needs a connection of its own: use rk_pubsub (redkit/pubsub.h) to subscribe"},
    {"MONITOR", "run `redis-cli monitor` instead"},
    {"MULTI", "use rk_pipeline_exec() with .transaction (redkit/pipeline.h)"},
    {"EXEC", "use rk_pipeline_exec() with .transaction (redkit/pipeline.h)"},
    {"DISCARD", "use rk_pipeline_exec() with .transaction (redkit/pipeline.h)"},
    {"WATCH", "use rk_client_watch() (redkit/pipeline.h)"},
    {"UNWATCH", "use rk_client_watch() (redkit/pipeline.h)"},
    {"SELECT", "set rk_client_options.db (one client per database)"},
    {"AUTH", "set rk_client_options.username and .password"},
    {"HELLO", "redkit speaks RESP2; set credentials and client_name in rk_client_options"},
    {"RESET", "free the client with rk_client_free() instead"},
    {"QUIT", "free the client with rk_client_free() instead"},
    {"READONLY", "cluster replica reads are not supported"},
    {"READWRITE", "cluster replica reads are not supported"},
    {"SYNC", "replication commands are not for a client"},
    {"PSYNC", "replication commands are not for a client"},
};

static const rule client_sub[] = {
    {"REPLY", "replies are how redkit matches answers to callers"},
    {"TRACKING", "client-side caching is not available through rk_client_command"},
    {"CACHING", "client-side caching is not available through rk_client_command"},
    {"SETNAME", "set rk_client_options.client_name"},
};

static const char *const blocking[] = {"BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN",
                                       "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF"};

rk__cmd_kind rk__command_kind(int argc, const char *const *argv, const size_t *lens, const char **name,
                              const char **advice)
{
    *name = NULL;
    *advice = NULL;
    for (size_t i = 0; i < sizeof stateful / sizeof stateful[0]; i++)
        if (is(argv[0], lens[0], stateful[i].name)) {
            *name = stateful[i].name;
            *advice = stateful[i].advice;
            return RK__CMD_STATEFUL;
        }
    if (is(argv[0], lens[0], "CLIENT") && argc > 1)
        for (size_t i = 0; i < sizeof client_sub / sizeof client_sub[0]; i++)
            if (is(argv[1], lens[1], client_sub[i].name)) {
                *name = client_sub[i].name;
                *advice = client_sub[i].advice;
                return RK__CMD_STATEFUL;
            }
    for (size_t i = 0; i < sizeof blocking / sizeof blocking[0]; i++)
        if (is(argv[0], lens[0], blocking[i])) return RK__CMD_BLOCKING;
    if (is(argv[0], lens[0], "XREAD") || is(argv[0], lens[0], "XREADGROUP"))
        for (int i = 1; i < argc; i++) {
            if (is(argv[i], lens[i], "STREAMS")) break;
            if (is(argv[i], lens[i], "BLOCK")) return RK__CMD_BLOCKING;
        }
    return RK__CMD_PLAIN;
}

#define MAX_ARGS 1048576

rk_status rk__command_prepare(const char *fn, int argc, const char *const *argv, const size_t *argvlen,
                              size_t small[RK__SMALL_ARGS], size_t **lens, rk__cmd_kind *kind)
{
    *lens = NULL;
    if (!argv) return rk__fail(RK_ERR_INVALID, "%s: argv is NULL", fn);
    if (argc < 1 || argc > MAX_ARGS)
        return rk__fail(RK_ERR_INVALID, "%s: argc %d is outside 1..%d", fn, argc, MAX_ARGS);
    for (int i = 0; i < argc; i++)
        if (!argv[i]) return rk__fail(RK_ERR_INVALID, "%s: argv[%d] is NULL", fn, i);
    size_t *l = (size_t *)argvlen;
    if (!argvlen) {
        l = argc <= RK__SMALL_ARGS ? small : rk__malloc((size_t)argc * sizeof *l);
        if (!l) return rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
        for (int i = 0; i < argc; i++) l[i] = strlen(argv[i]);
    }
    const char *name, *advice;
    *kind = rk__command_kind(argc, argv, l, &name, &advice);
    if (*kind == RK__CMD_STATEFUL) {
        rk__command_lens_free(l, argvlen, small);
        return rk__fail(RK_ERR_INVALID, "%s: %s changes the state of the connection, which other calls share: %s",
                        fn, name, advice);
    }
    *lens = l;
    return RK_OK;
}

void rk__command_lens_free(size_t *lens, const size_t *argvlen, const size_t *small)
{
    if (lens != argvlen && lens != small) rk__free(lens);
}

rk_status rk__command_begin(const char *fn, bool pointers_ok, const rk_command_options *o, int argc,
                            const char *const *argv, const size_t *argvlen, size_t small[RK__SMALL_ARGS],
                            size_t **lens, rk__cmd_kind *kind, int *timeout_ms)
{
    if (!pointers_ok) return rk__fail(RK_ERR_INVALID, "%s: NULL argument", fn);
    *timeout_ms = o ? o->timeout_ms : 0;
    if (*timeout_ms < 0 || *timeout_ms > RK_MAX_TIMEOUT_MS)
        return rk__fail(RK_ERR_INVALID, "%s: timeout_ms %d is outside 0..%d", fn, *timeout_ms, RK_MAX_TIMEOUT_MS);
    return rk__command_prepare(fn, argc, argv, argvlen, small, lens, kind);
}
