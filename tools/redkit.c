/*
 * redkit.c — the redkit command-line tool: read and write redkit's cache
 * from a shell, with the same key naming and value format as the library.
 *
 *     redkit [--url URL] [--ns NS] [--raw] COMMAND [ARGS]
 *
 * It is a thin shell over the public API and nothing else, so what it does
 * is what a program linked with redkit would see. Exit status: 0 success,
 * 1 miss (the key is absent), 2 any error, usage errors included, so
 * scripts can tell "not cached" from "Redis is down".
 *
 * Besides the cache commands it answers the troubleshooting questions of
 * a deployment: how the server's memory stands and whether it will evict
 * (stats, memory: rk_server_memory()), and which commands were slow
 * (slowlog: SLOWLOG GET through rk_client_command()).
 *
 * Options are parsed by hand rather than with getopt_long() to stay
 * portable and to keep every message in one format. They may appear
 * anywhere before a "--"; everything after "--" is an argument, which is
 * how a value that starts with '-' is written.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redkit/redkit.h>

#include "cli.h"

enum { EXIT_OK = RK_CLI_OK, EXIT_MISS = RK_CLI_MISS, EXIT_ERROR = RK_CLI_ERROR };

/* The command groups of other files (cli.h): `redkit NAME SUB ARGS...`. */
extern const rk_cli_group rk_cli_apikeys; /* cli_apikeys.c */

static const rk_cli_group *const groups[] = {
    &rk_cli_apikeys,
    NULL /* the list ends here */
};

static const rk_cli_group *group_named(const char *name)
{
    for (size_t i = 0; groups[i] != NULL; i++)
        if (strcmp(groups[i]->name, name) == 0)
            return groups[i];
    return NULL;
}

static const char usage_text[] =
    "usage: redkit [--url URL] [--ns NS] [--raw] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  ping                          check that Redis answers\n"
    "  get KEY                       print the value of KEY\n"
    "  set KEY VALUE [--ttl SECONDS] store VALUE (default TTL 300 s;\n"
    "                                --ttl none: never expire)\n"
    "  del KEY                       delete KEY\n"
    "  ttl KEY                       print the seconds KEY has left (or \"none\")\n"
    "  stats                         the server at a glance: version, clients, ops,\n"
    "                                hit ratio, memory, evictions, keys\n"
    "  memory                        the server's memory, as INFO memory with units\n"
    "  slowlog [N]                   the N (default 10) latest slow commands\n"
    "                                (their arguments may include keys)\n"
    "\n"
    "options:\n"
    "  --url URL   Redis to use (default: $REDIS_URL, else redis://127.0.0.1:6379)\n"
    "  --ns NS     cache namespace (default \"cache\": key K is <prefix:>cache:K)\n"
    "  --raw       plain values with no type header, as redis-cli reads and\n"
    "              writes them\n"
    "  -h, --help  show this help\n"
    "  --version   show the library version\n"
    "\n"
    "exit status: 0 ok, 1 key not found, 2 error\n";

typedef struct args {
    const char *url;
    const char *ns;
    const char *ttl;      /* --ttl as written; NULL when absent */
    bool raw;
    const char *cmd;
    char *operand[16];
    int noperands;        /* all of them, even beyond the sixteen kept */
} args;

/* A usage error: the message, a hint, and the error exit status. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 0)))
#endif
static int vusage_error(const char *fmt, va_list ap)
{
    fputs("redkit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'redkit --help'.\n", stderr);
    return EXIT_ERROR;
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int status = vusage_error(fmt, ap);
    va_end(ap);
    return status;
}

int rk_cli_usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int status = vusage_error(fmt, ap);
    va_end(ap);
    return status;
}

/*
 * A word of the command line as a message may repeat it: only when it is a
 * plain word. Anything else may be a URL with a password typed where a
 * command or an option was expected ("redkit redis://:pw@host ping"), and
 * is not echoed. The option name of "--name=value" is shown without the
 * value.
 */
static const char *shown(const char *word, char *buf, size_t cap)
{
    size_t n = 0;

    while (word[n] != '\0' && word[n] != '=' &&
           (isalnum((unsigned char)word[n]) || strchr("_.-", word[n]) != NULL))
        n++;
    if (n == 0 || n > 32 || (word[n] != '\0' && word[n] != '='))
        return "(not shown)";
    snprintf(buf, cap, "%.*s%s", (int)n, word, word[n] == '=' ? "=..." : "");
    return buf;
}

