/*
 * revoke_test.c — revocations heard by every process: an rk_apikeys
 * handle subscribes (through rk_pubsub) to its namespace's invalidation
 * channel and drops a revoked key from its process's memory when another
 * handle, on another client or in another process, revokes it; its
 * answers are demoted to stale when the subscriber connection is killed,
 * and a fork() child subscribes anew.
 *
 * Every handle here keeps answers fresh in memory for 10 minutes, so a
 * verify that answers REVOKED soon after another handle's revoke can only
 * owe it to the invalidation message. The time from revoke's return to
 * the other handle hearing it is printed (no timing assertion).
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "apikeys.h" /* src/: rk__apikeys_subscribed */
#include "support/clock.h"
#include "support/fixture.h"
#include "support/fork_check.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

#define PREFIX "shop"
#define FRESH_MS 600000 /* only an invalidation can end a fresh answer in a test */

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                       .client_options = {.key_prefix = PREFIX, .pool_size = 8,
                                                                          .reconnect_base_ms = 10,
                                                                          .reconnect_max_ms = 200}});
}

/* The "database": every well-formed key is valid, owned by "owner". */
static rk_status lookup(const char *hash, rk_apikeys_record *rec, void *user)
{
    (void)hash;
    (void)user;
    return rk_apikeys_record_set(rec, "owner", 5, 0);
}

static rk_apikeys *keys_new(rk_client *c)
{
    rk_apikeys *ak = NULL;
    rk_status st = rk_apikeys_new(c, &(rk_apikeys_options){.lookup = lookup, .fresh_ms = FRESH_MS}, &ak);
    if (st != RK_OK) fail_msg("rk_apikeys_new: %s: %s", rk_strerror(st), rk_last_error());
    return ak;
}

static rk_apikey_verdict verify(rk_apikeys *ak, const char *key, rk_apikey_layer *layer)
{
    rk_apikey_result r;
    rk_status st = rk_apikeys_verify(ak, key, &r);
    if (st != RK_OK) fail_msg("verify: %s: %s", rk_strerror(st), rk_last_error());
    if (layer) *layer = r.layer;
    rk_apikey_verdict v = r.verdict;
    rk_apikeys_result_clear(&r);
    return v;
}

static rk_apikeys_metrics metrics(rk_apikeys *ak)
{
    rk_apikeys_metrics m;
    assert_int_equal(rk_apikeys_metrics_get(ak, &m), RK_OK);
    return m;
}

static void must_subscribe(rk_apikeys *ak)
{
    rk_status st = rk__apikeys_subscribed(ak, 5000);
    if (st != RK_OK) fail_msg("subscription: %s: %s", rk_strerror(st), rk_last_error());
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- another client ----------------------------------------------------------- */

#define ROUNDS 20

static void test_heard_by_other_client(void **state)
{
    (void)state;
    rk_client *other = rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(server),
                                                              .key_prefix = PREFIX});
    rk_apikeys *here = keys_new(client), *there = keys_new(other);
    must_subscribe(there);
    /* The channel is under the client's prefix and the namespace. */
    redisReply *numsub = rk_test_server_command(server, "PUBSUB NUMSUB %s", PREFIX ":apikey#invalidate");
    assert_non_null(numsub);
    assert_int_equal(numsub->type, REDIS_REPLY_ARRAY);
    assert_true(numsub->element[1]->integer >= 1);
    freeReplyObject(numsub);

    int64_t heard_us[ROUNDS], revoke_us[ROUNDS];
    int early = 0; /* rounds where the other handle had heard it before revoke returned */
    for (int round = 0; round < ROUNDS; round++) {
        char key[RK_APIKEYS_KEY_BUF];
        assert_int_equal(rk_apikeys_generate(here, key, NULL), RK_OK);
        rk_apikey_layer layer;
        assert_int_equal(verify(there, key, NULL), RK_APIKEY_VALID);
        assert_int_equal(verify(there, key, &layer), RK_APIKEY_VALID);
        assert_int_equal(layer, RK_APIKEY_LAYER_PROCESS); /* held fresh for 10 minutes */
        uint64_t before = metrics(there).invalidations;

        int64_t t0 = now_us();
        assert_int_equal(rk_apikeys_revoke(here, key), RK_OK);
        int64_t returned = now_us();
        bool heard = false;
        int spins = 0;
        for (; spins < 100000 && !(heard = metrics(there).invalidations > before); spins++)
            if (spins > 1000) rk_test_sleep_ms(1); /* spin briefly, then sleep: bounded in count */
        heard_us[round] = now_us() - t0;
        revoke_us[round] = returned - t0;
        if (spins == 0) early++;
        assert_true(heard);
        assert_int_equal(verify(there, key, &layer), RK_APIKEY_REVOKED);
        assert_int_equal(layer, RK_APIKEY_LAYER_REDIS); /* the tombstone, read once the key was dropped */
    }
    qsort(heard_us, ROUNDS, sizeof heard_us[0], cmp64);
    qsort(revoke_us, ROUNDS, sizeof revoke_us[0], cmp64);
    print_message("revocation heard by another client, from the revoke call: min %lld us, median %lld us, max %lld "
                  "us; revoke itself: median %lld us; heard before revoke returned in %d of %d rounds\n",
                  (long long)heard_us[0], (long long)heard_us[ROUNDS / 2], (long long)heard_us[ROUNDS - 1],
                  (long long)revoke_us[ROUNDS / 2], early, ROUNDS);
    rk_apikeys_free(there);
    rk_apikeys_free(here);
    rk_client_free(other);
}

