/*
 * apikeys_bench.c — what rk_apikeys_verify() costs, layer by layer:
 *
 *  1. from this process's memory: ns per verify, checksum and SHA-256
 *     included (target: under 1 us), one thread, one key;
 *  2. from Redis (fresh window off): verifies per second against a bare
 *     hiredis GET of the same Redis key, measured in the same run, the two
 *     taking turns every BLOCK_OPS requests (target ratio: >= 0.95);
 *  3. lookups under load: 16 threads x 1000 verifies over 100 cold keys,
 *     the lookup taking 2 ms; the count of lookup callbacks (must be 100);
 *  4. rk_apikeys_verify_limit() on a warm key (a GCRA limit so large that
 *     every check is allowed and writes) against hiredis EVALSHA of the
 *     same script with the same KEYS and ARGV, taking turns as in 2.
 *
 * Run: REDIS_URL=redis://127.0.0.1:6379 ./apikeys_bench [OPS]
 * (make bench starts a private server). OPS, the timed requests per
 * contender of part 2, defaults to 20000 (argv[1] or $BENCH_OPS);
 * $APIKEYS_BENCH_PARTS ("13", say) runs only the parts it names.
 *
 * It prints figures and never judges them: the exit status only says
 * whether the run could be done. The machine it runs on is shared and
 * busy: read the figures as noisy, the ratio of part 2 (both sides under
 * the same noise) as the one to compare across runs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#define BENCH_NAME "apikeys_bench"
#include "bench_support.h"
#include "measure.h"

#include "apikeys.h"   /* src/: rk__apikeys_verify_limit_script */
#include "ratelimit.h" /* src/: the limiter's KEYS and ARGV of a check */
#include "script.h"

#define DEFAULT_OPS 20000
#define WARMUP_OPS 1000
#define ROUNDS 3
#define BLOCK_OPS 500
#define LOCAL_OPS 1000000
#define THREADS 16
#define PER_THREAD 1000
#define KEYS 100

/* The "database": every generated key exists, with a small owner record;
 * a lookup takes lookup_sleep_ms. */
static atomic_long lookups;
static int lookup_sleep_ms;

static rk_status lookup(const char *hash_hex, rk_apikeys_record *rec, void *user)
{
    (void)hash_hex;
    (void)user;
    atomic_fetch_add(&lookups, 1);
    if (lookup_sleep_ms) nanosleep(&(struct timespec){0, lookup_sleep_ms * 1000000L}, NULL);
    static const char owner[] = "user=42 scopes=read,write plan=pro";
    return rk_apikeys_record_set(rec, owner, sizeof owner - 1, 0);
}

static rk_apikeys *keys_new(rk_client *c, const char *ns, int64_t fresh_ms)
{
    rk_apikeys *ak;
    rk_status st = rk_apikeys_new(c, &(rk_apikeys_options){.ns = ns, .lookup = lookup, .fresh_ms = fresh_ms}, &ak);
    if (st != RK_OK) bench_die_rk("rk_apikeys_new", st);
    return ak;
}

static void verify_ok(rk_apikeys *ak, const char *key)
{
    rk_apikey_result r;
    rk_status st = rk_apikeys_verify(ak, key, &r);
    if (st != RK_OK) bench_die_rk("verify", st);
    if (r.verdict != RK_APIKEY_VALID) bench_die("verify", "not valid");
    rk_apikeys_result_clear(&r);
}

/* ---- 1. this process ----------------------------------------------------- */

static void bench_local(rk_client *c)
{
    rk_apikeys *ak = keys_new(c, "bench-ak-local", 600000);
    char key[RK_APIKEYS_KEY_BUF];
    if (rk_apikeys_generate(ak, key, NULL) != RK_OK) bench_die_rk("generate", RK_ERR_SYSTEM);
    verify_ok(ak, key); /* lookup, then memory */
    double best = 0, all[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        int64_t t0 = bench_now_ns();
        for (int i = 0; i < LOCAL_OPS; i++) verify_ok(ak, key);
        all[round] = (double)(bench_now_ns() - t0) / LOCAL_OPS;
        if (round == 0 || all[round] < best) best = all[round];
    }
    /* The hash alone, for the breakdown. */
    char hash[RK_APIKEYS_HASH_BUF];
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < LOCAL_OPS; i++) rk_apikeys_hash(key, hash);
    double sha = (double)(bench_now_ns() - t0) / LOCAL_OPS;
    rk_apikeys_metrics m;
    rk_apikeys_metrics_get(ak, &m);
    printf("1. verify from this process's memory (checksum + SHA-256 + table), %d verifies x %d rounds:\n",
           LOCAL_OPS, ROUNDS);
    printf("   %.0f ns/verify (best round; rounds %.0f / %.0f / %.0f); SHA-256 + hex alone %.0f ns; "
           "process hits %llu\n",
           best, all[0], all[1], all[2], sha, (unsigned long long)m.process_hits);
    rk_apikeys_free(ak);
}

