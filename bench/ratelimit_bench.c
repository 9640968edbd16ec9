/*
 * ratelimit_bench.c — what a rate-limit check costs with redkit, against
 * bare hiredis running the very same script, in the same run:
 *
 *  1. one check per call, one in flight, for GCRA and for the sliding
 *     window: rk_limiter_check() against hiredis redisCommandArgv(EVALSHA
 *     <the limiter's own script> 1 <the same key> <the same ARGV>), taking
 *     turns in blocks (bench/measure.h); ops/s, p50 and p99, and the ratio
 *     redkit / hiredis;
 *  2. a check of a blocked key answered by the local block cache (ns per
 *     check), next to the same refusal asked of Redis;
 *  3. Redis memory per limited key: used_memory before and after 10,000
 *     keys get one check each, per algorithm, divided by 10,000 (all of
 *     it: key, value, expiry entry, allocator overhead).
 *
 * The machine is shared and busy: figures are noisy; the ratio of two
 * contenders measured in turns is what to read. Never pass/fail.
 *
 * Run: scripts/with-redis build/bench/ratelimit_bench [ops]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#define BENCH_NAME "ratelimit_bench"
#include "bench_support.h"
#include "measure.h"
#include "ratelimit.h"
#include "script.h"

#define NKEYS 1000
#define ROUNDS 5

typedef struct ctx {
    rk_limiter *l;
    redisContext *h;
    char keys[NKEYS][32];      /* user keys */
    char full[NKEYS][128];     /* the Redis key of limit 0 */
    size_t full_len[NKEYS];
    char nums[4][24];
    const char *sha;
} ctx;

static void prepare(ctx *c, rk_limiter *l)
{
    c->l = l;
    const rk__limit_cfg *cfg = &l->cfg[0];
    snprintf(c->nums[0], sizeof c->nums[0], "%lld", (long long)cfg->limit);
    snprintf(c->nums[1], sizeof c->nums[1], "%lld", (long long)cfg->period_us);
    snprintf(c->nums[2], sizeof c->nums[2], "%lld", (long long)cfg->p1);
    snprintf(c->nums[3], sizeof c->nums[3], "%lld", (long long)cfg->p2);
    for (size_t i = 0; i < NKEYS; i++) {
        snprintf(c->keys[i], sizeof c->keys[i], "user:%05zu", i);
        int n = snprintf(c->full[i], sizeof c->full[i], "%.*s{%s}:%s", (int)l->head_len, l->head, c->keys[i],
                         cfg->name);
        c->full_len[i] = (size_t)n;
    }
}

static int step(void *arg, size_t impl, size_t n)
{
    ctx *c = arg;
    size_t k = n % NKEYS;
    if (impl == 0) {
        const rk__limit_cfg *cfg = &c->l->cfg[0];
        const char *argv[] = {"EVALSHA", c->sha, "1", c->full[k], "c", "1", "0", "0", "",
                              &rk__limiter_algo_code[cfg->algo], c->nums[0], c->nums[1], c->nums[2], c->nums[3]};
        size_t lens[14];
        for (size_t i = 0; i < 14; i++) lens[i] = strlen(argv[i]);
        lens[3] = c->full_len[k];
        lens[9] = 1;
        redisReply *r = redisCommandArgv(c->h, 14, argv, lens);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "hiredis EVALSHA: %s\n", r ? r->str : c->h->errstr);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
        return 0;
    }
    rk_limit_result res;
    rk_status st = rk_limiter_check(c->l, c->keys[k], 1, &res);
    if (st != RK_OK || res.path != RK_LIMIT_PATH_REDIS) {
        fprintf(stderr, "rk_limiter_check: %s: %s\n", rk_strerror(st), rk_last_error());
        return -1;
    }
    return 0;
}

static long long used_memory(redisContext *h)
{
    redisReply *r = redisCommand(h, "INFO memory");
    long long v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "used_memory:");
        if (p) v = atoll(p + 12);
    }
    freeReplyObject(r);
    return v;
}

static void flush(redisContext *h)
{
    freeReplyObject(redisCommand(h, "FLUSHALL"));
}

