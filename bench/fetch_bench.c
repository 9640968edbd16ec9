/*
 * fetch_bench.c — what get-or-compute costs on its hit path, and what it
 * saves on a cold key.
 *
 *     REDIS_URL=redis://127.0.0.1:6379 ./fetch_bench [OPS]
 *
 * A. The hit path. Each of 1000 keys is fetched once (computed and stored
 *    with its META block), then read, in the same process and one request
 *    in flight at a time, by four contenders that all read the SAME keys:
 *
 *      hiredis        redisCommand("GET %b") of the full key, blocking
 *      redkit-get     rk_cache_get()
 *      redkit-fetch   rk_cache_fetch() (XFetch on, beta 1.0)
 *      fetch+stale    rk_cache_fetch() with stale_ms, which also keeps this
 *                     process's copy of each value up to date
 *
 *    so the bytes on the wire are the same and the differences are
 *    redkit's own work: for fetch, the META block, the XFetch draw and the
 *    option checks; for fetch+stale, the copy table. The contenders take
 *    turns every 500 requests, and the whole measurement runs 3 rounds;
 *    each contender's median round is printed (as in cache_bench). No
 *    computation may happen during it (the values live 5 minutes and took
 *    ~0 ms to compute, so an early refresh has a probability of about
 *    e^-300000 per read): the count is printed, and checked.
 *
 * B. A cold key under a stampede: 16 threads fetch one missing key whose
 *    computation takes 20 ms, 20 times over (a new key each time). It
 *    prints how many computations ran (1 per key is the goal) and the
 *    callers' latency, against what a plain get-then-set would have done
 *    (16 computations per key: every thread misses).
 *
 * It prints figures and never judges them; the exit status only says
 * whether the run could be done. OPS (argv[1] or $BENCH_OPS, default
 * 50000) is the number of timed reads per contender and round.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#include "cache.h"  /* src/: the handle's counters */
#define BENCH_NAME "fetch_bench"
#include "bench_support.h"
#include "measure.h"

#define DEFAULT_OPS 50000
#define WARMUP_OPS 2000
#define ROUNDS 3
#define BLOCK_OPS 500
#define KEYSPACE 1000
#define VALUE_BYTES 100
#define TTL_MS 300000
#define STALE_MS 60000

enum { IMPL_HIREDIS, IMPL_GET, IMPL_FETCH, IMPL_STALE, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {"hiredis", "redkit-get", "redkit-fetch", "fetch+stale"};

typedef struct bench {
    redisContext *hiredis;
    rk_client *client;
    rk_cache *cache;
    char *user_key[KEYSPACE];
    char *full_key[KEYSPACE];
    size_t full_key_len[KEYSPACE];
    int64_t *lat_ns[N_IMPLS];
} bench;

static char value_bytes[VALUE_BYTES];
static atomic_long computations;

/* The "database": a constant 100-byte value, instantly. */
static rk_status compute_value(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)ctx, (void)key;
    atomic_fetch_add(&computations, 1);
    return rk_cache_computed_set(out, value_bytes, VALUE_BYTES);
}

/* ---- A: the contenders --------------------------------------------------- */

typedef int (*op_fn)(bench *b, size_t k);

