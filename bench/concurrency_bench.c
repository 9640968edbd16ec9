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
 * Two more parts. The hand-off ceiling: how many operations per second
 * threads that each sleep until their reply is in can make on this
 * machine with no Redis and no I/O at all (one sleep and one wake-up per
 * operation, woken in batches as mux.c does) — the bound of every
 * blocking line, printed beside each. And futures (redkit/async.h): T
 * threads each keeping a window of commands in flight with
 * rk_client_send / rk_future_wait, the latency of one from its send to
 * its wait's return.
 *
 * Usage: concurrency_bench [seconds per measurement, default 2]
 *   BENCH_THREADS=256  run only that thread count (for strace -c -f)
 *   BENCH_MODE=blocking|futures  run only the blocking or the futures lines
 *   BENCH_CONNECTIONS=n  rk_client_options.pool_size (default: the default)
 *
 * The machine these run on is usually shared: every figure is noisy, and
 * only ratios measured in the same run mean much.
 */
#define BENCH_NAME "concurrency_bench"

#include <pthread.h>

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <redkit/async.h>

#include "bench_support.h"
#include "measure.h"

#define VALUE_BYTES 100
#define KEYS 1000
#define MAX_SAMPLES_ALL 2000000 /* all threads together; at least 20000 each */
#define MAX_WINDOW 256          /* futures in flight per thread, at most */

typedef struct worker {
    rk_client *client;
    int id;
    bool set;
    int window;     /* 0: blocking calls; else futures kept in flight */
    int64_t *lat;
    size_t n, cap;
    uint64_t errors;
    pthread_t thread;
} worker;

static char value[VALUE_BYTES];
static pthread_barrier_t go;    /* the threads start together */
static int64_t until_ns;        /* set before the barrier opens */

/* Count a call that failed or got the wrong kind of reply (the first
 * one said on stderr). */
static void check_reply(worker *w, const char *what, rk_status st, const rk_reply *r)
{
    if (st == RK_OK && r != NULL && (w->set ? r->type == RK_REPLY_STATUS : r->type == RK_REPLY_STRING))
        return;
    if (w->errors++ == 0)
        fprintf(stderr, BENCH_NAME ": %s: %s: %s\n", what, rk_strerror(st), rk_last_error());
}

/* Send the GET or SET of the next key (*next) as a future; NULL, counted
 * as an error, when the send fails. */
static rk_future *send_next(worker *w, unsigned *next)
{
    char key[32];
    unsigned k = (unsigned)w->id * 7919u + (*next)++;
    const char *argv[3] = { w->set ? "SET" : "GET", key, value };
    size_t lens[3] = { 3, (size_t)snprintf(key, sizeof key, "cb:%u", k % KEYS), VALUE_BYTES };
    rk_future *f = NULL;
    if (rk_client_send(w->client, w->set ? 3 : 2, argv, lens, &f) != RK_OK)
        w->errors++;
    return f;
}

/* Futures (redkit/async.h): the thread keeps w->window commands in
 * flight, waiting for the oldest and sending a new one in its place; the
 * latency of one is from its send to its wait's return. */
static void *work_async(worker *w)
{
    unsigned next = 0;
    rk_future *f[MAX_WINDOW];
    int64_t sent[MAX_WINDOW];

    pthread_barrier_wait(&go);
    for (int i = 0; i < w->window; i++) {
        sent[i] = bench_now_ns();
        f[i] = send_next(w, &next);
    }
    for (int i = 0; w->n < w->cap; i = (i + 1) % w->window) {
        rk_reply *r = NULL;
        rk_status st = f[i] ? rk_future_wait(f[i], &r) : RK_ERR_INVALID;
        int64_t t1 = bench_now_ns();
        check_reply(w, w->set ? "async SET" : "async GET", st, r);
        rk_reply_free(r);
        w->lat[w->n++] = t1 - sent[i];
        f[i] = NULL;
        if (t1 >= until_ns)
            break;
        sent[i] = t1;
        f[i] = send_next(w, &next);
    }
    for (int i = 0; i < w->window; i++)
        rk_future_free(f[i]); /* past the measurement: not counted */
    return NULL;
}

static void *work(void *arg)
{
    worker *w = arg;
    if (w->window)
        return work_async(w);
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
        check_reply(w, argv[0], st, r);
        rk_reply_free(r);
        w->lat[w->n++] = t1 - t0;
    }
    return NULL;
}

typedef struct figures {
    double per_s, p50_us, p99_us;
    uint64_t errors, ops;
} figures;