/* A failed library call: the status's name and the detail, which redkit
 * guarantees never contains a password. RK_MISS is reported the same way
 * but gives its own exit status. */
static int report_detail(rk_status st, const char *detail)
{
    if (detail[0] != '\0')
        fprintf(stderr, "redkit: %s: %s\n", rk_strerror(st), detail);
    else
        fprintf(stderr, "redkit: %s\n", rk_strerror(st));
    return st == RK_MISS ? EXIT_MISS : EXIT_ERROR;
}

static int report(rk_status st)
{
    return report_detail(st, rk_last_error());
}

int rk_cli_report(rk_status st)
{
    return report(st);
}

/*
 * If argv[*i] is the option --name, written "--name VALUE" or
 * "--name=VALUE", store VALUE in *value, leave *i on the last argument
 * used and return 1. Return 0 when argv[*i] is something else and -1 when
 * the value is missing.
 */
static int option_value(const char *name, int argc, char **argv, int *i,
                        const char **value)
{
    const char *arg = argv[*i] + 2; /* past "--" */
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

/* Parse the command line into *a. Returns -1 to continue, or the exit
 * status to end with (after --help, --version or a usage error). */
static int parse_args(int argc, char **argv, args *a)
{
    static const char *const valued[] = { "url", "ns", "ttl" };
    bool options_done = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (a->cmd == NULL)
                a->cmd = arg;
            else if (a->noperands++ < 16)
                a->operand[a->noperands - 1] = (char *)arg;
            continue; /* main() checks the count */
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(usage_text, stdout);
            for (size_t g = 0; groups[g] != NULL; g++)
                fputs(groups[g]->usage, stdout);
            return EXIT_OK;
        } else if (strcmp(arg, "--version") == 0) {
            printf("redkit %s\n", rk_version());
            return EXIT_OK;
        } else if (strcmp(arg, "--raw") == 0) {
            a->raw = true;
        } else {
            const char **dest[] = { &a->url, &a->ns, &a->ttl };
            int found = 0;

            for (size_t k = 0; k < 3 && found == 0 && arg[1] == '-'; k++) {
                found = option_value(valued[k], argc, argv, &i, dest[k]);
                if (found < 0)
                    return usage_error("option '%s' needs a value", arg);
            }
            if (found == 0) {
                char b[48];

                return usage_error("unknown option '%s'", shown(arg, b, sizeof b));
            }
        }
    }
    if (a->cmd == NULL)
        return usage_error("no command given");
    return -1;
}

/* --ttl SECONDS: a positive whole number of seconds, or "none". */
static int parse_ttl(const char *text, rk_cache_set_options *opts)
{
    char *end;
    long long s;

    if (strcmp(text, "none") == 0) {
        opts->ttl_s = RK_TTL_NONE;
        return 0;
    }
    errno = 0;
    s = strtoll(text, &end, 10);
    /* The upper bound keeps the value in milliseconds within int64_t. */
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || s <= 0 ||
        s > INT64_MAX / 1000)
        return -1;
    opts->ttl_s = s;
    return 0;
}

/* get: the value followed by a newline. In typed mode a value stored as an
 * int64 or a double is printed as a number rather than refused. */
static int cmd_get(rk_cache *cache, const char *key)
{
    void *value;
    size_t len;
    rk_status st = rk_cache_get(cache, key, &value, &len);

    if (st == RK_OK) {
        fwrite(value, 1, len, stdout);
        putchar('\n');
        rk_free(value);
        return EXIT_OK;
    }
    if (st == RK_ERR_TYPE) {
        char detail[256];
        int64_t i;
        double d;

        /* Keep the first message: the retries below overwrite it. */
        snprintf(detail, sizeof detail, "%s", rk_last_error());
        if (rk_cache_get_i64(cache, key, &i) == RK_OK) {
            printf("%lld\n", (long long)i);
            return EXIT_OK;
        }
        if (rk_cache_get_double(cache, key, &d) == RK_OK) {
            printf("%.17g\n", d);
            return EXIT_OK;
        }
        report_detail(st, detail);
        fputs("redkit: hint: values written by other clients are read with --raw\n", stderr);
        return EXIT_ERROR;
    }
    return report(st);
}

static int cmd_ttl(rk_cache *cache, const char *key)
{
    int64_t ms;
    rk_status st = rk_cache_ttl_ms(cache, key, &ms);

    if (st != RK_OK)
        return report(st);
    if (ms == RK_TTL_NONE)
        printf("none\n");
    else
        printf("%lld\n", (long long)((ms + 500) / 1000)); /* rounded like TTL */
    return EXIT_OK;
}

