/*
 * redkit.c — the redkit command-line tool: read and write redkit's cache
 * from a shell, with the same key naming and value format as the library.
 *
 *     redkit [-h HOST] [-p PORT] [-a PASSWORD] [--user USER] [-n DB] [--tls]
 *            [--url URL] [--ns NS] [--raw] COMMAND [ARGS]
 *
 * It is a thin shell over the public API and nothing else, so what it does
 * is what a program linked with redkit would see. It keeps redis-cli's
 * habits wherever they apply, because that is what its users type: the
 * same connection options (-h is the host; help is --help), integer
 * answers printed as "(integer) N" on a terminal and "N" in a pipe, del
 * and ttl of an absent key answered as redis-cli answers them (0, -2) with
 * exit status 0 so that `set -e` scripts survive an idempotent delete, -x
 * to read the last argument from stdin, and binary values escaped on a
 * terminal but written raw into a pipe.
 *
 * Exit status: 0 success, 1 miss (get of an absent key: nothing on
 * stdout), 2 any error, usage errors included (on stderr), so scripts can
 * tell "not cached" from "Redis is down".
 *
 * Besides the cache commands it answers the troubleshooting questions of
 * a deployment: how the server's memory stands and whether it will evict
 * (stats, memory: rk_server_memory()), and which commands were slow
 * (slowlog: SLOWLOG GET through rk_client_command()).
 *
 * Options are parsed by hand rather than with getopt_long() to stay
 * portable and to keep every message in one format. They may appear
 * anywhere before a "--"; everything after "--" is an argument, which is
 * how a value that starts with '-' is written (a negative number is an
 * argument anyway).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "cli.h"

enum { EXIT_OK = RK_CLI_OK, EXIT_MISS = RK_CLI_MISS, EXIT_ERROR = RK_CLI_ERROR };

/* The command groups of other files (cli.h): `redkit NAME SUB ARGS...`. */
extern const rk_cli_group rk_cli_sessions; /* cli_sessions.c */
extern const rk_cli_group rk_cli_limit;    /* cli_ratelimit.c */
extern const rk_cli_group rk_cli_apikeys;  /* cli_apikeys.c */
static const rk_cli_group *const groups[] = {
    &rk_cli_sessions,
    &rk_cli_limit,
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
    "usage: redkit [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "commands (KEY is a key of the cache namespace, --ns):\n"
    "  ping                          check that Redis answers\n"
    "  get KEY                       print the value of KEY (absent: exit 1, no output)\n"
    "  set KEY VALUE [--ttl SECONDS] store VALUE (default TTL 300 s; --ttl none:\n"
    "                                never expire); with -x, VALUE is read from stdin\n"
    "  del KEY...                    delete keys; prints how many existed\n"
    "  exists KEY...                 prints how many of the keys exist\n"
    "  ttl KEY                       seconds left; -1 no expiry, -2 no such key\n"
    "  mget KEY...                   one value per line (empty line: absent)\n"
    "  incr KEY [BY]                 add BY (default 1) to an integer, creating it\n"
    "                                (with --ttl or 300 s) at 0; prints the result\n"
    "  scan [PATTERN]                list the namespace's keys (glob PATTERN)\n"
    "  clear                         delete every key of the namespace\n"
    "  invalidate TAG                delete every key stored with TAG\n"
    "  stats                         the server at a glance: version, clients, ops,\n"
    "                                hit ratio, memory, evictions, keys\n"
    "  memory                        the server's memory, as INFO memory with units\n"
    "  slowlog [N]                   the N (default 10) latest slow commands\n"
    "                                (their arguments may include keys)\n"
    "\n"
    "connection (as redis-cli; they override the URL's parts):\n"
    "  --url URL, -u URL   Redis to use (default: $REDIS_URL, else redis://127.0.0.1:6379)\n"
    "  -h HOST             server host name\n"
    "  -p PORT             server port\n"
    "  -a PASSWORD         password (visible to ps: prefer $REDISCLI_AUTH or the URL)\n"
    "  --user USER         ACL user name\n"
    "  -n DB               database number\n"
    "  --tls               use TLS; --cacert FILE, --cert FILE, --key FILE, --sni NAME,\n"
    "                      --insecure as in redis-cli\n"
    "\n"
    "other options:\n"
    "  --ns NS       namespace: of the cache (default \"cache\": key K is\n"
    "                <prefix:>cache:K), or of the sessions, limit or apikey command\n"
    "                (default \"sess\", \"rl\", \"apikey\")\n"
    "  --raw         store plain values with no type header (reading needs no\n"
    "                --raw: plain values written by others are read as text)\n"
    "  --ttl S       TTL of set and of a new incr key: seconds > 0, or none\n"
    "  -x            read the last argument of set from stdin\n"
    "  --help        show this help\n"
    "  --version     show the library version\n"
    "\n"
    "exit status: 0 ok, 1 get of an absent key, 2 error (usage errors included)\n";

typedef struct args {
    const char *url, *host, *port, *password, *user, *db;
    const char *cacert, *cert, *key, *sni;
    bool tls, insecure;
    const char *ns;
    const char *ttl;      /* --ttl as written; NULL when absent */
    bool raw, stdin_value;
    const char *cmd;
    char **operand;       /* the arguments after the command */
    int noperands;
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

/* ---- command line -------------------------------------------------------- */

/* The options that take a value: long names, and redis-cli's short ones. */
typedef struct valued_option {
    const char *name;  /* "--url" or "-h" */
    size_t field;      /* offsetof(args, ...) */
} valued_option;

#define FIELD(f) offsetof(args, f)
static const valued_option valued[] = {
    { "--url", FIELD(url) },   { "-u", FIELD(url) },       { "-h", FIELD(host) },
    { "--host", FIELD(host) }, { "-p", FIELD(port) },      { "--port", FIELD(port) },
    { "-a", FIELD(password) }, { "--pass", FIELD(password) }, { "--user", FIELD(user) },
    { "-n", FIELD(db) },       { "--db", FIELD(db) },      { "--cacert", FIELD(cacert) },
    { "--cert", FIELD(cert) }, { "--key", FIELD(key) },    { "--sni", FIELD(sni) },
    { "--ns", FIELD(ns) },     { "--ttl", FIELD(ttl) },
};

/*
 * If arg is one of the valued options, written "NAME VALUE" or (long ones)
 * "NAME=VALUE", store VALUE and leave *i on the last argument used: 1.
 * 0 when arg is something else, -1 when the value is missing.
 */
static int take_valued(args *a, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];

    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
        size_t n = strlen(valued[k].name);
        const char **dest = (const char **)(void *)((char *)a + valued[k].field);

        if (strncmp(arg, valued[k].name, n) != 0)
            continue;
        if (arg[n] == '=' && arg[1] == '-') {
            *dest = arg + n + 1;
            return 1;
        }
        if (arg[n] != '\0')
            continue;
        if (*i + 1 >= argc)
            return -1;
        *dest = argv[++*i];
        return 1;
    }
    return 0;
}

