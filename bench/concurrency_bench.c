/*
 * concurrency_bench.c — many threads sharing one rk_client.
 *
 * T threads (1, 4, 16, 64, 256) share one client and run GET, then SET, of
 * 100-byte values through rk_client_command for a fixed time each; the
 * program prints total operations per second, p50 and p99 of one call and
 * the errors. Two references are measured in the same run, against the
 * same server: the server's ceiling, `redis-benchmark -c 50 -P 16 -t get`
 * (50 connections, 16 commands in flight on each), and one raw blocking
 * hiredis connection doing GET in a loop (the figure T = 1 is held to).
 * Each redkit line prints its ratio to them.
 *
 * Usage: concurrency_bench [seconds per measurement, default 2]
 *   BENCH_THREADS=256  run only that thread count (for strace -c -f)
 *   BENCH_CONNECTIONS=n  rk_client_options.pool_size (default: the default)
 *
 * The machine these run on is usually shared: every figure is noisy, and
 * only ratios measured in the same run mean much.
 */
#define BENCH_NAME "concurrency_bench"

#include <pthread.h>

#include "bench_support.h"
#include "measure.h"

#define VALUE_BYTES 100
#define KEYS 1000
#define MAX_SAMPLES_ALL 2000000 /* all threads together; at least 20000 each */

typedef struct worker {
    rk_client *client;
    int id;
    bool set;
    int64_t *lat;
    size_t n, cap;
    uint64_t errors;
    pthread_t thread;
} worker;

static char value[VALUE_BYTES];
static pthread_barrier_t go;    /* the threads start together */
static int64_t until_ns;        /* set before the barrier opens */

static void *work(void *arg)
{
    worker *w = arg;
    char key[32];
    unsigned k = (unsigned)w->id * 7919u;

    pthread_barrier_wait(&go);
    for (size_t i = 0; i < w->cap; i++) {
        int64_t t0 = bench_now_ns();
        if (t0 >= until_ns)
            break;
        int klen = snprintf(key, sizeof key, "cb:%u", (k + (unsigned)i) % KEYS);
        const char *argv[3] = { w->set ? "SET" : "GET", key, value };
        size_t lens[3] = { 3, (size_t)klen, VALUE_BYTES };
        rk_reply *r = NULL;
        rk_status st = rk_client_command(w->client, w->set ? 3 : 2, argv, lens, &r);
        int64_t t1 = bench_now_ns();
        if (st != RK_OK || r == NULL || (w->set ? r->type != RK_REPLY_STATUS : r->type != RK_REPLY_STRING)) {
            if (w->errors++ == 0)
                fprintf(stderr, BENCH_NAME ": %s: %s: %s\n", argv[0], rk_strerror(st), rk_last_error());
        }
        rk_reply_free(r);
        w->lat[w->n++] = t1 - t0;
    }
    return NULL;
}

typedef struct figures {
    double per_s, p50_us, p99_us;
    uint64_t errors, ops;
} figures;

static figures run_threads(rk_client *client, int threads, bool set, double seconds)
{
    worker *w = calloc((size_t)threads, sizeof *w);
    if (w == NULL)
        bench_die("setup", "out of memory");
    if (pthread_barrier_init(&go, NULL, (unsigned)threads + 1) != 0)
        bench_die("pthread_barrier_init", "failed");
    for (int i = 0; i < threads; i++) {
        size_t cap = MAX_SAMPLES_ALL / (size_t)threads;
        w[i] = (worker){ .client = client, .id = i, .set = set, .cap = cap < 20000 ? 20000 : cap };
        bench_alloc_samples(&w[i].lat, 1, w[i].cap);
        if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0)
            bench_die("pthread_create", "failed");
    }
    int64_t began = bench_now_ns();
    until_ns = began + (int64_t)(seconds * 1e9);
    pthread_barrier_wait(&go);
    size_t total = 0;
    figures f = { 0 };
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].n;
        f.errors += w[i].errors;
    }
    int64_t took = bench_now_ns() - began;
    pthread_barrier_destroy(&go);
    int64_t *all = malloc((total ? total : 1) * sizeof *all);
    if (all == NULL)
        bench_die("setup", "out of memory");
    size_t at = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + at, w[i].lat, w[i].n * sizeof *all);
        at += w[i].n;
        free(w[i].lat);
    }
    bench_sort(all, total);
    f.ops = total;
    f.per_s = (double)total / ((double)took / 1e9);
    f.p50_us = total ? (double)bench_percentile(all, total, 0.50) / 1e3 : 0;
    f.p99_us = total ? (double)bench_percentile(all, total, 0.99) / 1e3 : 0;
    free(all);
    free(w);
    return f;
}