/* ---- stats, memory, slowlog -------------------------------------------- */

/* n bytes with a binary unit: "1.50 MiB". */
static const char *human_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)n;
    size_t u = 0;

    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%" PRIu64 " B", n);
    else
        snprintf(buf, cap, "%.2f %s", v, units[u]);
    return buf;
}

/* One "name   value" line: aligned for the eye, one field per line for
 * grep and awk. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void row(const char *name, const char *fmt, ...)
{
    va_list ap;

    printf("%-24s ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void bytes_row(const char *name, uint64_t n)
{
    char h[32];

    row(name, "%" PRIu64 " (%s)", n, human_bytes(n, h, sizeof h));
}

/* The server set up badly for a cache: said on stderr, so stdout stays
 * the figures, and the exit status stays 0 (the figures were read). */
static void print_warnings(const rk_memory_info *m)
{
    if (m->warnings & RK_MEMORY_WARN_NO_MAXMEMORY)
        fputs("redkit: warning: maxmemory is 0 (no limit): cached values pile up until the "
              "server runs out of memory; set maxmemory and maxmemory-policy allkeys-lru\n",
              stderr);
    if (m->warnings & RK_MEMORY_WARN_NOEVICTION)
        fputs("redkit: warning: maxmemory-policy is noeviction: once memory is full every "
              "write fails instead of evicting old values; use allkeys-lru or volatile-lru\n",
              stderr);
}

static void maxmemory_row(const rk_memory_info *m)
{
    char h[32];

    if (m->maxmemory == 0)
        row("maxmemory", "0 (no limit)");
    else
        row("maxmemory", "%" PRIu64 " (%s, %.1f%% used)", m->maxmemory,
            human_bytes(m->maxmemory, h, sizeof h),
            100.0 * (double)m->used_memory / (double)m->maxmemory);
}

static void keys_row(const rk_memory_info *m)
{
    row("keys", "%" PRIu64 " (db %d, %" PRIu64 " with a TTL)", m->db_keys, m->db, m->db_expires);
}

/* stats: the server at a glance, from one INFO, and the round trip of a
 * PING from here on an open connection: the first PING opens it, so the
 * second one is timed, by the client's own latency figures. */
static int cmd_stats(rk_client *client)
{
    rk_memory_info m;
    rk_latency before, after;
    char h[32];
    rk_status st = rk_client_ping(client);

    rk_client_latency_get(client, &before);
    if (st == RK_OK)
        st = rk_client_ping(client);
    rk_client_latency_get(client, &after);
    if (st == RK_OK)
        st = rk_server_memory(client, &m);
    if (st != RK_OK)
        return report(st);
    row("redis_version", "%s", m.redis_version[0] ? m.redis_version : "?");
    row("uptime", "%" PRIu64 " s (%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m)", m.uptime_s,
        m.uptime_s / 86400, m.uptime_s / 3600 % 24, m.uptime_s / 60 % 60);
    row("connected_clients", "%" PRIu64, m.connected_clients);
    row("ops_per_sec", "%" PRIu64, m.ops_per_sec);
    row("total_commands", "%" PRIu64, m.total_commands);
    row("keyspace_hits", "%" PRIu64, m.keyspace_hits);
    row("keyspace_misses", "%" PRIu64, m.keyspace_misses);
    if (m.keyspace_hits + m.keyspace_misses)
        row("hit_ratio", "%.1f%%", 100.0 * m.hit_ratio);
    else
        row("hit_ratio", "- (no lookups yet)");
    row("used_memory", "%s", human_bytes(m.used_memory, h, sizeof h));
    maxmemory_row(&m);
    row("maxmemory_policy", "%s", m.maxmemory_policy[0] ? m.maxmemory_policy : "?");
    row("evicted_keys", "%" PRIu64, m.evicted_keys);
    row("expired_keys", "%" PRIu64, m.expired_keys);
    keys_row(&m);
    row("ping_us", "%" PRIu64 " (one PING from here)", after.sum_us - before.sum_us);
    print_warnings(&m);
    return EXIT_OK;
}