static int hiredis_get(bench *b, size_t k)
{
    redisReply *r = redisCommand(b->hiredis, "GET %b", b->full_key[k], b->full_key_len[k]);
    /* 2-byte header + 12-byte META block + the payload */
    int ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len == VALUE_BYTES + 14;
    if (!ok) fprintf(stderr, "fetch_bench: hiredis GET: %s\n", r == NULL ? b->hiredis->errstr : "unexpected reply");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int check(const char *what, rk_status st, void *value, size_t len)
{
    rk_free(value);
    if (st == RK_OK && len == VALUE_BYTES) return 0;
    fprintf(stderr, "fetch_bench: %s: %s: %s (%zu bytes)\n", what, rk_strerror(st), rk_last_error(), len);
    return -1;
}

static int redkit_get(bench *b, size_t k)
{
    void *v;
    size_t n;
    rk_status st = rk_cache_get(b->cache, b->user_key[k], &v, &n);
    return check("rk_cache_get", st, v, n);
}

static int redkit_fetch(bench *b, size_t k)
{
    void *v;
    size_t n;
    rk_status st = rk_cache_fetch(b->cache, b->user_key[k], compute_value, NULL,
                                  &(rk_cache_fetch_options){.ttl_ms = TTL_MS}, &v, &n, NULL);
    return check("rk_cache_fetch", st, v, n);
}

static int redkit_fetch_stale(bench *b, size_t k)
{
    void *v;
    size_t n;
    rk_status st = rk_cache_fetch(b->cache, b->user_key[k], compute_value, NULL,
                                  &(rk_cache_fetch_options){.ttl_ms = TTL_MS, .stale_ms = STALE_MS}, &v, &n, NULL);
    return check("rk_cache_fetch (stale_ms)", st, v, n);
}

static const op_fn impl_fns[N_IMPLS] = {hiredis_get, redkit_get, redkit_fetch, redkit_fetch_stale};

/* Read n of contender impl, at key n % KEYSPACE. */
static int read_step(void *ctx, size_t impl, size_t n)
{
    return impl_fns[impl](ctx, n % KEYSPACE);
}

/* One round (bench_measure_round()): contenders take turns every BLOCK_OPS
 * reads, the first of each turn rotating, so a slow patch of the machine
 * weighs on all alike. */
static void measure(bench *b, size_t ops, size_t round, bench_result out[N_IMPLS])
{
    bench_measure_round(read_step, b, N_IMPLS, WARMUP_OPS, ops, BLOCK_OPS, round, b->lat_ns, out);
}

/* ---- B: a stampede on a cold key --------------------------------------------- */

#define STAMPEDE_THREADS 16
#define STAMPEDE_KEYS 20
#define STAMPEDE_COMPUTE_MS 20

typedef struct stampede {
    rk_cache *cache;
    pthread_barrier_t *start;
    const char *key;
    int64_t took_ns;
    rk_status st;
} stampede;

static rk_status slow_compute(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)ctx, (void)key;
    atomic_fetch_add(&computations, 1);
    struct timespec ts = {0, STAMPEDE_COMPUTE_MS * 1000000L};
    nanosleep(&ts, NULL);
    return rk_cache_computed_set(out, value_bytes, VALUE_BYTES);
}

static void *stampede_caller(void *arg)
{
    stampede *s = arg;
    void *v = NULL;
    size_t n;
    pthread_barrier_wait(s->start);
    int64_t t0 = bench_now_ns();
    s->st = rk_cache_fetch(s->cache, s->key, slow_compute, NULL, &(rk_cache_fetch_options){.ttl_ms = TTL_MS}, &v, &n,
                           NULL);
    s->took_ns = bench_now_ns() - t0;
    rk_free(v);
    return NULL;
}

static void run_stampede(bench *b)
{
    static int64_t lat[STAMPEDE_THREADS * STAMPEDE_KEYS];
    size_t nlat = 0;
    long before = atomic_load(&computations);
    int failed = 0;
    for (int k = 0; k < STAMPEDE_KEYS; k++) {
        char key[32];
        snprintf(key, sizeof key, "fetch-bench:cold:%d", k);
        rk_cache_delete(b->cache, key);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, STAMPEDE_THREADS);
        stampede s[STAMPEDE_THREADS];
        pthread_t t[STAMPEDE_THREADS];
        for (int i = 0; i < STAMPEDE_THREADS; i++) {
            s[i] = (stampede){.cache = b->cache, .start = &start, .key = key};
            if (pthread_create(&t[i], NULL, stampede_caller, &s[i]) != 0) bench_die("pthread_create", strerror(errno));
        }
        for (int i = 0; i < STAMPEDE_THREADS; i++) {
            pthread_join(t[i], NULL);
            failed += s[i].st != RK_OK;
            lat[nlat++] = s[i].took_ns;
        }
        pthread_barrier_destroy(&start);
        rk_cache_delete(b->cache, key);
    }
    long ran = atomic_load(&computations) - before;
    bench_sort(lat, nlat);
    printf("\nB. stampede: %d threads x %d cold keys, compute %d ms each\n", STAMPEDE_THREADS, STAMPEDE_KEYS,
           STAMPEDE_COMPUTE_MS);
    printf("   computations %ld (%.2f per key; get-then-set would run %d per key), failed calls %d\n", ran,
           (double)ran / STAMPEDE_KEYS, STAMPEDE_THREADS, failed);
    printf("   caller latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms (the computation itself: %d ms)\n",
           (double)bench_percentile(lat, nlat, 0.50) / 1e6, (double)bench_percentile(lat, nlat, 0.99) / 1e6,
           (double)lat[nlat - 1] / 1e6, STAMPEDE_COMPUTE_MS);
}

/* ---- set-up -------------------------------------------------------------------- */

