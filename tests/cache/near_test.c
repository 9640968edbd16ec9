/*
 * near_test.c — the near cache's store on its own (src/cache/near.c), with
 * time moved by hand and no server: hits and copies, the fill protocol and
 * the races it closes (an invalidation or a flush between a fill's begin
 * and end cancels it), epochs and the live switch, expiry by the value's
 * TTL and by the local cap, the byte and entry budgets under a fill storm
 * (never exceeded; least recently used goes first), concurrent use from
 * several threads, and an allocation-failure walk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

#include "alloc.h"
#include "near.h"
#include "support/fail_alloc.h"

static const rk__near_limits limits = {.max_bytes = 1 << 20, .max_entries = 10000, .max_ttl_ms = 60000};

static rk__near *live_cache(const rk__near_limits *l)
{
    rk__near *n = rk__near_new(l);
    assert_non_null(n);
    assert_false(rk__near_is_live(n));
    rk__near_flush(n, RK__NEAR_FLUSH_CONNECTION, true);
    assert_true(rk__near_is_live(n));
    return n;
}

static bool fill(rk__near *n, const char *key, const char *value, int64_t now, int64_t expires)
{
    uint64_t t = rk__near_fill_begin(n, key, strlen(key));
    if (!t) return false;
    return rk__near_fill_end(n, key, strlen(key), t, value, strlen(value), now, expires);
}

static void assert_hit(rk__near *n, const char *key, int64_t now, const char *want)
{
    void *v;
    size_t len;
    assert_int_equal(rk__near_get(n, key, strlen(key), now, &v, &len), RK_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    assert_int_equal(((char *)v)[len], '\0');
    rk__free(v);
}

static void assert_miss(rk__near *n, const char *key, int64_t now)
{
    void *v = (void *)1;
    size_t len = 1;
    assert_int_equal(rk__near_get(n, key, strlen(key), now, &v, &len), RK_MISS);
    assert_null(v);
    assert_int_equal(len, 0);
}

static void test_limits_refused(void **state)
{
    (void)state;
    assert_null(rk__near_new(NULL));
    assert_null(rk__near_new(&(rk__near_limits){.max_bytes = 0, .max_entries = 1, .max_ttl_ms = 1}));
    assert_null(rk__near_new(&(rk__near_limits){.max_bytes = 1, .max_entries = 0, .max_ttl_ms = 1}));
    assert_null(rk__near_new(&(rk__near_limits){.max_bytes = 1, .max_entries = 1, .max_ttl_ms = 0}));
    rk__near_free(NULL);
}

static void test_fill_then_hit(void **state)
{
    (void)state;
    rk__near *n = live_cache(&limits);
    assert_miss(n, "p:c:k", 1000);
    assert_true(fill(n, "p:c:k", "value", 1000, 0));
    assert_hit(n, "p:c:k", 1001, "value");
    /* A copy each time: changing one does not change the store. */
    void *v;
    size_t len;
    assert_int_equal(rk__near_get(n, "p:c:k", 5, 1002, &v, &len), RK_OK);
    ((char *)v)[0] = 'X';
    rk__free(v);
    assert_hit(n, "p:c:k", 1003, "value");
    /* Binary keys and values, and the empty value. */
    const char key[] = {'p', 0, 'k'};
    const char val[] = {0, 1, 0, 2};
    uint64_t t = rk__near_fill_begin(n, key, sizeof key);
    assert_true(rk__near_fill_end(n, key, sizeof key, t, val, sizeof val, 1000, 0));
    assert_int_equal(rk__near_get(n, key, sizeof key, 1000, &v, &len), RK_OK);
    assert_int_equal(len, sizeof val);
    assert_memory_equal(v, val, sizeof val);
    rk__free(v);
    assert_true(fill(n, "p:c:empty", "", 1000, 0));
    assert_hit(n, "p:c:empty", 1000, "");

    rk__near_stats s;
    rk__near_stats_get(n, &s);
    assert_int_equal(s.fills, 3);
    assert_int_equal(s.hits, 5);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.entries, 3);
    rk__near_free(n);
}