/* memory: what `redis-cli INFO memory` shows that matters, with units. */
static int cmd_memory(rk_client *client)
{
    rk_memory_info m;
    rk_status st = rk_server_memory(client, &m);

    if (st != RK_OK)
        return report(st);
    bytes_row("used_memory", m.used_memory);
    bytes_row("used_memory_rss", m.used_memory_rss);
    bytes_row("used_memory_peak", m.used_memory_peak);
    maxmemory_row(&m);
    row("maxmemory_policy", "%s", m.maxmemory_policy[0] ? m.maxmemory_policy : "?");
    row("mem_fragmentation_ratio", "%.2f", m.mem_fragmentation_ratio);
    row("evicted_keys", "%" PRIu64, m.evicted_keys);
    row("expired_keys", "%" PRIu64, m.expired_keys);
    keys_row(&m);
    print_warnings(&m);
    return EXIT_OK;
}

#define SLOWLOG_DEFAULT "10"
#define SLOWLOG_MAX 100000
#define ARG_SHOWN 40  /* bytes of one argument printed */
#define ARGS_SHOWN 8  /* arguments printed */

/* One argument of a logged command, readable on one line: quoted when it
 * holds a space, a quote or a byte that is not printable ASCII (shown as
 * \xNN), and cut after ARG_SHOWN bytes. */
static void print_arg(const rk_reply *a)
{
    bool quote = a->len == 0;

    for (size_t i = 0; i < a->len && !quote; i++) {
        unsigned char ch = (unsigned char)a->str[i];
        quote = ch <= ' ' || ch >= 0x7f || ch == '"' || ch == '\\';
    }
    if (quote)
        putchar('"');
    for (size_t i = 0; i < a->len && i < ARG_SHOWN; i++) {
        unsigned char ch = (unsigned char)a->str[i];

        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < ' ' || ch >= 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
    if (a->len > ARG_SHOWN)
        printf("...");
    if (quote)
        putchar('"');
}

/* A slowlog entry is [id, unix time, duration in µs, [args...], ...]. */
static bool slowlog_entry_ok(const rk_reply *e)
{
    if (e->type != RK_REPLY_ARRAY || e->elements < 4)
        return false;
    for (int i = 0; i < 3; i++)
        if (e->element[i]->type != RK_REPLY_INTEGER)
            return false;
    if (e->element[3]->type != RK_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < e->element[3]->elements; i++)
        if (e->element[3]->element[i]->type != RK_REPLY_STRING &&
            e->element[3]->element[i]->type != RK_REPLY_STATUS)
            return false;
    return true;
}

/* slowlog [N]: SLOWLOG GET N, newest first, one line per command. */
static int cmd_slowlog(rk_client *client, const char *count)
{
    char *end;
    long n;
    rk_reply *r;

    if (count == NULL)
        count = SLOWLOG_DEFAULT;
    errno = 0;
    n = strtol(count, &end, 10);
    if (!isdigit((unsigned char)count[0]) || *end != '\0' || errno != 0 || n < 1 ||
        n > SLOWLOG_MAX) {
        char b[48];

        return usage_error("slowlog: '%s' is not a number of entries 1..%d",
                           shown(count, b, sizeof b), SLOWLOG_MAX);
    }

    const char *argv[] = { "SLOWLOG", "GET", count };
    rk_status st = rk_client_command(client, 3, argv, NULL, &r);

    if (st != RK_OK)
        return report(st);
    if (r->type != RK_REPLY_ARRAY) {
        rk_reply_free(r);
        fprintf(stderr, "redkit: protocol error: SLOWLOG GET did not answer a list\n");
        return EXIT_ERROR;
    }
    printf("%-8s %-19s %12s  %s\n", "id", "time (UTC)", "duration_us", "command");
    for (size_t i = 0; i < r->elements; i++) {
        const rk_reply *e = r->element[i];
        char when[32] = "?";
        struct tm tm;
        time_t t;

        if (!slowlog_entry_ok(e)) {
            printf("(an entry in a form this tool does not read)\n");
            continue;
        }
        t = (time_t)e->element[1]->integer;
        if (gmtime_r(&t, &tm) != NULL)
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%-8lld %-19s %12lld  ", e->element[0]->integer, when, e->element[2]->integer);
        const rk_reply *cmd = e->element[3];
        for (size_t a = 0; a < cmd->elements && a < ARGS_SHOWN; a++) {
            if (a > 0)
                putchar(' ');
            print_arg(cmd->element[a]);
        }
        if (cmd->elements > ARGS_SHOWN)
            printf(" ... (%zu more)", cmd->elements - ARGS_SHOWN);
        putchar('\n');
    }
    if (r->elements == 0)
        printf("(no slow commands logged)\n");
    rk_reply_free(r);
    return EXIT_OK;
}

/* Run the parsed command on an open cache. */
static int run(const args *a, rk_client *client, rk_cache *cache)
{
    const char *key = a->operand[0];
    rk_status st;

    if (strcmp(a->cmd, "ping") == 0) {
        st = rk_client_ping(client);
        if (st != RK_OK)
            return report(st);
        printf("PONG\n");
        return EXIT_OK;
    }
    if (strcmp(a->cmd, "stats") == 0)
        return cmd_stats(client);
    if (strcmp(a->cmd, "memory") == 0)
        return cmd_memory(client);
    if (strcmp(a->cmd, "slowlog") == 0)
        return cmd_slowlog(client, a->operand[0]);
    if (strcmp(a->cmd, "get") == 0)
        return cmd_get(cache, key);
    if (strcmp(a->cmd, "set") == 0) {
        rk_cache_set_options opts = { 0 };

        char b[48];

        if (a->ttl != NULL && parse_ttl(a->ttl, &opts) != 0)
            return usage_error("--ttl: '%s' is not a number of seconds > 0 or 'none'",
                               shown(a->ttl, b, sizeof b));
        st = rk_cache_set_str(cache, key, a->operand[1], &opts);
        if (st != RK_OK)
            return report(st);
        printf("OK\n");
        return EXIT_OK;
    }
    if (strcmp(a->cmd, "del") == 0) {
        st = rk_cache_delete(cache, key);
        if (st != RK_OK)
            return report(st);
        printf("OK\n");
        return EXIT_OK;
    }
    return cmd_ttl(cache, key);
}

/* The number of operands each command takes, at least (the result) and
 * at most (*most); -1 for an unknown command. */
static int operands_of(const char *cmd, int *most)
{
    static const struct { const char *name; int least, most; } table[] = {
        { "ping", 0, 0 }, { "get", 1, 1 }, { "set", 2, 2 }, { "del", 1, 1 }, { "ttl", 1, 1 },
        { "stats", 0, 0 }, { "memory", 0, 0 }, { "slowlog", 0, 1 },
    };

    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(cmd, table[i].name) == 0) {
            *most = table[i].most;
            return table[i].least;
        }
    return -1;
}

