/*
 * limiter_test.c — rk_limiter against a real redis-server started by the
 * fixture: exact counts per algorithm, GCRA against its formula,
 * Cloudflare's worked example, several limits consumed atomically, 4
 * processes x 8 threads on one key, leases that outlive a killed child,
 * penalty/reward/reset, the block cache answering without Redis, shadow
 * mode, metrics, and bad input.
 *
 * Time: the scripts normally read the server's clock (TIME); most tests
 * here pin it instead through the test hook rk__limiter_test_clock() (a
 * fixed "now", or an offset added to TIME), so results are exact and no
 * test sleeps and hopes.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "ratelimit.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

/* A fixed server time, a whole number of every period used below. */
#define T0 ((int64_t)19675 * 86400 * 1000000)

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                       .client_options = {.key_prefix = "app"}});
}

static rk_limiter *limiter_new(const rk_limit *limits, size_t n)
{
    rk_limiter *l = NULL;
    rk_status st = rk_limiter_new(client, &(rk_limiter_options){.limits = limits, .nlimits = n}, &l);
    if (st != RK_OK) fail_msg("rk_limiter_new: %s: %s", rk_strerror(st), rk_last_error());
    return l;
}

static int count_allowed(rk_limiter *l, const char *key, int n)
{
    int allowed = 0;
    for (int i = 0; i < n; i++) {
        rk_limit_result r;
        rk_status st = rk_limiter_check(l, key, 1, &r);
        if (st != RK_OK) fail_msg("check: %s: %s", rk_strerror(st), rk_last_error());
        assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
        if (r.allowed) allowed++;
    }
    return allowed;
}

static void test_exact_counts_per_algorithm(void **state)
{
    (void)state;
    const rk_limit limits[] = {
        {.name = "gcra", .algorithm = RK_LIMIT_GCRA, .limit = 7, .period_ms = 10000},
        {.name = "sliding", .algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 7, .period_ms = 10000},
        {.name = "fixed", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 7, .period_ms = 10000},
        {.name = "aligned", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 7, .period_ms = 10000, .aligned = true},
        {.name = "bucket", .algorithm = RK_LIMIT_TOKEN_BUCKET, .limit = 7, .period_ms = 10000},
    };
    for (size_t a = 0; a < sizeof limits / sizeof *limits; a++) {
        rk_limiter *l = limiter_new(&limits[a], 1);
        rk__limiter_test_clock(l, T0, 0);
        assert_int_equal(count_allowed(l, "u1", 30), 7);
        /* One period later, exactly the limit again (the sliding window
         * needs two: a full previous window still weighs in). */
        for (int period = 1; period <= 3; period++) {
            int64_t shift = limits[a].algorithm == RK_LIMIT_SLIDING_WINDOW ? 2 : 1;
            rk__limiter_test_clock(l, T0 + (int64_t)period * shift * 10000000, 0);
            assert_int_equal(count_allowed(l, "u1", 30), 7);
        }
        /* Another key is untouched. */
        assert_int_equal(count_allowed(l, "u2", 30), 7);
        rk_limiter_free(l);
    }
}

/* Real server clock: a short period, then an offset of one period. */
static void test_server_clock(void **state)
{
    (void)state;
    rk_limit lim = {.limit = 5, .period_ms = 60000};
    rk_limiter *l = limiter_new(&lim, 1);
    assert_int_equal(count_allowed(l, "k", 20), 5);
    /* GCRA's TAT lives in the key's expiry time; the value is only the
     * sub-millisecond rest (a small shared integer). */
    redisReply *v = rk_test_server_command(server, "GET app:rl:{k}:default");
    assert_non_null(v);
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    long long rest = atoll(v->str);
    freeReplyObject(v);
    assert_true(rest >= 0 && rest < 1000);
    long long pttl = rk_test_server_integer(server, "PTTL app:rl:{k}:default");
    assert_true(pttl > 48000 && pttl <= 60000); /* TAT = now + 5 T, T = 12 s (less the time the checks took) */
    rk_limit_result r;
    assert_int_equal(rk_limiter_peek(l, "k", &r), RK_OK);
    assert_int_equal(r.remaining, 0);
    assert_true(r.retry_after_ms > 0 && r.retry_after_ms <= 12000);
    rk__limiter_test_clock(l, 0, 60000000);
    assert_int_equal(count_allowed(l, "k", 20), 5);
    rk_limiter_free(l);
}