/* ---- two processes, eight threads each --------------------------------------- */

#define THREADS 8
#define MAX_AFTER 20000 /* verifies after the revoke, 50 us apart: >= 1 s */

typedef struct looper {
    rk_apikeys *ak;
    const char *key;
    atomic_bool *revoked; /* set once revoke returned (here, or in the other process) */
    atomic_long done;     /* verifies made */
    long after;           /* verifies that started after *revoked, until the first REVOKED */
    int64_t first_revoked_us; /* when, after *revoked was seen */
    bool back_to_valid, failed, never;
} looper;

static void *verify_loop(void *arg)
{
    looper *l = arg;
    int64_t since = 0;
    bool seen_revoked = false;
    for (long i = 0; i < 100000000; i++) {
        bool after = atomic_load(l->revoked);
        if (after && !since) since = now_us();
        rk_apikey_result r;
        if (rk_apikeys_verify(l->ak, l->key, &r) != RK_OK) {
            l->failed = true;
            return NULL;
        }
        rk_apikey_verdict v = r.verdict;
        rk_apikeys_result_clear(&r);
        atomic_fetch_add(&l->done, 1);
        if (v == RK_APIKEY_REVOKED && !seen_revoked) {
            seen_revoked = true;
            l->first_revoked_us = since ? now_us() - since : 0;
        }
        if (seen_revoked && v == RK_APIKEY_VALID) l->back_to_valid = true;
        if (after && !seen_revoked && ++l->after > MAX_AFTER) {
            l->never = true;
            return NULL;
        }
        if (after && seen_revoked) return NULL;
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    l->never = true;
    return NULL;
}

/* Start THREADS loopers and wait (at most 5 s) until each verified 100 times. */
static void start_loopers(looper *l, pthread_t *t, rk_apikeys *ak, const char *key, atomic_bool *revoked)
{
    for (int i = 0; i < THREADS; i++) {
        l[i] = (looper){.ak = ak, .key = key, .revoked = revoked};
        if (pthread_create(&t[i], NULL, verify_loop, &l[i]) != 0) abort();
    }
    for (int w = 0; w < 500; w++) {
        bool all = true;
        for (int i = 0; i < THREADS; i++) all = all && atomic_load(&l[i].done) >= 100;
        if (all) break;
        rk_test_sleep_ms(10);
    }
}

/* Join the loopers; the worst count of verifies after the revoke and the
 * latest first REVOKED (us after the flag), or -1 on any failure. */
static long join_loopers(looper *l, pthread_t *t, int64_t *latest_us)
{
    long worst = 0;
    bool bad = false;
    *latest_us = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        if (l[i].failed || l[i].back_to_valid || l[i].never) bad = true;
        if (l[i].after > worst) worst = l[i].after;
        if (l[i].first_revoked_us > *latest_us) *latest_us = l[i].first_revoked_us;
    }
    return bad ? -1 : worst;
}

static void test_two_processes(void **state)
{
    (void)state;
    rk_test_fork_skip_under_tsan();
    rk_apikeys *ak = keys_new(client); /* made before fork(): the child inherits it */
    must_subscribe(ak);
    char key[RK_APIKEYS_KEY_BUF];
    assert_int_equal(rk_apikeys_generate(ak, key, NULL), RK_OK);
    assert_int_equal(verify(ak, key, NULL), RK_APIKEY_VALID);

    int to_child[2], to_parent[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        /* The inherited handle notices fork() and subscribes anew. */
        if (rk__apikeys_subscribed(ak, 5000) != RK_OK) _exit(10);
        rk_apikeys_metrics m;
        rk_apikeys_metrics_get(ak, &m);
        if (m.subscription_losses != 1) _exit(11); /* answers inherited were demoted */
        atomic_bool flag = false;
        rk_test_pipe_flag pf = {.fd = to_child[0], .flag = &flag};
        pthread_t w;
        if (pthread_create(&w, NULL, rk_test_pipe_watch, &pf) != 0) _exit(12);
        looper l[THREADS];
        pthread_t t[THREADS];
        start_loopers(l, t, ak, key, &flag);
        if (write(to_parent[1], "r", 1) != 1) _exit(13);
        int64_t latest;
        long worst = join_loopers(l, t, &latest);
        pthread_join(w, NULL);
        printf("child: every thread answered REVOKED after at most %ld verifies, %lld us after it heard revoke "
               "returned\n", worst, (long long)latest);
        fflush(stdout);
        rk_apikeys_free(ak);
        _exit(worst < 0 ? 1 : 0);
    }
    close(to_child[0]);
    close(to_parent[1]);
    atomic_bool revoked = false;
    looper l[THREADS];
    pthread_t t[THREADS];
    start_loopers(l, t, ak, key, &revoked);
    char b;
    assert_int_equal(read(to_parent[0], &b, 1), 1); /* the child's threads are verifying */
    assert_int_equal(rk_apikeys_revoke(ak, key), RK_OK);
    atomic_store(&revoked, true);
    assert_int_equal(write(to_child[1], "r", 1), 1);
    int64_t latest;
    long worst = join_loopers(l, t, &latest);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(to_child[1]);
    close(to_parent[0]);
    print_message("parent: every thread answered REVOKED after at most %ld verifies\n", worst);
    assert_true(worst >= 0);
    assert_true(worst <= 1); /* this process dropped the key as revoke returned */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The parent's subscriber was not disturbed by the child. */
    assert_int_equal(metrics(ak).subscription_losses, 0);
    rk_apikeys_free(ak);
}