/* ROUNDS rounds of two contenders (0: hiredis, 1: redkit) taking turns
 * every BLOCK_OPS requests; each one's median round and its spread. */
static void measure_pair(bench_step_fn step, void *ctx, size_t ops, bench_result med[2], double spread[2])
{
    int64_t *lat[2];
    bench_alloc_samples(lat, 2, ops);
    bench_result rounds[ROUNDS][2];
    for (int round = 0; round < ROUNDS; round++)
        bench_measure_round(step, ctx, 2, WARMUP_OPS, ops, BLOCK_OPS, (size_t)round, lat, rounds[round]);
    for (int i = 0; i < 2; i++) {
        bench_result one[ROUNDS];
        for (int round = 0; round < ROUNDS; round++) one[round] = rounds[round][i];
        med[i] = bench_median_round(one, ROUNDS, &spread[i]);
    }
    free(lat[0]);
    free(lat[1]);
}

/* ---- 2. Redis vs hiredis GET -------------------------------------------- */

typedef struct remote {
    rk_apikeys *ak;
    const char *key;
    redisContext *h;
    char *rkey;
    size_t rkey_len;
} remote;

static int remote_step(void *ctx, size_t impl, size_t n)
{
    (void)n;
    remote *r = ctx;
    if (impl == 1) {
        verify_ok(r->ak, r->key);
        return 0;
    }
    redisReply *rep = redisCommand(r->h, "GET %b", r->rkey, r->rkey_len);
    int ok = rep && rep->type == REDIS_REPLY_STRING;
    if (!ok) fprintf(stderr, "apikeys_bench: hiredis GET: %s\n", rep ? "unexpected reply" : r->h->errstr);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

static void bench_remote(rk_client *c, const char *url, size_t ops)
{
    remote r = {.ak = keys_new(c, "bench-ak-remote", RK_APIKEYS_OFF), .h = bench_hiredis_connect(url)};
    char key[RK_APIKEYS_KEY_BUF], hash[RK_APIKEYS_HASH_BUF];
    if (rk_apikeys_generate(r.ak, key, hash) != RK_OK) bench_die_rk("generate", RK_ERR_SYSTEM);
    r.key = key;
    verify_ok(r.ak, key); /* the lookup fills Redis */
    char user[RK_APIKEYS_HASH_HEX + 3];
    snprintf(user, sizeof user, "{%s}", hash);
    /* "[prefix:]cache:{hash}" -> "[prefix:]bench-ak-remote:{hash}": the same key verify reads. */
    size_t len;
    char *full = bench_full_key(c, user, &len);
    char *at = strstr(full, "cache:");
    if (!at) bench_die("setup", "unexpected key shape");
    r.rkey_len = (size_t)(at - full) + strlen("bench-ak-remote:") + strlen(user);
    r.rkey = malloc(r.rkey_len + 1);
    if (!r.rkey) bench_die("setup", "out of memory");
    snprintf(r.rkey, r.rkey_len + 1, "%.*sbench-ak-remote:%s", (int)(at - full), full, user);
    free(full);

    bench_result med[2];
    double spread[2];
    measure_pair(remote_step, &r, ops, med, spread);
    printf("2. verify from Redis (fresh window off) vs hiredis GET of the same key, %zu requests x %d rounds:\n", ops,
           ROUNDS);
    printf("   hiredis GET    %9.0f ops/s  p50 %6.1f us  p99 %6.1f us  (spread %.0f%%)\n", med[0].per_s,
           med[0].p50_us, med[0].p99_us, spread[0] * 100);
    printf("   apikeys verify %9.0f ops/s  p50 %6.1f us  p99 %6.1f us  (spread %.0f%%)\n", med[1].per_s,
           med[1].p50_us, med[1].p99_us, spread[1] * 100);
    printf("   ratio verify/GET: %.3f (median rounds)\n", med[1].per_s / med[0].per_s);
    redisReply *del = redisCommand(r.h, "DEL %b", r.rkey, r.rkey_len);
    freeReplyObject(del);
    free(r.rkey);
    redisFree(r.h);
    rk_apikeys_free(r.ak);
}

/* ---- 3. lookups under load ---------------------------------------------- */

typedef struct worker {
    rk_apikeys *ak;
    char (*keys)[RK_APIKEYS_KEY_BUF];
    int id;
    pthread_barrier_t *start;
    int bad;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < PER_THREAD; i++) {
        rk_apikey_result r;
        /* Each thread walks the keys from its own starting point. */
        if (rk_apikeys_verify(w->ak, w->keys[(i + w->id * 7) % KEYS], &r) != RK_OK || r.verdict != RK_APIKEY_VALID)
            w->bad++;
        rk_apikeys_result_clear(&r);
    }
    return NULL;
}