/* "-5": a negative number is an argument (incr KEY -5), not an option. */
static bool is_negative_number(const char *arg)
{
    return arg[0] == '-' && isdigit((unsigned char)arg[1]);
}

/* Parse the command line into *a. Returns -1 to continue, or the exit
 * status to end with (after --help, --version or a usage error). */
static int parse_args(int argc, char **argv, args *a)
{
    bool options_done = false;

    a->operand = calloc((size_t)argc + 1, sizeof *a->operand);
    if (a->operand == NULL) {
        fputs("redkit: out of memory\n", stderr);
        return EXIT_ERROR;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int found;

        if (options_done || arg[0] != '-' || arg[1] == '\0' || is_negative_number(arg)) {
            if (a->cmd == NULL)
                a->cmd = arg;
            else
                a->operand[a->noperands++] = argv[i];
            continue; /* main() checks the count */
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "--help") == 0) {
            fputs(usage_text, stdout);
            for (size_t g = 0; groups[g] != NULL; g++)
                fputs(groups[g]->usage, stdout);
            return EXIT_OK;
        } else if (strcmp(arg, "--version") == 0) {
            printf("redkit %s\n", rk_version());
            return EXIT_OK;
        } else if (strcmp(arg, "--raw") == 0) {
            a->raw = true;
        } else if (strcmp(arg, "--tls") == 0) {
            a->tls = true;
        } else if (strcmp(arg, "--insecure") == 0) {
            a->insecure = true;
        } else if (strcmp(arg, "-x") == 0) {
            a->stdin_value = true;
        } else if ((found = take_valued(a, argc, argv, &i)) != 0) {
            if (found < 0)
                return usage_error("option '%s' needs a value", arg);
        } else if (arg[1] != '-') {
            /* Only the letter: "-aS3cret" is a password glued to -a. */
            return usage_error("unknown option '-%c...' (write the value apart: '-%c VALUE')",
                               isalnum((unsigned char)arg[1]) ? arg[1] : '?',
                               isalnum((unsigned char)arg[1]) ? arg[1] : '?');
        } else {
            char b[48];

            return usage_error("unknown option '%s'", shown(arg, b, sizeof b));
        }
    }
    if (a->cmd == NULL)
        return usage_error("no command given");
    return -1;
}

