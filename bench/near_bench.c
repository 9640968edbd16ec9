/*
 * near_bench.c — what a near-cache hit costs, against a round trip.
 *
 *     REDIS_URL=redis://127.0.0.1:6379 ./near_bench [HITS]
 *
 * The near cache's store (src/cache/near.c) is filled with 1,000 keys of
 * the cache's shape ("cache:bench:n:N") and 100-byte values, then read:
 *
 *   - one thread: ns per hit (the median of 5 rounds of HITS reads, each
 *     read a copy of the value, as rk_cache_get() hands one over);
 *   - 1, 4 and 16 threads reading at once: total hits/s (on this 2-core
 *     machine more threads than cores share them);
 *   - the same run's rk_cache_get() of a 100-byte value on the same server,
 *     one request in flight: µs per round trip, and the ratio of the two;
 *   - rk_cache_get() on a handle with the near cache on, the value held:
 *     ns per call (the store plus the key, the type check and the copy);
 *   - the invalidation delay: another connection SETs a key the near
 *     cache holds, and the time from that SET's reply to the moment the
 *     near cache has dropped the key (polled), p50 and p99 of 500 writes.
 *
 * It prints figures and never judges them: the exit status only says
 * whether the run could be done. HITS defaults to 2,000,000 (argv[1] or
 * $BENCH_OPS).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redkit/redkit.h>

#define BENCH_NAME "near_bench"
#include "alloc.h"
#include "bench_support.h"
#include "measure.h"
#include "near.h"

#define KEYS 1000
#define VALUE_BYTES 100
#define ROUNDS 5
#define RTT_OPS 20000

static char keys[KEYS][32];
static size_t key_len[KEYS];

static int64_t read_all(rk__near *n, size_t hits, size_t offset)
{
    int64_t start = bench_now_ns();
    for (size_t i = 0; i < hits; i++) {
        size_t k = (i * 7 + offset) % KEYS;
        void *v;
        size_t len;
        if (rk__near_get(n, keys[k], key_len[k], 1, &v, &len) != RK_OK || len != VALUE_BYTES)
            bench_die("near get", "not a hit");
        rk__free(v);
    }
    return bench_now_ns() - start;
}

typedef struct reader {
    rk__near *n;
    size_t hits, id;
    int64_t ns;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    r->ns = read_all(r->n, r->hits, r->id * 131);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t hits = bench_count(argc, argv, 2000000, "HITS", "hits", 1000000000);
    const char *url = bench_redis_url();

    rk__near *n = rk__near_new(&(rk__near_limits){.max_bytes = 64u << 20, .max_entries = 100000,
                                                   .max_ttl_ms = 3600000});
    if (!n) bench_die("rk__near_new", "out of memory");
    rk__near_flush(n, RK__NEAR_FLUSH_CONNECTION, true);
    char value[VALUE_BYTES];
    memset(value, 'v', sizeof value);
    for (size_t k = 0; k < KEYS; k++) {
        key_len[k] = (size_t)snprintf(keys[k], sizeof keys[k], "cache:bench:n:%zu", k);
        uint64_t t = rk__near_fill_begin(n, keys[k], key_len[k]);
        if (!rk__near_fill_end(n, keys[k], key_len[k], t, value, VALUE_BYTES, 0, 0)) bench_die("fill", "did not land");
    }

    /* One thread: ns per hit, median of ROUNDS. */
    double ns_per_hit[ROUNDS];
    read_all(n, hits / 10, 0); /* warm-up */
    for (int r = 0; r < ROUNDS; r++) ns_per_hit[r] = (double)read_all(n, hits, (size_t)r) / (double)hits;
    for (int i = 1; i < ROUNDS; i++)
        for (int j = i; j > 0 && ns_per_hit[j] < ns_per_hit[j - 1]; j--) {
            double t = ns_per_hit[j];
            ns_per_hit[j] = ns_per_hit[j - 1];
            ns_per_hit[j - 1] = t;
        }
    double hit_ns = ns_per_hit[ROUNDS / 2];

    /* Threads: total hits/s. */
    static const size_t thread_counts[] = {1, 4, 16};
    double per_s[3];
    for (size_t c = 0; c < 3; c++) {
        size_t t = thread_counts[c];
        reader rd[16];
        pthread_t th[16];
        int64_t start = bench_now_ns();
        for (size_t i = 0; i < t; i++) {
            rd[i] = (reader){.n = n, .hits = hits / t, .id = i};
            if (pthread_create(&th[i], NULL, reader_main, &rd[i]) != 0) bench_die("pthread_create", "failed");
        }
        for (size_t i = 0; i < t; i++) pthread_join(th[i], NULL);
        per_s[c] = (double)(hits / t * t) * 1e9 / (double)(bench_now_ns() - start);
    }

    /* A round trip on the same machine, same run: rk_cache_get(). */
    rk_client *client;
    rk_cache *cache;
    rk_status st = rk_client_new_url(url, &client);
    if (st != RK_OK) bench_die_rk("rk_client_new", st);
    st = rk_cache_new(client, &(rk_cache_options){.ns = "bench", .raw = true}, &cache);
    if (st != RK_OK) bench_die_rk("rk_cache_new", st);
    st = rk_cache_set(cache, "n:rtt", value, VALUE_BYTES, &(rk_cache_set_options){.ttl_ms = 60000});
    if (st != RK_OK) bench_die_rk("rk_cache_set", st);
    for (int i = 0; i < 1000; i++) {
        void *v;
        size_t len;
        if (rk_cache_get(cache, "n:rtt", &v, &len) == RK_OK) rk_free(v);
    }
    int64_t start = bench_now_ns();
    for (int i = 0; i < RTT_OPS; i++) {
        void *v;
        size_t len;
        st = rk_cache_get(cache, "n:rtt", &v, &len);
        if (st != RK_OK) bench_die_rk("rk_cache_get", st);
        rk_free(v);
    }
    double rtt_ns = (double)(bench_now_ns() - start) / RTT_OPS;
    rk_cache_delete(cache, "n:rtt");
    rk_cache_free(cache);

    /* The near cache through rk_cache_get(). */
    rk_cache *nearc;
    st = rk_cache_new(client, &(rk_cache_options){.raw = true, .near_cache = true}, &nearc);
    if (st != RK_OK) bench_die_rk("rk_cache_new (near)", st);
    rk_cache_metrics m;
    for (int i = 0; i < 500; i++) { /* its subscription, then a held value */
        rk_cache_set(nearc, "n:hot", value, VALUE_BYTES, &(rk_cache_set_options){.ttl_ms = 600000});
        void *v;
        size_t len;
        for (int j = 0; j < 20; j++)
            if (rk_cache_get(nearc, "n:hot", &v, &len) == RK_OK) rk_free(v);
        rk_cache_metrics_get(nearc, &m);
        if (m.near_entries == 1 && m.near_hits > 10) break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    start = bench_now_ns();
    for (size_t i = 0; i < hits; i++) {
        void *v;
        size_t len;
        if (rk_cache_get(nearc, "n:hot", &v, &len) != RK_OK) bench_die("rk_cache_get (near)", rk_last_error());
        rk_free(v);
    }
    double near_get_ns = (double)(bench_now_ns() - start) / (double)hits;
    rk_cache_metrics_get(nearc, &m);
    uint64_t near_hits = m.near_hits;

    /* Invalidation delay: a write elsewhere, until the key is gone here. */
    redisContext *other = bench_hiredis_connect(url);
    char *full = bench_full_key(client, "n:hot", &(size_t){0});
    enum { WRITES = 500 };
    int64_t delay[WRITES];
    size_t measured = 0;
    for (int w = 0; w < WRITES; w++) {
        void *v;
        size_t len;
        if (rk_cache_get(nearc, "n:hot", &v, &len) == RK_OK) rk_free(v); /* hold it again */
        rk_cache_metrics_get(nearc, &m);
        if (m.near_entries != 1) continue;
        uint64_t inv = m.near_invalidations;
        redisReply *r = redisCommand(other, "SET %s %b", full, value, (size_t)VALUE_BYTES);
        int64_t acked = bench_now_ns();
        if (!r) bench_die("hiredis SET", other->errstr);
        freeReplyObject(r);
        bool seen = false;
        while (!seen && bench_now_ns() - acked < 2000000000) { /* at most 2 s */
            rk_cache_metrics_get(nearc, &m);
            seen = m.near_invalidations != inv;
        }
        if (seen) delay[measured++] = bench_now_ns() - acked;
    }
    bench_sort(delay, measured);
    free(full);
    redisFree(other);
    rk_cache_free(nearc);
    rk_client_free(client);

    rk__near_stats s;
    rk__near_stats_get(n, &s);
    printf("near cache store: %d keys, %d-byte values, %zu hits per round (median of %d)\n", KEYS, VALUE_BYTES,
           hits, ROUNDS);
    printf("  hit, 1 thread        %8.1f ns   (%.1f .. %.1f over the rounds)\n", hit_ns, ns_per_hit[0],
           ns_per_hit[ROUNDS - 1]);
    for (size_t c = 0; c < 3; c++)
        printf("  hits/s, %2zu thread%s  %10.0f\n", thread_counts[c], thread_counts[c] == 1 ? " " : "s", per_s[c]);
    printf("  rk_cache_get round trip %8.1f ns (%d requests, one in flight)\n", rtt_ns, RTT_OPS);
    printf("  ratio round trip / near hit: %.0f x\n", rtt_ns / hit_ns);
    printf("  held: %llu entries, %llu bytes accounted\n", (unsigned long long)s.entries,
           (unsigned long long)s.bytes);
    printf("rk_cache_get with the near cache on, value held: %8.1f ns per call (%llu near hits)\n", near_get_ns,
           (unsigned long long)near_hits);
    printf("  ratio round trip / near rk_cache_get: %.0f x\n", rtt_ns / near_get_ns);
    if (measured)
        printf("invalidation delay, SET reply to key dropped: p50 %.1f us, p99 %.1f us (%zu writes)\n",
               (double)bench_percentile(delay, measured, 0.50) / 1000.0,
               (double)bench_percentile(delay, measured, 0.99) / 1000.0, measured);
    rk__near_free(n);
    return 0;
}
