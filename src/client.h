/*
 * client.h — what the modules (cache, sessions, ...) use of a client: run
 * commands through the pool, and read the key prefix.
 */
#ifndef RK_SRC_CLIENT_H
#define RK_SRC_CLIENT_H

#include <stdbool.h>

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

/* Prefix followed by ':' ("" when there is no prefix), and its length. */
const char *rk__client_key_head(const rk_client *client, size_t *len);

#endif
