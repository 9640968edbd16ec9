/*
 * commands.h — sorting the commands of rk_client_command: plain ones go
 * to a shared connection, blocking ones to a connection of their own,
 * stateful ones are refused (see commands.c for why).
 */
#ifndef RK_SRC_COMMANDS_H
#define RK_SRC_COMMANDS_H

#include <stddef.h>

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

#endif
