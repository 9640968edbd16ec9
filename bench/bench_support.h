/*
 * bench_support.h — the set-up the bench programs that race redkit
 * against a bare hiredis connection share: dying with a message,
 * REDIS_URL and the hiredis side's connection to it, the latency arrays, the full key redkit would
 * write, the count of timed steps from the command line, the server's
 * version. Header-only (static functions), like measure.h, since each
 * bench program is built on its own.
 *
 * Define BENCH_NAME (the program's name, for messages) before including
 * it. Needs src/ on the include path (redkit's own URL parser).
 */
#ifndef RK_BENCH_SUPPORT_H
#define RK_BENCH_SUPPORT_H

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_support.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#include "url.h" /* src/: redkit's REDIS_URL parser, for the hiredis side */

/* Print "BENCH_NAME: what: detail" and exit with status 2 (the run could
 * not be done). */
_Noreturn static inline void bench_die(const char *what, const char *detail)
{
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, detail);
    exit(2);
}

/* bench_die() with a redkit status and rk_last_error() as the detail. */
_Noreturn static inline void bench_die_rk(const char *what, rk_status st)
{
    char detail[512];

    snprintf(detail, sizeof detail, "%s: %s", rk_strerror(st), rk_last_error());
    bench_die(what, detail);
}

/* $REDIS_URL, which the bench programs require: dies when it is unset or
 * empty. */
static inline const char *bench_redis_url(void)
{
    const char *url = getenv("REDIS_URL");

    if (url == NULL || url[0] == '\0')
        bench_die("REDIS_URL", "not set (run it through scripts/with-redis, or `make bench`)");
    return url;
}

/* n arrays of count latency samples, into lat[0..n-1]; dies when out of
 * memory. The caller frees each with free(). */
static inline void bench_alloc_samples(int64_t **lat, size_t n, size_t count)
{
    for (size_t i = 0; i < n; i++)
        if ((lat[i] = malloc(count * sizeof lat[i][0])) == NULL)
            bench_die("setup", "out of memory");
}

/*
 * Open the blocking hiredis connection to the server that url names, with
 * AUTH and SELECT as the URL says (1 s connect timeout). The URL is read by
 * redkit's own parser (set-up only: the baseline's measured path is
 * hiredis alone); TLS is refused. Dies on any failure. Free with
 * redisFree().
 */
static inline redisContext *bench_hiredis_connect(const char *url)
{
    const struct timeval timeout = { 1, 0 };
    rk__url u;
    redisContext *c;

    if (rk__url_parse(url, &u) != RK_OK)
        bench_die("REDIS_URL", rk_last_error());
    if (u.tls)
        bench_die("REDIS_URL", "the hiredis baseline does not speak TLS");
    if (u.unix_path != NULL)
        c = redisConnectUnixWithTimeout(u.unix_path, timeout);
    else
        c = redisConnectWithTimeout(u.host != NULL ? u.host : RK_DEFAULT_HOST,
                                    u.port != 0 ? u.port : RK_DEFAULT_PORT, timeout);
    if (c == NULL || c->err)
        bench_die("hiredis connect", c == NULL ? "out of memory" : c->errstr);

    redisReply *r = NULL;
    if (u.password != NULL && u.username != NULL)
        r = redisCommand(c, "AUTH %s %s", u.username, u.password);
    else if (u.password != NULL)
        r = redisCommand(c, "AUTH %s", u.password);
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        bench_die("hiredis AUTH", r->str);
    freeReplyObject(r);
    if (u.db != 0) {
        r = redisCommand(c, "SELECT %d", u.db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            bench_die("hiredis SELECT", r == NULL ? c->errstr : r->str);
        freeReplyObject(r);
    }
    rk__url_clear(&u); /* wipes the password */
    return c;
}

/*
 * The key redkit writes for the user key `key` of a cache in the default
 * namespace of client ("[prefix:]cache:key"), in a malloc'd string the
 * caller frees; its length in *len. Dies on failure.
 */
static inline char *bench_full_key(rk_client *client, const char *key, size_t *len)
{
    rk_status st = rk_key_build(client, RK_CACHE_DEFAULT_NAMESPACE, key, NULL, 0, len);
    char *full;

    if (st != RK_OK && st != RK_ERR_TOO_LARGE)
        bench_die_rk("rk_key_build", st);
    full = malloc(*len + 1);
    if (full == NULL)
        bench_die("setup", "out of memory");
    st = rk_key_build(client, RK_CACHE_DEFAULT_NAMESPACE, key, full, *len + 1, len);
    if (st != RK_OK)
        bench_die_rk("rk_key_build", st);
    return full;
}

/*
 * How many timed steps to run: argv[1], else $BENCH_OPS, else dflt. A
 * count given must be a number from 1 to max, else the program dies with
 * "<what>: expected a number of <unit>, 1..<max>".
 */
static inline size_t bench_count(int argc, char **argv, size_t dflt, const char *what, const char *unit,
                                 unsigned long long max)
{
    const char *text = argc > 1 ? argv[1] : getenv("BENCH_OPS");
    char *end;
    unsigned long long n;

    if (text == NULL || text[0] == '\0')
        return dflt;
    errno = 0;
    n = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || n == 0 || n > max) {
        char detail[128];

        snprintf(detail, sizeof detail, "expected a number of %s, 1..%llu", unit, max);
        bench_die(what, detail);
    }
    return (size_t)n;
}

/* "7.2.4" from a reply to INFO server (or "?" without one), into buf. */
static inline void bench_server_version(const redisReply *info, char *buf, size_t size)
{
    const char *v;

    snprintf(buf, size, "?");
    if (info != NULL && info->type == REDIS_REPLY_STRING &&
        (v = strstr(info->str, "redis_version:")) != NULL)
        snprintf(buf, size, "%.*s", (int)strcspn(v + 14, "\r\n"), v + 14);
}

#endif /* RK_BENCH_SUPPORT_H */