/* Rule 2: nothing is stored or served while not live. */
static void test_not_live_stores_and_serves_nothing(void **state)
{
    (void)state;
    rk__near *n = rk__near_new(&limits);
    assert_int_equal(rk__near_fill_begin(n, "k", 1), 0);
    assert_false(rk__near_fill_end(n, "k", 1, 0, "v", 1, 0, 0));
    assert_miss(n, "k", 0);

    rk__near_flush(n, RK__NEAR_FLUSH_CONNECTION, true);
    assert_true(fill(n, "k", "v", 0, 0));
    /* The stream breaks: everything goes, and nothing comes back until it
     * is live again. */
    rk__near_flush(n, RK__NEAR_FLUSH_CONNECTION, false);
    assert_miss(n, "k", 0);
    assert_false(fill(n, "k", "v", 0, 0));
    rk__near_flush(n, RK__NEAR_FLUSH_CONNECTION, true);
    assert_miss(n, "k", 0);
    assert_true(fill(n, "k", "v2", 0, 0));
    assert_hit(n, "k", 0, "v2");

    rk__near_stats s;
    rk__near_stats_get(n, &s);
    assert_int_equal(s.flushes[RK__NEAR_FLUSH_CONNECTION], 3);
    rk__near_free(n);
}

/* Rule 1: an invalidation that overtakes the reply of the filling read
 * cancels the fill; so does any flush (a new epoch), even one that goes
 * live again at once. */
static void test_invalidation_overtaking_the_fill_cancels_it(void **state)
{
    (void)state;
    rk__near *n = live_cache(&limits);
    uint64_t t = rk__near_fill_begin(n, "k", 1);
    assert_int_not_equal(t, 0);
    assert_miss(n, "k", 0);            /* a placeholder is no value */
    rk__near_invalidate(n, "k", 1);    /* the server says k changed */
    assert_false(rk__near_fill_end(n, "k", 1, t, "old", 3, 0, 0));
    assert_miss(n, "k", 0);

    t = rk__near_fill_begin(n, "k", 1);
    rk__near_flush(n, RK__NEAR_FLUSH_SERVER, true);
    assert_false(rk__near_fill_end(n, "k", 1, t, "old", 3, 0, 0));
    assert_miss(n, "k", 0);

    /* An invalidation of another key does not cancel it. */
    t = rk__near_fill_begin(n, "k", 1);
    rk__near_invalidate(n, "j", 1);
    assert_true(rk__near_fill_end(n, "k", 1, t, "new", 3, 0, 0));
    assert_hit(n, "k", 0, "new");
    /* An invalidation after the fill removes the value. */
    rk__near_invalidate(n, "k", 1);
    assert_miss(n, "k", 0);

    /* Two fills of one key: the later one wins, the earlier is dropped. */
    uint64_t t1 = rk__near_fill_begin(n, "k", 1);
    uint64_t t2 = rk__near_fill_begin(n, "k", 1);
    assert_false(rk__near_fill_end(n, "k", 1, t1, "first", 5, 0, 0));
    assert_true(rk__near_fill_end(n, "k", 1, t2, "second", 6, 0, 0));
    assert_hit(n, "k", 0, "second");
    /* Cancelling (NULL value) removes the placeholder and counts nothing. */
    t = rk__near_fill_begin(n, "c", 1);
    assert_false(rk__near_fill_end(n, "c", 1, t, NULL, 0, 0, 0));

    rk__near_stats s;
    rk__near_stats_get(n, &s);
    assert_int_equal(s.fills_cancelled, 3);
    assert_int_equal(s.fills, 2);
    assert_int_equal(s.invalidations, 3);
    assert_int_equal(s.flushes[RK__NEAR_FLUSH_SERVER], 1);
    rk__near_free(n);
}

