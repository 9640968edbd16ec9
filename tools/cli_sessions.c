/*
 * cli_sessions.c — `redkit sessions ...`: what an operator needs of the
 * session store from a shell (the namespace is --ns NS, default "sess").
 *
 *     redkit sessions list USER         one line per live session
 *     redkit sessions revoke-user USER  log USER out everywhere
 *     redkit sessions count             sessions in the namespace
 *
 * A session is shown by its id (a digest of its token, as Redis knows it)
 * and its times; a token is never printed — the tool never has one, and
 * the id cannot be turned back into one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Unix ms as "2026-12-04T15:36:21Z". */
static const char *utc(int64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm)) snprintf(buf, size, "?");
    return buf;
}

static int run(rk_client *client, const char *ns, int argc, char **argv)
{
    if (argc < 1) return rk_cli_usage_error("sessions: expected list USER, revoke-user USER or count");
    const char *sub = argv[0];
    int want = strcmp(sub, "count") == 0 ? 1 : 2;
    if (strcmp(sub, "list") && strcmp(sub, "revoke-user") && strcmp(sub, "count"))
        return rk_cli_usage_error("sessions: unknown subcommand (expected list, revoke-user or count)");
    if (argc != want) return rk_cli_usage_error("sessions %s: expected %s", sub, want == 2 ? "USER" : "no argument");

    rk_sessions *s;
    rk_status st = rk_sessions_new(client, &(rk_sessions_options){.ns = ns}, &s);
    if (st != RK_OK) return rk_cli_report(st);
    int status = RK_CLI_OK;
    if (strcmp(sub, "list") == 0) {
        rk_session_list *l;
        st = rk_sessions_list(s, argv[1], &l);
        if (st == RK_OK) {
            for (size_t i = 0; i < l->n; i++) {
                const rk_session_info *e = &l->sessions[i];
                char a[32], b[32], c[32], d[32];
                printf("%s issued=%s last_access=%s expires=%s deadline=%s\n", e->id, utc(e->issued_ms, a, sizeof a),
                       utc(e->last_access_ms, b, sizeof b), utc(e->expires_ms, c, sizeof c),
                       utc(e->deadline_ms, d, sizeof d));
            }
            rk_session_list_free(l);
        }
    } else if (strcmp(sub, "revoke-user") == 0) {
        size_t n = 0;
        st = rk_sessions_destroy_user(s, argv[1], NULL, &n);
        if (st == RK_OK) printf("%zu\n", n);
    } else {
        uint64_t n = 0;
        st = rk_sessions_count(s, &n);
        if (st == RK_OK) printf("%" PRIu64 "\n", n);
    }
    if (st != RK_OK) status = rk_cli_report(st);
    rk_sessions_free(s);
    return status;
}

const rk_cli_group rk_cli_sessions = {
    .name = "sessions",
    .usage = "  sessions list USER        the live sessions of USER (id and times; never a token)\n"
             "  sessions revoke-user USER destroy every session of USER; prints how many\n"
             "  sessions count            how many sessions the namespace holds\n"
             "      (--ns NS: the sessions' namespace, default \"sess\")\n",
    .run = run,
};
