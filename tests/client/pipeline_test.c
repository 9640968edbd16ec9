/*
 * pipeline_test.c — redkit/pipeline.h against a real redis-server:
 * batches with error replies in the middle, MULTI/EXEC transactions from
 * several threads while others read through the shared connections, and
 * WATCH conflicts retried.
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

#include "support/fail_alloc.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;

static int setup(void **state) { return rk_test_group_setup(state, &(rk_test_group){.server = &server}); }

static rk_client *new_client(void)
{
    return rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(server), .command_timeout_ms = 5000});
}

#define ADD(p, ...)                                                                                      \
    do {                                                                                                 \
        const char *argv_[] = {__VA_ARGS__};                                                             \
        assert_int_equal(rk_pipeline_add(p, (int)(sizeof argv_ / sizeof argv_[0]), argv_, NULL), RK_OK); \
    } while (0)

static void test_pipeline_with_errors_in_the_middle(void **state)
{
    (void)state;
    rk_client *c = new_client();
    rk_pipeline *p;
    assert_int_equal(rk_pipeline_new(&p), RK_OK);
    assert_int_equal(rk_pipeline_exec(c, p, NULL), RK_ERR_INVALID); /* empty */
    ADD(p, "SET", "pl:a", "1");
    ADD(p, "INCR", "pl:a");
    ADD(p, "LPUSH", "pl:a", "x"); /* WRONGTYPE */
    ADD(p, "NOSUCHCOMMAND");
    ADD(p, "GET", "pl:a");
    assert_int_equal(rk_pipeline_count(p), 5);
    assert_null(rk_pipeline_reply(p, 0));
    assert_int_equal(rk_pipeline_exec(c, p, NULL), RK_OK);
    assert_int_equal(rk_pipeline_reply(p, 0)->type, RK_REPLY_STATUS);
    assert_int_equal(rk_pipeline_reply(p, 1)->integer, 2);
    assert_int_equal(rk_pipeline_reply(p, 2)->type, RK_REPLY_ERROR);
    assert_non_null(strstr(rk_pipeline_reply(p, 2)->str, "WRONGTYPE"));
    assert_int_equal(rk_pipeline_reply(p, 3)->type, RK_REPLY_ERROR);
    assert_string_equal(rk_pipeline_reply(p, 4)->str, "2");
    assert_null(rk_pipeline_reply(p, 5));
    /* Executed again: the same commands, fresh replies. */
    assert_int_equal(rk_pipeline_exec(c, p, &(rk_pipeline_options){.timeout_ms = 2000}), RK_OK);
    assert_int_equal(rk_pipeline_reply(p, 1)->integer, 2);

    /* Refused when added: stateful and blocking commands. */
    const char *sub[] = {"SUBSCRIBE", "x"}, *blpop[] = {"BLPOP", "q", "0"}, *multi[] = {"MULTI"};
    assert_int_equal(rk_pipeline_add(p, 2, sub, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_pipeline_add(p, 3, blpop, NULL), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "rk_client_command_opts"));
    assert_int_equal(rk_pipeline_add(p, 1, multi, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_pipeline_count(p), 5);
    assert_int_equal(rk_pipeline_exec(c, p, &(rk_pipeline_options){.timeout_ms = -5}), RK_ERR_INVALID);
    assert_int_equal(rk_pipeline_add(NULL, 1, multi, NULL), RK_ERR_INVALID);

    rk_pipeline_reset(p);
    assert_int_equal(rk_pipeline_count(p), 0);
    rk_pipeline_free(p);
    rk_pipeline_free(NULL);
    rk_client_free(c);
}

