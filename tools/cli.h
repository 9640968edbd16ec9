/*
 * cli.h — what the redkit tool's command groups share.
 *
 * A module's commands live in a file of their own, tools/cli_<module>.c,
 * as one group: `redkit sessions list USER` runs the group "sessions" with
 * argv {"list", "USER"}. The group gets an open client (the global options
 * --url etc. are already applied) and the --ns option's namespace, and
 * returns the tool's exit status.
 * redkit.c lists the groups in its groups[] table and prints each group's
 * usage lines under --help. A group never prints a secret (a session
 * token, an API key, a password): only hashes, counts and display forms.
 */
#ifndef RK_TOOLS_CLI_H
#define RK_TOOLS_CLI_H

#include <redkit/redkit.h>

/* The tool's exit statuses: success, "not found", any error. */
enum { RK_CLI_OK = 0, RK_CLI_MISS = 1, RK_CLI_ERROR = 2 };

typedef struct rk_cli_group {
    const char *name;  /* the command word: "sessions" */
    const char *usage; /* help lines, each "  sessions list USER   what it does\n" */
    /* Run subcommand argv[0] with its arguments argv[1..argc-1] (argc may
     * be 0: no subcommand given), in namespace ns (the global --ns NS,
     * which may come anywhere on the line; NULL: the module's default). */
    int (*run)(rk_client *client, const char *ns, int argc, char **argv);
} rk_cli_group;

/* A usage error: "redkit: <message>" and a hint on stderr; returns
 * RK_CLI_ERROR. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
int rk_cli_usage_error(const char *fmt, ...);

/* A failed library call: the status's name and rk_last_error() on stderr;
 * returns RK_CLI_MISS for RK_MISS, RK_CLI_ERROR otherwise. */
int rk_cli_report(rk_status st);

#endif /* RK_TOOLS_CLI_H */
