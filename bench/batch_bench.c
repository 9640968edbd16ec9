/*
 * batch_bench.c — what one multi-get of 100 keys saves over 100 gets, and
 * what redkit's multi-get costs over a bare hiredis MGET.
 *
 *     REDIS_URL=redis://127.0.0.1:6379 ./batch_bench [BATCHES]
 *
 * Three contenders read the same 100-byte values, 100 keys per batch, in
 * the same process, one request in flight at a time:
 *
 *   hiredis-mget   redisCommandArgv("MGET" + 100 full keys), blocking
 *   redkit-mget    rk_cache_mget() of 100 keys (+ rk_cache_results_free)
 *   redkit-get     100 x rk_cache_get() (+ rk_free)
 *
 * The redkit cache runs in raw mode, so hiredis reads the same bytes
 * redkit does and the difference between the two MGETs is redkit's own
 * work (key building, the pool, detaching and checking 100 values).
 * hiredis reads keys of its own ("bench:h:N" beside "bench:r:N"), built
 * with rk_key_build() so the commands have the same size.
 *
 * Prints batches/s and keys/s, p50 and p99 of one batch, and two ratios:
 * redkit-mget over redkit-get (what batching buys) and redkit-mget over
 * hiredis-mget (what redkit costs). Figures only; the exit status says
 * whether the run could be done. BATCHES (argv[1] or $BENCH_OPS) is the
 * timed batches per contender and round, default 1000.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#define BENCH_NAME "batch_bench"
#include "bench_support.h"
#include "measure.h"

#define DEFAULT_BATCHES 1000
#define WARMUP_BATCHES 50
#define ROUNDS 3
#define BLOCK 20          /* contenders take turns every BLOCK batches */
#define BATCH 100         /* keys per batch */
#define KEYSPACE 10000    /* keys per contender, read BATCH at a time in turn */
#define VALUE_BYTES 100
#define TTL_MS 600000

enum { IMPL_HIREDIS, IMPL_MGET, IMPL_GETS, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {"hiredis-mget", "redkit-mget", "redkit-get"};

typedef struct bench {
    redisContext *hiredis;
    rk_client *client;
    rk_cache *cache;                 /* raw mode */
    char *user_key[KEYSPACE];        /* "bench:r:N", what redkit callers pass */
    char *hiredis_key[KEYSPACE];     /* "[prefix:]cache:bench:h:N" */
    size_t hiredis_len[KEYSPACE];
    char *redkit_full[KEYSPACE];     /* "[prefix:]cache:bench:r:N", for cleanup */
    size_t redkit_full_len[KEYSPACE];
    int64_t *lat_ns[N_IMPLS];
} bench;

static char value_bytes[VALUE_BYTES];

/* ---- the contenders: one batch each, starting at key `first` ------------ */

static void hiredis_mget(bench *b, size_t first)
{
    const char *argv[BATCH + 1];
    size_t lens[BATCH + 1];
    argv[0] = "MGET";
    lens[0] = 4;
    for (size_t i = 0; i < BATCH; i++) {
        argv[i + 1] = b->hiredis_key[first + i];
        lens[i + 1] = b->hiredis_len[first + i];
    }
    redisReply *r = redisCommandArgv(b->hiredis, BATCH + 1, argv, lens);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != BATCH)
        bench_die("hiredis MGET", r == NULL ? b->hiredis->errstr : "unexpected reply");
    for (size_t i = 0; i < BATCH; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i]->len != VALUE_BYTES)
            bench_die("hiredis MGET", "a value is missing");
    freeReplyObject(r);
}

static void redkit_mget(bench *b, size_t first)
{
    rk_cache_result res[BATCH];
    rk_status st = rk_cache_mget(b->cache, (const char *const *)&b->user_key[first], BATCH, res);
    if (st != RK_OK)
        bench_die_rk("rk_cache_mget", st);
    for (size_t i = 0; i < BATCH; i++)
        if (res[i].status != RK_OK || res[i].len != VALUE_BYTES)
            bench_die_rk("rk_cache_mget: a value", res[i].status);
    rk_cache_results_free(res, BATCH);
}

static void redkit_gets(bench *b, size_t first)
{
    for (size_t i = 0; i < BATCH; i++) {
        void *v;
        size_t len;
        rk_status st = rk_cache_get(b->cache, b->user_key[first + i], &v, &len);
        if (st != RK_OK || len != VALUE_BYTES)
            bench_die_rk("rk_cache_get", st);
        rk_free(v);
    }
}

typedef void (*batch_fn)(bench *b, size_t first);
static const batch_fn impl_fns[N_IMPLS] = {hiredis_mget, redkit_mget, redkit_gets};

/* ---- measuring ---------------------------------------------------------- */

/* Batch n of contender impl, at key (n * BATCH) % KEYSPACE. */
static int batch_step(void *ctx, size_t impl, size_t n)
{
    impl_fns[impl](ctx, (n * BATCH) % KEYSPACE);
    return 0; /* a failed batch has ended the program */
}

/* As in cache_bench (bench_measure_round()): contenders take turns every
 * BLOCK batches, the first of each turn rotating, so a slow patch of the
 * machine weighs on all. */
static void measure(bench *b, size_t batches, size_t round, bench_result out[N_IMPLS])
{
    bench_measure_round(batch_step, b, N_IMPLS, WARMUP_BATCHES, batches, BLOCK, round, b->lat_ns, out);
}