static void test_transaction(void **state)
{
    (void)state;
    rk_client *c = new_client();
    rk_pipeline *p;
    assert_int_equal(rk_pipeline_new(&p), RK_OK);
    /* An error at run time stays that command's reply; the rest applies. */
    ADD(p, "SET", "tx:k", "v");
    ADD(p, "INCR", "tx:k");
    ADD(p, "SET", "tx:k2", "v2");
    assert_int_equal(rk_pipeline_exec(c, p, &(rk_pipeline_options){.transaction = true}), RK_OK);
    assert_int_equal(rk_pipeline_reply(p, 0)->type, RK_REPLY_STATUS);
    assert_int_equal(rk_pipeline_reply(p, 1)->type, RK_REPLY_ERROR);
    assert_int_equal(rk_pipeline_reply(p, 2)->type, RK_REPLY_STATUS);
    assert_int_equal(rk_test_server_integer(server, "EXISTS tx:k2"), 1);

    /* Refused while queueing: nothing applies. */
    rk_pipeline_reset(p);
    ADD(p, "SET", "tx:k3", "v3");
    ADD(p, "NOSUCHCOMMAND");
    assert_int_equal(rk_pipeline_exec(c, p, &(rk_pipeline_options){.transaction = true}), RK_ERR_SERVER);
    assert_non_null(strstr(rk_last_error(), "EXECABORT"));
    assert_null(rk_pipeline_reply(p, 0));
    assert_int_equal(rk_test_server_integer(server, "EXISTS tx:k3"), 0);
    rk_pipeline_free(p);
    rk_client_free(c);
}

/* 4 threads run transactions while 4 others read: no reply of either
 * kind ever reaches the other (the new-user report: PINGs answered QUEUED). */
#define TX_THREADS 4
#define TX_ROUNDS 300

struct actor {
    rk_client *client;
    int id;
    int wrong, errors;
    char first[256];
};

static void note(struct actor *a, rk_status st)
{
    if (a->errors++ == 0) snprintf(a->first, sizeof a->first, "%s: %s", rk_strerror(st), rk_last_error());
}

static void *transact(void *arg)
{
    struct actor *a = arg;
    rk_pipeline *p;
    if (rk_pipeline_new(&p) != RK_OK) return NULL;
    char key[32], val[48];
    snprintf(key, sizeof key, "tx:t%d", a->id);
    for (int i = 0; i < TX_ROUNDS; i++) {
        snprintf(val, sizeof val, "tx %d round %d", a->id, i);
        rk_pipeline_reset(p);
        const char *set[] = {"SET", key, val}, *get[] = {"GET", key}, *ping[] = {"PING"};
        rk_pipeline_add(p, 3, set, NULL);
        rk_pipeline_add(p, 1, ping, NULL);
        rk_pipeline_add(p, 2, get, NULL);
        rk_status st = rk_pipeline_exec(a->client, p, &(rk_pipeline_options){.transaction = true});
        if (st != RK_OK) {
            note(a, st);
            continue;
        }
        const rk_reply *r0 = rk_pipeline_reply(p, 0), *r1 = rk_pipeline_reply(p, 1), *r2 = rk_pipeline_reply(p, 2);
        if (r0->type != RK_REPLY_STATUS || strcmp(r0->str, "OK") != 0 || r1->type != RK_REPLY_STATUS ||
            strcmp(r1->str, "PONG") != 0 || r2->type != RK_REPLY_STRING || strcmp(r2->str, val) != 0)
            a->wrong++;
    }
    rk_pipeline_free(p);
    return NULL;
}

static void *read_own(void *arg)
{
    struct actor *a = arg;
    char key[32], val[48];
    snprintf(key, sizeof key, "tx:r%d", a->id);
    snprintf(val, sizeof val, "reader %d", a->id);
    const char *set[] = {"SET", key, val}, *get[] = {"GET", key}, *ping[] = {"PING"};
    rk_reply *r = NULL;
    rk_status st = rk_client_command(a->client, 3, set, NULL, &r);
    rk_reply_free(r);
    if (st != RK_OK) note(a, st);
    for (int i = 0; i < TX_ROUNDS * 3; i++) {
        bool is_ping = i % 2;
        if ((st = rk_client_command(a->client, is_ping ? 1 : 2, is_ping ? ping : get, NULL, &r)) != RK_OK) {
            note(a, st);
            continue;
        }
        if (is_ping ? r->type != RK_REPLY_STATUS || strcmp(r->str, "PONG") != 0
                    : r->type != RK_REPLY_STRING || strcmp(r->str, val) != 0)
            a->wrong++;
        rk_reply_free(r);
    }
    return NULL;
}