static figures run_threads(rk_client *client, int threads, bool set, int window, double seconds)
{
    worker *w = calloc((size_t)threads, sizeof *w);
    if (w == NULL)
        bench_die("setup", "out of memory");
    if (pthread_barrier_init(&go, NULL, (unsigned)threads + 1) != 0)
        bench_die("pthread_barrier_init", "failed");
    for (int i = 0; i < threads; i++) {
        size_t cap = MAX_SAMPLES_ALL / (size_t)threads;
        w[i] = (worker){ .client = client, .id = i, .set = set, .window = window,
                         .cap = cap < 20000 ? 20000 : cap };
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

/* ---- the hand-off ceiling --------------------------------------------
 *
 * What any design in which a thread sleeps until its reply is in can
 * reach on this machine, with no Redis and no I/O at all: T threads each
 * queue a request and sleep on a futex; one thread takes every queued
 * request at once, marks them answered, and wakes all their threads with
 * one FUTEX_WAKE (what the shared connections do, mux.c). Every
 * operation costs a sleep and a wake-up of its thread, nothing else. */

typedef struct ho_req {
    struct ho_req *next;
    _Atomic bool done;
} ho_req;

static pthread_mutex_t ho_lock = PTHREAD_MUTEX_INITIALIZER;
static ho_req *ho_head;
static _Atomic uint32_t ho_bell;
static _Atomic int ho_sleepers;
static _Atomic bool ho_stop;
static _Atomic uint64_t ho_ops;
static _Atomic int ho_exited;

static long ho_futex(int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)&ho_bell, op, val, NULL, NULL, 0);
}

static void *ho_worker(void *arg)
{
    (void)arg;
    uint64_t n = 0;
    pthread_barrier_wait(&go);
    while (!atomic_load(&ho_stop)) {
        ho_req r = { 0 };
        pthread_mutex_lock(&ho_lock);
        r.next = ho_head;
        ho_head = &r;
        pthread_mutex_unlock(&ho_lock);
        for (int i = 0; i < 1000000 && !atomic_load(&r.done); i++) {
            atomic_fetch_add(&ho_sleepers, 1);
            uint32_t seen = atomic_load(&ho_bell);
            if (!atomic_load(&r.done))
                ho_futex(FUTEX_WAIT_PRIVATE, seen);
            atomic_fetch_sub(&ho_sleepers, 1);
        }
        n++;
    }
    atomic_fetch_add(&ho_ops, n);
    atomic_fetch_add(&ho_exited, 1);
    return NULL;
}

/* Answer everything queued; false when nothing was. */
static bool ho_answer(void)
{
    pthread_mutex_lock(&ho_lock);
    ho_req *r = ho_head;
    ho_head = NULL;
    pthread_mutex_unlock(&ho_lock);
    if (r == NULL)
        return false;
    for (ho_req *next; r != NULL; r = next) {
        next = r->next;
        atomic_store(&r->done, true);
    }
    atomic_fetch_add(&ho_bell, 1);
    if (atomic_load(&ho_sleepers) > 0)
        ho_futex(FUTEX_WAKE_PRIVATE, INT_MAX);
    return true;
}

static double handoff_ceiling(int threads, double seconds)
{
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    if (t == NULL || pthread_barrier_init(&go, NULL, (unsigned)threads + 1) != 0)
        bench_die("setup", "hand-off threads");
    atomic_store(&ho_stop, false);
    atomic_store(&ho_ops, 0);
    atomic_store(&ho_exited, 0);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, ho_worker, NULL) != 0)
            bench_die("pthread_create", "failed");
    pthread_barrier_wait(&go);
    int64_t began = bench_now_ns(), until = began + (int64_t)(seconds * 1e9), now;
    while ((now = bench_now_ns()) < until)
        if (!ho_answer())
            sched_yield();
    atomic_store(&ho_stop, true);
    while (atomic_load(&ho_exited) < threads) /* answer until every worker has seen the stop */
        if (!ho_answer())
            usleep(50);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    free(t);
    return (double)atomic_load(&ho_ops) / ((double)(now - began) / 1e9);
}

/* redis-benchmark -c 50 -P 16 -t get against the same server: ops/s of
 * one run. */
