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
 * Options are parsed by hand rather than with getopt_long() to stay
 * portable and to keep every message in one format. They may appear
 * anywhere before a "--"; everything after "--" is an argument, which is
 * how a value that starts with '-' is written.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

enum { EXIT_OK = 0, EXIT_MISS = 1, EXIT_ERROR = 2 };

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
    const char *operand[2];
    int noperands;        /* all of them, even beyond the two kept */
} args;

/* A usage error: the message, a hint, and the error exit status. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("redkit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'redkit --help'.\n", stderr);
    return EXIT_ERROR;
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
            else if (a->noperands++ < 2)
                a->operand[a->noperands - 1] = arg;
            continue; /* main() checks the count */
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(usage_text, stdout);
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
            if (found == 0)
                return usage_error("unknown option '%s'", arg);
        }
    }
    if (a->cmd == NULL)
        return usage_error("no command given");
    return -1;
}

/* --ttl SECONDS: a positive whole number of seconds, or "none". */
static int parse_ttl(const char *text, rk_set_options *opts)
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
    if (strcmp(a->cmd, "get") == 0)
        return cmd_get(cache, key);
    if (strcmp(a->cmd, "set") == 0) {
        rk_set_options opts = { 0 };

        if (a->ttl != NULL && parse_ttl(a->ttl, &opts) != 0)
            return usage_error("--ttl: '%s' is not a number of seconds > 0 or 'none'",
                               a->ttl);
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

/* The number of operands each command takes; -1 for an unknown command. */
static int operands_of(const char *cmd)
{
    static const struct { const char *name; int operands; } table[] = {
        { "ping", 0 }, { "get", 1 }, { "set", 2 }, { "del", 1 }, { "ttl", 1 },
    };

    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(cmd, table[i].name) == 0)
            return table[i].operands;
    return -1;
}

int main(int argc, char **argv)
{
    args a = { 0 };
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    int status = parse_args(argc, argv, &a);
    int want;

    if (status >= 0)
        return status;
    want = operands_of(a.cmd);
    if (want < 0)
        return usage_error("unknown command '%s'", a.cmd);
    if (a.noperands != want)
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
