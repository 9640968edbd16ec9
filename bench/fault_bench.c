/*
 * fault_bench.c — what a program sees while its Redis dies, comes back or
 * hangs: how long calls take, what they return, how soon service resumes,
 * and what failing fast costs.
 *
 *     build/bench/fault_bench
 *
 * It starts its own private redis-server with the test fixture
 * (tests/support/redis_server.c), because it has to kill, pause and restart
 * it; REDIS_URL is ignored. Two scenarios:
 *
 *   A  "kill -9 and restart under load": 4 threads run a steady 50/50
 *      get/set load of 100-byte values through one rk_client (pool 4,
 *      200 ms command and connect timeouts, default reconnect schedule and
 *      breaker) for about 6 s; at 2 s the server is SIGKILLed, at 3 s it is
 *      restarted on the same port. Every call is timed and classified.
 *
 *   B  "fail-fast cost": a second client (reconnect backoff 2000..5000 ms,
 *      so the circuit stays open long enough to measure) drives a SIGSTOPped
 *      server until its circuit opens, times 100000 rk_cache_get() calls that
 *      fail fast, then sends SIGCONT and times how long service takes to
 *      return.
 *
 * The figures come from the calls' own clocks and from the client's
 * on_event callback and rk_client_stats_get(). It prints figures and never
 * judges them: the exit status only says whether the run could be done.
 * bench/README.md says how to read the output.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, clock_nanosleep */
#endif

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redkit/redkit.h>

#define BENCH_NAME "fault_bench"
#include "bench_support.h"
#include "measure.h"
#include "support/redis_server.h" /* the test fixture, tests/support/ */

#define VALUE_BYTES 100
#define TIMEOUT_MS 200 /* command and connect timeout of both clients */
#define POOL_SIZE 4

/* Scenario A. */
#define A_THREADS 4
#define A_KEYS 1000       /* per thread, prefilled before the load starts */
#define A_KILL_MS 2000
#define A_RESTART_MS 3000
#define A_RUN_MS 6000
#define A_EXTRA_MS 6000   /* how much longer the load may run waiting for
                             every thread to have succeeded once */
#define A_BUCKET_MS 250
#define A_BUCKETS ((A_RUN_MS + A_EXTRA_MS) / A_BUCKET_MS)

/* Scenario B. */
#define B_BASE_MS 2000
#define B_MAX_MS 5000
#define B_HIT_CALLS 10000
#define B_CALLS 100000
#define B_TRIES 5            /* timing runs, when a probe lands in one */
#define B_OPEN_MAX_CALLS 100 /* bounds on driving the circuit open */
#define B_OPEN_MAX_MS 10000
#define B_RECOVER_MAX_MS 15000
#define B_RECOVER_PAUSE_US 100 /* between calls while waiting for recovery */

#define SCHED_MAX 15  /* RECONNECT_SCHEDULED events kept */
#define STATE_MAX 24  /* circuit and reconnect events kept */

#define NS_PER_MS INT64_C(1000000)

enum { OP_GET, OP_SET, N_OPS };
static const char *const op_names[N_OPS] = { "get", "set" };

/* How a call ended. "other" is anything that is neither an answer nor one
 * of the statuses the API promises for an unreachable server. */
enum { C_OK, C_MISS, C_DEGRADED, C_UNAVAILABLE, C_TIMEOUT, C_OTHER, N_CLASSES };
static const char *const class_names[N_CLASSES] = { "ok",          "miss",    "degraded",
                                                    "unavailable", "timeout", "other" };

static char value_bytes[VALUE_BYTES];

/* Scenario A's phases, by when a call started. */
enum { PH_BEFORE, PH_OUTAGE, PH_RECOVERING, PH_AFTER, N_PHASES };
static const char *const phase_names[N_PHASES] = { "before the kill", "kill .. server ready",
                                                   "ready .. first success",
                                                   "after the first success" };

/* Latency histograms with 4 buckets per power of two (a bucket is at most
 * 25 % wide), so millions of calls need no per-call storage. */
#define HIST_BUCKETS (4 * 48)

