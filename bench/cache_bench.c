/*
 * cache_bench.c — what redkit's cache costs over a bare hiredis loop.
 *
 *     REDIS_URL=redis://127.0.0.1:6379 ./cache_bench [OPS]
 *
 * Both sides run the same commands on keys of the same shape in the same
 * process, one request in flight at a time: redkit's rk_cache_set() /
 * rk_cache_get() against redisCommand("SET %b %b PX %d") / ("GET %b") on
 * a blocking hiredis connection. hiredis is given the full key redkit
 * would write (rk_key_build(), e.g. "cache:bench:h:42" beside redkit's
 * "cache:bench:r:42") and the same 100-byte value, so the bytes on the
 * wire are the same and the difference is redkit's own work: the pool,
 * key building, value copies, the status plumbing. The cache runs in raw
 * mode for that comparison; typed mode (a 2-byte header on every value) is
 * measured as an extra line.
 *
 * It prints figures and never judges them: the exit status only says
 * whether the run could be done. OPS, the timed requests per contender
 * and operation, defaults to 50000 (argv[1] or $BENCH_OPS). bench/README.md
 * says how to read the output.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* strdup, clock_gettime */
#endif

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#include "measure.h"
#include "url.h" /* src/: redkit's REDIS_URL parser */

#define DEFAULT_OPS 50000
#define WARMUP_OPS 2000
#define ROUNDS 3
#define BLOCK_OPS 500 /* contenders take turns every BLOCK_OPS requests */
#define KEYSPACE 10000 /* distinct keys, reused in turn: bounded memory */
#define VALUE_BYTES 100
#define TTL_MS 300000

enum { OP_SET, OP_GET, N_OPS };
static const char *const op_names[N_OPS] = { "set", "get" };

/* The contenders. Each has its own keys, of the same shape: "bench:h:N",
 * "bench:r:N", "bench:t:N", so that a typed get never meets a raw value
 * and every get finds what the same contender set. */
enum { IMPL_HIREDIS, IMPL_REDKIT, IMPL_TYPED, N_IMPLS };
static const char *const impl_names[N_IMPLS] = { "hiredis", "redkit", "redkit-typed" };
static const char impl_tags[N_IMPLS] = { 'h', 'r', 't' };

typedef struct bench {
    redisContext *hiredis;
    rk_client *client;
    rk_cache *raw;   /* the fair comparison: same bytes as hiredis */
    rk_cache *typed; /* the default mode: 2-byte type header */
    char *user_key[N_IMPLS][KEYSPACE]; /* what a redkit caller passes: "bench:r:N" */
    char *full_key[N_IMPLS][KEYSPACE]; /* what reaches Redis: "[prefix:]cache:bench:r:N" */
    size_t full_key_len[N_IMPLS][KEYSPACE];
    int64_t *lat_ns[N_IMPLS]; /* one entry per measured op */
} bench;

/* One request of kind op on key number k; 0 on success, -1 after printing
 * what went wrong. */
typedef int (*op_fn)(bench *b, int op, size_t k);

static char value_bytes[VALUE_BYTES]; /* the value every set stores */

typedef struct result {
    double ops_per_s;
    double p50_us, p99_us;
} result;

_Noreturn static void die(const char *what, const char *detail)
{
    fprintf(stderr, "cache_bench: %s: %s\n", what, detail);
    exit(2);
}

_Noreturn static void die_rk(const char *what, rk_status st)
{
    char detail[512];

    snprintf(detail, sizeof detail, "%s: %s", rk_strerror(st), rk_last_error());
    die(what, detail);
}

/* ---- the three contenders ---------------------------------------------- */

