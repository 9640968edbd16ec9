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

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#include "measure.h"
#include "url.h" /* src/: redkit's REDIS_URL parser, for the hiredis side */

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

typedef struct result {
    double batches_per_s, p50_us, p99_us;
} result;

static char value_bytes[VALUE_BYTES];

_Noreturn static void die(const char *what, const char *detail)
{
    fprintf(stderr, "batch_bench: %s: %s\n", what, detail);
    exit(2);
}

_Noreturn static void die_rk(const char *what, rk_status st)
{
    char detail[512];
    snprintf(detail, sizeof detail, "%s: %s", rk_strerror(st), rk_last_error());
    die(what, detail);
}

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
        die("hiredis MGET", r == NULL ? b->hiredis->errstr : "unexpected reply");
    for (size_t i = 0; i < BATCH; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i]->len != VALUE_BYTES)
            die("hiredis MGET", "a value is missing");
    freeReplyObject(r);
}

static void redkit_mget(bench *b, size_t first)
{
    rk_cache_result res[BATCH];
    rk_status st = rk_cache_mget(b->cache, (const char *const *)&b->user_key[first], BATCH, res);
    if (st != RK_OK)
        die_rk("rk_cache_mget", st);
    for (size_t i = 0; i < BATCH; i++)
        if (res[i].status != RK_OK || res[i].len != VALUE_BYTES)
            die_rk("rk_cache_mget: a value", res[i].status);
    rk_cache_results_free(res, BATCH);
}

static void redkit_gets(bench *b, size_t first)
{
    for (size_t i = 0; i < BATCH; i++) {
        void *v;
        size_t len;
        rk_status st = rk_cache_get(b->cache, b->user_key[first + i], &v, &len);
        if (st != RK_OK || len != VALUE_BYTES)
            die_rk("rk_cache_get", st);
        rk_free(v);
    }
}

typedef void (*batch_fn)(bench *b, size_t first);
static const batch_fn impl_fns[N_IMPLS] = {hiredis_mget, redkit_mget, redkit_gets};

/* ---- measuring ---------------------------------------------------------- */

/* As in cache_bench: contenders take turns every BLOCK batches, the first
 * of each turn rotating, so a slow patch of the machine weighs on all. */
static void measure(bench *b, size_t batches, size_t round, result out[N_IMPLS])
{
    int64_t busy_ns[N_IMPLS] = {0};
    for (size_t i = 0; i < N_IMPLS; i++)
        for (size_t n = 0; n < WARMUP_BATCHES; n++)
            impl_fns[i](b, (n * BATCH) % KEYSPACE);

    for (size_t done = 0, turn = round; done < batches; done += BLOCK, turn++) {
        size_t end = done + BLOCK < batches ? done + BLOCK : batches;
        for (size_t j = 0; j < N_IMPLS; j++) {
            size_t i = (j + turn) % N_IMPLS;
            int64_t start = bench_now_ns(), t0 = start, t1;
            for (size_t n = done; n < end; n++, t0 = t1) {
                impl_fns[i](b, (n * BATCH) % KEYSPACE);
                t1 = bench_now_ns();
                b->lat_ns[i][n] = t1 - t0;
            }
            busy_ns[i] += t0 - start;
        }
    }
    for (size_t i = 0; i < N_IMPLS; i++) {
        bench_sort(b->lat_ns[i], batches);
        out[i].batches_per_s = (double)batches * 1e9 / (double)busy_ns[i];
        out[i].p50_us = (double)bench_percentile(b->lat_ns[i], batches, 0.50) / 1000.0;
        out[i].p99_us = (double)bench_percentile(b->lat_ns[i], batches, 0.99) / 1000.0;
    }
}

/* The round with the median throughput, and the spread of all rounds. */
static result median_round(result *rounds, double *spread)
{
    for (size_t i = 1; i < ROUNDS; i++)
        for (size_t j = i; j > 0 && rounds[j].batches_per_s < rounds[j - 1].batches_per_s; j--) {
            result t = rounds[j];
            rounds[j] = rounds[j - 1];
            rounds[j - 1] = t;
        }
    *spread = (rounds[ROUNDS - 1].batches_per_s - rounds[0].batches_per_s) / rounds[ROUNDS / 2].batches_per_s;
    return rounds[ROUNDS / 2];
}

/* ---- set-up ------------------------------------------------------------- */