static int hist_bucket(int64_t ns)
{
    uint64_t v = ns < 1 ? 1 : (uint64_t)ns;
    int lg = 63 - __builtin_clzll(v);
    int b = lg < 2 ? lg * 4 : lg * 4 + (int)((v >> (lg - 2)) & 3);

    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* The upper edge of bucket b, in ns. */
static int64_t hist_upper(int b)
{
    int lg = b / 4, sub = b % 4;

    return lg < 2 ? (INT64_C(1) << (lg + 1)) - 1 : ((INT64_C(4) + sub + 1) << (lg - 2)) - 1;
}

/* Nearest-rank percentile p of the n calls in h, as its bucket's upper
 * edge: "p of the calls took at most this". */
static int64_t hist_percentile(const uint64_t *h, uint64_t n, double p)
{
    uint64_t rank = (uint64_t)(p * (double)n + 0.999999), seen = 0;

    if (rank < 1)
        rank = 1;
    for (int b = 0; b < HIST_BUCKETS; b++)
        if ((seen += h[b]) >= rank)
            return hist_upper(b);
    return hist_upper(HIST_BUCKETS - 1);
}

static int classify(rk_status st)
{
    switch (st) {
    case RK_OK: return C_OK;
    case RK_MISS: return C_MISS;
    case RK_DEGRADED: return C_DEGRADED;
    case RK_ERR_UNAVAILABLE: return C_UNAVAILABLE;
    case RK_ERR_TIMEOUT: return C_TIMEOUT;
    default: return C_OTHER;
    }
}

static double ms(int64_t ns) { return (double)ns / 1e6; }

/* Sleep until the monotonic time t (ns). */
static void sleep_until(int64_t t)
{
    struct timespec ts = { .tv_sec = t / 1000000000, .tv_nsec = t % 1000000000 };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
}

static void sleep_us(int us)
{
    sleep_until(bench_now_ns() + (int64_t)us * 1000);
}

/* ---- events ------------------------------------------------------------ */

typedef struct ev_rec {
    int64_t t_ns; /* monotonic, absolute */
    rk_event_type type;
    rk_status status;
    int attempt, delay_ms;
} ev_rec;

/* What the on_event callback saw. It runs on whichever thread's call
 * caused the event, so the counters are atomic and the lists behind a
 * mutex; both stay cheap enough not to weigh on the call that waits. */
typedef struct event_log {
    atomic_uint_fast64_t count[RK_EVENT_CIRCUIT_CLOSED + 1];
    pthread_mutex_t lock;
    ev_rec sched[SCHED_MAX]; /* the first RECONNECT_SCHEDULED events */
    int n_sched;
    ev_rec state[STATE_MAX]; /* the first circuit events and reconnects */
    int n_state;
} event_log;

static const char *event_name(rk_event_type t)
{
    switch (t) {
    case RK_EVENT_CONNECTED: return "connected";
    case RK_EVENT_DISCONNECTED: return "disconnected";
    case RK_EVENT_RECONNECT_SCHEDULED: return "reconnect_scheduled";
    case RK_EVENT_CIRCUIT_OPEN: return "circuit_open";
    case RK_EVENT_CIRCUIT_HALF_OPEN: return "circuit_half_open";
    case RK_EVENT_CIRCUIT_CLOSED: return "circuit_closed";
    }
    return "?";
}

static void on_event(const rk_event *e, void *user)
{
    event_log *log = user;
    ev_rec r = { bench_now_ns(), e->type, e->status, e->attempt, e->delay_ms };

    if (e->type >= RK_EVENT_CONNECTED && e->type <= RK_EVENT_CIRCUIT_CLOSED)
        atomic_fetch_add(&log->count[e->type], 1);
    if (e->type == RK_EVENT_DISCONNECTED || (e->type == RK_EVENT_CONNECTED && e->attempt == 0))
        return;
    pthread_mutex_lock(&log->lock);
    if (e->type == RK_EVENT_RECONNECT_SCHEDULED && log->n_sched < SCHED_MAX)
        log->sched[log->n_sched++] = r;
    if (e->type != RK_EVENT_RECONNECT_SCHEDULED && log->n_state < STATE_MAX)
        log->state[log->n_state++] = r;
    pthread_mutex_unlock(&log->lock);
}

static void event_log_init(event_log *log)
{
    memset(log, 0, sizeof *log);
    for (int i = 0; i <= RK_EVENT_CIRCUIT_CLOSED; i++)
        atomic_init(&log->count[i], 0);
    pthread_mutex_init(&log->lock, NULL);
}

/* Print the counts and the kept events, times relative to t0. Called when
 * no call is in flight any more. */
static void event_log_print(event_log *log, int64_t t0, const char *t0_name)
{
    printf("  events:");
    for (int t = RK_EVENT_CONNECTED; t <= RK_EVENT_CIRCUIT_CLOSED; t++)
        printf(" %s %" PRIuFAST64, event_name((rk_event_type)t),
               (uint_fast64_t)atomic_load(&log->count[t]));
    printf("\n");
    pthread_mutex_lock(&log->lock);
    printf("  reconnect schedule (first %d RECONNECT_SCHEDULED; t from %s):\n", SCHED_MAX,
           t0_name);
    if (log->n_sched == 0)
        printf("    (none)\n");
    for (int i = 0; i < log->n_sched; i++)
        printf("    t=%8.1f ms  attempt %2d  delay_ms %5d  (%s)\n",
               ms(log->sched[i].t_ns - t0), log->sched[i].attempt, log->sched[i].delay_ms,
               rk_strerror(log->sched[i].status));
    printf("  circuit and reconnects (first %d; t from %s):\n", STATE_MAX, t0_name);
    if (log->n_state == 0)
        printf("    (none)\n");
    for (int i = 0; i < log->n_state; i++) {
        const ev_rec *r = &log->state[i];

        printf("    t=%8.1f ms  %-17s attempt %2d", ms(r->t_ns - t0), event_name(r->type),
               r->attempt);
        if (r->type == RK_EVENT_CIRCUIT_OPEN)
            printf("  next probe in %d ms (%s)", r->delay_ms, rk_strerror(r->status));
        printf("\n");
    }
    pthread_mutex_unlock(&log->lock);
}

static void event_log_destroy(event_log *log) { pthread_mutex_destroy(&log->lock); }

static void print_stats(rk_client *client)
{
    rk_client_stats s;

    if (rk_client_stats_get(client, &s) != RK_OK)
        return;
    printf("  client stats: requests %" PRIu64 ", connects %" PRIu64 ", reconnects %" PRIu64
           ", connect_failures %" PRIu64 ", disconnects %" PRIu64 ",\n"
           "    timeouts %" PRIu64 ", unavailable %" PRIu64 ", fast_failed %" PRIu64
           ", read_retries %" PRIu64 ", circuit_opened %" PRIu64 ", circuit_closed %" PRIu64
           ",\n    circuit now %s, open connections %d (idle %d)\n",
           s.requests, s.connects, s.reconnects, s.connect_failures, s.disconnects, s.timeouts,
           s.unavailable, s.fast_failed, s.read_retries, s.circuit_opened, s.circuit_closed,
           s.circuit == RK_CIRCUIT_OPEN        ? "open"
           : s.circuit == RK_CIRCUIT_HALF_OPEN ? "half-open"
                                               : "closed",
           s.open_connections, s.idle_connections);
}

/* ---- set-up -------------------------------------------------------------- */

typedef struct setup {
    rk_client *client;
    rk_cache *cache;
} setup;

/* A client on the private server with the bench's timeouts, reporting to
 * log; 0 on success, -1 after printing why. */
static int open_client(rk_test_server *srv, int base_ms, int max_ms, event_log *log, setup *out)
{
    rk_client_options o = {
        .host = "127.0.0.1",
        .port = rk_test_server_port(srv),
        .pool_size = POOL_SIZE,
        .command_timeout_ms = TIMEOUT_MS,
        .connect_timeout_ms = TIMEOUT_MS,
        .reconnect_base_ms = base_ms,
        .reconnect_max_ms = max_ms,
        .on_event = on_event,
        .event_user = log,
    };
    rk_status st = rk_client_new(&o, &out->client);

    if (st == RK_OK && (st = rk_cache_new(out->client, NULL, &out->cache)) != RK_OK) {
        rk_client_free(out->client);
        out->client = NULL;
    }
    if (st != RK_OK) {
        fprintf(stderr, "fault_bench: client: %s: %s\n", rk_strerror(st), rk_last_error());
        return -1;
    }
    return 0;
}

static void close_client(setup *s)
{
    rk_cache_free(s->cache);
    rk_client_free(s->client);
    s->cache = NULL;
    s->client = NULL;
}

/* ---- scenario A: kill -9 and restart under load -------------------------- */

typedef struct scen_a scen_a;

typedef struct worker {
    scen_a *a;
    int id;
    pthread_t thread;
    uint64_t rng;
    uint64_t n[N_OPS][N_CLASSES];
    uint64_t bucket[A_BUCKETS][N_CLASSES]; /* by the call's start time */
    int64_t bucket_max[A_BUCKETS];
    uint64_t hist[N_PHASES][HIST_BUCKETS];     /* latency by phase */
    int64_t phase_max[N_PHASES];
    int64_t max_ns;                            /* the slowest call overall ... */
    rk_status max_status;                      /* ... how it ended ... */
    int max_op;
    int64_t max_start;                         /* ... when it started ... */
    char max_msg[256];                         /* ... and rk_last_error() */
    uint64_t over_bound;        /* calls longer than connect + command timeout */
    int64_t first_ok;           /* end of the first success started after the
                                   kill, or -1 */
    rk_status first_other;      /* the first "other" status, and its message */
    char other_msg[256];
} worker;

struct scen_a {
    setup cli;
    int64_t t0; /* the load starts; read-only once the threads run */
    atomic_int stop;
    atomic_int recovered;          /* threads that have succeeded after the kill */
    _Atomic int64_t kill_ns;       /* 0 until the kill is sent */
    _Atomic int64_t killed_ns;     /* 0 until the server is reaped */
    _Atomic int64_t ready_ns;      /* 0 until the restarted server answered PING */
    _Atomic int64_t back_ns;       /* 0 until a call succeeded after the kill */
    worker w[A_THREADS];
};

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    scen_a *a = w->a;

    while (!atomic_load_explicit(&a->stop, memory_order_relaxed)) {
        uint64_t r = xorshift(&w->rng);
        int op = (int)(r & 1);
        char key[32];
        rk_status st;

        snprintf(key, sizeof key, "fault:%d:%u", w->id, (unsigned)((r >> 1) % A_KEYS));
        int64_t kill = atomic_load(&a->kill_ns);
        int64_t killed = atomic_load(&a->killed_ns);
        int64_t ready = atomic_load(&a->ready_ns);
        int64_t back = atomic_load(&a->back_ns);
        int64_t start = bench_now_ns();
        if (op == OP_SET) {
            st = rk_cache_set(a->cli.cache, key, value_bytes, VALUE_BYTES, NULL);
        } else {
            void *value;
            size_t len;

            st = rk_cache_get(a->cli.cache, key, &value, &len);
            rk_free(value);
        }
        int64_t end = bench_now_ns(), lat = end - start;
        int c = classify(st);

        w->n[op][c]++;
        int64_t b = (start - a->t0) / (A_BUCKET_MS * NS_PER_MS);
        if (b >= A_BUCKETS)
            b = A_BUCKETS - 1;
        w->bucket[b][c]++;
        if (lat > w->bucket_max[b])
            w->bucket_max[b] = lat;
        int phase = kill == 0    ? PH_BEFORE
                    : ready == 0 ? PH_OUTAGE
                    : back == 0  ? PH_RECOVERING
                                 : PH_AFTER;
        w->hist[phase][hist_bucket(lat)]++;
        if (lat > w->phase_max[phase])
            w->phase_max[phase] = lat;
        if (lat > w->max_ns) {
            w->max_ns = lat;
            w->max_status = st;
            w->max_op = op;
            w->max_start = start;
            snprintf(w->max_msg, sizeof w->max_msg, "%s", st == RK_OK ? "" : rk_last_error());
        }
        if (lat > (int64_t)2 * TIMEOUT_MS * NS_PER_MS)
            w->over_bound++;
        if (c == C_OTHER && w->first_other == RK_OK) {
            w->first_other = st;
            snprintf(w->other_msg, sizeof w->other_msg, "%s", rk_last_error());
        }
        /* A success of a call that started once the server was gone can
         * only have come from the restarted server. */
        if (killed != 0 && w->first_ok < 0 && start > killed && (c == C_OK || c == C_MISS)) {
            int64_t none = 0;

            w->first_ok = end;
            atomic_fetch_add(&a->recovered, 1);
            atomic_compare_exchange_strong(&a->back_ns, &none, end);
        }
    }
    return NULL;
}