static int hiredis_op(bench *b, int op, size_t k)
{
    redisReply *r;
    int ok;

    if (op == OP_SET) {
        r = redisCommand(b->hiredis, "SET %b %b PX %d", b->full_key[IMPL_HIREDIS][k],
                         b->full_key_len[IMPL_HIREDIS][k], value_bytes, (size_t)VALUE_BYTES,
                         TTL_MS);
        ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    } else {
        r = redisCommand(b->hiredis, "GET %b", b->full_key[IMPL_HIREDIS][k],
                         b->full_key_len[IMPL_HIREDIS][k]);
        ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len == VALUE_BYTES;
    }
    if (!ok)
        fprintf(stderr, "cache_bench: hiredis %s: %s\n", op_names[op],
                r == NULL ? b->hiredis->errstr
                          : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int redkit_op(rk_cache *cache, char *const *keys, int op, size_t k)
{
    rk_status st;

    if (op == OP_SET) {
        st = rk_cache_set(cache, keys[k], value_bytes, VALUE_BYTES,
                          &(rk_set_options){ .ttl_ms = TTL_MS });
    } else {
        void *value;
        size_t len;

        st = rk_cache_get(cache, keys[k], &value, &len);
        rk_free(value);
        if (st == RK_OK && len != VALUE_BYTES) {
            fprintf(stderr, "cache_bench: redkit get: %zu bytes, not %d\n", len,
                    VALUE_BYTES);
            return -1;
        }
    }
    if (st != RK_OK)
        fprintf(stderr, "cache_bench: redkit %s: %s: %s\n", op_names[op],
                rk_strerror(st), rk_last_error());
    return st == RK_OK ? 0 : -1;
}

static int redkit_raw_op(bench *b, int op, size_t k)
{
    return redkit_op(b->raw, b->user_key[IMPL_REDKIT], op, k);
}

static int redkit_typed_op(bench *b, int op, size_t k)
{
    return redkit_op(b->typed, b->user_key[IMPL_TYPED], op, k);
}

static const op_fn impl_fns[N_IMPLS] = { hiredis_op, redkit_raw_op, redkit_typed_op };

/* ---- measuring ----------------------------------------------------------- */

/*
 * One measured phase of op for every contender. The contenders take turns
 * every BLOCK_OPS requests, the first of each turn rotating, until each
 * has done `ops`: a slow drift of the machine (another process, the CPU
 * clock) then weighs on all of them alike instead of on whichever ran
 * during it. Each request is timed; ops/s is the count over the time the
 * contender's own blocks took. Key k = i % KEYSPACE in every phase, so
 * every get finds what the set phase before it wrote.
 */
static void measure(bench *b, int op, size_t ops, size_t round, result out[N_IMPLS])
{
    int64_t busy_ns[N_IMPLS] = { 0 };

    for (size_t i = 0; i < N_IMPLS; i++)
        for (size_t n = 0; n < WARMUP_OPS; n++)
            if (impl_fns[i](b, op, n % KEYSPACE) != 0)
                exit(2);

    for (size_t done = 0, turn = round; done < ops; done += BLOCK_OPS, turn++) {
        size_t end = done + BLOCK_OPS < ops ? done + BLOCK_OPS : ops;

        for (size_t j = 0; j < N_IMPLS; j++) {
            size_t i = (j + turn) % N_IMPLS;
            int64_t start = bench_now_ns(), t0 = start, t1;

            for (size_t n = done; n < end; n++, t0 = t1) {
                if (impl_fns[i](b, op, n % KEYSPACE) != 0)
                    exit(2);
                t1 = bench_now_ns();
                b->lat_ns[i][n] = t1 - t0;
            }
            busy_ns[i] += t0 - start;
        }
    }

    for (size_t i = 0; i < N_IMPLS; i++) {
        bench_sort(b->lat_ns[i], ops);
        out[i].ops_per_s = (double)ops * 1e9 / (double)busy_ns[i];
        out[i].p50_us = (double)bench_percentile(b->lat_ns[i], ops, 0.50) / 1000.0;
        out[i].p99_us = (double)bench_percentile(b->lat_ns[i], ops, 0.99) / 1000.0;
    }
}

/* The round whose throughput is the median of the ROUNDS measured, with
 * the spread of all rounds' ops/s around it, as a fraction. */
static result median_round(const result *rounds, double *spread)
{
    size_t idx[ROUNDS];

    for (size_t i = 0; i < ROUNDS; i++)
        idx[i] = i;
    for (size_t i = 1; i < ROUNDS; i++) /* insertion sort by ops/s */
        for (size_t j = i; j > 0 && rounds[idx[j]].ops_per_s < rounds[idx[j - 1]].ops_per_s;
             j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    *spread = (rounds[idx[ROUNDS - 1]].ops_per_s - rounds[idx[0]].ops_per_s) /
              rounds[idx[ROUNDS / 2]].ops_per_s;
    return rounds[idx[ROUNDS / 2]];
}

/* ---- set-up -------------------------------------------------------------- */

/*
 * Open the hiredis connection to the server that url names, with AUTH and
 * SELECT as the URL says. The URL is read by redkit's own parser (setup
 * only: the baseline's measured path is hiredis alone).
 */
static redisContext *hiredis_connect(const char *url)
{
    const struct timeval timeout = { 1, 0 };
    rk__url u;
    redisContext *c;

    if (rk__url_parse(url, &u) != RK_OK)
        die("REDIS_URL", rk_last_error());
    if (u.tls)
        die("REDIS_URL", "the hiredis baseline does not speak TLS");
    if (u.unix_path != NULL)
        c = redisConnectUnixWithTimeout(u.unix_path, timeout);
    else
        c = redisConnectWithTimeout(u.host != NULL ? u.host : RK_DEFAULT_HOST,
                                    u.port != 0 ? u.port : RK_DEFAULT_PORT, timeout);
    if (c == NULL || c->err)
        die("hiredis connect", c == NULL ? "out of memory" : c->errstr);

    redisReply *r = NULL;
    if (u.password != NULL && u.username != NULL)
        r = redisCommand(c, "AUTH %s %s", u.username, u.password);
    else if (u.password != NULL)
        r = redisCommand(c, "AUTH %s", u.password);
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        die("hiredis AUTH", r->str);
    freeReplyObject(r);
    if (u.db != 0) {
        r = redisCommand(c, "SELECT %d", u.db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            die("hiredis SELECT", r == NULL ? c->errstr : r->str);
        freeReplyObject(r);
    }
    rk__url_clear(&u); /* wipes the password */
    return c;
}

/* "7.2.4" from INFO server, for the header line. */
static void server_version(redisContext *c, char *buf, size_t size)
{
    redisReply *r = redisCommand(c, "INFO server");
    const char *v;

    snprintf(buf, size, "?");
    if (r != NULL && r->type == REDIS_REPLY_STRING &&
        (v = strstr(r->str, "redis_version:")) != NULL)
        snprintf(buf, size, "%.*s", (int)strcspn(v + 14, "\r\n"), v + 14);
    freeReplyObject(r);
}

static size_t parse_ops(const char *text)
{
    char *end;
    unsigned long long n;

    errno = 0;
    n = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || n == 0 ||
        n > 100000000)
        die("OPS", "expected a number of operations, 1..100000000");
    return (size_t)n;
}

static void setup(bench *b, const char *url)
{
    rk_status st;

    st = rk_client_new_url(url, &b->client);
    if (st != RK_OK)
        die_rk("rk_client_new", st);
    st = rk_cache_new(b->client, &(rk_cache_options){ .raw = true }, &b->raw);
    if (st == RK_OK)
        st = rk_cache_new(b->client, NULL, &b->typed);
    if (st != RK_OK)
        die_rk("rk_cache_new", st);
    st = rk_client_ping(b->client);
    if (st != RK_OK)
        die_rk("redkit ping", st);

    b->hiredis = hiredis_connect(url);

    for (size_t i = 0; i < N_IMPLS; i++)
        for (size_t k = 0; k < KEYSPACE; k++) {
            char key[32];
            size_t len;

            snprintf(key, sizeof key, "bench:%c:%zu", impl_tags[i], k);
            st = rk_key_build(b->client, RK_CACHE_DEFAULT_NAMESPACE, key, NULL, 0, &len);
            if (st != RK_OK && st != RK_ERR_TOO_LARGE)
                die_rk("rk_key_build", st);
            b->user_key[i][k] = strdup(key);
            b->full_key[i][k] = malloc(len + 1);
            if (b->user_key[i][k] == NULL || b->full_key[i][k] == NULL)
                die("setup", "out of memory");
            st = rk_key_build(b->client, RK_CACHE_DEFAULT_NAMESPACE, key, b->full_key[i][k],
                              len + 1, &b->full_key_len[i][k]);
            if (st != RK_OK)
                die_rk("rk_key_build", st);
        }
    for (size_t i = 0; i < VALUE_BYTES; i++)
        value_bytes[i] = (char)('a' + i % 26);
}

/* Remove the bench's keys (pipelined), so a run against a shared server
 * leaves nothing behind but what expires in TTL_MS anyway. */
static void cleanup(bench *b)
{
    for (size_t i = 0; i < N_IMPLS; i++)
        for (size_t k = 0; k < KEYSPACE; k++)
            redisAppendCommand(b->hiredis, "UNLINK %b", b->full_key[i][k],
                               b->full_key_len[i][k]);
    for (size_t n = 0; n < N_IMPLS * KEYSPACE; n++) {
        void *r = NULL;

        if (redisGetReply(b->hiredis, &r) != REDIS_OK)
            break;
        freeReplyObject(r);
    }
    for (size_t i = 0; i < N_IMPLS; i++) {
        for (size_t k = 0; k < KEYSPACE; k++) {
            free(b->user_key[i][k]);
            free(b->full_key[i][k]);
        }
        free(b->lat_ns[i]);
    }
    redisFree(b->hiredis);
    rk_cache_free(b->raw);
    rk_cache_free(b->typed);
    rk_client_free(b->client);
}

/* ---- main ---------------------------------------------------------------- */

static void print_row(int op, const char *impl, result r, double spread)
{
    printf("%-5s %-13s %9.0f %8.1f %8.1f %7.0f%%\n", op_names[op], impl, r.ops_per_s,
           r.p50_us, r.p99_us, spread * 100);
}

int main(int argc, char **argv)
{
    static bench b;
    static result rounds[N_IMPLS][N_OPS][ROUNDS];
    result med[N_IMPLS][N_OPS];
    double spread[N_IMPLS][N_OPS];
    const char *url = getenv("REDIS_URL");
    const char *ops_text = argc > 1 ? argv[1] : getenv("BENCH_OPS");
    size_t ops = ops_text != NULL && ops_text[0] != '\0' ? parse_ops(ops_text) : DEFAULT_OPS;
    char version[32], *shown = NULL;

    if (url == NULL || url[0] == '\0')
        die("REDIS_URL", "not set (run it through scripts/with-redis, or `make bench`)");
    for (size_t i = 0; i < N_IMPLS; i++)
        if ((b.lat_ns[i] = malloc(ops * sizeof b.lat_ns[i][0])) == NULL)
            die("setup", "out of memory");
    setup(&b, url);
    server_version(b.hiredis, version, sizeof version);
    if (rk_url_redact(url, &shown) != RK_OK) /* never print a password */
        shown = NULL;

    printf("redkit %s cache bench: redis %s at %s\n", rk_version(), version,
           shown != NULL ? shown : "(unprintable URL)");
    printf("%zu ops per contender and operation after %d warm-up, %d-byte values,\n"
           "%d keys each, 1 request in flight, turns of %d ops; median of %d rounds\n"
           "(spread: max-min ops/s of the rounds over the median).\n"
           "redkit's cache is in raw mode: the same bytes as hiredis.\n\n",
           ops, WARMUP_OPS, VALUE_BYTES, KEYSPACE, BLOCK_OPS, ROUNDS);
    rk_free(shown);
    fflush(stdout);

    /*
     * Client and server share a small machine (often 2 cores), where a
     * burst of unrelated work or a change of CPU clock would otherwise land
     * on whichever contender happened to be running. Two defences: within
     * a phase the contenders take turns in short blocks (see measure()),
     * and the whole measurement is repeated ROUNDS times; the figures
     * printed are each contender's median round by ops/s, so one disturbed
     * round, in either direction, does not move them. "spread" says how far
     * apart the rounds were: a large one means the machine was busy and
     * the ratios deserve a second run. Sets run before gets in each round
     * so every get reads what its contender wrote.
     */
    for (size_t round = 0; round < ROUNDS; round++)
        for (int op = 0; op < N_OPS; op++) {
            result r[N_IMPLS];

            measure(&b, op, ops, round, r);
            for (size_t i = 0; i < N_IMPLS; i++)
                rounds[i][op][round] = r[i];
        }

    printf("%-5s %-13s %9s %8s %8s %8s\n", "op", "impl", "ops/s", "p50_us", "p99_us",
           "spread");
    for (int op = 0; op < N_OPS; op++) {
        for (size_t i = 0; i < N_IMPLS; i++)
            med[i][op] = median_round(rounds[i][op], &spread[i][op]);
        print_row(op, impl_names[IMPL_HIREDIS], med[0][op], spread[0][op]);
        print_row(op, impl_names[IMPL_REDKIT], med[1][op], spread[1][op]);
        printf("ratio %s redkit/hiredis = %.2f\n", op_names[op],
               med[1][op].ops_per_s / med[0][op].ops_per_s);
    }
    printf("\ntyped mode (the default: 2-byte type header, %d-byte stored values):\n",
           VALUE_BYTES + 2);
    for (int op = 0; op < N_OPS; op++) {
        print_row(op, impl_names[IMPL_TYPED], med[2][op], spread[2][op]);
        printf("ratio %s redkit-typed/hiredis = %.2f\n", op_names[op],
               med[2][op].ops_per_s / med[0][op].ops_per_s);
    }

    cleanup(&b);
    return 0;
}