/* A whole number in [lo, hi], all of text. */
static bool parse_int(const char *text, long long lo, long long hi, long long *out)
{
    char *end;

    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!(isdigit((unsigned char)text[0]) || (text[0] == '-' && isdigit((unsigned char)text[1]))) ||
        *end != '\0' || errno != 0 || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* The client's options from the command line, $REDIS_URL and
 * $REDISCLI_AUTH (redis-cli's way to pass a password unseen by ps). Each
 * option given overrides the corresponding part of the URL. Returns -1 to
 * continue, or a usage error's exit status. */
static int client_options(const args *a, rk_client_options *o)
{
    long long v;
    char b[48];

    memset(o, 0, sizeof *o);
    o->url = a->url != NULL ? a->url : getenv("REDIS_URL");
    o->host = a->host;
    o->username = a->user;
    o->password = a->password != NULL ? a->password : getenv("REDISCLI_AUTH");
    if (o->password != NULL && o->password[0] == '\0')
        o->password = NULL;
    if (a->port != NULL) {
        if (!parse_int(a->port, 1, 65535, &v))
            return usage_error("-p: '%s' is not a port 1..65535", shown(a->port, b, sizeof b));
        o->port = (int)v;
    }
    if (a->db != NULL) {
        if (!parse_int(a->db, 0, 1 << 20, &v))
            return usage_error("-n: '%s' is not a database number", shown(a->db, b, sizeof b));
        o->db = (int)v;
    }
    o->tls.enabled = a->tls || a->cacert || a->cert || a->key || a->sni || a->insecure;
    o->tls.ca_file = a->cacert;
    o->tls.cert_file = a->cert;
    o->tls.key_file = a->key;
    o->tls.server_name = a->sni;
    o->tls.insecure_skip_verify = a->insecure;
    return -1;
}

/* --ttl SECONDS: a positive whole number of seconds, or "none". */
static int parse_ttl(const char *text, int64_t *ttl_s)
{
    long long s;

    if (strcmp(text, "none") == 0) {
        *ttl_s = RK_TTL_NONE;
        return 0;
    }
    /* The upper bound keeps the value in milliseconds within int64_t. */
    if (!parse_int(text, 1, INT64_MAX / 1000, &s))
        return -1;
    *ttl_s = s;
    return 0;
}

/* ---- output -------------------------------------------------------------- */

/* Whether stdout is a terminal: values are then escaped and integers
 * shown as "(integer) N", as redis-cli shows them. Set in main(). */
static bool to_terminal;

static bool printable(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < ' ' && p[i] != '\t') || p[i] == 0x7f)
            return false;
    return true;
}