/* GCRA: T = period / limit = 100 ms, tau = T * (burst + 1) = 1 s. */
static void test_gcra_formula(void **state)
{
    (void)state;
    rk_limit lim = {.limit = 10, .period_ms = 1000};
    rk_limiter *l = limiter_new(&lim, 1);
    const int64_t T = 100000, tau = 1000000;
    int64_t tat = T0, now = T0;
    rk__limiter_test_clock(l, now, 0);
    rk_limit_result r;
    /* The scripted sequence: 10 at t0, 1 at t0, 3 at t0 + 250 ms. */
    const int64_t at[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 250000, 250000, 250000};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        now = T0 + at[i];
        rk__limiter_test_clock(l, now, 0);
        assert_int_equal(rk_limiter_check(l, "g", 1, &r), RK_OK);
        int64_t base = tat > now ? tat : now, next = base + T;
        bool ok = next - tau <= now;
        if (ok) tat = next;
        int64_t cur = ok ? next : base;
        assert_int_equal(r.allowed, ok);
        assert_int_equal(r.limit, 10);
        assert_int_equal(r.remaining, (tau - (cur - now)) / T);
        assert_int_equal(r.reset_ms, (cur - now + 999) / 1000);
        assert_int_equal(r.retry_after_ms, ok ? 0 : (next - tau - now + 999) / 1000);
    }
    /* Spot values of that sequence, by hand. */
    rk__limiter_test_clock(l, T0 + 250000, 0);
    assert_int_equal(rk_limiter_peek(l, "g", &r), RK_OK);
    assert_false(r.allowed); /* tat = t0 + 1.2 s: allow_at = t0 + 300 ms */
    assert_int_equal(r.retry_after_ms, 50);
    rk_limiter_free(l);
}

/* Cloudflare: 42 in the previous minute, 18 in this one, 15 s into it:
 * 42 * 45/60 + 18 = 49.5. */
static void test_cloudflare_example(void **state)
{
    (void)state;
    rk_limit lim = {.name = "minute", .algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 50, .period_ms = 60000};
    rk_limiter *l = limiter_new(&lim, 1);
    const int64_t win = T0 / 60000000;
    char state_text[64];
    snprintf(state_text, sizeof state_text, "%lld 18 42", (long long)win); /* window, current, previous */
    rk_test_server_ok(server, "SET app:rl:{ada}:minute %s PX 60000", state_text);
    rk__limiter_test_clock(l, win * 60000000 + 15000000, 0);
    rk_limit_result r;
    assert_int_equal(rk_limiter_peek(l, "ada", &r), RK_OK);
    assert_true(r.limits[0].used == 49.5);
    assert_int_equal(r.remaining, 0);
    assert_false(r.allowed); /* 49.5 + 1 > 50 */
    rk_limiter_free(l);
    /* The same state under a limit of 51: one more passes, not two. */
    lim.limit = 51;
    l = limiter_new(&lim, 1);
    rk__limiter_test_clock(l, win * 60000000 + 15000000, 0);
    assert_int_equal(rk_limiter_peek(l, "ada", &r), RK_OK);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(rk_limiter_check(l, "ada", 2, &r), RK_OK);
    assert_false(r.allowed);
    assert_int_equal(rk_limiter_check(l, "ada", 1, &r), RK_OK);
    assert_true(r.allowed);
    assert_true(r.limits[0].used == 50.5);
    rk_limiter_free(l);
}

/* Three limits, one round trip: a refusal by the day limit consumes
 * nothing from the others. */
static void test_three_limits_atomic(void **state)
{
    (void)state;
    const rk_limit limits[] = {
        {.name = "second", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 10, .period_ms = 1000, .aligned = true},
        {.name = "minute", .algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 100, .period_ms = 60000},
        {.name = "day", .limit = 3, .period_ms = 86400000},
    };
    rk_limiter *l = limiter_new(limits, 3);
    rk__limiter_test_clock(l, T0, 0);
    long long before = rk_test_server_command_calls(server, "evalsha") + rk_test_server_command_calls(server, "eval");
    rk_limit_result r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rk_limiter_check(l, "k", 1, &r), RK_OK);
        assert_true(r.allowed);
    }
    assert_int_equal(r.decided_by, 2); /* least remaining */
    assert_string_equal(r.decided_name, "day");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rk_limiter_check(l, "k", 1, &r), RK_OK);
        assert_false(r.allowed);
        assert_string_equal(r.decided_name, "day");
        assert_true(r.limits[0].allowed);
        assert_true(r.limits[1].allowed);
        /* The states reported are the stored ones: nothing consumed. */
        assert_int_equal(r.limits[0].remaining, 7);
        assert_true(r.limits[1].used == 3.0);
    }
    long long after = rk_test_server_command_calls(server, "evalsha") + rk_test_server_command_calls(server, "eval");
    assert_int_equal(after - before, 8); /* one script per check */
    assert_int_equal(rk_limiter_peek(l, "k", &r), RK_OK);
    assert_int_equal(r.limits[0].remaining, 7);
    assert_true(r.limits[1].used == 3.0);
    rk_limiter_free(l);
}