/* ---- the subscriber connection killed --------------------------------------- */

static void test_subscriber_killed(void **state)
{
    (void)state;
    rk_apikeys *ak = keys_new(client);
    must_subscribe(ak);
    char key[RK_APIKEYS_KEY_BUF];
    assert_int_equal(rk_apikeys_generate(ak, key, NULL), RK_OK);
    rk_apikey_layer layer;
    assert_int_equal(verify(ak, key, NULL), RK_APIKEY_VALID);
    assert_int_equal(verify(ak, key, &layer), RK_APIKEY_VALID);
    assert_int_equal(layer, RK_APIKEY_LAYER_PROCESS);

    rk_test_server_ok(server, "CLIENT KILL TYPE pubsub");
    bool lost = false;
    for (int i = 0; i < 500 && !(lost = metrics(ak).subscription_losses == 1); i++) rk_test_sleep_ms(10);
    assert_true(lost);
    must_subscribe(ak); /* subscribed again */
    /* Demoted: no longer served fresh from memory, checked against Redis. */
    assert_int_equal(verify(ak, key, &layer), RK_APIKEY_VALID);
    assert_int_equal(layer, RK_APIKEY_LAYER_REDIS);
    assert_int_equal(verify(ak, key, &layer), RK_APIKEY_VALID);
    assert_int_equal(layer, RK_APIKEY_LAYER_PROCESS); /* learned again, fresh again */

    /* And the new subscription hears revocations. */
    rk_client *other = rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(server),
                                                              .key_prefix = PREFIX});
    rk_apikeys *there = keys_new(other);
    assert_int_equal(rk_apikeys_revoke(there, key), RK_OK);
    bool heard = false;
    for (int i = 0; i < 500 && !(heard = metrics(ak).invalidations == 1); i++) rk_test_sleep_ms(10);
    assert_true(heard);
    assert_int_equal(verify(ak, key, NULL), RK_APIKEY_REVOKED);

    char *text = NULL;
    size_t len;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    assert_non_null(strstr(text, "redkit_apikeys_subscription_losses_total{ns=\"apikey\"} 1"));
    assert_non_null(strstr(text, "redkit_pubsub_lost_total{ns=\"apikey\"} 1"));
    rk_free(text);
    rk_apikeys_free(there);
    rk_client_free(other);
    rk_apikeys_free(ak);
}

/* Demoted answers still stand in while Redis is down. */
static void test_demoted_serve_degraded(void **state)
{
    (void)state;
    rk_apikeys *ak = keys_new(client);
    must_subscribe(ak);
    char key[RK_APIKEYS_KEY_BUF];
    assert_int_equal(rk_apikeys_generate(ak, key, NULL), RK_OK);
    assert_int_equal(verify(ak, key, NULL), RK_APIKEY_VALID);
    assert_true(rk_test_server_signal(server, SIGKILL)); /* the subscriber is lost with it */
    bool lost = false;
    for (int i = 0; i < 500 && !(lost = metrics(ak).subscription_losses == 1); i++) rk_test_sleep_ms(10);
    assert_true(lost);
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, key, &r), RK_OK);
    assert_int_equal(r.verdict, RK_APIKEY_VALID);
    assert_int_equal(r.layer, RK_APIKEY_LAYER_PROCESS);
    assert_true(r.degraded); /* served stale, flagged */
    rk_apikeys_result_clear(&r);
    assert_true(rk_test_server_restart(server, NULL));
    must_subscribe(ak);
    rk_apikeys_free(ak);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_heard_by_other_client, rk_test_group_flush),
        cmocka_unit_test_setup(test_two_processes, rk_test_group_flush),
        cmocka_unit_test_setup(test_subscriber_killed, rk_test_group_flush),
        cmocka_unit_test_setup(test_demoted_serve_degraded, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