static redisContext *hiredis_connect(const char *url)
{
    const struct timeval timeout = {1, 0};
    rk__url u;
    if (rk__url_parse(url, &u) != RK_OK)
        die("REDIS_URL", rk_last_error());
    if (u.tls)
        die("REDIS_URL", "the hiredis baseline does not speak TLS");
    redisContext *c = u.unix_path != NULL
                          ? redisConnectUnixWithTimeout(u.unix_path, timeout)
                          : redisConnectWithTimeout(u.host != NULL ? u.host : RK_DEFAULT_HOST,
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
    rk__url_clear(&u);
    return c;
}

static char *full_key(bench *b, const char *key, size_t *len)
{
    rk_status st = rk_key_build(b->client, RK_CACHE_DEFAULT_NAMESPACE, key, NULL, 0, len);
    if (st != RK_OK && st != RK_ERR_TOO_LARGE)
        die_rk("rk_key_build", st);
    char *full = malloc(*len + 1);
    if (full == NULL)
        die("setup", "out of memory");
    st = rk_key_build(b->client, RK_CACHE_DEFAULT_NAMESPACE, key, full, *len + 1, len);
    if (st != RK_OK)
        die_rk("rk_key_build", st);
    return full;
}

static void setup(bench *b, const char *url)
{
    rk_status st = rk_client_new_url(url, &b->client);
    if (st != RK_OK)
        die_rk("rk_client_new", st);
    st = rk_cache_new(b->client, &(rk_cache_options){.raw = true}, &b->cache);
    if (st != RK_OK)
        die_rk("rk_cache_new", st);
    b->hiredis = hiredis_connect(url);
    for (size_t i = 0; i < VALUE_BYTES; i++)
        value_bytes[i] = (char)('a' + i % 26);

    static rk_cache_entry entries[KEYSPACE];
    for (size_t k = 0; k < KEYSPACE; k++) {
        char key[32];
        snprintf(key, sizeof key, "bench:r:%zu", k);
        b->user_key[k] = strdup(key);
        if (b->user_key[k] == NULL)
            die("setup", "out of memory");
        b->redkit_full[k] = full_key(b, key, &b->redkit_full_len[k]);
        snprintf(key, sizeof key, "bench:h:%zu", k);
        b->hiredis_key[k] = full_key(b, key, &b->hiredis_len[k]);
        entries[k] = (rk_cache_entry){.key = b->user_key[k], .value = value_bytes, .len = VALUE_BYTES};
        redisAppendCommand(b->hiredis, "SET %b %b PX %d", b->hiredis_key[k], b->hiredis_len[k],
                           value_bytes, (size_t)VALUE_BYTES, TTL_MS);
    }
    for (size_t k = 0; k < KEYSPACE; k++) {
        void *r = NULL;
        if (redisGetReply(b->hiredis, &r) != REDIS_OK)
            die("hiredis SET", b->hiredis->errstr);
        freeReplyObject(r);
    }
    st = rk_cache_mset(b->cache, entries, KEYSPACE, &(rk_set_options){.ttl_ms = TTL_MS}, NULL);
    if (st != RK_OK)
        die_rk("rk_cache_mset", st);
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

static size_t parse_count(const char *text)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || n == 0 || n > 10000000)
        die("BATCHES", "expected a number of batches, 1..10000000");
    return (size_t)n;
}

int main(int argc, char **argv)
{
    static bench b;
    static result rounds[N_IMPLS][ROUNDS];
    const char *url = getenv("REDIS_URL");
    const char *count_text = argc > 1 ? argv[1] : getenv("BENCH_OPS");
    size_t batches = count_text != NULL && count_text[0] != '\0' ? parse_count(count_text) : DEFAULT_BATCHES;
    char *shown = NULL;

    if (url == NULL || url[0] == '\0')
        die("REDIS_URL", "not set (run it through scripts/with-redis, or `make bench`)");
    for (size_t i = 0; i < N_IMPLS; i++)
        if ((b.lat_ns[i] = malloc(batches * sizeof b.lat_ns[i][0])) == NULL)
            die("setup", "out of memory");
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
        result r[N_IMPLS];
        measure(&b, batches, round, r);
        for (size_t i = 0; i < N_IMPLS; i++)
            rounds[i][round] = r[i];
    }

    result med[N_IMPLS];
    double spread[N_IMPLS];
    printf("%-13s %10s %10s %9s %9s %7s\n", "impl", "batches/s", "keys/s", "p50_us", "p99_us", "spread");
    for (size_t i = 0; i < N_IMPLS; i++) {
        med[i] = median_round(rounds[i], &spread[i]);
        printf("%-13s %10.0f %10.0f %9.1f %9.1f %6.0f%%\n", impl_names[i], med[i].batches_per_s,
               med[i].batches_per_s * BATCH, med[i].p50_us, med[i].p99_us, spread[i] * 100);
    }
    printf("ratio redkit-mget/redkit-get   = %.2f  (what one MGET saves over %d GETs)\n",
           med[IMPL_MGET].batches_per_s / med[IMPL_GETS].batches_per_s, BATCH);
    printf("ratio redkit-mget/hiredis-mget = %.2f  (redkit's own cost on a batch)\n",
           med[IMPL_MGET].batches_per_s / med[IMPL_HIREDIS].batches_per_s);

    cleanup(&b);
    return 0;
}