/* ---- 4 processes x 8 threads on one key -------------------------------------- */

typedef struct hammer {
    rk_limiter *l;
    int allowed;
} hammer;

static void *hammer_thread(void *arg)
{
    hammer *h = arg;
    for (int i = 0; i < 20; i++) {
        rk_limit_result r;
        if (rk_limiter_check(h->l, "shared", 1, &r) == RK_OK && r.allowed && r.path == RK_LIMIT_PATH_REDIS)
            h->allowed++;
    }
    return NULL;
}

static int child_hammer(const rk_limit *lim, int64_t fixed_now)
{
    rk_client *c = NULL;
    if (rk_client_new(&(rk_client_options){.url = rk_test_server_url(server), .key_prefix = "app",
                                           .command_timeout_ms = 5000},
                      &c) != RK_OK)
        return -1;
    rk_limiter *l = NULL;
    if (rk_limiter_new(c, &(rk_limiter_options){.limits = lim, .nlimits = 1}, &l) != RK_OK) return -1;
    rk__limiter_test_clock(l, fixed_now, 0);
    hammer h[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        h[i] = (hammer){.l = l};
        pthread_create(&t[i], NULL, hammer_thread, &h[i]);
    }
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        total += h[i].allowed;
    }
    rk_limiter_free(l);
    rk_client_free(c);
    return total;
}

static void hammer_run(const rk_limit *lim, int64_t fixed_now, int want)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[4];
    for (int p = 0; p < 4; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[0]);
            int n = child_hammer(lim, fixed_now);
            ssize_t w = write(fds[1], &n, sizeof n);
            _exit(w == (ssize_t)sizeof n ? 0 : 1);
        }
    }
    close(fds[1]);
    int total = 0;
    for (int p = 0; p < 4; p++) {
        int n = -1;
        assert_int_equal(read(fds[0], &n, sizeof n), (ssize_t)sizeof n);
        assert_true(n >= 0);
        total += n;
    }
    close(fds[0]);
    for (int p = 0; p < 4; p++) {
        int status = 0;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(total, want);
}

static void test_processes_and_threads(void **state)
{
    (void)state;
    /* 640 attempts each; the server's own clock for GCRA (one new request
     * per 36 s: none during the run), a pinned one for the others. */
    rk_limit gcra = {.name = "g", .limit = 100, .period_ms = 3600000};
    hammer_run(&gcra, 0, 100);
    rk_limit sliding = {.name = "s", .algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 100, .period_ms = 60000};
    hammer_run(&sliding, T0, 100);
    rk_limit fixed = {.name = "f", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 100, .period_ms = 60000};
    hammer_run(&fixed, T0, 100);
    rk_limit bucket = {.name = "b", .algorithm = RK_LIMIT_TOKEN_BUCKET, .limit = 100, .period_ms = 60000};
    hammer_run(&bucket, T0, 100);
}

/* ---- concurrency leases --------------------------------------------------------- */

static void test_leases(void **state)
{
    (void)state;
    rk_limit lim = {.name = "inflight", .algorithm = RK_LIMIT_CONCURRENCY, .limit = 2, .period_ms = 5000};
    rk_limiter *l = limiter_new(&lim, 1);
    rk_limit_result a, b, c;
    assert_int_equal(rk_limiter_check(l, "w", 1, &a), RK_OK);
    assert_true(a.allowed);
    assert_int_equal(strlen(a.lease), RK_LEASE_ID_BYTES);
    assert_int_equal(rk_limiter_check(l, "w", 1, &b), RK_OK);
    assert_true(b.allowed);
    assert_string_not_equal(a.lease, b.lease);
    assert_int_equal(rk_limiter_check(l, "w", 1, &c), RK_OK);
    assert_false(c.allowed);
    assert_string_equal(c.lease, "");
    assert_true(c.retry_after_ms > 0 && c.retry_after_ms <= 5000);
    assert_int_equal(rk_limiter_release(l, "w", a.lease), RK_OK);
    assert_int_equal(rk_limiter_release(l, "w", a.lease), RK_OK); /* twice: harmless */
    assert_int_equal(rk_limiter_check(l, "w", 1, &c), RK_OK);
    assert_true(c.allowed);
    assert_int_equal(rk_limiter_check(l, "w", 2, &c), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_release(l, "w", "not-a-lease"), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_release(l, "w", NULL), RK_ERR_INVALID);
    rk_limiter_free(l);
}