/* A value on one line: as is into a pipe (binary-safe, for `> file`); on
 * a terminal, a value holding control bytes is shown quoted with \n, \t,
 * \" and \xNN escapes, so it cannot garble the terminal. Bytes >= 0x80
 * are left alone: UTF-8 text stays readable. */
static void print_value(const void *data, size_t len)
{
    const unsigned char *p = data;

    if (!to_terminal || printable(p, len)) {
        fwrite(p, 1, len, stdout);
        putchar('\n');
        return;
    }
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        switch (p[i]) {
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        default:
            if (p[i] < ' ' || p[i] == 0x7f)
                printf("\\x%02x", p[i]);
            else
                putchar(p[i]);
        }
    }
    fputs("\"\n", stdout);
}

static void print_integer(long long n)
{
    if (to_terminal)
        printf("(integer) %lld\n", n);
    else
        printf("%lld\n", n);
}

/* ---- cache commands ------------------------------------------------------ */

/* get: the value followed by a newline. A value stored as an int64 or a
 * double is printed as a number rather than refused. A miss prints
 * nothing on stdout (`v=$(redkit get k)` stays empty) and exits 1. */
static int cmd_get(rk_cache *cache, const char *key)
{
    void *value;
    size_t len;
    rk_status st = rk_cache_get(cache, key, &value, &len);

    if (st == RK_OK) {
        print_value(value, len);
        rk_free(value);
        return EXIT_OK;
    }
    if (st == RK_MISS) {
        if (isatty(STDERR_FILENO))
            fputs("(nil)\n", stderr);
        return EXIT_MISS;
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
        return report_detail(st, detail);
    }
    return report(st);
}

/* set KEY VALUE, or with -x set KEY and the value from stdin, stored as
 * bytes (it may be binary); at most max bytes are read. */
static int cmd_set(const args *a, rk_cache *cache)
{
    rk_cache_set_options opts = { 0 };
    char b[48];
    rk_status st;

    if (a->ttl != NULL && parse_ttl(a->ttl, &opts.ttl_s) != 0)
        return usage_error("--ttl: '%s' is not a number of seconds > 0 or 'none'",
                           shown(a->ttl, b, sizeof b));
    if (!a->stdin_value) {
        st = rk_cache_set_str(cache, a->operand[0], a->operand[1], &opts);
    } else {
        const size_t max = RK_CACHE_DEFAULT_MAX_VALUE_BYTES;
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap);

        while (buf != NULL) {
            size_t n = fread(buf + len, 1, cap - len, stdin);

            len += n;
            if (n == 0 || len > max)
                break;
            if (len == cap) {
                char *bigger = realloc(buf, cap * 2);

                if (bigger == NULL) {
                    free(buf);
                    buf = NULL;
                    break;
                }
                buf = bigger;
                cap *= 2;
            }
        }
        if (buf == NULL) {
            fputs("redkit: out of memory reading stdin\n", stderr);
            return EXIT_ERROR;
        }
        if (ferror(stdin) || len > max) {
            free(buf);
            fprintf(stderr, "redkit: -x: %s\n",
                    len > max ? "the value on stdin is over 16 MiB" : strerror(errno));
            return EXIT_ERROR;
        }
        st = rk_cache_set(cache, a->operand[0], buf, len, &opts);
        free(buf);
    }
    if (st != RK_OK)
        return report(st);
    printf("OK\n");
    return EXIT_OK;
}

/* del KEY...: how many existed, as redis-cli's DEL; an absent key is no
 * error (exit 0). */
static int cmd_del(const args *a, rk_cache *cache)
{
    long long removed = 0;

    for (int i = 0; i < a->noperands; i++) {
        bool existed;
        rk_status st = rk_cache_delete_ex(cache, a->operand[i], &existed);

        if (st != RK_OK)
            return report(st);
        removed += existed;
    }
    print_integer(removed);
    return EXIT_OK;
}