int main(int argc, char **argv)
{
    args a = { 0 };
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    int status = parse_args(argc, argv, &a);
    int least, most;
    char b[48];

    if (status >= 0)
        return status;
    const rk_cli_group *group = group_named(a.cmd);
    if (group != NULL) {
        if (a.noperands > 16)
            return usage_error("too many arguments for '%s'", a.cmd);
        if (a.ttl != NULL)
            return usage_error("--ttl only applies to 'set', not '%s'", a.cmd);
        if (a.url == NULL)
            a.url = getenv("REDIS_URL");
        rk_status st = rk_client_new(&(rk_client_options){ .url = a.url }, &client);
        status = st == RK_OK ? group->run(client, a.noperands, a.operand) : report(st);
        if (fflush(stdout) != 0 && status == EXIT_OK) {
            fprintf(stderr, "redkit: write error: %s\n", strerror(errno));
            status = EXIT_ERROR;
        }
        rk_client_free(client);
        return status;
    }
    least = operands_of(a.cmd, &most);
    if (least < 0)
        return usage_error("unknown command '%s'", shown(a.cmd, b, sizeof b));
    if (a.noperands < least || a.noperands > most)
        return usage_error("wrong number of arguments for '%s'", a.cmd);
    if (a.ttl != NULL && strcmp(a.cmd, "set") != 0)
        return usage_error("--ttl only applies to 'set', not '%s'", a.cmd);
    if (a.url == NULL)
        a.url = getenv("REDIS_URL");

    /* A bad URL is reported by rk_client_new() without echoing it, so a
     * password in it never reaches the terminal or a log. */
    rk_status st = rk_client_new(&(rk_client_options){ .url = a.url }, &client);
    if (st == RK_OK)
        st = rk_cache_new(client, &(rk_cache_options){ .ns = a.ns, .raw = a.raw },
                          &cache);
    status = st == RK_OK ? run(&a, client, cache) : report(st);

    if (fflush(stdout) != 0 && status == EXIT_OK) {
        fprintf(stderr, "redkit: write error: %s\n", strerror(errno));
        status = EXIT_ERROR;
    }
    rk_cache_free(cache);
    rk_client_free(client);
    return status;
}