static void test_leases_expire_after_crash(void **state)
{
    (void)state;
    rk_limit lim = {.name = "inflight", .algorithm = RK_LIMIT_CONCURRENCY, .limit = 3, .period_ms = 2000};
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rk_client *c = NULL;
        rk_limiter *l = NULL;
        int taken = 0;
        if (rk_client_new(&(rk_client_options){.url = rk_test_server_url(server), .key_prefix = "app"}, &c) ==
                RK_OK &&
            rk_limiter_new(c, &(rk_limiter_options){.limits = &lim, .nlimits = 1}, &l) == RK_OK) {
            for (int i = 0; i < 3; i++) {
                rk_limit_result r;
                if (rk_limiter_check(l, "job", 1, &r) == RK_OK && r.allowed) taken++;
            }
        }
        if (write(fds[1], &taken, sizeof taken) != (ssize_t)sizeof taken) _exit(1);
        for (;;) pause(); /* holds its leases until killed */
    }
    close(fds[1]);
    int taken = 0;
    assert_int_equal(read(fds[0], &taken, sizeof taken), (ssize_t)sizeof taken);
    close(fds[0]);
    assert_int_equal(taken, 3);
    rk_limiter *l = limiter_new(&lim, 1);
    rk_limit_result r;
    assert_int_equal(rk_limiter_check(l, "job", 1, &r), RK_OK);
    assert_false(r.allowed);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* Still held right after the crash... */
    assert_int_equal(rk_limiter_check(l, "job", 1, &r), RK_OK);
    assert_false(r.allowed);
    /* ...and free once the lease timeout has passed on the server clock. */
    rk__limiter_test_clock(l, 0, 2001000);
    assert_int_equal(rk_limiter_check(l, "job", 1, &r), RK_OK);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    rk_limiter_free(l);
}

/* ---- penalty, reward, reset, peek ---------------------------------------------- */

static void test_penalty_reward_reset(void **state)
{
    (void)state;
    const rk_limit limits[] = {
        {.name = "fixed", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 5, .period_ms = 60000},
        {.name = "gcra", .limit = 5, .period_ms = 60000},
        {.name = "bucket", .algorithm = RK_LIMIT_TOKEN_BUCKET, .limit = 5, .period_ms = 60000},
        {.name = "sliding", .algorithm = RK_LIMIT_SLIDING_WINDOW, .limit = 5, .period_ms = 60000},
    };
    rk_limiter *l = limiter_new(limits, 4);
    rk__limiter_test_clock(l, T0, 0);
    rk_limit_result r;
    assert_int_equal(rk_limiter_penalty(l, "p", 3, &r), RK_OK);
    assert_int_equal(rk_limiter_peek(l, "p", &r), RK_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(r.limits[i].remaining, 2);
    assert_true(r.allowed);
    assert_int_equal(rk_limiter_reward(l, "p", 2, NULL), RK_OK);
    assert_int_equal(rk_limiter_peek(l, "p", &r), RK_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(r.limits[i].remaining, 4);
    /* A penalty past the limit blocks. */
    assert_int_equal(rk_limiter_penalty(l, "p", 10, NULL), RK_OK);
    assert_int_equal(rk_limiter_check(l, "p", 1, &r), RK_OK);
    assert_false(r.allowed);
    /* Peeking consumes nothing. */
    for (int i = 0; i < 5; i++) assert_int_equal(rk_limiter_peek(l, "q", &r), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "EXISTS app:rl:{q}:fixed app:rl:{q}:gcra"), 0);
    assert_int_equal(rk_limiter_check(l, "q", 0, &r), RK_OK);
    assert_int_equal(r.remaining, 5);
    /* Reset deletes every key of the user key, in one DEL. */
    assert_int_equal(rk_test_server_integer(server, "EXISTS app:rl:{p}:fixed app:rl:{p}:gcra app:rl:{p}:bucket "
                                                    "app:rl:{p}:sliding"),
                     4);
    assert_int_equal(rk_limiter_reset(l, "p"), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "EXISTS app:rl:{p}:fixed app:rl:{p}:gcra app:rl:{p}:bucket "
                                                    "app:rl:{p}:sliding"),
                     0);
    assert_int_equal(rk_limiter_check(l, "p", 1, &r), RK_OK);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 4);
    rk_limiter_free(l);
}