/* exists KEY...: how many exist, as redis-cli's EXISTS. */
static int cmd_exists(const args *a, rk_cache *cache)
{
    long long found = 0;

    for (int i = 0; i < a->noperands; i++) {
        rk_status st = rk_cache_exists(cache, a->operand[i]);

        if (st == RK_OK)
            found++;
        else if (st != RK_MISS)
            return report(st); /* RK_DEGRADED too: "could not ask" is no answer */
    }
    print_integer(found);
    return EXIT_OK;
}

/* ttl KEY: as redis-cli's TTL: seconds (rounded), -1 for no expiry, -2
 * for an absent key, exit 0 for all three. */
static int cmd_ttl(rk_cache *cache, const char *key)
{
    int64_t ms;
    rk_status st = rk_cache_ttl_ms(cache, key, &ms);

    if (st == RK_MISS) {
        print_integer(-2);
        return EXIT_OK;
    }
    if (st != RK_OK)
        return report(st);
    print_integer(ms == RK_TTL_NONE ? -1 : (long long)((ms + 500) / 1000));
    return EXIT_OK;
}

/* mget KEY...: one line per key, in order: the value (a typed number as
 * a number, as get prints it), or an empty line ("(nil)" on a terminal)
 * for an absent one. A key that cannot be read gets an empty line too,
 * its error on stderr and exit status 2. */
static int cmd_mget(const args *a, rk_cache *cache)
{
    size_t n = (size_t)a->noperands;
    rk_cache_result *res = calloc(n, sizeof *res);
    int status = EXIT_OK;

    if (res == NULL) {
        fputs("redkit: out of memory\n", stderr);
        return EXIT_ERROR;
    }
    rk_status st = rk_cache_mget(cache, (const char *const *)a->operand, n, res);
    if (st != RK_OK) {
        free(res);
        return report(st);
    }
    for (size_t i = 0; i < n; i++) {
        int64_t iv;
        double dv;

        if (res[i].status == RK_OK) {
            print_value(res[i].value, res[i].len);
        } else if (res[i].status == RK_ERR_TYPE &&
                   rk_cache_get_i64(cache, a->operand[i], &iv) == RK_OK) {
            printf("%lld\n", (long long)iv); /* a typed number, printed as get does */
        } else if (res[i].status == RK_ERR_TYPE &&
                   rk_cache_get_double(cache, a->operand[i], &dv) == RK_OK) {
            printf("%.17g\n", dv);
        } else {
            puts(to_terminal ? "(nil)" : "");
            if (res[i].status != RK_MISS) {
                fprintf(stderr, "redkit: key %zu: %s\n", i + 1, rk_strerror(res[i].status));
                status = EXIT_ERROR;
            }
        }
    }
    rk_cache_results_free(res, n);
    free(res);
    return status;
}

/*
 * incr: one Lua script, so a concurrent incr never loses an update. It
 * reads the key's text as redis-cli's INCRBY would, but also through a
 * redkit type header (a string or an int64, as `redkit set n 42` and
 * rk_cache_set_i64 store them), keeps that header and the key's TTL, and
 * creates an absent key at 0 with the header ARGV[3] (int64, or none on a
 * --raw handle) and the TTL ARGV[2] (ms; "0" = none). Lua numbers are
 * doubles, so values are kept within 15 digits, where they are exact.
 */
