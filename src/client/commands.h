/*
 * commands.h — sorting the commands of rk_client_command: plain ones go
 * to a shared connection, blocking ones to a connection of their own,
 * stateful ones are refused (see commands.c for why).
 */
#ifndef RK_SRC_COMMANDS_H
#define RK_SRC_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>

#include <redkit/status.h>

typedef enum rk__cmd_kind {
    RK__CMD_PLAIN,    /* any connection, shared or not */
    RK__CMD_BLOCKING, /* may block on the server: an exclusive connection */
    RK__CMD_STATEFUL  /* changes the connection's state: refused */
} rk__cmd_kind;

/* The kind of argv[0..argc-1] (lengths in lens; argc >= 1). For a stateful
 * command *name is its name in capitals (the subcommand, for CLIENT ...)
 * and *advice the API to use instead; both static strings. Pure. */
rk__cmd_kind rk__command_kind(int argc, const char *const *argv, const size_t *lens, const char **name,
                              const char **advice);

struct rk_command_options;


/* Arguments this many or fewer need no allocation for their lengths. */
#define RK__SMALL_ARGS 16

/* Check a raw command as rk_client_command takes it (fn names the caller
 * in messages): argv non-NULL, argc 1..1048576, no NULL argument; its
 * lengths in *lens (argvlen itself, or strlen of each, in small or
 * allocated); its kind in *kind. A stateful command is RK_ERR_INVALID
 * naming the API to use. On RK_OK release *lens with
 * rk__command_lens_free(). RK_ERR_INVALID, RK_ERR_NOMEM otherwise. */
rk_status rk__command_prepare(const char *fn, int argc, const char *const *argv, const size_t *argvlen,
                              size_t small[RK__SMALL_ARGS], size_t **lens, rk__cmd_kind *kind);
void rk__command_lens_free(size_t *lens, const size_t *argvlen, const size_t *small);

/* What every raw command call (rk_client_command_opts, rk_client_send_opts)
 * checks first: its pointers (pointers_ok: the client and the out
 * parameter are not NULL), opts->timeout_ms (opts may be NULL: 0) into
 * *timeout_ms, and argv as rk__command_prepare does. RK_ERR_INVALID,
 * RK_ERR_NOMEM; on RK_OK release *lens with rk__command_lens_free(). */
rk_status rk__command_begin(const char *fn, bool pointers_ok, const struct rk_command_options *opts, int argc,
                            const char *const *argv, const size_t *argvlen, size_t small[RK__SMALL_ARGS],
                            size_t **lens, rk__cmd_kind *kind, int *timeout_ms);

#endif