/* Rule 3: the value's own expiry, or the local cap, whichever is first. */
static void test_expiry_and_cap(void **state)
{
    (void)state;
    rk__near *n = live_cache(&(rk__near_limits){.max_bytes = 1 << 20, .max_entries = 10000, .max_ttl_ms = 500});
    assert_true(fill(n, "ttl", "v", 1000, 1200)); /* Redis TTL 200 ms */
    assert_true(fill(n, "cap", "v", 1000, 0));    /* no TTL: the 500 ms cap */
    assert_true(fill(n, "far", "v", 1000, 9000)); /* Redis TTL beyond the cap */
    assert_hit(n, "ttl", 1199, "v");
    assert_miss(n, "ttl", 1200);
    assert_hit(n, "cap", 1499, "v");
    assert_hit(n, "far", 1499, "v");
    assert_miss(n, "cap", 1500);
    assert_miss(n, "far", 1500);
    /* Already expired when the reply came: not stored. */
    assert_false(fill(n, "late", "v", 2000, 1999));
    rk__near_stats s;
    rk__near_stats_get(n, &s);
    assert_int_equal(s.expirations, 3);
    assert_int_equal(s.entries, 0);
    rk__near_free(n);
}

/* The budgets hold after a storm of fills of all sizes; the least
 * recently used entries are the ones that go. */
static void test_budgets_under_a_fill_storm(void **state)
{
    (void)state;
    const rk__near_limits small = {.max_bytes = 256 * 1024, .max_entries = 640, .max_ttl_ms = 60000};
    rk__near *n = live_cache(&small);
    static char value[8192];
    memset(value, 'x', sizeof value);
    for (int i = 0; i < 20000; i++) {
        char key[32];
        snprintf(key, sizeof key, "p:c:%d", i);
        size_t len = (size_t)(i * 7919) % sizeof value;
        uint64_t t = rk__near_fill_begin(n, key, strlen(key));
        rk__near_fill_end(n, key, strlen(key), t, value, len, 0, 0);
        rk__near_stats s;
        if (i % 997 == 0) {
            rk__near_stats_get(n, &s);
            assert_true(s.bytes <= small.max_bytes);
            assert_true(s.entries <= small.max_entries);
        }
    }
    rk__near_stats s;
    rk__near_stats_get(n, &s);
    assert_true(s.bytes <= small.max_bytes);
    assert_true(s.entries <= small.max_entries);
    assert_true(s.evictions > 0);
    assert_true(s.entries > 0);

    /* A value over one shard's share of the budget is never stored. */
    static char big[8192];
    uint64_t t = rk__near_fill_begin(n, "p:c:big", 7);
    assert_false(rk__near_fill_end(n, "p:c:big", 7, t, big, sizeof big, 0, 0));
    rk__near_free(n);

    /* Least recently used first: in a cache of one entry per shard, the
     * entry read last survives a fill of another key of its shard. */
    n = live_cache(&(rk__near_limits){.max_bytes = 1 << 20, .max_entries = 2 * RK__NEAR_SHARDS, .max_ttl_ms = 60000});
    char keys[400][16];
    for (int i = 0; i < 400; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        fill(n, keys[i], keys[i], 0, 0);
    }
    rk__near_stats_get(n, &s);
    assert_true(s.entries <= 2 * RK__NEAR_SHARDS);
    /* Find two keys still held; read the older, fill many more, and the
     * one read stays longer than the one not read, in at least one shard. */
    int survivors_read = 0, survivors_unread = 0;
    for (int i = 0; i < 400; i++) {
        void *v;
        size_t len;
        if (rk__near_get(n, keys[i], strlen(keys[i]), 0, &v, &len) == RK_OK) rk__free(v); /* touch */
    }
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof key, "new%d", i);
        fill(n, key, key, 0, 0);
    }
    for (int i = 0; i < 400; i++) {
        void *v;
        size_t len;
        if (rk__near_get(n, keys[i], strlen(keys[i]), 0, &v, &len) == RK_OK) {
            rk__free(v);
            survivors_read++;
        }
    }
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof key, "new%d", i);
        void *v;
        size_t len;
        if (rk__near_get(n, key, strlen(key), 0, &v, &len) == RK_OK) {
            rk__free(v);
            survivors_unread++;
        }
    }
    assert_true(survivors_read + survivors_unread <= 2 * RK__NEAR_SHARDS);
    assert_true(survivors_unread > 0);
    rk__near_free(n);
}