static const char incr_script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "local head, text = ARGV[3], '0'\n"
    "if v then\n"
    "  head, text = '', v\n"
    "  if string.byte(v, 1) == 254 then\n"
    "    local t = string.byte(v, 2)\n"
    "    if t ~= 2 and t ~= 3 then\n"
    "      return redis.error_reply('ERR value is a redkit ' .. (t == 4 and 'double' or 'bytes or compressed value') .. ', not an integer')\n"
    "    end\n"
    "    head, text = string.sub(v, 1, 2), string.sub(v, 3)\n"
    "  end\n"
    "  if #text > 15 or not string.find(text, '^%-?%d+$') then\n"
    "    return redis.error_reply('ERR value is not an integer of at most 15 digits')\n"
    "  end\n"
    "end\n"
    "local n = tonumber(text) + tonumber(ARGV[1])\n"
    "if n >= 1e15 or n <= -1e15 then\n"
    "  return redis.error_reply('ERR the result would have more than 15 digits')\n"
    "end\n"
    "local s = string.format('%d', n)\n"
    "if v then\n"
    "  redis.call('SET', KEYS[1], head .. s, 'KEEPTTL')\n"
    "elseif ARGV[2] ~= '0' then\n"
    "  redis.call('SET', KEYS[1], head .. s, 'PX', ARGV[2])\n"
    "else\n"
    "  redis.call('SET', KEYS[1], head .. s)\n"
    "end\n"
    "return n\n";

/* The full Redis key of a cache key: <prefix>:<ns>:key. */
static rk_status full_key(rk_client *client, const args *a, const char *key, char *buf, size_t cap)
{
    size_t len;

    return rk_key_build(client, a->ns != NULL ? a->ns : RK_CACHE_DEFAULT_NAMESPACE, key, buf, cap,
                        &len);
}

static int cmd_incr(const args *a, rk_client *client)
{
    long long by = 1;
    int64_t ttl_s = 0;
    char b[48], key[RK_DEFAULT_MAX_KEY_BYTES + 2 * RK_MAX_NAMESPACE_BYTES + 8];
    char by_text[24], ttl_text[24];
    rk_reply *r;

    if (a->noperands > 1 && !parse_int(a->operand[1], -999999999999999LL, 999999999999999LL, &by))
        return usage_error("incr: '%s' is not an integer of at most 15 digits",
                           shown(a->operand[1], b, sizeof b));
    if (a->ttl != NULL && parse_ttl(a->ttl, &ttl_s) != 0)
        return usage_error("--ttl: '%s' is not a number of seconds > 0 or 'none'",
                           shown(a->ttl, b, sizeof b));
    rk_status st = full_key(client, a, a->operand[0], key, sizeof key);
    if (st != RK_OK)
        return report(st);
    snprintf(by_text, sizeof by_text, "%lld", by);
    snprintf(ttl_text, sizeof ttl_text, "%lld",
             ttl_s == RK_TTL_NONE ? 0LL
             : ttl_s > 0          ? (long long)ttl_s * 1000
                                  : (long long)RK_CACHE_DEFAULT_TTL_MS);
    /* The int64 type header of src/cache/value.h: 0xFE, type 3. */
    const char *argv[] = { "EVAL", incr_script, "1", key, by_text, ttl_text, "\xFE\x03" };
    const size_t lens[] = { 4, sizeof incr_script - 1, 1, strlen(key), strlen(by_text),
                            strlen(ttl_text), a->raw ? 0 : 2 };
    st = rk_client_command(client, 7, argv, lens, &r);
    if (st != RK_OK)
        return report(st);
    if (r->type != RK_REPLY_INTEGER) {
        rk_reply_free(r);
        fputs("redkit: protocol error: incr did not answer an integer\n", stderr);
        return EXIT_ERROR;
    }
    print_integer(r->integer);
    rk_reply_free(r);
    return EXIT_OK;
}

/* A glob pattern matching s literally: redkit's keys may hold * ? [ ] \. */
static size_t glob_escape(const char *s, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", s[i]) != NULL)
            out[o++] = '\\';
        out[o++] = s[i];
    }
    out[o] = '\0';
    return o;
}

#define SCAN_MAX_ROUNDS 1000000 /* a bound on the loop; far beyond any real keyspace */

/* scan [PATTERN]: every key of the namespace (or those matching the glob
 * PATTERN), as cache keys, one per line, in SCAN's order; a key changed
 * during the scan may be missed or shown twice (SCAN's guarantee). */