int main(int argc, char **argv)
{
    size_t ops = bench_count(argc, argv, 10000, "ops", "checks", 10000000);
    const char *url = bench_redis_url();
    rk_client *client = NULL;
    rk_status st = rk_client_new_url(url, &client);
    if (st != RK_OK) bench_die_rk("rk_client_new", st);
    redisContext *h = bench_hiredis_connect(url);
    static ctx c;
    c.h = h;
    c.sha = rk__script_sha(rk__limiter_script());
    if (!c.sha) bench_die("setup", "no SHA-1 for the script");
    /* Load the script once for the hiredis side. */
    redisReply *lr = redisCommand(h, "SCRIPT LOAD %b", rk__limiter_script()->source, rk__limiter_script()->source_len);
    if (!lr || lr->type != REDIS_REPLY_STRING || strcmp(lr->str, c.sha) != 0) bench_die("SCRIPT LOAD", "failed");
    freeReplyObject(lr);

    printf("ratelimit_bench: %zu checks per contender per round, %d rounds, one in flight, %d keys\n", ops, ROUNDS,
           NKEYS);
    printf("(a shared, busy machine: figures are noisy; read the ratios)\n\n");
    printf("%-10s %-8s %12s %9s %9s %8s\n", "algorithm", "impl", "ops/s", "p50 us", "p99 us", "ratio");

    /* Limits so large that every check is allowed: each does the full
     * write path. */
    const rk_limit algos[] = {
        {.name = "gcra", .algorithm = RK_LIMIT_GCRA, .limit = 1000000000, .period_ms = 3600000},
        {.name = "sliding", .algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 1000000000, .period_ms = 3600000},
    };
    int64_t *lat[2];
    bench_alloc_samples(lat, 2, ops);
    for (size_t a = 0; a < 2; a++) {
        rk_limiter *l = NULL;
        st = rk_limiter_new(client, &(rk_limiter_options){.limits = &algos[a], .nlimits = 1}, &l);
        if (st != RK_OK) bench_die_rk("rk_limiter_new", st);
        prepare(&c, l);
        bench_result rounds[2][ROUNDS];
        for (size_t r = 0; r < ROUNDS; r++) {
            bench_result out[2];
            bench_measure_round(step, &c, 2, 200, ops, 100, r, lat, out);
            rounds[0][r] = out[0];
            rounds[1][r] = out[1];
        }
        double spread[2];
        bench_result hm = bench_median_round(rounds[0], ROUNDS, &spread[0]);
        bench_result rm = bench_median_round(rounds[1], ROUNDS, &spread[1]);
        printf("%-10s %-8s %12.0f %9.1f %9.1f %8s  (spread %.0f%%)\n", algos[a].name, "hiredis", hm.per_s, hm.p50_us,
               hm.p99_us, "", spread[0] * 100);
        printf("%-10s %-8s %12.0f %9.1f %9.1f %8.3f  (spread %.0f%%)\n", algos[a].name, "redkit", rm.per_s, rm.p50_us,
               rm.p99_us, rm.per_s / hm.per_s, spread[1] * 100);
        rk_limiter_free(l);
    }
    free(lat[0]);
    free(lat[1]);

    /* Blocked key: block cache vs asking Redis for the same refusal. */
    rk_limit one = {.limit = 1, .period_ms = 3600000};
    rk_limiter *bc = NULL, *nobc = NULL;
    if ((st = rk_limiter_new(client, &(rk_limiter_options){.ns = "bc", .limits = &one, .nlimits = 1,
                                                           .block_cache = true},
                             &bc)) != RK_OK ||
        (st = rk_limiter_new(client, &(rk_limiter_options){.ns = "nobc", .limits = &one, .nlimits = 1}, &nobc)) !=
            RK_OK)
        bench_die_rk("rk_limiter_new", st);
    double per[2];
    rk_limiter *which[2] = {nobc, bc};
    for (int w = 0; w < 2; w++) {
        rk_limit_result res;
        rk_limiter_check(which[w], "blocked", 1, &res);
        rk_limiter_check(which[w], "blocked", 1, &res);
        size_t n = w ? ops * 50 : ops;
        int64_t t0 = bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            if (rk_limiter_check(which[w], "blocked", 1, &res) != RK_OK || res.allowed)
                bench_die("blocked check", "was allowed or failed");
        }
        per[w] = (double)(bench_now_ns() - t0) / (double)n;
    }
    printf("\nblocked key, refused: from Redis %.0f ns/check, from the block cache %.0f ns/check (%.0fx)\n", per[0],
           per[1], per[0] / per[1]);
    rk_limiter_free(bc);
    rk_limiter_free(nobc);

    /* Memory per key: periods of a day, so that no key expires during
     * the measurement (GCRA's key lives only until its TAT). */
    printf("\nRedis memory per limited key (10,000 keys \"user:NNNNN\", one check each, namespace \"rl\"):\n");
    const rk_limit mem[] = {
        {.name = "gcra", .algorithm = RK_LIMIT_GCRA, .limit = 100, .period_ms = 86400000},
        {.name = "sliding", .algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 100, .period_ms = 86400000},
        {.name = "fixed", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 100, .period_ms = 86400000},
        {.name = "bucket", .algorithm = RK_LIMIT_TOKEN_BUCKET, .limit = 100, .period_ms = 86400000},
        {.name = "conc", .algorithm = RK_LIMIT_CONCURRENCY, .limit = 100, .period_ms = 86400000},
    };
    for (size_t a = 0; a < sizeof mem / sizeof *mem; a++) {
        rk_limiter *l = NULL;
        if ((st = rk_limiter_new(client, &(rk_limiter_options){.limits = &mem[a], .nlimits = 1}, &l)) != RK_OK)
            bench_die_rk("rk_limiter_new", st);
        flush(h);
        long long before = used_memory(h);
        char key[32];
        for (int i = 0; i < 10000; i++) {
            rk_limit_result res;
            snprintf(key, sizeof key, "user:%05d", i);
            if (rk_limiter_check(l, key, 1, &res) != RK_OK) bench_die_rk("check", RK_ERR_SERVER);
        }
        long long after = used_memory(h);
        redisReply *d = redisCommand(h, "DBSIZE");
        long long keys = d && d->type == REDIS_REPLY_INTEGER ? d->integer : -1;
        freeReplyObject(d);
        printf("  %-8s %6.1f B/key  (%lld keys live, each with a TTL; key \"rl:{user:00042}:%s\")\n", mem[a].name,
               (double)(after - before) / 10000.0, keys, mem[a].name);
        rk_limiter_free(l);
    }
    /* The same measure, same run, for rate-limiter-flexible's scheme (a
     * counter created with SET NX PX, then INCRBY; its key
     * "rlflx:user:NNNNN") and for the least any key with a TTL costs here
     * (SET key 1 PX, with GCRA's key). */
    for (int b = 0; b < 2; b++) {
        flush(h);
        long long before = used_memory(h);
        for (int i = 0; i < 10000; i++) {
            if (b == 0) {
                redisAppendCommand(h, "SET rlflx:user:%05d 0 PX 86400000 NX", i);
                redisAppendCommand(h, "INCRBY rlflx:user:%05d 1", i);
            } else {
                redisAppendCommand(h, "SET rl:{user:%05d}:gcra 1 PX 86400000", i);
            }
        }
        for (int i = 0; i < (b == 0 ? 20000 : 10000); i++) {
            redisReply *r = NULL;
            if (redisGetReply(h, (void **)&r) != REDIS_OK) bench_die("hiredis", h->errstr);
            freeReplyObject(r);
        }
        long long after = used_memory(h);
        printf("  %-8s %6.1f B/key  (%s)\n", b == 0 ? "rlflx" : "floor", (double)(after - before) / 10000.0,
               b == 0 ? "rate-limiter-flexible's counter, same server: SET NX PX + INCRBY"
                      : "SET <the gcra key> 1 PX: any key with a TTL");
    }
    printf("  (rate-limiter-flexible publishes 119 B/key for its counter, on its own server)\n");
    flush(h);
    redisFree(h);
    rk_client_free(client);
    return 0;
}
