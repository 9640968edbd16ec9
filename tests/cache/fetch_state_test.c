/*
 * fetch_state_test.c — what an rk_cache keeps for rk_cache_fetch() between
 * calls (src/cache/fetch_state.c), without a server: the flights
 * (single-flight: lead, join, share the outcome, refuse to wait for
 * oneself, give up at a deadline), this process's copies (kept, served
 * within the stale window, forgotten by key, by generation and by the
 * mark a call took before its read; bounded in entries and bytes), the
 * server-clock estimate, and the random draw.
 *
 * A bare struct rk_cache carries the few fields fetch_state reads; times
 * are passed in by hand, so nothing sleeps except the one test of a
 * flight waiter, whose deadline is in the past or its leader already
 * done.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "cache.h"
#include "clock.h"
#include "fetch_state.h"

#define T0 1700000000000LL

typedef struct handle {
    rk_cache c;
    char aux[16];
} handle;

/* A handle with room for copies entries in at most bytes bytes. */
static handle *new_handle(size_t copies, size_t bytes)
{
    handle *h = calloc(1, sizeof *h);
    assert_non_null(h);
    strcpy(h->aux, "p:cache#");
    h->c.aux_head = h->aux;
    h->c.aux_head_len = strlen(h->aux);
    h->c.local_copies = copies;
    h->c.local_copies_bytes = bytes;
    assert_int_equal(rk__fetch_state_new(&h->c), RK_OK);
    return h;
}

static void free_handle(handle *h)
{
    rk__fetch_state_free(&h->c);
    free(h);
}

/* A value computed at T0 with a minute of fresh life, as a fetch holds it. */
static rk__fetch_outcome value(const char *text, int64_t expires_at_ms)
{
    rk__fetch_outcome o = {.st = RK_OK, .has_meta = true};
    o.data = (char *)text;
    o.len = strlen(text);
    o.meta.expires_at_ms = expires_at_ms;
    o.meta.compute_ms = 3;
    return o;
}

/* The copy of key at now_ms within stale_ms, or NULL; frees nothing. */
static char *copy_of(handle *h, const char *key, int64_t now_ms, int64_t stale_ms, bool *stale)
{
    rk__fetch_outcome o = {0};
    if (!rk__copies_get(h->c.fetch, key, strlen(key), now_ms, stale_ms, &o)) return NULL;
    if (stale) *stale = o.stale;
    return o.data;
}

static void expect_copy(handle *h, const char *key, int64_t now_ms, int64_t stale_ms, const char *want, bool want_stale)
{
    bool stale = !want_stale;
    char *got = copy_of(h, key, now_ms, stale_ms, &stale);
    if (!got) fail_msg("no copy of %s at %+lld ms", key, (long long)(now_ms - T0));
    assert_string_equal(got, want);
    assert_int_equal(stale, want_stale);
    rk_free(got);
}

static void expect_no_copy(handle *h, const char *key, int64_t now_ms, int64_t stale_ms)
{
    char *got = copy_of(h, key, now_ms, stale_ms, NULL);
    if (got) fail_msg("unexpected copy of %s: %s", key, got);
}

static void test_lock_head(void **state)
{
    (void)state;
    handle *h = new_handle(16, 1 << 20);
    size_t len;
    const char *head = rk__fetch_lock_head(h->c.fetch, &len);
    assert_string_equal(head, "p:cache#lock:");
    assert_int_equal(len, strlen("p:cache#lock:"));
    free_handle(h);
}

/* ---- copies ------------------------------------------------------------- */