static int cmd_scan(const args *a, rk_client *client)
{
    char head[2 * RK_MAX_NAMESPACE_BYTES + 8], match[2 * sizeof head + RK_DEFAULT_MAX_KEY_BYTES + 8];
    char cursor[24] = "0";
    const char *pattern = a->noperands > 0 ? a->operand[0] : "*";
    rk_status st = full_key(client, a, "x", head, sizeof head);

    if (st != RK_OK)
        return report(st);
    size_t hlen = strlen(head) - 1; /* "<prefix>:<ns>:" without the "x" */
    if (strlen(pattern) > RK_DEFAULT_MAX_KEY_BYTES)
        return usage_error("scan: the pattern is longer than %d bytes", RK_DEFAULT_MAX_KEY_BYTES);
    size_t m = glob_escape(head, hlen, match);
    snprintf(match + m, sizeof match - m, "%s", pattern);

    for (long round = 0; round < SCAN_MAX_ROUNDS; round++) {
        const char *argv[] = { "SCAN", cursor, "MATCH", match, "COUNT", "1000" };
        rk_reply *r;

        st = rk_client_command(client, 6, argv, NULL, &r);
        if (st != RK_OK)
            return report(st);
        if (r->type != RK_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != RK_REPLY_STRING ||
            r->element[0]->len >= sizeof cursor || r->element[1]->type != RK_REPLY_ARRAY) {
            rk_reply_free(r);
            fputs("redkit: protocol error: SCAN answered in an unexpected form\n", stderr);
            return EXIT_ERROR;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = '\0';
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const rk_reply *k = r->element[1]->element[i];

            if (k->type == RK_REPLY_STRING && k->len > hlen && memcmp(k->str, head, hlen) == 0)
                print_value(k->str + hlen, k->len - hlen);
        }
        rk_reply_free(r);
        if (strcmp(cursor, "0") == 0)
            return EXIT_OK;
    }
    fputs("redkit: scan: stopped after too many rounds\n", stderr);
    return EXIT_ERROR;
}

#define CLEAR_MAX_CALLS 100000 /* each call makes progress; a bound on the loop */

/* clear: rk_cache_clear until the namespace is empty; prints how many
 * keys were removed. */
static int cmd_clear(rk_cache *cache)
{
    uint64_t cursor = 0;
    size_t removed = 0;

    for (long i = 0; i < CLEAR_MAX_CALLS; i++) {
        rk_status st = rk_cache_clear(cache, &cursor, &removed);

        if (st != RK_OK)
            return report(st);
        if (cursor == 0) {
            print_integer((long long)removed);
            return EXIT_OK;
        }
    }
    fputs("redkit: clear: stopped after too many rounds; run it again\n", stderr);
    return EXIT_ERROR;
}

static int cmd_invalidate(rk_cache *cache, const char *tag)
{
    size_t removed = 0;
    rk_status st = rk_cache_invalidate_tag(cache, tag, &removed);

    if (st != RK_OK)
        return report(st);
    print_integer((long long)removed);
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
    const char *cmd = a->cmd;
    rk_status st;

    if (strcmp(cmd, "ping") == 0) {
        st = rk_client_ping(client);
        if (st != RK_OK)
            return report(st);
        printf("PONG\n");
        return EXIT_OK;
    }
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(client);
    if (strcmp(cmd, "memory") == 0)
        return cmd_memory(client);
    if (strcmp(cmd, "slowlog") == 0)
        return cmd_slowlog(client, a->operand[0]);
    if (strcmp(cmd, "get") == 0)
        return cmd_get(cache, a->operand[0]);
    if (strcmp(cmd, "set") == 0)
        return cmd_set(a, cache);
    if (strcmp(cmd, "del") == 0)
        return cmd_del(a, cache);
    if (strcmp(cmd, "exists") == 0)
        return cmd_exists(a, cache);
    if (strcmp(cmd, "mget") == 0)
        return cmd_mget(a, cache);
    if (strcmp(cmd, "incr") == 0)
        return cmd_incr(a, client);
    if (strcmp(cmd, "scan") == 0)
        return cmd_scan(a, client);
    if (strcmp(cmd, "clear") == 0)
        return cmd_clear(cache);
    if (strcmp(cmd, "invalidate") == 0)
        return cmd_invalidate(cache, a->operand[0]);
    return cmd_ttl(cache, a->operand[0]);
}