static void bench_load(rk_client *c)
{
    rk_apikeys *ak = keys_new(c, "bench-ak-load", 0);
    static char keys[KEYS][RK_APIKEYS_KEY_BUF];
    for (int k = 0; k < KEYS; k++)
        if (rk_apikeys_generate(ak, keys[k], NULL) != RK_OK) bench_die_rk("generate", RK_ERR_SYSTEM);
    atomic_store(&lookups, 0);
    lookup_sleep_ms = 2;
    pthread_t t[THREADS];
    worker w[THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.ak = ak, .keys = keys, .id = i, .start = &start};
        if (pthread_create(&t[i], NULL, work, &w[i]) != 0) bench_die("pthread_create", "failed");
    }
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += w[i].bad;
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    pthread_barrier_destroy(&start);
    rk_apikeys_metrics m;
    rk_apikeys_metrics_get(ak, &m);
    printf("3. %d threads x %d verifies over %d cold keys (lookup takes %d ms): %ld lookups (must be %d), "
           "%d failed verifies, %.2f s; process hits %llu, redis hits %llu\n",
           THREADS, PER_THREAD, KEYS, lookup_sleep_ms, atomic_load(&lookups), KEYS, bad, secs,
           (unsigned long long)m.process_hits, (unsigned long long)m.redis_hits);
    /* Leave nothing behind on a shared server. */
    for (int k = 0; k < KEYS; k++) rk_apikeys_forget(ak, keys[k]);
    rk_apikeys_free(ak);
}

/* ---- 4. verify + limit vs hiredis EVALSHA of the same script -------------- */

typedef struct combined {
    rk_apikeys *ak;
    rk_limiter *lim;
    const char *key;
    redisContext *h;
    int argc;
    const char *argv[8 + RK__LIMIT_MAX_ARGS];
    size_t lens[8 + RK__LIMIT_MAX_ARGS];
} combined;