static void setup(bench *b, const char *url)
{
    rk_status st = rk_client_new_url(url, &b->client);
    if (st != RK_OK) bench_die_rk("rk_client_new", st);
    if ((st = rk_cache_new(b->client, NULL, &b->cache)) != RK_OK) bench_die_rk("rk_cache_new", st);
    b->hiredis = bench_hiredis_connect(url);
    for (size_t i = 0; i < VALUE_BYTES; i++) value_bytes[i] = (char)('a' + i % 26);
    for (size_t k = 0; k < KEYSPACE; k++) {
        char key[32];
        snprintf(key, sizeof key, "fetch-bench:%zu", k);
        b->user_key[k] = strdup(key);
        if (b->user_key[k] == NULL) bench_die("setup", "out of memory");
        b->full_key[k] = bench_full_key(b->client, key, &b->full_key_len[k]);
        /* Computed once, so that every contender reads the same value. */
        rk_cache_delete(b->cache, key);
        if (redkit_fetch_stale(b, k) != 0) exit(2);
    }
}

static void cleanup(bench *b)
{
    for (size_t k = 0; k < KEYSPACE; k++) {
        rk_cache_delete(b->cache, b->user_key[k]);
        free(b->user_key[k]);
        free(b->full_key[k]);
    }
    for (size_t i = 0; i < N_IMPLS; i++) free(b->lat_ns[i]);
    redisFree(b->hiredis);
    rk_cache_free(b->cache);
    rk_client_free(b->client);
}

static void print_row(const char *impl, bench_result r, double spread)
{
    printf("%-13s %9.0f %8.1f %8.1f %7.0f%%\n", impl, r.per_s, r.p50_us, r.p99_us, spread * 100);
}

int main(int argc, char **argv)
{
    static bench b;
    static bench_result rounds[N_IMPLS][ROUNDS];
    size_t ops = bench_count(argc, argv, DEFAULT_OPS, "OPS", "operations", 100000000);
    const char *url = bench_redis_url();
    char *shown = NULL;

    bench_alloc_samples(b.lat_ns, N_IMPLS, ops);
    setup(&b, url);
    if (rk_url_redact(url, &shown) != RK_OK) shown = NULL;
    printf("redkit %s fetch bench at %s\n", rk_version(), shown != NULL ? shown : "(unprintable URL)");
    rk_free(shown);
    printf("A. hit path: %zu reads per contender and round after %d warm-up, %d-byte values (+14 bytes of\n"
           "   header and META), %d keys read by every contender, 1 request in flight, turns of %d;\n"
           "   median of %d rounds (spread: max-min ops/s over the median).\n\n",
           ops, WARMUP_OPS, VALUE_BYTES, KEYSPACE, BLOCK_OPS, ROUNDS);
    fflush(stdout);

    long before = atomic_load(&computations);
    uint64_t early_before = atomic_load(&b.cache->counters.early);
    for (size_t round = 0; round < ROUNDS; round++) {
        bench_result r[N_IMPLS];
        measure(&b, ops, round, r);
        for (size_t i = 0; i < N_IMPLS; i++) rounds[i][round] = r[i];
    }
    long during = atomic_load(&computations) - before;

    bench_result med[N_IMPLS];
    double spread[N_IMPLS];
    printf("%-13s %9s %8s %8s %8s\n", "impl", "ops/s", "p50_us", "p99_us", "spread");
    for (size_t i = 0; i < N_IMPLS; i++) {
        med[i] = bench_median_round(rounds[i], ROUNDS, &spread[i]);
        print_row(impl_names[i], med[i], spread[i]);
    }
    printf("ratio redkit-get/hiredis   = %.2f\n", med[IMPL_GET].per_s / med[IMPL_HIREDIS].per_s);
    printf("ratio redkit-fetch/hiredis = %.2f\n", med[IMPL_FETCH].per_s / med[IMPL_HIREDIS].per_s);
    printf("ratio redkit-fetch/get     = %.2f\n", med[IMPL_FETCH].per_s / med[IMPL_GET].per_s);
    printf("ratio fetch+stale/fetch    = %.2f\n", med[IMPL_STALE].per_s / med[IMPL_FETCH].per_s);
    printf("computations during A: %ld, early refreshes: %llu (both expected 0)\n", during,
           (unsigned long long)(atomic_load(&b.cache->counters.early) - early_before));

    run_stampede(&b);
    cleanup(&b);
    return during == 0 ? 0 : 2;
}