/* ---- block cache -------------------------------------------------------------------- */

static int64_t fake_now_us;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now_us;
}

static void test_block_cache(void **state)
{
    (void)state;
    rk_limit lim = {.limit = 2, .period_ms = 10000};
    rk_limiter *l = NULL;
    assert_int_equal(rk_limiter_new(client, &(rk_limiter_options){.limits = &lim, .nlimits = 1, .block_cache = true},
                                    &l),
                     RK_OK);
    fake_now_us = 1000000;
    rk__limiter_local_clock(l, fake_clock, NULL);
    rk__limiter_test_clock(l, T0, 0);
    rk_limit_result r;
    assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK);
    assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK);
    assert_true(r.allowed);
    assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK);
    assert_false(r.allowed);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    assert_int_equal(r.retry_after_ms, 5000); /* T = 5 s */
    rk_test_server_ok(server, "CONFIG RESETSTAT");
    for (int i = 0; i < 100; i++) {
        fake_now_us = 1000000 + (int64_t)i * 49990; /* up to 4.95 s later */
        assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK);
        assert_false(r.allowed);
        assert_int_equal(r.path, RK_LIMIT_PATH_BLOCK_CACHE);
        assert_int_equal(r.retry_after_ms, (5000000 - (int64_t)i * 49990 + 999) / 1000);
    }
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "eval"), 0);
    /* A peek and another key still ask Redis. */
    assert_int_equal(rk_limiter_peek(l, "b", &r), RK_OK);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    assert_int_equal(rk_limiter_check(l, "other", 1, &r), RK_OK);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    /* At the end of the block, Redis again (and it allows). */
    fake_now_us = 1000000 + 5000000;
    rk__limiter_test_clock(l, T0 + 5000000, 0);
    assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    assert_true(r.allowed);
    rk_limiter_metrics m;
    assert_int_equal(rk_limiter_metrics_get(l, &m), RK_OK);
    assert_int_equal(m.block_cache_hits, 100);
    assert_int_equal(m.limited, 101);

    /* Another limiter with other limits on the same keys has its own
     * block cache: a key blocked for one is asked of Redis by the other. */
    rk_limit more = {.limit = 50, .period_ms = 10000};
    rk_limiter *other = NULL;
    assert_int_equal(rk_limiter_new(client, &(rk_limiter_options){.limits = &more, .nlimits = 1, .block_cache = true},
                                    &other),
                     RK_OK);
    rk__limiter_local_clock(other, fake_clock, NULL);
    rk__limiter_test_clock(other, T0 + 5000000, 0);
    assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK); /* l: blocked again, cached */
    assert_false(r.allowed);
    assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK);
    assert_int_equal(r.path, RK_LIMIT_PATH_BLOCK_CACHE);
    assert_int_equal(rk_limiter_check(other, "b", 1, &r), RK_OK);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    /* ... and a reward lifts this process's block at once. */
    assert_int_equal(rk_limiter_reward(l, "b", 1, NULL), RK_OK);
    assert_int_equal(rk_limiter_check(l, "b", 1, &r), RK_OK);
    assert_int_equal(r.path, RK_LIMIT_PATH_REDIS);
    assert_true(r.allowed);
    rk_limiter_free(other);
    rk_limiter_free(l);
}

/* ---- shadow mode and metrics -------------------------------------------------- */

static void test_shadow_and_metrics(void **state)
{
    (void)state;
    rk_limit lim = {.limit = 10, .period_ms = 60000};
    rk_limiter *l = NULL;
    assert_int_equal(rk_limiter_new(client,
                                    &(rk_limiter_options){.ns = "shadow", .limits = &lim, .nlimits = 1, .shadow = true},
                                    &l),
                     RK_OK);
    rk__limiter_test_clock(l, T0, 0);
    rk_limit_result r;
    int shadowed = 0;
    for (int i = 0; i < 15; i++) {
        assert_int_equal(rk_limiter_check(l, "s", 1, &r), RK_OK);
        assert_true(r.allowed);
        if (r.shadow_limited) shadowed++;
    }
    assert_int_equal(shadowed, 5);
    rk_limiter_metrics m;
    assert_int_equal(rk_limiter_metrics_get(l, &m), RK_OK);
    assert_int_equal(m.allowed, 15);
    assert_int_equal(m.shadow_limited, 5);
    assert_int_equal(m.limited, 0);
    assert_int_equal(m.near_limit, 3); /* 8, 9 and 10 of 10 used */

    /* The Prometheus text carries the families, by namespace only. */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    assert_non_null(strstr(text, "redkit_ratelimit_shadow_limited_total{ns=\"shadow\"} 5"));
    assert_non_null(strstr(text, "redkit_ratelimit_allowed_total{ns=\"shadow\"} 15"));
    assert_null(strstr(text, "\"s\""));
    rk_free(text);
    rk_limiter_free(l);
}