static void test_transactions_while_others_read(void **state)
{
    (void)state;
    rk_client *c = new_client();
    pthread_t t[2 * TX_THREADS];
    struct actor a[2 * TX_THREADS];
    for (int i = 0; i < 2 * TX_THREADS; i++) {
        a[i] = (struct actor){.client = c, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, i < TX_THREADS ? transact : read_own, &a[i]), 0);
    }
    for (int i = 0; i < 2 * TX_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2 * TX_THREADS; i++) {
        if (a[i].errors) fail_msg("thread %d: %d errors, first: %s", i, a[i].errors, a[i].first);
        assert_int_equal(a[i].wrong, 0);
    }
    rk_client_free(c);
}

/* ---- WATCH ------------------------------------------------------------------ */

struct incr {
    int calls;
    bool interfere; /* change the key behind the transaction's back on the first call */
    bool give_up;
};

static rk_status incr_fn(rk_watch *w, rk_pipeline *queued, void *user)
{
    struct incr *in = user;
    in->calls++;
    const char *get[] = {"GET", "w:counter"};
    rk_reply *r = NULL;
    rk_status st = rk_watch_command(w, 2, get, NULL, &r);
    if (st != RK_OK) return st;
    long v = r->type == RK_REPLY_STRING ? strtol(r->str, NULL, 10) : 0;
    rk_reply_free(r);
    if (in->give_up) return RK_ERR_TYPE;
    if (in->interfere && in->calls == 1) rk_test_server_ok(server, "SET w:counter 100");
    char next[32];
    snprintf(next, sizeof next, "%ld", v + 1);
    const char *set[] = {"SET", "w:counter", next};
    return rk_pipeline_add(queued, 3, set, NULL);
}

static rk_status always_conflict(rk_watch *w, rk_pipeline *queued, void *user)
{
    (void)w;
    int *calls = user;
    (*calls)++;
    rk_test_server_ok(server, "INCR w:counter");
    const char *set[] = {"SET", "w:counter", "0"};
    return rk_pipeline_add(queued, 3, set, NULL);
}