/* Write every key once, so gets hit until the kill (and miss after the
 * restart, the server having no persistence). */
static int prefill(scen_a *a)
{
    for (int t = 0; t < A_THREADS; t++)
        for (int k = 0; k < A_KEYS; k++) {
            char key[32];
            rk_status st;

            snprintf(key, sizeof key, "fault:%d:%d", t, k);
            st = rk_cache_set(a->cli.cache, key, value_bytes, VALUE_BYTES, NULL);
            if (st != RK_OK) {
                fprintf(stderr, "fault_bench: prefill: %s: %s\n", rk_strerror(st),
                        rk_last_error());
                return -1;
            }
        }
    return 0;
}

static void print_scenario_a(scen_a *a, event_log *log, int64_t end, bool restarted)
{
    uint64_t n[N_OPS][N_CLASSES] = { { 0 } }, total = 0, over = 0;
    static uint64_t hist[N_PHASES][HIST_BUCKETS];
    int64_t phase_max[N_PHASES] = { 0 };
    int64_t kill = atomic_load(&a->kill_ns), killed = atomic_load(&a->killed_ns);
    int64_t ready = atomic_load(&a->ready_ns);
    const worker *slowest = &a->w[0];
    int64_t first_ok = -1, last_ok = -1;
    int recovered = 0;

    for (int t = 0; t < A_THREADS; t++) {
        const worker *w = &a->w[t];

        for (int op = 0; op < N_OPS; op++)
            for (int c = 0; c < N_CLASSES; c++) {
                n[op][c] += w->n[op][c];
                total += w->n[op][c];
            }
        over += w->over_bound;
        for (int ph = 0; ph < N_PHASES; ph++) {
            for (int b = 0; b < HIST_BUCKETS; b++)
                hist[ph][b] += w->hist[ph][b];
            if (w->phase_max[ph] > phase_max[ph])
                phase_max[ph] = w->phase_max[ph];
        }
        if (w->max_ns > slowest->max_ns)
            slowest = w;
        if (w->first_ok >= 0) {
            recovered++;
            if (first_ok < 0 || w->first_ok < first_ok)
                first_ok = w->first_ok;
            if (w->first_ok > last_ok)
                last_ok = w->first_ok;
        }
    }

    printf("  server SIGKILLed at %.1f ms (reaped at %.1f ms)", ms(kill - a->t0),
           ms(killed - a->t0));
    if (restarted)
        printf(", restarted at %d ms, answering PING at %.1f ms\n", A_RESTART_MS,
               ms(ready - a->t0));
    else
        printf(", restart FAILED\n");
    printf("  load ran %.2f s: %" PRIu64 " calls (%.0f/s)\n\n", ms(end - a->t0) / 1000, total,
           (double)total * 1e9 / (double)(end - a->t0));
    printf("  %-12s %10s %10s %10s\n", "status", op_names[OP_GET], op_names[OP_SET], "total");
    for (int c = 0; c < N_CLASSES; c++)
        printf("  %-12s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n", class_names[c],
               n[OP_GET][c], n[OP_SET][c], n[OP_GET][c] + n[OP_SET][c]);
    for (int t = 0; t < A_THREADS; t++)
        if (a->w[t].first_other != RK_OK) {
            printf("  first \"other\" status (thread %d): %s: %s\n", t,
                   rk_strerror(a->w[t].first_other), a->w[t].other_msg);
            break;
        }

    printf("\n  max call latency: %.1f ms overall (%s %s, started at %.1f ms%s%s)\n",
           ms(slowest->max_ns), op_names[slowest->max_op], rk_strerror(slowest->max_status),
           ms(slowest->max_start - a->t0), slowest->max_msg[0] ? ": " : "", slowest->max_msg);
    printf("    by when the call started (p50, p99: upper edge of a 25 %% histogram bucket):\n"
           "    %-26s %10s %12s %12s %10s\n",
           "", "calls", "p50_us", "p99_us", "max_ms");
    for (int ph = 0; ph < N_PHASES; ph++) {
        uint64_t calls = 0;

        for (int b = 0; b < HIST_BUCKETS; b++)
            calls += hist[ph][b];
        if (calls == 0) {
            printf("    %-26s %10d\n", phase_names[ph], 0);
            continue;
        }
        printf("    %-26s %10" PRIu64 " %12.2f %12.2f %10.1f\n", phase_names[ph], calls,
               (double)hist_percentile(hist[ph], calls, 0.50) / 1e3,
               (double)hist_percentile(hist[ph], calls, 0.99) / 1e3, ms(phase_max[ph]));
    }
    printf("    calls over %d ms (connect + command timeout): %" PRIu64 "\n", 2 * TIMEOUT_MS,
           over);

    if (recovered == 0) {
        printf("  recovery: NO successful call after the kill (load ran until %.1f ms)\n",
               ms(end - a->t0));
    } else {
        printf("  recovery: first successful call %.1f ms after the server answered PING"
               " (%.1f ms after restart began)\n",
               ms(first_ok - ready), ms(first_ok - (a->t0 + A_RESTART_MS * NS_PER_MS)));
        if (recovered == A_THREADS)
            printf("            all %d threads had succeeded %.1f ms after PING (%.1f ms after"
                   " restart began)\n",
                   A_THREADS, ms(last_ok - ready),
                   ms(last_ok - (a->t0 + A_RESTART_MS * NS_PER_MS)));
        else
            printf("            only %d of %d threads succeeded before the load stopped\n",
                   recovered, A_THREADS);
    }
    print_stats(a->cli.client);
    event_log_print(log, a->t0, "load start");

    printf("  timeline (calls by start time, %d ms buckets):\n", A_BUCKET_MS);
    printf("    %8s %8s %8s %9s %11s %8s %6s %8s\n", "t_ms", "ok", "miss", "degraded",
           "unavailable", "timeout", "other", "max_ms");
    int last = (int)((end - a->t0) / (A_BUCKET_MS * NS_PER_MS));
    for (int b = 0; b <= last && b < A_BUCKETS; b++) {
        uint64_t c[N_CLASSES] = { 0 };
        int64_t mx = 0;

        for (int t = 0; t < A_THREADS; t++) {
            for (int k = 0; k < N_CLASSES; k++)
                c[k] += a->w[t].bucket[b][k];
            if (a->w[t].bucket_max[b] > mx)
                mx = a->w[t].bucket_max[b];
        }
        printf("    %8d %8" PRIu64 " %8" PRIu64 " %9" PRIu64 " %11" PRIu64 " %8" PRIu64
               " %6" PRIu64 " %8.1f\n",
               b * A_BUCKET_MS, c[C_OK], c[C_MISS], c[C_DEGRADED], c[C_UNAVAILABLE],
               c[C_TIMEOUT], c[C_OTHER], ms(mx));
    }
}