static void test_noscript(void **state)
{
    (void)state;
    rk_limit lim = {.limit = 3, .period_ms = 60000};
    rk_limiter *l = limiter_new(&lim, 1);
    assert_int_equal(count_allowed(l, "n", 1), 1);
    rk_test_server_ok(server, "SCRIPT FLUSH");
    assert_int_equal(count_allowed(l, "n", 5), 2);
    rk_limiter_free(l);
}

/* A key of the wrong type (someone else's data) is a server error, which
 * the default policy answers by allowing: and the data is left alone. */
static void test_foreign_key(void **state)
{
    (void)state;
    rk_limit lim = {.name = "x", .algorithm = RK_LIMIT_CONCURRENCY, .limit = 3, .period_ms = 60000};
    rk_limiter *l = limiter_new(&lim, 1);
    rk_test_server_ok(server, "SET app:rl:{f}:x keep");
    rk_limit_result r;
    assert_int_equal(rk_limiter_check(l, "f", 1, &r), RK_OK);
    assert_true(r.allowed);
    assert_int_equal(r.path, RK_LIMIT_PATH_FAIL_OPEN);
    assert_int_equal(r.redis_status, RK_ERR_SERVER);
    redisReply *v = rk_test_server_command(server, "GET app:rl:{f}:x");
    assert_non_null(v);
    assert_string_equal(v->str, "keep");
    freeReplyObject(v);
    rk_limiter_free(l);
}

static void test_bad_input(void **state)
{
    (void)state;
    rk_limit lim = {.limit = 3, .period_ms = 60000};
    rk_limiter *l = limiter_new(&lim, 1);
    rk_limit_result r;
    assert_int_equal(rk_limiter_check(NULL, "k", 1, &r), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_check(l, NULL, 1, &r), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_check(l, "", 1, &r), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_check(l, "k", -1, &r), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_check(l, "k", (int64_t)1 << 41, &r), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_check(l, "k", 1, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_peek(l, "", &r), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_penalty(l, "k", -3, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_reward(l, NULL, 1, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_reset(l, ""), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_reset(NULL, "k"), RK_ERR_INVALID);
    assert_int_equal(rk_limiter_release(l, "", "0123456789abcdef0123456789abcdef"), RK_ERR_INVALID);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(rk_limiter_check(l, big, 1, &r), RK_ERR_TOO_LARGE);
    /* Keys with braces, colons and spaces are just bytes. */
    assert_int_equal(rk_limiter_check(l, "a}{b: c", 1, &r), RK_OK);
    assert_true(r.allowed);
    assert_int_equal(rk_test_server_integer(server, "DBSIZE"), 1);
    rk_limiter_metrics m;
    assert_int_equal(rk_limiter_metrics_get(l, &m), RK_OK);
    assert_int_equal(m.errors, 11);
    rk_limiter_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_exact_counts_per_algorithm, rk_test_group_flush),
        cmocka_unit_test_setup(test_server_clock, rk_test_group_flush),
        cmocka_unit_test_setup(test_gcra_formula, rk_test_group_flush),
        cmocka_unit_test_setup(test_cloudflare_example, rk_test_group_flush),
        cmocka_unit_test_setup(test_three_limits_atomic, rk_test_group_flush),
        cmocka_unit_test_setup(test_processes_and_threads, rk_test_group_flush),
        cmocka_unit_test_setup(test_leases, rk_test_group_flush),
        cmocka_unit_test_setup(test_leases_expire_after_crash, rk_test_group_flush),
        cmocka_unit_test_setup(test_penalty_reward_reset, rk_test_group_flush),
        cmocka_unit_test_setup(test_block_cache, rk_test_group_flush),
        cmocka_unit_test_setup(test_shadow_and_metrics, rk_test_group_flush),
        cmocka_unit_test_setup(test_noscript, rk_test_group_flush),
        cmocka_unit_test_setup(test_foreign_key, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_input, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