/* ---- Threads ------------------------------------------------------------------ */

typedef struct worker {
    rk__near *n;
    int id;
    long wrong;
} worker;

/* Each key's value is the key itself, so any read can be checked. */
static void *churn(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 20000; i++) {
        char key[32];
        snprintf(key, sizeof key, "p:c:%d", (i * 31 + w->id * 7) % 500);
        void *v;
        size_t len;
        rk_status st = rk__near_get(w->n, key, strlen(key), 0, &v, &len);
        if (st == RK_OK) {
            if (len != strlen(key) || memcmp(v, key, len) != 0) w->wrong++;
            rk__free(v);
        } else if (i % 3 == 0) {
            uint64_t t = rk__near_fill_begin(w->n, key, strlen(key));
            rk__near_fill_end(w->n, key, strlen(key), t, key, strlen(key), 0, 0);
        } else if (i % 5 == 0) {
            rk__near_invalidate(w->n, key, strlen(key));
        }
        if (w->id == 0 && i % 5000 == 4999) rk__near_flush(w->n, RK__NEAR_FLUSH_OTHER, true);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    rk__near *n = live_cache(&(rk__near_limits){.max_bytes = 64 * 1024, .max_entries = 300, .max_ttl_ms = 60000});
    pthread_t th[8];
    worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){.n = n, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, churn, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].wrong, 0);
    }
    rk__near_stats s;
    rk__near_stats_get(n, &s);
    assert_true(s.hits > 0);
    assert_true(s.bytes <= 64 * 1024);
    assert_true(s.entries <= 300);
    rk__near_free(n);
}

/* ---- Out of memory ----------------------------------------------------------- */

static void test_allocation_failures(void **state)
{
    (void)state;
    int failures = 0;
    for (long at = 1; at < 200; at++) {
        rk_test_fail_arm(at);
        rk__near *n = rk__near_new(&limits);
        if (n) {
            rk__near_flush(n, RK__NEAR_FLUSH_CONNECTION, true);
            uint64_t t = rk__near_fill_begin(n, "k", 1);
            bool landed = rk__near_fill_end(n, "k", 1, t, "v", 1, 0, 0);
            void *v = NULL;
            size_t len;
            rk_status st = rk__near_get(n, "k", 1, 0, &v, &len);
            if (landed) {
                assert_true(st == RK_OK || st == RK_ERR_NOMEM);
            } else {
                assert_int_equal(st, RK_MISS);
            }
            rk__free(v);
            rk__near_free(n);
        }
        bool hit = rk_test_fail_hit();
        rk_test_fail_disarm();
        assert_int_equal(rk_test_fail_live(), 0);
        if (!hit) break;
        failures++;
    }
    assert_true(failures > RK__NEAR_SHARDS); /* every shard's buckets, and more */
}

static int install_allocator(void **state)
{
    (void)state;
    return rk_set_allocator(&rk_test_fail_allocator) == RK_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_refused),
        cmocka_unit_test(test_fill_then_hit),
        cmocka_unit_test(test_not_live_stores_and_serves_nothing),
        cmocka_unit_test(test_invalidation_overtaking_the_fill_cancels_it),
        cmocka_unit_test(test_expiry_and_cap),
        cmocka_unit_test(test_budgets_under_a_fill_storm),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, install_allocator, NULL);
}
