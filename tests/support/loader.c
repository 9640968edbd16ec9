/*
 * loader.c — kill -9 and restart under load (see loader.h).
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

#include "clock.h"
#include "loader.h"

/* One loader thread: what it is given, and what it saw. */
typedef struct loader {
    rk_cache *cache;
    const char *value;
    int id;
    atomic_bool *stop;
    atomic_bool *restarted;
    int64_t max_call_ms;
    int unexpected;          /* statuses other than ok/miss/degraded/unavailable/timeout */
    rk_status unexpected_st;
    char unexpected_msg[256];
    int ok_after_restart;
    long calls;
} loader;

static void *load(void *arg)
{
    loader *l = arg;
    char key[32];
    for (long i = 0; i < 1000000 && !atomic_load(l->stop); i++) {
        snprintf(key, sizeof key, "k%d:%ld", l->id, i % 20);
        int64_t t0 = rk_test_now_ms();
        rk_status st;
        if (i % 2) {
            char *v = NULL;
            st = rk_cache_get_str(l->cache, key, &v);
            rk_free(v);
        } else {
            st = rk_cache_set_str(l->cache, key, l->value, &(rk_cache_set_options){.ttl_s = 60});
        }
        int64_t took = rk_test_now_ms() - t0;
        if (took > l->max_call_ms) l->max_call_ms = took;
        l->calls++;
        if (st == RK_OK && atomic_load(l->restarted)) l->ok_after_restart++;
        /* A server that dies must look the same whatever the transport:
         * unavailable or timed out, never a TLS or protocol error. */
        if (st != RK_OK && st != RK_MISS && st != RK_DEGRADED && st != RK_ERR_UNAVAILABLE &&
            st != RK_ERR_TIMEOUT) {
            l->unexpected++;
            l->unexpected_st = st;
            snprintf(l->unexpected_msg, sizeof l->unexpected_msg, "%s", rk_last_error());
        }
        if (st != RK_OK && st != RK_MISS) rk_test_sleep_ms(2); /* a caller backing off a little */
    }
    return NULL;
}

void rk_test_kill_restart_under_load(rk_test_server *s, rk_cache *cache, const char *value, int64_t max_call_ms)
{
    atomic_bool stop = false, restarted = false;
    loader l[RK_TEST_LOADERS];
    pthread_t t[RK_TEST_LOADERS];
    for (int i = 0; i < RK_TEST_LOADERS; i++) {
        l[i] = (loader){.cache = cache, .value = value, .id = i, .stop = &stop, .restarted = &restarted};
        assert_int_equal(pthread_create(&t[i], NULL, load, &l[i]), 0);
    }
    rk_test_sleep_ms(300);
    assert_true(rk_test_server_signal(s, SIGKILL));
    rk_test_sleep_ms(600);
    assert_true(rk_test_server_restart(s, NULL));
    atomic_store(&restarted, true);
    /* Wait (bounded) until every thread has succeeded after the restart. */
    for (int waited = 0; waited < 10000; waited += 50) {
        bool all = true;
        for (int i = 0; i < RK_TEST_LOADERS; i++) all = all && l[i].ok_after_restart > 0;
        if (all) break;
        rk_test_sleep_ms(50);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < RK_TEST_LOADERS; i++) pthread_join(t[i], NULL);

    for (int i = 0; i < RK_TEST_LOADERS; i++) {
        if (l[i].unexpected)
            fail_msg("thread %d: %d unexpected statuses (last %s: %s)", i, l[i].unexpected,
                     rk_strerror(l[i].unexpected_st), l[i].unexpected_msg);
        assert_true(l[i].calls > 0);
        assert_true(l[i].ok_after_restart > 0);
        if (max_call_ms > 0 && l[i].max_call_ms > max_call_ms)
            fail_msg("thread %d: a call took %lld ms", i, (long long)l[i].max_call_ms);
    }
}