static int combined_step(void *ctx, size_t impl, size_t n)
{
    (void)n;
    combined *c = ctx;
    if (impl == 1) {
        rk_apikey_result r;
        rk_limit_result d;
        rk_status st = rk_apikeys_verify_limit(c->ak, c->lim, c->key, 1, &r, &d);
        int ok = st == RK_OK && r.verdict == RK_APIKEY_VALID && d.allowed && d.path == RK_LIMIT_PATH_REDIS;
        if (!ok) fprintf(stderr, "apikeys_bench: verify_limit: %s: %s\n", rk_strerror(st), rk_last_error());
        rk_apikeys_result_clear(&r);
        return ok ? 0 : -1;
    }
    redisReply *rep = redisCommandArgv(c->h, c->argc, c->argv, c->lens);
    int ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2;
    if (!ok) fprintf(stderr, "apikeys_bench: hiredis EVALSHA: %s\n", rep ? rep->str : c->h->errstr);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

static void bench_combined(rk_client *cl, const char *url, size_t ops)
{
    rk_limit l = {.name = "bench", .algorithm = RK_LIMIT_GCRA, .limit = 1000000000, .period_ms = 3600000};
    combined c = {.ak = keys_new(cl, "bench-ak-limit", RK_APIKEYS_OFF), .h = bench_hiredis_connect(url)};
    rk_status st = rk_limiter_new(cl, &(rk_limiter_options){.ns = "bench-ak-rl", .limits = &l, .nlimits = 1}, &c.lim);
    if (st != RK_OK) bench_die_rk("rk_limiter_new", st);
    char key[RK_APIKEYS_KEY_BUF], hash[RK_APIKEYS_HASH_BUF];
    if (rk_apikeys_generate(c.ak, key, hash) != RK_OK) bench_die_rk("generate", RK_ERR_SYSTEM);
    c.key = key;
    verify_ok(c.ak, key); /* the lookup fills Redis */
    /* The hiredis side sends what verify_limit sends: the script's SHA,
     * the answer's key, then the limiter's own KEYS and ARGV of a check. */
    rk__script *script = rk__apikeys_verify_limit_script();
    const char *sha = rk__script_sha(script);
    if (!sha) bench_die("setup", "no SHA-1 for the script");
    redisReply *lr = redisCommand(c.h, "SCRIPT LOAD %b", script->source, script->source_len);
    if (!lr || lr->type != REDIS_REPLY_STRING || strcmp(lr->str, sha) != 0) bench_die("SCRIPT LOAD", "failed");
    freeReplyObject(lr);
    rk_limit_result scratch;
    static rk__limit_call call;
    if ((st = rk__limiter_begin(c.lim, hash, RK__OP_CHECK, 1, NULL, &scratch, &call)) != RK_OK || call.answered)
        bench_die_rk("rk__limiter_begin", st);
    char user[RK_APIKEYS_HASH_HEX + 3];
    snprintf(user, sizeof user, "{%s}", hash);
    size_t len; /* "[prefix:]cache:{hash}" -> "[prefix:]bench-ak-limit:{hash}" */
    char *full = bench_full_key(cl, user, &len);
    char *at = strstr(full, "cache:");
    if (!at) bench_die("setup", "unexpected key shape");
    char rkey[256], now[32], nkeys[8];
    int rkey_len = snprintf(rkey, sizeof rkey, "%.*sbench-ak-limit:%s", (int)(at - full), full, user);
    free(full);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL) * 1000);
    snprintf(nkeys, sizeof nkeys, "%zu", 1 + c.lim->n);
    int a = 0;
    c.argv[a] = "EVALSHA", c.lens[a++] = 7;
    c.argv[a] = sha, c.lens[a++] = strlen(sha);
    c.argv[a] = nkeys, c.lens[a++] = strlen(nkeys);
    c.argv[a] = rkey, c.lens[a++] = (size_t)rkey_len;
    for (size_t i = 0; i < c.lim->n; i++) c.argv[a] = call.keys[i], c.lens[a++] = call.keylens[i];
    c.argv[a] = now, c.lens[a++] = strlen(now);
    for (size_t i = 0; i < call.nargs; i++) c.argv[a] = call.args[i], c.lens[a++] = call.arglens[i];
    c.argc = a;

    bench_result med[2];
    double spread[2];
    measure_pair(combined_step, &c, ops, med, spread);
    printf("4. verify_limit (warm key, GCRA) vs hiredis EVALSHA of the same script, %zu requests x %d rounds:\n",
           ops, ROUNDS);
    printf("   hiredis EVALSHA %9.0f ops/s  p50 %6.1f us  p99 %6.1f us  (spread %.0f%%)\n", med[0].per_s,
           med[0].p50_us, med[0].p99_us, spread[0] * 100);
    printf("   verify_limit    %9.0f ops/s  p50 %6.1f us  p99 %6.1f us  (spread %.0f%%)\n", med[1].per_s,
           med[1].p50_us, med[1].p99_us, spread[1] * 100);
    printf("   ratio verify_limit/EVALSHA: %.3f (median rounds)\n", med[1].per_s / med[0].per_s);
    rk__limiter_cancel(&call);
    rk_limiter_reset(c.lim, hash);
    rk_apikeys_forget(c.ak, key);
    redisFree(c.h);
    rk_limiter_free(c.lim);
    rk_apikeys_free(c.ak);
}

int main(int argc, char **argv)
{
    const char *url = bench_redis_url();
    size_t ops = bench_count(argc, argv, DEFAULT_OPS, "OPS", "requests", 10000000);
    rk_client *c;
    rk_status st = rk_client_new_url(url, &c);
    if (st != RK_OK) bench_die_rk("rk_client_new", st);
    printf("apikeys_bench: figures from a shared, busy machine: noisy; compare ratios.\n");
    /* $APIKEYS_BENCH_PARTS (e.g. "2") runs only some parts, for a profiler. */
    const char *parts = getenv("APIKEYS_BENCH_PARTS");
    if (!parts || strchr(parts, '1')) bench_local(c);
    if (!parts || strchr(parts, '2')) bench_remote(c, url, ops);
    if (!parts || strchr(parts, '3')) bench_load(c);
    if (!parts || strchr(parts, '4')) bench_combined(c, url, ops);
    rk_client_free(c);
    return 0;
}