/* redis-benchmark -c 50 -P 16 -t get against the same server: ops/s. */
static double ceiling(const char *url)
{
    rk__url u;
    if (rk__url_parse(url, &u) != RK_OK)
        bench_die("REDIS_URL", rk_last_error());
    char cmd[512];
    if (u.unix_path != NULL)
        snprintf(cmd, sizeof cmd, "redis-benchmark -s '%s' -c 50 -P 16 -t get -n 400000 -d %d -q 2>&1",
                 u.unix_path, VALUE_BYTES);
    else
        snprintf(cmd, sizeof cmd, "redis-benchmark -h %s -p %d%s%s -c 50 -P 16 -t get -n 400000 -d %d -q 2>&1",
                 u.host ? u.host : RK_DEFAULT_HOST, u.port ? u.port : RK_DEFAULT_PORT, u.password ? " -a " : "",
                 u.password ? u.password : "", VALUE_BYTES);
    rk__url_clear(&u);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        bench_die("redis-benchmark", "cannot run");
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    pclose(p);
    /* -q prints progress lines ending in \r, then "GET: N requests per second". */
    double best = 0;
    for (char *s = out; (s = strstr(s, "GET: ")) != NULL; s += 5) {
        char *end;
        double v = strtod(s + 5, &end);
        if (end != s + 5 && strncmp(end, " requests per second", 20) == 0)
            best = v;
    }
    if (best <= 0)
        bench_die("redis-benchmark", "no \"GET: N requests per second\" in its output");
    return best;
}

/* One blocking hiredis connection doing GET for `seconds`: ops/s. */
static double raw_hiredis(redisContext *h, double seconds)
{
    size_t n = 0;
    int64_t start = bench_now_ns(), until = start + (int64_t)(seconds * 1e9), now;
    while ((now = bench_now_ns()) < until) {
        redisReply *r = redisCommand(h, "GET cb:%u", (unsigned)(n % KEYS));
        if (r == NULL || r->type != REDIS_REPLY_STRING)
            bench_die("hiredis GET", r == NULL ? h->errstr : "unexpected reply");
        freeReplyObject(r);
        n++;
    }
    return (double)n / ((double)(now - start) / 1e9);
}

/* One thread, redkit against raw hiredis, GET, in ROUNDS alternating turns
 * (the first of each pair alternating too) so that the machine's drift
 * weighs on both alike: the median round's ratio. */
#define ROUNDS 7
static double one_thread_ratio(rk_client *client, redisContext *h, double seconds, double *raw_out)
{
    double ratio[ROUNDS], raw_sum = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double raw, rk;
        if (r % 2) {
            raw = raw_hiredis(h, seconds / ROUNDS);
            rk = run_threads(client, 1, false, seconds / ROUNDS).per_s;
        } else {
            rk = run_threads(client, 1, false, seconds / ROUNDS).per_s;
            raw = raw_hiredis(h, seconds / ROUNDS);
        }
        ratio[r] = rk / raw;
        raw_sum += raw;
    }
    for (int i = 1; i < ROUNDS; i++) /* insertion sort */
        for (int j = i; j > 0 && ratio[j] < ratio[j - 1]; j--) {
            double t = ratio[j];
            ratio[j] = ratio[j - 1];
            ratio[j - 1] = t;
        }
    *raw_out = raw_sum / ROUNDS;
    return ratio[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    const char *url = bench_redis_url();
    double seconds = (double)bench_count(argc, argv, 2, "seconds", "seconds", 60);
    const char *only = getenv("BENCH_THREADS");
    const char *conns = getenv("BENCH_CONNECTIONS");
    memset(value, 'v', sizeof value);

    rk_client *client;
    rk_status st = rk_client_new(&(rk_client_options){ .url = url, .command_timeout_ms = 2000,
                                                        .pool_size = conns ? atoi(conns) : 0 },
                                 &client);
    if (st != RK_OK)
        bench_die_rk("rk_client_new", st);
    /* The keys GET reads, every one of them. */
    for (unsigned i = 0; i < KEYS; i++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "cb:%u", i);
        const char *argv_set[3] = { "SET", key, value };
        size_t lens[3] = { 3, (size_t)klen, VALUE_BYTES };
        rk_reply *r = NULL;
        if ((st = rk_client_command(client, 3, argv_set, lens, &r)) != RK_OK)
            bench_die_rk("SET", st);
        rk_reply_free(r);
    }

    double ceil_ops = only ? 0 : ceiling(url);
    double raw = 0, one = 0;
    if (!only) {
        redisContext *h = bench_hiredis_connect(url);
        one = one_thread_ratio(client, h, 2 * seconds, &raw);
        redisFree(h);
    }
    if (!only) {
        printf("concurrency_bench: %.0f s per line, 100-byte values, one shared client (%s connections)\n",
               seconds, conns ? conns : "default");
        printf("ceiling  redis-benchmark -c 50 -P 16 -t get: %10.0f ops/s\n", ceil_ops);
        printf("raw hiredis, 1 connection, GET:           %10.0f ops/s\n", raw);
        printf("1 thread GET / raw hiredis GET, median of %d alternating rounds: %.3f\n", ROUNDS, one);
        printf("%-4s %7s %9s %12s %9s %9s %8s %8s %9s\n", "op", "threads", "ops", "ops/s", "p50 us", "p99 us", "errors",
               "x ceil", "x hiredis");
    }
    static const int counts[] = { 1, 4, 16, 64, 256 };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        if (only && atoi(only) != counts[i])
            continue;
        for (int set = 0; set <= 1; set++) {
            figures f = run_threads(client, counts[i], set, seconds);
            printf("%-4s %7d %9llu %12.0f %9.1f %9.1f %8llu %8.3f %9.3f\n", set ? "SET" : "GET", counts[i],
                   (unsigned long long)f.ops, f.per_s,
                   f.p50_us, f.p99_us, (unsigned long long)f.errors, ceil_ops > 0 ? f.per_s / ceil_ops : 0,
                   raw > 0 ? f.per_s / raw : 0);
            fflush(stdout);
        }
    }
    rk_client_free(client);
    return 0;
}