/* ---- set-up ------------------------------------------------------------- */

static void setup(bench *b, const char *url)
{
    rk_status st = rk_client_new_url(url, &b->client);
    if (st != RK_OK)
        bench_die_rk("rk_client_new", st);
    st = rk_cache_new(b->client, &(rk_cache_options){.raw = true}, &b->cache);
    if (st != RK_OK)
        bench_die_rk("rk_cache_new", st);
    b->hiredis = bench_hiredis_connect(url);
    for (size_t i = 0; i < VALUE_BYTES; i++)
        value_bytes[i] = (char)('a' + i % 26);

    static rk_cache_entry entries[KEYSPACE];
    for (size_t k = 0; k < KEYSPACE; k++) {
        char key[32];
        snprintf(key, sizeof key, "bench:r:%zu", k);
        b->user_key[k] = strdup(key);
        if (b->user_key[k] == NULL)
            bench_die("setup", "out of memory");
        b->redkit_full[k] = bench_full_key(b->client, key, &b->redkit_full_len[k]);
        snprintf(key, sizeof key, "bench:h:%zu", k);
        b->hiredis_key[k] = bench_full_key(b->client, key, &b->hiredis_len[k]);
        entries[k] = (rk_cache_entry){.key = b->user_key[k], .value = value_bytes, .len = VALUE_BYTES};
        redisAppendCommand(b->hiredis, "SET %b %b PX %d", b->hiredis_key[k], b->hiredis_len[k],
                           value_bytes, (size_t)VALUE_BYTES, TTL_MS);
    }
    for (size_t k = 0; k < KEYSPACE; k++) {
        void *r = NULL;
        if (redisGetReply(b->hiredis, &r) != REDIS_OK)
            bench_die("hiredis SET", b->hiredis->errstr);
        freeReplyObject(r);
    }
    st = rk_cache_mset(b->cache, entries, KEYSPACE, &(rk_cache_set_options){.ttl_ms = TTL_MS}, NULL);
    if (st != RK_OK)
        bench_die_rk("rk_cache_mset", st);
}

static void cleanup(bench *b)
{
    for (size_t k = 0; k < KEYSPACE; k++) {
        redisAppendCommand(b->hiredis, "UNLINK %b", b->hiredis_key[k], b->hiredis_len[k]);
        redisAppendCommand(b->hiredis, "UNLINK %b", b->redkit_full[k], b->redkit_full_len[k]);
    }
    for (size_t n = 0; n < 2 * KEYSPACE; n++) {
        void *r = NULL;
        if (redisGetReply(b->hiredis, &r) != REDIS_OK)
            break;
        freeReplyObject(r);
    }
    for (size_t k = 0; k < KEYSPACE; k++) {
        free(b->user_key[k]);
        free(b->hiredis_key[k]);
        free(b->redkit_full[k]);
    }
    for (size_t i = 0; i < N_IMPLS; i++)
        free(b->lat_ns[i]);
    redisFree(b->hiredis);
    rk_cache_free(b->cache);
    rk_client_free(b->client);
}

int main(int argc, char **argv)
{
    static bench b;
    static bench_result rounds[N_IMPLS][ROUNDS];
    size_t batches = bench_count(argc, argv, DEFAULT_BATCHES, "BATCHES", "batches", 10000000);
    const char *url = bench_redis_url();
    char *shown = NULL;

    bench_alloc_samples(b.lat_ns, N_IMPLS, batches);
    setup(&b, url);
    if (rk_url_redact(url, &shown) != RK_OK)
        shown = NULL;
    printf("redkit %s batch bench at %s\n", rk_version(), shown != NULL ? shown : "(unprintable URL)");
    printf("%zu batches of %d keys per contender and round after %d warm-up, %d-byte values,\n"
           "1 request in flight, turns of %d batches; median of %d rounds.\n"
           "redkit's cache is in raw mode: the same bytes as hiredis.\n\n",
           batches, BATCH, WARMUP_BATCHES, VALUE_BYTES, BLOCK, ROUNDS);
    rk_free(shown);
    fflush(stdout);

    for (size_t round = 0; round < ROUNDS; round++) {
        bench_result r[N_IMPLS];
        measure(&b, batches, round, r);
        for (size_t i = 0; i < N_IMPLS; i++)
            rounds[i][round] = r[i];
    }

    bench_result med[N_IMPLS];
    double spread[N_IMPLS];
    printf("%-13s %10s %10s %9s %9s %7s\n", "impl", "batches/s", "keys/s", "p50_us", "p99_us", "spread");
    for (size_t i = 0; i < N_IMPLS; i++) {
        med[i] = bench_median_round(rounds[i], ROUNDS, &spread[i]);
        printf("%-13s %10.0f %10.0f %9.1f %9.1f %6.0f%%\n", impl_names[i], med[i].per_s,
               med[i].per_s * BATCH, med[i].p50_us, med[i].p99_us, spread[i] * 100);
    }
    printf("ratio redkit-mget/redkit-get   = %.2f  (what one MGET saves over %d GETs)\n",
           med[IMPL_MGET].per_s / med[IMPL_GETS].per_s, BATCH);
    printf("ratio redkit-mget/hiredis-mget = %.2f  (redkit's own cost on a batch)\n",
           med[IMPL_MGET].per_s / med[IMPL_HIREDIS].per_s);

    cleanup(&b);
    return 0;
}