/* Returns false if the server could not be restarted (scenario B is then
 * skipped). */
static bool scenario_a(rk_test_server *srv)
{
    static scen_a a; /* large: the per-thread timelines */
    event_log log;
    bool restarted = true;
    int started = 0;

    printf("\n== A: kill -9 and restart under load\n");
    printf("  %d threads, 50/50 rk_cache_get/rk_cache_set of %d-byte values on %d keys each;\n"
           "  pool %d, command and connect timeouts %d ms, reconnect %d..%d ms, breaker %d.\n"
           "  SIGKILL at %d ms, restart at %d ms, load for %d ms (longer, up to %d ms, until\n"
           "  every thread has succeeded once after the restart).\n",
           A_THREADS, VALUE_BYTES, A_KEYS, POOL_SIZE, TIMEOUT_MS, RK_DEFAULT_RECONNECT_BASE_MS,
           RK_DEFAULT_RECONNECT_MAX_MS, RK_DEFAULT_BREAKER_THRESHOLD, A_KILL_MS, A_RESTART_MS,
           A_RUN_MS, A_RUN_MS + A_EXTRA_MS);
    fflush(stdout);

    event_log_init(&log);
    if (open_client(srv, 0, 0, &log, &a.cli) != 0 || prefill(&a) != 0) {
        close_client(&a.cli);
        event_log_destroy(&log);
        return false;
    }
    atomic_init(&a.stop, 0);
    atomic_init(&a.recovered, 0);
    atomic_init(&a.kill_ns, 0);
    atomic_init(&a.killed_ns, 0);
    atomic_init(&a.ready_ns, 0);
    atomic_init(&a.back_ns, 0);
    a.t0 = bench_now_ns();
    for (int t = 0; t < A_THREADS; t++) {
        worker *w = &a.w[t];

        w->a = &a;
        w->id = t;
        w->rng = 0x9E3779B97F4A7C15u * (uint64_t)(t + 1);
        w->first_ok = -1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            fprintf(stderr, "fault_bench: pthread_create failed\n");
            break;
        }
        started++;
    }

    if (started == A_THREADS) {
        sleep_until(a.t0 + A_KILL_MS * NS_PER_MS);
        atomic_store(&a.kill_ns, bench_now_ns());
        if (!rk_test_server_signal(srv, SIGKILL))
            fprintf(stderr, "fault_bench: SIGKILL failed\n");
        atomic_store(&a.killed_ns, bench_now_ns());

        sleep_until(a.t0 + A_RESTART_MS * NS_PER_MS);
        restarted = rk_test_server_restart(srv, NULL);
        if (restarted)
            atomic_store(&a.ready_ns, bench_now_ns());

        sleep_until(a.t0 + A_RUN_MS * NS_PER_MS);
        /* Give a slow recovery time to show, within a bound. */
        while (restarted && atomic_load(&a.recovered) < A_THREADS &&
               bench_now_ns() < a.t0 + (A_RUN_MS + A_EXTRA_MS) * NS_PER_MS)
            sleep_us(10000);
    }
    atomic_store(&a.stop, 1);
    for (int t = 0; t < started; t++)
        pthread_join(a.w[t].thread, NULL);
    int64_t end = bench_now_ns();

    if (started == A_THREADS)
        print_scenario_a(&a, &log, end, restarted);
    close_client(&a.cli);
    event_log_destroy(&log);
    return restarted && started == A_THREADS;
}

