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

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#define BENCH_NAME "cache_bench"
#include "bench_support.h"
#include "measure.h"

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
                          &(rk_cache_set_options){ .ttl_ms = TTL_MS });
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

/* A measured phase: one operation, for every contender. */
typedef struct phase {
    bench *b;
    int op;
} phase;

/* Request n of contender impl: key k = n % KEYSPACE in every phase, so
 * every get finds what the set phase before it wrote. */
static int phase_step(void *ctx, size_t impl, size_t n)
{
    phase *p = ctx;

    return impl_fns[impl](p->b, p->op, n % KEYSPACE);
}

/*
 * One measured phase of op for every contender (bench_measure_round()):
 * the contenders take turns every BLOCK_OPS requests, the first of each
 * turn rotating, until each has done `ops`, so that a slow drift of the
 * machine weighs on all of them alike. Each request is timed; ops/s is the
 * count over the time the contender's own blocks took.
 */
static void measure(bench *b, int op, size_t ops, size_t round, bench_result out[N_IMPLS])
{
    bench_measure_round(phase_step, &(phase){ .b = b, .op = op }, N_IMPLS, WARMUP_OPS, ops, BLOCK_OPS,
                        round, b->lat_ns, out);
}

/* ---- set-up -------------------------------------------------------------- */

static void setup(bench *b, const char *url)
{
    rk_status st;

    st = rk_client_new_url(url, &b->client);
    if (st != RK_OK)
        bench_die_rk("rk_client_new", st);
    st = rk_cache_new(b->client, &(rk_cache_options){ .raw = true }, &b->raw);
    if (st == RK_OK)
        st = rk_cache_new(b->client, NULL, &b->typed);
    if (st != RK_OK)
        bench_die_rk("rk_cache_new", st);
    st = rk_client_ping(b->client);
    if (st != RK_OK)
        bench_die_rk("redkit ping", st);

    b->hiredis = bench_hiredis_connect(url);

    for (size_t i = 0; i < N_IMPLS; i++)
        for (size_t k = 0; k < KEYSPACE; k++) {
            char key[32];

            snprintf(key, sizeof key, "bench:%c:%zu", impl_tags[i], k);
            b->user_key[i][k] = strdup(key);
            if (b->user_key[i][k] == NULL)
                bench_die("setup", "out of memory");
            b->full_key[i][k] = bench_full_key(b->client, key, &b->full_key_len[i][k]);
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

static void print_row(int op, const char *impl, bench_result r, double spread)
{
    printf("%-5s %-13s %9.0f %8.1f %8.1f %7.0f%%\n", op_names[op], impl, r.per_s,
           r.p50_us, r.p99_us, spread * 100);
}

int main(int argc, char **argv)
{
    static bench b;
    static bench_result rounds[N_IMPLS][N_OPS][ROUNDS];
    bench_result med[N_IMPLS][N_OPS];
    double spread[N_IMPLS][N_OPS];
    size_t ops = bench_count(argc, argv, DEFAULT_OPS, "OPS", "operations", 100000000);
    const char *url = bench_redis_url();
    char version[32], *shown = NULL;

    bench_alloc_samples(b.lat_ns, N_IMPLS, ops);
    setup(&b, url);
    redisReply *info = redisCommand(b.hiredis, "INFO server");
    bench_server_version(info, version, sizeof version);
    freeReplyObject(info);
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
            bench_result r[N_IMPLS];

            measure(&b, op, ops, round, r);
            for (size_t i = 0; i < N_IMPLS; i++)
                rounds[i][op][round] = r[i];
        }

    printf("%-5s %-13s %9s %8s %8s %8s\n", "op", "impl", "ops/s", "p50_us", "p99_us",
           "spread");
    for (int op = 0; op < N_OPS; op++) {
        for (size_t i = 0; i < N_IMPLS; i++)
            med[i][op] = bench_median_round(rounds[i][op], ROUNDS, &spread[i][op]);
        print_row(op, impl_names[IMPL_HIREDIS], med[0][op], spread[0][op]);
        print_row(op, impl_names[IMPL_REDKIT], med[1][op], spread[1][op]);
        printf("ratio %s redkit/hiredis = %.2f\n", op_names[op],
               med[1][op].per_s / med[0][op].per_s);
    }
    printf("\ntyped mode (the default: 2-byte type header, %d-byte stored values):\n",
           VALUE_BYTES + 2);
    for (int op = 0; op < N_OPS; op++) {
        print_row(op, impl_names[IMPL_TYPED], med[2][op], spread[2][op]);
        printf("ratio %s redkit-typed/hiredis = %.2f\n", op_names[op],
               med[2][op].per_s / med[0][op].per_s);
    }

    cleanup(&b);
    return 0;
}
