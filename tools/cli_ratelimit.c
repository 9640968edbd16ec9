/*
 * cli_ratelimit.c — `redkit limit check|peek|reset KEY --limit SPEC...`:
 * for an operator facing a user who says they are blocked — see which
 * limit refuses them and until when, and forgive them.
 *
 * A limiter keeps no configuration in Redis (the limits travel with every
 * call), so the operator names the limits as the service defines them:
 * NAME:ALGORITHM:LIMIT:PERIOD_MS[:BURST], once per limit (plus cost=N, and
 * the namespace as the global --ns NS or as ns=NS); the key of each limit
 * is "<prefix>:<ns>:{KEY}:<NAME>". Only
 * counts and times are printed, never anything else about the key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const algo_names[] = {"gcra", "sliding", "fixed", "bucket", "concurrency"};

static int parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* NAME:ALGORITHM:LIMIT:PERIOD_MS[:BURST]; "fixed-aligned" is an algorithm
 * name too. The strings point into spec, which is modified. */
static int parse_spec(char *spec, rk_limit *l)
{
    char *f[6] = {0};
    int n = 0;
    for (char *p = spec; n < 6; n++) {
        f[n] = p;
        p = strchr(p, ':');
        if (!p) {
            n++;
            break;
        }
        *p++ = '\0';
    }
    if (n < 4 || n > 5) return -1;
    memset(l, 0, sizeof *l);
    l->name = f[0];
    if (strcmp(f[1], "fixed-aligned") == 0) {
        l->algorithm = RK_LIMIT_FIXED_WINDOW;
        l->aligned = true;
    } else {
        size_t a = 0;
        while (a < 5 && strcmp(f[1], algo_names[a]) != 0) a++;
        if (a == 5) return -1;
        l->algorithm = (rk_limit_algorithm)a;
    }
    if (parse_i64(f[2], &l->limit) || parse_i64(f[3], &l->period_ms)) return -1;
    if (n == 5 && parse_i64(f[4], &l->burst)) return -1;
    return 0;
}

static void print_result(const rk_limiter *lim, const rk_limit *limits, const rk_limit_result *r)
{
    static const char *const paths[] = {"redis", "block-cache", "local", "fail-open", "fail-closed"};
    printf("%s (decided by %s, path %s)\n", r->allowed ? "allowed" : "refused", r->decided_name,
           paths[r->path]);
    for (size_t i = 0; i < r->nlimits; i++) {
        const rk_limit_state *s = &r->limits[i];
        printf("  %-16s %-11s %s limit=%lld remaining=%lld used=%.3f reset_ms=%lld retry_after_ms=%lld\n",
               limits[i].name, algo_names[limits[i].algorithm], s->allowed ? "ok     " : "refused",
               (long long)s->limit, (long long)s->remaining, s->used, (long long)s->reset_ms,
               (long long)s->retry_after_ms);
    }
    char headers[1024];
    if (rk_limit_headers(lim, r, 0, headers, sizeof headers, NULL) == RK_OK) fputs(headers, stdout);
}

static int run(rk_client *client, const char *global_ns, int argc, char **argv)
{
    if (argc < 1) return rk_cli_usage_error("limit: check, peek or reset?");
    const char *sub = argv[0];
    if (strcmp(sub, "check") && strcmp(sub, "peek") && strcmp(sub, "reset"))
        return rk_cli_usage_error("limit: unknown subcommand '%s'", sub);
    if (argc < 2) return rk_cli_usage_error("limit %s: KEY missing", sub);
    const char *key = argv[1], *ns = global_ns;
    int64_t cost = 1;
    rk_limit limits[RK_LIMITER_MAX_LIMITS];
    size_t n = 0;
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "ns=", 3) == 0) {
            if (global_ns && strcmp(global_ns, argv[i] + 3) != 0)
                return rk_cli_usage_error("limit: --ns and ns= name different namespaces");
            ns = argv[i] + 3;
        } else if (strncmp(argv[i], "cost=", 5) == 0) {
            if (parse_i64(argv[i] + 5, &cost) || cost < 0) return rk_cli_usage_error("limit: cost=N wants N >= 0");
        } else {
            if (n == RK_LIMITER_MAX_LIMITS) return rk_cli_usage_error("limit: at most %d limits", RK_LIMITER_MAX_LIMITS);
            if (parse_spec(argv[i], &limits[n]))
                return rk_cli_usage_error("limit: a limit is NAME:ALGORITHM:LIMIT:PERIOD_MS[:BURST]");
            n++;
        }
    }
    if (n == 0) return rk_cli_usage_error("limit %s: at least one limit", sub);
    rk_limiter *lim = NULL;
    rk_status st = rk_limiter_new(client, &(rk_limiter_options){.ns = ns, .limits = limits, .nlimits = n}, &lim);
    if (st != RK_OK) return rk_cli_report(st);
    int rc = RK_CLI_OK;
    rk_limit_result r;
    if (strcmp(sub, "reset") == 0) {
        st = rk_limiter_reset(lim, key);
        if (st == RK_OK) printf("reset\n");
    } else {
        st = strcmp(sub, "check") == 0 ? rk_limiter_check(lim, key, cost, &r) : rk_limiter_peek(lim, key, &r);
        /* The CLI has no failure policy to hide behind: say Redis failed. */
        if (st == RK_OK && r.path != RK_LIMIT_PATH_REDIS) st = r.redis_status;
        if (st == RK_OK) {
            print_result(lim, limits, &r);
            if (!r.allowed) rc = RK_CLI_MISS;
        }
    }
    if (st != RK_OK) rc = rk_cli_report(st);
    rk_limiter_free(lim);
    return rc;
}

const rk_cli_group rk_cli_limit = {
    .name = "limit",
    .usage = "  limit check KEY SPEC... [cost=N] [ns=NS]\n"
             "                                check and consume (exit 1 when refused)\n"
             "  limit peek KEY SPEC... [ns=NS]\n"
             "                                the state of each limit, consuming nothing\n"
             "  limit reset KEY SPEC... [ns=NS]\n"
             "                                forget KEY under those limits\n"
             "      SPEC = NAME:ALGORITHM:LIMIT:PERIOD_MS[:BURST], ALGORITHM one of gcra,\n"
             "      sliding, fixed, fixed-aligned, bucket, concurrency; --ns NS (or ns=NS):\n"
             "      the limiter's namespace, default \"rl\"\n",
    .run = run,
};