/* ---- scenario B: the cost of failing fast -------------------------------- */

static rk_status get_once(rk_cache *cache, const char *key)
{
    void *value;
    size_t len;
    rk_status st = rk_cache_get(cache, key, &value, &len);

    rk_free(value);
    return st;
}

/* Time n gets of key into lat[] (ns each, sorted on return); counts by
 * class into by_class. */
static void time_gets(rk_cache *cache, const char *key, int64_t *lat, size_t n,
                      uint64_t by_class[N_CLASSES])
{
    memset(by_class, 0, N_CLASSES * sizeof by_class[0]);
    for (size_t i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        rk_status st = get_once(cache, key);

        lat[i] = bench_now_ns() - t0;
        by_class[classify(st)]++;
    }
    bench_sort(lat, n);
}

static void print_percentiles(const char *what, const int64_t *lat, size_t n)
{
    int64_t sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += lat[i];
    printf("  %s (%zu calls):\n"
           "    p50 %.3f us (%" PRId64 " ns), p99 %.3f us (%" PRId64 " ns), p99.9 %.3f us,"
           " max %.3f us, mean %.3f us\n",
           what, n, (double)bench_percentile(lat, n, 0.50) / 1e3, bench_percentile(lat, n, 0.50),
           (double)bench_percentile(lat, n, 0.99) / 1e3, bench_percentile(lat, n, 0.99),
           (double)bench_percentile(lat, n, 0.999) / 1e3, (double)lat[n - 1] / 1e3,
           (double)sum / (double)n / 1e3);
}