static void test_copy_served_within_window(void **state)
{
    (void)state;
    handle *h = new_handle(16, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    rk__fetch_outcome o = value("v1", T0 + 60000);
    rk__copies_put(fs, "k", 1, &o, 30000, rk__copies_mark(fs));
    expect_copy(h, "k", T0, 30000, "v1", false);
    expect_copy(h, "k", T0 + 59999, 30000, "v1", false);
    expect_copy(h, "k", T0 + 60000, 30000, "v1", true);      /* stale from expiry on */
    expect_copy(h, "k", T0 + 89999, 30000, "v1", true);
    expect_no_copy(h, "k", T0 + 90000, 30000);               /* past the window it was kept for */
    expect_no_copy(h, "k", T0 + 70000, 5000);                /* past the caller's own window */
    expect_no_copy(h, "other", T0, 30000);
    /* A hit on the same stored value widens the window, never a second copy. */
    rk__copies_put(fs, "k", 1, &o, 60000, rk__copies_mark(fs));
    expect_copy(h, "k", T0 + 100000, 60000, "v1", true);
    free_handle(h);
}

static void test_copy_forgotten(void **state)
{
    (void)state;
    handle *h = new_handle(16, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    rk__fetch_outcome o = value("v", T0 + 60000);

    /* Dropped by key. */
    rk__copies_put(fs, "a", 1, &o, 30000, rk__copies_mark(fs));
    rk__copies_drop(fs, "a", 1, NULL);
    expect_no_copy(h, "a", T0, 30000);

    /* A call that read before a forget of its key keeps no copy... */
    uint64_t mark = rk__copies_mark(fs);
    rk__copies_drop(fs, "a", 1, NULL);
    rk__copies_put(fs, "a", 1, &o, 30000, mark);
    expect_no_copy(h, "a", T0, 30000);
    /* ... while a forget of another key costs it nothing. */
    mark = rk__copies_mark(fs);
    rk__copies_drop(fs, "zzz", 3, NULL);
    rk__copies_put(fs, "a", 1, &o, 30000, mark);
    expect_copy(h, "a", T0, 30000, "v", false);
    /* The call's own forget moves its mark past it. */
    mark = rk__copies_mark(fs);
    rk__copies_drop(fs, "b", 1, &mark);
    rk__copies_put(fs, "b", 1, &o, 30000, mark);
    expect_copy(h, "b", T0, 30000, "v", false);

    /* Everything at once (a tag invalidation, a clear). */
    rk__fetch_forget_all(&h->c);
    expect_no_copy(h, "a", T0, 30000);
    expect_no_copy(h, "b", T0, 30000);
    /* A forget_all between mark and put keeps the call from keeping one. */
    mark = rk__copies_mark(fs);
    rk__fetch_forget_all(&h->c);
    rk__copies_put(fs, "c", 1, &o, 30000, mark);
    expect_no_copy(h, "c", T0, 30000);
    /* The cache's per-key hook. */
    rk__copies_put(fs, "d", 1, &o, 30000, rk__copies_mark(fs));
    rk__fetch_forget(&h->c, "d");
    expect_no_copy(h, "d", T0, 30000);
    /* NULL handles and keys are no-ops. */
    rk__fetch_forget(NULL, "d");
    rk__fetch_forget(&h->c, NULL);
    rk__fetch_forget_all(NULL);
    free_handle(h);
}

/* More forgets than the ring remembers since a mark: the call keeps no
 * copy (it cannot tell whether its key was among them). */
static void test_copy_mark_overrun(void **state)
{
    (void)state;
    handle *h = new_handle(16, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    rk__fetch_outcome o = value("v", T0 + 60000);
    uint64_t mark = rk__copies_mark(fs);
    for (int i = 0; i < 1000; i++) rk__copies_drop(fs, "other", 5, NULL);
    rk__copies_put(fs, "k", 1, &o, 30000, mark);
    expect_no_copy(h, "k", T0, 30000);
    free_handle(h);
}

static void test_copy_bounds(void **state)
{
    (void)state;
    /* Two entries: the oldest goes first. */
    handle *h = new_handle(2, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    rk__fetch_outcome o1 = value("one", T0 + 60000), o2 = value("two", T0 + 60000), o3 = value("three", T0 + 60000);
    rk__copies_put(fs, "1", 1, &o1, 30000, rk__copies_mark(fs));
    rk__copies_put(fs, "2", 1, &o2, 30000, rk__copies_mark(fs));
    rk__copies_put(fs, "3", 1, &o3, 30000, rk__copies_mark(fs));
    expect_no_copy(h, "1", T0, 30000);
    expect_copy(h, "2", T0, 30000, "two", false);
    expect_copy(h, "3", T0, 30000, "three", false);
    free_handle(h);

    /* A byte budget that holds one small value: a second evicts the
     * first, and a value larger than the whole budget is not kept (and
     * drops the older copy of its key). */
    h = new_handle(100, 150); /* one small copy costs ~110 bytes with its entry */
    fs = h->c.fetch;
    rk__copies_put(fs, "a", 1, &o1, 30000, rk__copies_mark(fs));
    expect_copy(h, "a", T0, 30000, "one", false);
    rk__copies_put(fs, "b", 1, &o2, 30000, rk__copies_mark(fs));
    expect_copy(h, "b", T0, 30000, "two", false);
    expect_no_copy(h, "a", T0, 30000);
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rk__fetch_outcome ob = value(big, T0 + 70000);
    rk__copies_put(fs, "b", 1, &ob, 30000, rk__copies_mark(fs));
    expect_no_copy(h, "b", T0, 30000);
    free_handle(h);

    /* No copies at all (local_copies = 0 after SIZE_MAX): nothing kept. */
    h = new_handle(0, 1 << 20);
    fs = h->c.fetch;
    rk__copies_put(fs, "a", 1, &o1, 30000, rk__copies_mark(fs));
    expect_no_copy(h, "a", T0, 30000);
    rk__copies_drop(fs, "a", 1, NULL);
    free_handle(h);
}

/* A value without expiry (RK_TTL_NONE) is served, never stale. */
static void test_copy_without_expiry(void **state)
{
    (void)state;
    handle *h = new_handle(4, 1 << 20);
    rk__fetch_outcome o = value("forever", 0);
    rk__copies_put(h->c.fetch, "k", 1, &o, 1000, rk__copies_mark(h->c.fetch));
    expect_copy(h, "k", INT64_MAX, 1000, "forever", false);
    free_handle(h);
}

/* ---- flights ------------------------------------------------------------ */

static void test_flight_leader_alone(void **state)
{
    (void)state;
    handle *h = new_handle(4, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    rk__flight *fl, *again;
    bool leader;
    assert_int_equal(rk__flight_enter(fs, "k", 1, true, &fl, &leader), RK_OK);
    assert_true(leader);
    assert_non_null(fl);
    /* The leader's own callback asking for the key is refused: it would
     * wait for itself. Asking without joining just says "not you". */
    assert_int_equal(rk__flight_enter(fs, "k", 1, true, &again, &leader), RK_ERR_INVALID);
    assert_int_equal(rk__flight_enter(fs, "k", 1, false, &again, &leader), RK_OK);
    assert_null(again);
    assert_false(leader);
    /* Another key has its own flight. */
    rk__flight *other;
    assert_int_equal(rk__flight_enter(fs, "j", 1, true, &other, &leader), RK_OK);
    assert_true(leader);
    rk__fetch_outcome o = value("x", T0);
    rk__flight_finish(fs, other, &o);
    rk__flight_finish(fs, fl, &o);
    /* Finished: the next caller leads afresh. */
    assert_int_equal(rk__flight_enter(fs, "k", 1, true, &fl, &leader), RK_OK);
    assert_true(leader);
    rk__flight_finish(fs, fl, &o);
    free_handle(h);
}

typedef struct waiter {
    handle *h;
    rk__flight *fl;
    bool leader;
    rk_status enter_st;
    bool done;
    int64_t deadline_ns;
    rk__fetch_outcome got;
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool entered;
} waiter;

static void *join_and_wait(void *arg)
{
    waiter *w = arg;
    w->enter_st = rk__flight_enter(w->h->c.fetch, "k", 1, true, &w->fl, &w->leader);
    pthread_mutex_lock(&w->m);
    w->entered = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
    if (w->enter_st == RK_OK && !w->leader) w->done = rk__flight_wait(w->h->c.fetch, w->fl, w->deadline_ns, &w->got);
    return NULL;
}

/* Start a thread that joins the flight of "k" and waits for it until
 * deadline_ns; returns once it has joined (or given up joining). */
static pthread_t start_waiter(waiter *w, handle *h, int64_t deadline_ns)
{
    w->h = h;
    w->deadline_ns = deadline_ns;
    pthread_mutex_init(&w->m, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, join_and_wait, w), 0);
    pthread_mutex_lock(&w->m);
    while (!w->entered) pthread_cond_wait(&w->cv, &w->m); /* bounded: the thread enters at once */
    pthread_mutex_unlock(&w->m);
    assert_int_equal(w->enter_st, RK_OK);
    assert_false(w->leader);
    return t;
}

static void end_waiter(waiter *w, pthread_t t)
{
    pthread_join(t, NULL);
    pthread_mutex_destroy(&w->m);
    pthread_cond_destroy(&w->cv);
}

/* A waiter on another thread gets a copy of the leader's outcome: its
 * own bytes, and the flags that describe the value — not "computed". */
static void test_flight_waiter_shares_outcome(void **state)
{
    (void)state;
    handle *h = new_handle(4, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    rk__flight *fl;
    bool leader;
    assert_int_equal(rk__flight_enter(fs, "k", 1, true, &fl, &leader), RK_OK);
    assert_true(leader);

    waiter w = {0};
    pthread_t t = start_waiter(&w, h, rk__now_ns() + (int64_t)60 * 1000000000);

    char text[] = "shared";
    rk__fetch_outcome o = value(text, T0 + 1000);
    o.computed = true;
    o.stale = true;
    o.source_status = RK_ERR_TIMEOUT;
    rk__flight_finish(fs, fl, &o);
    end_waiter(&w, t);
    assert_true(w.done);
    assert_int_equal(w.got.st, RK_OK);
    assert_string_equal(w.got.data, "shared");
    assert_true(w.got.data != text); /* a copy of its own */
    assert_false(w.got.computed);
    assert_true(w.got.stale);
    assert_int_equal(w.got.source_status, RK_ERR_TIMEOUT);
    assert_int_equal(w.got.meta.expires_at_ms, T0 + 1000);
    rk_free(w.got.data);
    free_handle(h);
}

/* A failure is shared as it is, with no data; a waiter whose deadline has
 * passed gives up (false, outcome untouched), and the flight lives on
 * until its leader finishes. */
static void test_flight_failure_and_deadline(void **state)
{
    (void)state;
    handle *h = new_handle(4, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    rk__flight *fl;
    bool leader;
    assert_int_equal(rk__flight_enter(fs, "k", 1, true, &fl, &leader), RK_OK);

    waiter w = {.got.st = RK_ERR_PROTOCOL}; /* a marker: must stay */
    end_waiter(&w, start_waiter(&w, h, rk__now_ns() - 1));
    assert_false(w.done);
    assert_int_equal(w.got.st, RK_ERR_PROTOCOL);

    /* A second waiter, then the leader fails. */
    waiter w2 = {0};
    pthread_t t = start_waiter(&w2, h, rk__now_ns() + (int64_t)60 * 1000000000);
    rk__fetch_outcome fail = {.st = RK_ERR_SOURCE, .compute_failed = true, .source_status = RK_ERR_TIMEOUT};
    snprintf(fail.msg, sizeof fail.msg, "compute failed (timeout): db");
    rk__flight_finish(fs, fl, &fail);
    end_waiter(&w2, t);
    assert_true(w2.done);
    assert_int_equal(w2.got.st, RK_ERR_SOURCE);
    assert_null(w2.got.data);
    assert_true(w2.got.compute_failed);
    assert_string_equal(w2.got.msg, "compute failed (timeout): db");
    free_handle(h);
}

/* ---- clock and randomness ------------------------------------------------ */

static void test_server_clock(void **state)
{
    (void)state;
    handle *h = new_handle(4, 1 << 20);
    struct rk__fetch_state *fs = h->c.fetch;
    assert_true(rk__fetch_clock_due(fs)); /* never measured */
    int64_t local = rk__fetch_local_ms(fs);
    int64_t est = rk__fetch_server_now_ms(fs);
    assert_true(est - local >= 0 && est - local < 1000); /* no offset yet: the local clock */

    /* A server 5 s ahead, measured in a round trip of 10 ms. */
    rk__fetch_clock_sample(fs, local + 5005, local, local + 10);
    assert_false(rk__fetch_clock_due(fs));
    int64_t off = rk__fetch_server_now_ms(fs) - rk__fetch_local_ms(fs);
    assert_true(off >= 4999 && off <= 5001); /* the two reads may straddle a millisecond */

    /* A host clock 2 minutes behind: the offset measured on it cancels
     * the skew, so the estimate of the server's clock is unchanged. */
    int64_t before = rk__fetch_server_now_ms(fs);
    rk__fetch_set_clock_skew(fs, -120000);
    int64_t skewed = rk__fetch_local_ms(fs);
    rk__fetch_clock_sample(fs, before, skewed, skewed);
    int64_t after = rk__fetch_server_now_ms(fs);
    assert_true(after - before >= 0 && after - before < 1000);
    free_handle(h);
}

static void test_random_unit(void **state)
{
    (void)state;
    double lo = 1, hi = 0;
    for (int i = 0; i < 10000; i++) {
        double u = rk__fetch_rng_unit();
        assert_true(u > 0 && u <= 1);
        if (u < lo) lo = u;
        if (u > hi) hi = u;
    }
    assert_true(lo < 0.01 && hi > 0.99); /* spread over the interval */
    assert_true(rk__fetch_rng_next() != rk__fetch_rng_next());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_head),
        cmocka_unit_test(test_copy_served_within_window),
        cmocka_unit_test(test_copy_forgotten),
        cmocka_unit_test(test_copy_mark_overrun),
        cmocka_unit_test(test_copy_bounds),
        cmocka_unit_test(test_copy_without_expiry),
        cmocka_unit_test(test_flight_leader_alone),
        cmocka_unit_test(test_flight_waiter_shares_outcome),
        cmocka_unit_test(test_flight_failure_and_deadline),
        cmocka_unit_test(test_server_clock),
        cmocka_unit_test(test_random_unit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