static double ceiling_once(const char *url)
{
    rk__url u;
    if (rk__url_parse(url, &u) != RK_OK)
        bench_die("REDIS_URL", rk_last_error());
    char cmd[512];
    if (u.unix_path != NULL)
        snprintf(cmd, sizeof cmd, "redis-benchmark -s '%s' -c 50 -P 16 -t get -n 1000000 -d %d -q 2>&1",
                 u.unix_path, VALUE_BYTES);
    else
        snprintf(cmd, sizeof cmd, "redis-benchmark -h %s -p %d%s%s -c 50 -P 16 -t get -n 1000000 -d %d -q 2>&1",
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

/* The ceiling: the best of 3 runs of about a second each. A single
 * run's figure moved by a quarter between runs on a 2-core machine; the
 * best is the least that every ratio is measured against. */
static double ceiling(const char *url)
{
    double best = 0;
    for (int i = 0; i < 3; i++) {
        double v = ceiling_once(url);
        if (v > best)
            best = v;
    }
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
            rk = run_threads(client, 1, false, 0, seconds / ROUNDS).per_s;
        } else {
            rk = run_threads(client, 1, false, 0, seconds / ROUNDS).per_s;
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
    const char *mode = getenv("BENCH_MODE");
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
        printf("ceiling  redis-benchmark -c 50 -P 16 -t get, best of 3: %10.0f ops/s\n", ceil_ops);
        printf("raw hiredis, 1 connection, GET:           %10.0f ops/s\n", raw);
        printf("1 thread GET / raw hiredis GET, median of %d alternating rounds: %.3f\n", ROUNDS, one);
        printf("%-4s %7s %9s %12s %9s %9s %8s %8s %9s %9s\n", "op", "threads", "ops", "ops/s", "p50 us", "p99 us",
               "errors", "x ceil", "x hiredis", "x handoff");
    }
    static const int counts[] = { 1, 4, 16, 64, 256 };
    double handoff[sizeof counts / sizeof counts[0]] = { 0 };
    if (!only)
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
            handoff[i] = handoff_ceiling(counts[i], seconds / 2);
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        if ((only && atoi(only) != counts[i]) || (mode && strcmp(mode, "blocking") != 0))
            continue;
        for (int set = 0; set <= 1; set++) {
            figures f = run_threads(client, counts[i], set, 0, seconds);
            printf("%-4s %7d %9llu %12.0f %9.1f %9.1f %8llu %8.3f %9.3f %9.3f\n", set ? "SET" : "GET", counts[i],
                   (unsigned long long)f.ops, f.per_s,
                   f.p50_us, f.p99_us, (unsigned long long)f.errors, ceil_ops > 0 ? f.per_s / ceil_ops : 0,
                   raw > 0 ? f.per_s / raw : 0, handoff[i] > 0 ? f.per_s / handoff[i] : 0);
            fflush(stdout);
        }
    }
    if (!only) {
        printf("\nhand-off ceiling (no Redis, no I/O: one sleep and one wake-up per operation), ops/s:");
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
            printf(" %d: %.0f%s", counts[i], handoff[i], i + 1 < sizeof counts / sizeof counts[0] ? "," : "\n");
        printf("    = %.3f x ceiling at 16 threads, %.3f x at 256: about what blocking calls, one per thread, can reach here\n",
               ceil_ops > 0 ? handoff[2] / ceil_ops : 0, ceil_ops > 0 ? handoff[4] / ceil_ops : 0);
        printf("\nfutures (rk_client_send + rk_future_wait): each thread keeps `each` commands in flight\n");
        printf("%-4s %7s %7s %9s %12s %9s %9s %8s %8s\n", "op", "threads", "each", "ops", "ops/s", "p50 us", "p99 us",
               "errors", "x ceil");
    }
    /* 256 in flight in all, from 1 and 16 threads; then more per thread,
     * and 256 threads with a few each. */
    static const int async_counts[] = { 1, 16, 16, 256, 256 };
    static const int windows[] = { 256, 16, 64, 8, 32 };
    for (size_t i = 0; i < sizeof async_counts / sizeof async_counts[0]; i++) {
        if ((only && atoi(only) != async_counts[i]) || (mode && strcmp(mode, "futures") != 0))
            continue;
        int window = windows[i];
        for (int set = 0; set <= 1; set++) {
            figures f = run_threads(client, async_counts[i], set, window, seconds);
            printf("%-4s %7d %7d %9llu %12.0f %9.1f %9.1f %8llu %8.3f\n", set ? "SET" : "GET", async_counts[i], window,
                   (unsigned long long)f.ops, f.per_s, f.p50_us, f.p99_us, (unsigned long long)f.errors,
                   ceil_ops > 0 ? f.per_s / ceil_ops : 0);
            fflush(stdout);
        }
    }
    rk_client_free(client);
    return 0;
}