/* The median cost of the two clock reads around each timed call. */
static int64_t clock_overhead(int64_t *scratch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();

        scratch[i] = bench_now_ns() - t0;
    }
    bench_sort(scratch, n);
    return bench_percentile(scratch, n, 0.50);
}

/* Call get until the circuit is open, within bounds. Returns the number
 * of calls, or -1 if it did not open. With show, prints each call. */
static int drive_open(rk_cache *cache, rk_client *client, const char *key, bool show,
                      int64_t *took)
{
    int64_t t0 = bench_now_ns();
    int calls = 0;

    while (rk_client_circuit(client) != RK_CIRCUIT_OPEN) {
        if (calls >= B_OPEN_MAX_CALLS || bench_now_ns() - t0 > B_OPEN_MAX_MS * NS_PER_MS)
            return -1;
        int64_t start = bench_now_ns();
        rk_status st = get_once(cache, key);
        if (show)
            printf("    call %d: %.1f ms, %s: %s\n", calls + 1, ms(bench_now_ns() - start),
                   rk_strerror(st), rk_last_error());
        calls++;
    }
    *took = bench_now_ns() - t0;
    return calls;
}

static void scenario_b(rk_test_server *srv)
{
    static const char key[] = "fault:b";
    event_log log;
    setup cli = { 0 };
    uint64_t by_class[N_CLASSES];
    int64_t *lat = malloc(B_CALLS * sizeof *lat);
    rk_client_stats before, after;
    rk_status st;

    printf("\n== B: the cost of failing fast (server SIGSTOPped, circuit open)\n");
    printf("  one thread; pool %d, command and connect timeouts %d ms, reconnect %d..%d ms,"
           " breaker %d.\n",
           POOL_SIZE, TIMEOUT_MS, B_BASE_MS, B_MAX_MS, RK_DEFAULT_BREAKER_THRESHOLD);
    fflush(stdout);

    event_log_init(&log);
    if (lat == NULL || open_client(srv, B_BASE_MS, B_MAX_MS, &log, &cli) != 0) {
        fprintf(stderr, "fault_bench: scenario B could not start\n");
        goto out;
    }
    st = rk_cache_set(cli.cache, key, value_bytes, VALUE_BYTES, NULL);
    if (st != RK_OK) {
        fprintf(stderr, "fault_bench: set: %s: %s\n", rk_strerror(st), rk_last_error());
        goto out;
    }

    int64_t overhead = clock_overhead(lat, B_CALLS);
    time_gets(cli.cache, key, lat, B_HIT_CALLS / 10, by_class); /* warm-up */
    time_gets(cli.cache, key, lat, B_HIT_CALLS, by_class);
    print_percentiles("for comparison, get hits with the server up", lat, B_HIT_CALLS);
    if (by_class[C_OK] != B_HIT_CALLS)
        printf("    (only %" PRIu64 " of them were hits)\n", by_class[C_OK]);

    int64_t t_stop = bench_now_ns();
    if (!rk_test_server_signal(srv, SIGSTOP)) {
        fprintf(stderr, "fault_bench: SIGSTOP failed\n");
        goto out;
    }
    int64_t took = 0;
    printf("  SIGSTOP; driving gets until the circuit opens:\n");
    int calls = drive_open(cli.cache, cli.client, key, true, &took);
    if (calls < 0) {
        printf("  the circuit did NOT open within %d calls / %d ms of a stopped server\n",
               B_OPEN_MAX_CALLS, B_OPEN_MAX_MS);
    } else {
        printf("  the circuit opened after %d calls, %.1f ms\n", calls, ms(took));

        int tries = 0;
        bool clean = false;
        while (!clean && tries < B_TRIES) {
            tries++;
            if (tries > 1 && drive_open(cli.cache, cli.client, key, false, &took) < 0)
                break;
            rk_client_stats_get(cli.client, &before);
            uint64_t half_open = atomic_load(&log.count[RK_EVENT_CIRCUIT_HALF_OPEN]);
            time_gets(cli.cache, key, lat, B_CALLS, by_class);
            rk_client_stats_get(cli.client, &after);
            /* A probe that fell inside the run waited for the server like
             * any call: that run measured something else. */
            clean = after.fast_failed - before.fast_failed == B_CALLS &&
                    atomic_load(&log.count[RK_EVENT_CIRCUIT_HALF_OPEN]) == half_open &&
                    by_class[C_DEGRADED] == B_CALLS;
        }
        if (clean) {
            char what[96];

            snprintf(what, sizeof what, "fail-fast rk_cache_get, all RK_DEGRADED (run %d of <= %d)",
                     tries, B_TRIES);
            print_percentiles(what, lat, B_CALLS);
            printf("    (each includes ~%" PRId64 " ns of clock reads)\n", overhead);
        } else {
            printf("  no clean run of %d fail-fast calls in %d tries (a probe fell in each)\n",
                   B_CALLS, tries);
        }
    }

    /* Show what the client expects, then let the server run again. */
    st = get_once(cli.cache, key);
    printf("  last call before SIGCONT: %s: %s\n", rk_strerror(st), rk_last_error());
    int64_t t_cont = bench_now_ns();
    if (!rk_test_server_signal(srv, SIGCONT)) {
        fprintf(stderr, "fault_bench: SIGCONT failed\n");
        goto out;
    }
    int64_t t_ok = -1;
    uint64_t rec_calls = 0, rec_class[N_CLASSES] = { 0 };
    while (bench_now_ns() - t_cont < B_RECOVER_MAX_MS * NS_PER_MS) {
        st = get_once(cli.cache, key);
        rec_calls++;
        rec_class[classify(st)]++;
        if (st == RK_OK) {
            t_ok = bench_now_ns();
            break;
        }
        sleep_us(B_RECOVER_PAUSE_US);
    }
    if (t_ok < 0) {
        printf("  after SIGCONT: NO successful get within %d ms (%" PRIu64 " calls)\n",
               B_RECOVER_MAX_MS, rec_calls);
    } else {
        printf("  after SIGCONT: first hit %.1f ms later, after %" PRIu64
               " calls (one every ~%d us: %" PRIu64 " degraded, %" PRIu64 " other);"
               " circuit now %s\n",
               ms(t_ok - t_cont), rec_calls, B_RECOVER_PAUSE_US, rec_class[C_DEGRADED],
               rec_calls - rec_class[C_DEGRADED] - rec_class[C_OK],
               rk_client_circuit(cli.client) == RK_CIRCUIT_CLOSED ? "closed" : "NOT closed");
    }
    print_stats(cli.client);
    event_log_print(&log, t_stop, "SIGSTOP");
    printf("  (SIGCONT at t=%.1f ms)\n", ms(t_cont - t_stop));

out:
    close_client(&cli);
    event_log_destroy(&log);
    free(lat);
}