/* The number of operands each command takes, at least (the result) and
 * at most (*most; -1 = any number); -1 for an unknown command. */
static int operands_of(const char *cmd, int *most)
{
    static const struct { const char *name; int least, most; } table[] = {
        { "ping", 0, 0 },   { "get", 1, 1 },    { "set", 2, 2 },     { "del", 1, -1 },
        { "exists", 1, -1 }, { "ttl", 1, 1 },   { "mget", 1, RK_CACHE_MAX_BATCH },
        { "incr", 1, 2 },   { "scan", 0, 1 },   { "clear", 0, 0 },   { "invalidate", 1, 1 },
        { "stats", 0, 0 },  { "memory", 0, 0 }, { "slowlog", 0, 1 },
    };

    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(cmd, table[i].name) == 0) {
            *most = table[i].most;
            return table[i].least;
        }
    return -1;
}

/* Check the parsed line against the command; -1 to go on, else the usage
 * error's exit status. */
static int check_command(args *a)
{
    int least, most;
    char b[48];

    least = operands_of(a->cmd, &most);
    if (least < 0)
        return usage_error("unknown command '%s'", shown(a->cmd, b, sizeof b));
    if (a->stdin_value) {
        if (strcmp(a->cmd, "set") != 0)
            return usage_error("-x only applies to 'set', not '%s'", a->cmd);
        least--, most--; /* the value comes from stdin */
    }
    if (a->noperands < least || (most >= 0 && a->noperands > most))
        return usage_error("wrong number of arguments for '%s'", a->cmd);
    if (a->ttl != NULL && strcmp(a->cmd, "set") != 0 && strcmp(a->cmd, "incr") != 0)
        return usage_error("--ttl only applies to 'set' and 'incr', not '%s'", a->cmd);
    return -1;
}

static int finish(int status)
{
    if (fflush(stdout) != 0 && status == EXIT_OK) {
        fprintf(stderr, "redkit: write error: %s\n", strerror(errno));
        status = EXIT_ERROR;
    }
    return status;
}

int main(int argc, char **argv)
{
    args a = { 0 };
    rk_client_options opts;
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    int status = parse_args(argc, argv, &a);
    const rk_cli_group *group = NULL;

    to_terminal = isatty(STDOUT_FILENO);
    if (status < 0) {
        group = group_named(a.cmd);
        if (group != NULL) {
            if (a.ttl != NULL || a.stdin_value)
                status = usage_error("--ttl and -x do not apply to '%s'", a.cmd);
        } else {
            status = check_command(&a);
        }
    }
    if (status < 0)
        status = client_options(&a, &opts);
    if (status >= 0) {
        free(a.operand);
        return status;
    }

    /* A bad URL is reported by rk_client_new() without echoing it, so a
     * password in it never reaches the terminal or a log. The groups get
     * the same client, with every connection option applied. */
    rk_status st = rk_client_new(&opts, &client);
    if (st == RK_OK && group != NULL) {
        status = group->run(client, a.ns, a.noperands, a.operand);
    } else {
        if (st == RK_OK)
            st = rk_cache_new(client, &(rk_cache_options){ .ns = a.ns, .raw = a.raw }, &cache);
        status = st == RK_OK ? run(&a, client, cache) : report(st);
    }
    status = finish(status);
    rk_cache_free(cache);
    rk_client_free(client);
    free(a.operand);
    return status;
}