static void test_watch_conflict_retried(void **state)
{
    (void)state;
    rk_client *c = new_client();
    rk_pipeline *p;
    assert_int_equal(rk_pipeline_new(&p), RK_OK);
    const char *keys[] = {"w:counter"};
    rk_test_server_ok(server, "SET w:counter 5");

    /* No interference: one attempt. */
    struct incr in = {0};
    assert_int_equal(rk_client_watch(c, 1, keys, NULL, incr_fn, &in, p, NULL), RK_OK);
    assert_int_equal(in.calls, 1);
    assert_int_equal(rk_test_server_integer(server, "INCRBY w:counter 0"), 6);
    assert_int_equal(rk_pipeline_reply(p, 0)->type, RK_REPLY_STATUS);

    /* The key changes between WATCH and EXEC: the second attempt reads the
     * new value, and the increment lands on it. */
    in = (struct incr){.interfere = true};
    assert_int_equal(rk_client_watch(c, 1, keys, NULL, incr_fn, &in, p, NULL), RK_OK);
    assert_int_equal(in.calls, 2);
    assert_int_equal(rk_test_server_integer(server, "INCRBY w:counter 0"), 101);

    /* A conflict on every attempt: RK_ERR_CONFLICT after max_attempts. */
    int calls = 0;
    assert_int_equal(rk_client_watch(c, 1, keys, NULL, always_conflict, &calls, p,
                                     &(rk_watch_options){.max_attempts = 3}),
                     RK_ERR_CONFLICT);
    assert_int_equal(calls, 3);
    assert_non_null(strstr(rk_last_error(), "3 attempts"));

    /* The callback gives up: its status, and the connection is left clean
     * (UNWATCHed), so plain calls keep working. */
    in = (struct incr){.give_up = true};
    assert_int_equal(rk_client_watch(c, 1, keys, NULL, incr_fn, &in, p, NULL), RK_ERR_TYPE);
    assert_int_equal(rk_client_ping(c), RK_OK);
    /* Bad arguments. */
    assert_int_equal(rk_client_watch(c, 0, keys, NULL, incr_fn, &in, p, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_watch(c, 1, keys, NULL, incr_fn, &in, p, &(rk_watch_options){.max_attempts = -1}),
                     RK_ERR_INVALID);
    rk_pipeline_free(p);
    rk_client_free(c);
}

/* ---- allocation failures ---------------------------------------------------- */

static rk_status set_one(rk_watch *w, rk_pipeline *queued, void *user)
{
    (void)user;
    const char *get[] = {"GET", "nm:w"}, *set[] = {"SET", "nm:w", "1"};
    rk_reply *r = NULL;
    rk_status st = rk_watch_command(w, 2, get, NULL, &r);
    rk_reply_free(r);
    return st != RK_OK ? st : rk_pipeline_add(queued, 3, set, NULL);
}

/* Every step succeeds, or fails once the injected failure has happened. */
#define STEP(expr)                                                                      \
    do {                                                                                \
        rk_status st_ = (expr);                                                         \
        if (st_ != RK_OK && !rk_test_fail_hit())                                        \
            fail_msg("N=%ld: %s: %s: %s", n, #expr, rk_strerror(st_), rk_last_error()); \
    } while (0)

/* Fail the Nth allocation, for N = 1, 2, ... until a run passes none: the
 * lanes, batches, transactions and WATCH recover (or report
 * RK_ERR_NOMEM), never crash, and leak nothing. First in the program:
 * the allocator may only change while no redkit memory is live. */
static void test_allocation_failures(void **state)
{
    (void)state;
    assert_int_equal(rk_set_allocator(&rk_test_fail_allocator), RK_OK);
    long n = 1;
    for (; n < 3000; n++) {
        rk_test_fail_arm(n);
        rk_client *c = NULL;
        rk_pipeline *p = NULL;
        rk_status st = rk_client_new(&(rk_client_options){.url = rk_test_server_url(server)}, &c);
        if (st == RK_OK) st = rk_pipeline_new(&p);
        if (st == RK_OK) {
            const char *set[] = {"SET", "nm:a", "1"}, *incr[] = {"INCR", "nm:a"}, *get[] = {"GET", "nm:a"};
            STEP(rk_pipeline_add(p, 3, set, NULL));
            STEP(rk_pipeline_add(p, 2, incr, NULL));
            STEP(rk_pipeline_add(p, 2, get, NULL));
            STEP(rk_pipeline_exec(c, p, NULL));
            STEP(rk_pipeline_exec(c, p, &(rk_pipeline_options){.transaction = true}));
            const char *keys[] = {"nm:w"};
            STEP(rk_client_watch(c, 1, keys, NULL, set_one, NULL, p, NULL));
            rk_reply *r = NULL;
            STEP(rk_client_command(c, 2, get, NULL, &r));
            rk_reply_free(r);
        } else if (!rk_test_fail_hit()) {
            fail_msg("N=%ld: setup: %s", n, rk_last_error());
        }
        bool hit = rk_test_fail_hit();
        rk_test_fail_disarm();
        rk_pipeline_free(p);
        rk_client_free(c);
        if (rk_test_fail_live() != 0) fail_msg("N=%ld: %ld blocks leaked", n, rk_test_fail_live());
        if (!hit) break;
    }
    fprintf(stderr, "allocation walk: %ld runs\n", n);
    assert_true(n > 10 && n < 3000);
    assert_int_equal(rk_set_allocator(NULL), RK_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_pipeline_with_errors_in_the_middle),
        cmocka_unit_test(test_transaction),
        cmocka_unit_test(test_transactions_while_others_read),
        cmocka_unit_test(test_watch_conflict_retried),
    };
    return cmocka_run_group_tests(tests, setup, rk_test_group_teardown);
}