/* ---- main ---------------------------------------------------------------- */

/* "7.2.4" from INFO server, for the header line. */
static void server_version(rk_test_server *srv, char *buf, size_t size)
{
    redisReply *r = rk_test_server_command(srv, "INFO server");

    bench_server_version(r, buf, size);
    freeReplyObject(r);
}

int main(void)
{
    rk_test_server *srv;
    char version[32];

    /* A write to a connection the server has just reset must fail with
     * EPIPE, not kill the bench. (redkit sends with MSG_NOSIGNAL; this
     * covers the fixture's own hiredis connections.) */
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < VALUE_BYTES; i++)
        value_bytes[i] = (char)('a' + i % 26);

    srv = rk_test_server_start(NULL);
    if (srv == NULL) {
        fprintf(stderr, "fault_bench: could not start a private redis-server\n");
        return 2;
    }
    server_version(srv, version, sizeof version);
    printf("redkit %s fault bench: private redis-server %s on 127.0.0.1:%d (REDIS_URL is"
           " not used)\n",
           rk_version(), version, rk_test_server_port(srv));

    if (scenario_a(srv))
        scenario_b(srv);
    else
        printf("\n== B: skipped (scenario A could not run or restart the server)\n");

    rk_test_server_stop(srv);
    return 0;
}
