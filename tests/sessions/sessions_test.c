/*
 * sessions_test.c — rk_sessions against a real redis-server started by the
 * fixture: every operation, the idle and absolute timeouts checked on the
 * server (PTTL, EXISTS, bounded polls), concurrent attribute writes,
 * regenerate, per-user listing and revocation with pruning, what Redis
 * holds (no token anywhere in a SCAN or a DUMP), malformed tokens refused
 * with no command sent, bad input that leaves sessions unchanged, AOF
 * restart survival, Redis down, cookies and metrics.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "support/clock.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;
static rk_sessions *sessions;

static int group_setup(void **state)
{
    int rc = rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                         .client_options = {.key_prefix = "app"}});
    if (rc == 0 && rk_sessions_new(client, &(rk_sessions_options){.max_attrs = 1000}, &sessions) != RK_OK) {
        fprintf(stderr, "rk_sessions_new: %s\n", rk_last_error());
        return -1;
    }
    return rc;
}

static int group_teardown(void **state)
{
    rk_sessions_free(sessions);
    sessions = NULL;
    return rk_test_group_teardown(state);
}

static rk_sessions *new_store(const rk_sessions_options *o)
{
    rk_sessions *s = NULL;
    rk_status st = rk_sessions_new(client, o, &s);
    if (st != RK_OK) fail_msg("rk_sessions_new: %s: %s", rk_strerror(st), rk_last_error());
    return s;
}

/* The session's key on the server, from the id a list shows. */
static void key_of_id(const char *id, char *key, size_t size) { snprintf(key, size, "app:sess:{%s}", id); }

/* The key of token: the one session a list of user shows. */
static void key_of_token_via_list(const char *user, char *key, size_t size)
{
    rk_session_list *l;
    assert_int_equal(rk_sessions_list(sessions, user, &l), RK_OK);
    assert_int_equal(l->n, 1);
    key_of_id(l->sessions[0].id, key, size);
    rk_session_list_free(l);
}

static void assert_attr(const rk_session *s, const char *name, const char *want)
{
    const rk_session_attr *a = rk_session_find(s, name);
    if (!a) fail_msg("attribute %s missing", name);
    assert_int_equal(a->len, strlen(want));
    assert_memory_equal(a->value, want, a->len);
}

/* Server time in ms. */
static int64_t server_ms(void)
{
    redisReply *r = rk_test_server_command(server, "TIME");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int64_t ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

static void test_create_get_set_destroy(void **state)
{
    (void)state;
    char token[RK_SESSION_TOKEN_SIZE];
    rk_session_attr init[2] = {{"theme", "dark", 4}, {"bin", "a\0b", 3}};
    assert_int_equal(rk_sessions_create(sessions, &(rk_session_create_options){.user = "ada", .attrs = init,
                                                                                 .nattrs = 2},
                                        token),
                     RK_OK);
    assert_int_equal(strlen(token), RK_SESSION_TOKEN_LEN);

    rk_session *s;
    assert_int_equal(rk_sessions_get(sessions, token, NULL, 0, &s), RK_OK);
    assert_string_equal(s->user, "ada");
    assert_int_equal(s->nattrs, 2);
    assert_string_equal(s->attrs[0].name, "bin"); /* sorted by name */
    assert_memory_equal(s->attrs[0].value, "a\0b", 3);
    assert_attr(s, "theme", "dark");
    assert_true(s->issued_ms > 0 && s->issued_ms <= s->last_access_ms);
    assert_true(s->deadline_ms - s->issued_ms == RK_SESSIONS_DEFAULT_ABSOLUTE_MS);
    assert_true(s->expires_ms == s->last_access_ms + RK_SESSIONS_DEFAULT_IDLE_MS);
    assert_false(s->renewal_due);
    assert_null(rk_session_find(s, "nope"));
    rk_session_free(s);

    assert_int_equal(rk_sessions_set_str(sessions, token, "cart", "[1,2]"), RK_OK);
    const char *unset[1] = {"theme"};
    assert_int_equal(rk_sessions_unset(sessions, token, unset, 1), RK_OK);
    const char *names[2] = {"cart", "theme"};
    assert_int_equal(rk_sessions_get(sessions, token, names, 2, &s), RK_OK);
    assert_int_equal(s->nattrs, 1);
    assert_attr(s, "cart", "[1,2]");
    rk_session_free(s);

    /* One string key under the namespace, named by a digest. */
    char key[128];
    key_of_token_via_list("ada", key, sizeof key);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", key), 1);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "app:sess#u:ada"), 1);

    assert_int_equal(rk_sessions_touch(sessions, token), RK_OK);
    assert_int_equal(rk_sessions_destroy(sessions, token), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", key), 0);
    /* The index went with its last session. */
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "app:sess#u:ada"), 0);
    s = (rk_session *)1;
    assert_int_equal(rk_sessions_get(sessions, token, NULL, 0, &s), RK_MISS);
    assert_null(s);
    assert_int_equal(rk_sessions_destroy(sessions, token), RK_MISS);
    assert_int_equal(rk_sessions_set_str(sessions, token, "a", "b"), RK_MISS);
    assert_int_equal(rk_sessions_touch(sessions, token), RK_MISS);
    /* A write to a missing session creates nothing. */
    assert_int_equal(rk_test_server_integer(server, "DBSIZE"), 0);
}

/* Idle expiry slides on get and on touch (PTTL on the server). */
static void test_idle_slides(void **state)
{
    (void)state;
    rk_sessions *s = new_store(&(rk_sessions_options){.idle_ms = 3000, .absolute_ms = 60000});
    char token[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(s, &(rk_session_create_options){.user = "idle"}, token), RK_OK);
    char key[128];
    key_of_token_via_list("idle", key, sizeof key);
    long long pttl = rk_test_server_integer(server, "PTTL %s", key);
    assert_true(pttl > 0 && pttl <= 3000);

    for (int op = 0; op < 2; op++) {
        /* Wait (bounded) until the TTL has visibly run down... */
        int64_t until = rk_test_now_ms() + 5000;
        while ((pttl = rk_test_server_integer(server, "PTTL %s", key)) > 2500 && rk_test_now_ms() < until)
            rk_test_sleep_ms(20);
        assert_true(pttl > 0 && pttl <= 2500);
        /* ...then a get (op 0) or a touch (op 1) sets it back to idle. */
        if (op == 0) {
            rk_session *got;
            assert_int_equal(rk_sessions_get(s, token, NULL, 0, &got), RK_OK);
            rk_session_free(got);
        } else {
            assert_int_equal(rk_sessions_touch(s, token), RK_OK);
        }
        pttl = rk_test_server_integer(server, "PTTL %s", key);
        assert_true(pttl > 2500 && pttl <= 3000);
    }
    rk_sessions_free(s);
}

/* The absolute deadline wins over sliding: touching all the time does not
 * keep a session past it. */
static void test_absolute_wins(void **state)
{
    (void)state;
    rk_sessions *s = new_store(&(rk_sessions_options){.idle_ms = 1000, .absolute_ms = 1500});
    char token[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(s, &(rk_session_create_options){.user = "abs"}, token), RK_OK);
    char key[128];
    key_of_token_via_list("abs", key, sizeof key);
    rk_session *got;
    assert_int_equal(rk_sessions_get(s, token, NULL, 0, &got), RK_OK);
    int64_t deadline = got->deadline_ms;
    rk_session_free(got);

    rk_status st = RK_OK;
    int64_t until = rk_test_now_ms() + 10000;
    while ((st = rk_sessions_touch(s, token)) == RK_OK && rk_test_now_ms() < until) {
        /* Never longer than what is left to the deadline (server time
         * taken first, so that left can only be an overestimate). */
        int64_t left = deadline - server_ms();
        long long pttl = rk_test_server_integer(server, "PTTL %s", key);
        assert_true(pttl <= left + 1);
        rk_test_sleep_ms(50);
    }
    assert_int_equal(st, RK_MISS);
    assert_true(server_ms() >= deadline);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", key), 0);
    rk_sessions_free(s);
}

/* renewal_ms: renewal_due turns true once the token is that old, and a
 * regenerate issues a fresh token. */
static void test_renewal_due(void **state)
{
    (void)state;
    rk_sessions *r = new_store(&(rk_sessions_options){.idle_ms = 10000, .absolute_ms = 60000, .renewal_ms = 300});
    char token[RK_SESSION_TOKEN_SIZE], fresh[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(r, NULL, token), RK_OK);
    rk_session *s;
    assert_int_equal(rk_sessions_get(r, token, NULL, 0, &s), RK_OK);
    int64_t issued = s->issued_ms;
    bool due = s->renewal_due;
    rk_session_free(s);
    int64_t until = rk_test_now_ms() + 5000;
    while (!due && rk_test_now_ms() < until) {
        rk_test_sleep_ms(50);
        assert_int_equal(rk_sessions_get(r, token, NULL, 0, &s), RK_OK);
        due = s->renewal_due;
        if (due) assert_true(s->last_access_ms - s->issued_ms >= 300);
        else assert_true(s->last_access_ms - s->issued_ms < 300);
        rk_session_free(s);
    }
    assert_true(due);
    assert_int_equal(rk_sessions_regenerate(r, token, NULL, fresh), RK_OK);
    assert_int_equal(rk_sessions_get(r, fresh, NULL, 0, &s), RK_OK);
    assert_true(s->issued_ms > issued);
    assert_false(s->renewal_due);
    rk_session_free(s);
    rk_sessions_free(r);
}

/* A session whose deadline has passed is destroyed by the read that finds
 * it, even when its key has lost its TTL. */
static void test_deadline_enforced_by_get(void **state)
{
    (void)state;
    rk_sessions *s = new_store(&(rk_sessions_options){.idle_ms = 200, .absolute_ms = 300});
    char token[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(s, &(rk_session_create_options){.user = "late"}, token), RK_OK);
    char key[128];
    key_of_token_via_list("late", key, sizeof key);
    rk_session *got;
    assert_int_equal(rk_sessions_get(s, token, NULL, 0, &got), RK_OK);
    int64_t deadline = got->deadline_ms;
    rk_session_free(got);
    rk_test_server_ok(server, "PERSIST %s", key);
    int64_t until = rk_test_now_ms() + 5000;
    while (server_ms() <= deadline && rk_test_now_ms() < until) rk_test_sleep_ms(20);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", key), 1); /* still there... */
    rk_sessions_metrics m0, m1;
    assert_int_equal(rk_sessions_metrics_get(s, &m0), RK_OK);
    assert_int_equal(rk_sessions_get(s, token, NULL, 0, &got), RK_MISS);
    assert_null(got);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", key), 0); /* ...destroyed by the get */
    assert_int_equal(rk_sessions_metrics_get(s, &m1), RK_OK);
    assert_int_equal(m1.expired, m0.expired + 1);
    rk_sessions_free(s);
}

/* 16 threads write 16 different attributes each into one session at once:
 * none is lost. */
#define THREADS 16
#define PER_THREAD 16
static const char *shared_token;
static pthread_barrier_t barrier;

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    pthread_barrier_wait(&barrier);
    intptr_t failures = 0;
    for (int j = 0; j < PER_THREAD; j++) {
        char name[32], value[32];
        snprintf(name, sizeof name, "t%d.a%d", t, j);
        snprintf(value, sizeof value, "v%d.%d", t, j);
        if (rk_sessions_set_str(sessions, shared_token, name, value) != RK_OK) failures++;
    }
    return (void *)failures;
}

static void test_concurrent_attributes(void **state)
{
    (void)state;
    char token[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(sessions, NULL, token), RK_OK);
    shared_token = token;
    pthread_t th[THREADS];
    assert_int_equal(pthread_barrier_init(&barrier, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++) {
        void *failures;
        assert_int_equal(pthread_join(th[t], &failures), 0);
        assert_int_equal((intptr_t)failures, 0);
    }
    pthread_barrier_destroy(&barrier);
    rk_session *s;
    assert_int_equal(rk_sessions_get(sessions, token, NULL, 0, &s), RK_OK);
    assert_int_equal(s->nattrs, THREADS * PER_THREAD);
    for (int t = 0; t < THREADS; t++)
        for (int j = 0; j < PER_THREAD; j++) {
            char name[32], value[32];
            snprintf(name, sizeof name, "t%d.a%d", t, j);
            snprintf(value, sizeof value, "v%d.%d", t, j);
            assert_attr(s, name, value);
        }
    rk_session_free(s);
}

static void test_regenerate(void **state)
{
    (void)state;
    char old[RK_SESSION_TOKEN_SIZE], fresh[RK_SESSION_TOKEN_SIZE];
    rk_session_attr a[1] = {{"role", "admin", 5}};
    assert_int_equal(rk_sessions_create(sessions, &(rk_session_create_options){.user = "eve", .attrs = a, .nattrs = 1},
                                        old),
                     RK_OK);
    rk_session *before;
    assert_int_equal(rk_sessions_get(sessions, old, NULL, 0, &before), RK_OK);
    char old_key[128];
    key_of_token_via_list("eve", old_key, sizeof old_key);

    assert_int_equal(rk_sessions_regenerate(sessions, old, NULL, fresh), RK_OK);
    assert_string_not_equal(old, fresh);
    /* The old token misses at once; the new one has everything. */
    rk_session *s = (rk_session *)1;
    assert_int_equal(rk_sessions_get(sessions, old, NULL, 0, &s), RK_MISS);
    assert_null(s);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", old_key), 0);
    assert_int_equal(rk_sessions_get(sessions, fresh, NULL, 0, &s), RK_OK);
    assert_attr(s, "role", "admin");
    assert_string_equal(s->user, "eve");
    assert_int_equal(s->deadline_ms, before->deadline_ms); /* the deadline never moves */
    assert_true(s->issued_ms >= before->issued_ms);
    rk_session_free(s);
    rk_session_free(before);
    /* The index follows: one session, under the new id. */
    char new_key[128];
    key_of_token_via_list("eve", new_key, sizeof new_key);
    assert_string_not_equal(new_key, old_key);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", new_key), 1);
    assert_int_equal(rk_test_server_integer(server, "ZCARD %s", "app:sess#u:eve"), 1);
    char again[RK_SESSION_TOKEN_SIZE] = "";
    assert_int_equal(rk_sessions_regenerate(sessions, old, NULL, again), RK_MISS);
    assert_string_equal(again, "");

    /* Anonymous sessions regenerate too. */
    assert_int_equal(rk_sessions_create(sessions, NULL, old), RK_OK);
    assert_int_equal(rk_sessions_regenerate(sessions, old, NULL, fresh), RK_OK);
    assert_int_equal(rk_sessions_touch(sessions, fresh), RK_OK);
    assert_int_equal(rk_sessions_touch(sessions, old), RK_MISS);

    /* Login: an anonymous session regenerated for a user joins its index. */
    char login[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_set_str(sessions, fresh, "cart", "[7]"), RK_OK);
    assert_int_equal(rk_sessions_regenerate(sessions, fresh, "mallory", login), RK_OK);
    assert_int_equal(rk_sessions_get(sessions, login, NULL, 0, &s), RK_OK);
    assert_string_equal(s->user, "mallory");
    assert_attr(s, "cart", "[7]");
    rk_session_free(s);
    char login_key[128];
    key_of_token_via_list("mallory", login_key, sizeof login_key);
    /* A session handed to another user leaves its old user's index. */
    char moved[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_regenerate(sessions, login, "trent", moved), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "app:sess#u:mallory"), 0);
    key_of_token_via_list("trent", login_key, sizeof login_key);
    assert_int_equal(rk_sessions_regenerate(sessions, moved, "", fresh), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_touch(sessions, moved), RK_OK); /* refused before anything was sent */

    rk_sessions_metrics m;
    assert_int_equal(rk_sessions_metrics_get(sessions, &m), RK_OK);
    assert_true(m.regenerated >= 2);
}

/* 3 users x 5 sessions, plus sessions that expire: list shows the live
 * ones and prunes the rest from the index; destroy_user revokes. */
/* Sessions stored in format 1 (before 0.2's leaner layout: a version byte
 * and a 14-byte header with the last access) are still read, listed,
 * slid and written; the first write stores them in format 2. */
static void test_old_format(void **state)
{
    (void)state;
    char token[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(sessions, &(rk_session_create_options){.user = "old"}, token), RK_OK);
    char key[128];
    key_of_token_via_list("old", key, sizeof key);
    /* byte 1, issued (6), deadline - issued (4), last access - issued (4),
     * then MessagePack: "old", {"data" = "v1"} */
    int64_t issued = server_ms() - 5000;
    unsigned char v[64];
    size_t n = 0;
    v[n++] = 1;
    for (int i = 5; i >= 0; i--) v[n++] = (unsigned char)(issued >> (8 * i));
    const uint32_t life = 3600000, last = 2000;
    for (int i = 3; i >= 0; i--) v[n++] = (unsigned char)(life >> (8 * i));
    for (int i = 3; i >= 0; i--) v[n++] = (unsigned char)(last >> (8 * i));
    const unsigned char mp[] = {0xa3, 'o', 'l', 'd', 0x81, 0xa4, 'd', 'a', 't', 'a', 0xa2, 'v', '1'};
    memcpy(v + n, mp, sizeof mp);
    n += sizeof mp;
    rk_test_server_ok(server, "SET %s %b PX 600000", key, v, n);

    rk_session_list *l;
    assert_int_equal(rk_sessions_list(sessions, "old", &l), RK_OK);
    assert_int_equal(l->n, 1);
    assert_int_equal(l->sessions[0].issued_ms, issued);
    assert_int_equal(l->sessions[0].last_access_ms, issued + last);
    assert_int_equal(l->sessions[0].deadline_ms, issued + life);
    rk_session_list_free(l);

    rk_session *got;
    assert_int_equal(rk_sessions_get(sessions, token, NULL, 0, &got), RK_OK);
    assert_attr(got, "data", "v1");
    assert_string_equal(got->user, "old");
    assert_int_equal(got->issued_ms, issued);
    assert_int_equal(got->deadline_ms, issued + life);
    rk_session_free(got);
    /* Sliding a format-1 session keeps it in format 1. */
    redisReply *r = rk_test_server_command(server, "GETRANGE %s 0 0", key);
    assert_non_null(r);
    assert_int_equal(r->len, 1);
    assert_int_equal(r->str[0], 1);
    freeReplyObject(r);

    rk_session_attr a = {"more", "x", 1};
    assert_int_equal(rk_sessions_set(sessions, token, &a, 1), RK_OK);
    r = rk_test_server_command(server, "GETRANGE %s 0 0", key);
    assert_non_null(r);
    assert_int_equal((unsigned char)r->str[0], 0xa3); /* format 2: the user id's MessagePack header first */
    freeReplyObject(r);
    assert_int_equal(rk_sessions_get(sessions, token, NULL, 0, &got), RK_OK);
    assert_attr(got, "data", "v1");
    assert_attr(got, "more", "x");
    assert_int_equal(got->issued_ms, issued);
    assert_int_equal(got->deadline_ms, issued + life);
    rk_session_free(got);
    /* Format 2 lists the last access from the key's expiry. */
    assert_int_equal(rk_sessions_list(sessions, "old", &l), RK_OK);
    assert_int_equal(l->n, 1);
    assert_int_equal(l->sessions[0].issued_ms, issued);
    assert_true(l->sessions[0].last_access_ms > issued + last);
    assert_int_equal(l->sessions[0].expires_ms, l->sessions[0].last_access_ms + RK_SESSIONS_DEFAULT_IDLE_MS);
    assert_true(l->sessions[0].last_access_ms <= server_ms());
    rk_session_list_free(l);
}

static void test_list_and_destroy_user(void **state)
{
    (void)state;
    const char *users[3] = {"u0", "u1", "u2"};
    char tokens[3][5][RK_SESSION_TOKEN_SIZE];
    for (int u = 0; u < 3; u++)
        for (int i = 0; i < 5; i++)
            assert_int_equal(rk_sessions_create(sessions, &(rk_session_create_options){.user = users[u]}, tokens[u][i]),
                             RK_OK);
    /* Two short-lived sessions of u0 (same namespace, shorter idle). */
    rk_sessions *brief = new_store(&(rk_sessions_options){.idle_ms = 100, .absolute_ms = 60000});
    char t1[RK_SESSION_TOKEN_SIZE], t2[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(brief, &(rk_session_create_options){.user = "u0"}, t1), RK_OK);
    assert_int_equal(rk_sessions_create(brief, &(rk_session_create_options){.user = "u0"}, t2), RK_OK);
    assert_int_equal(rk_test_server_integer(server, "ZCARD %s", "app:sess#u:u0"), 7);
    /* 17 sessions and 3 indexes, until the brief two expire (bounded). */
    assert_int_equal(rk_test_server_integer(server, "DBSIZE"), 20);
    int64_t until = rk_test_now_ms() + 5000;
    while (rk_test_server_integer(server, "DBSIZE") > 18 && rk_test_now_ms() < until) rk_test_sleep_ms(20);
    assert_int_equal(rk_test_server_integer(server, "DBSIZE"), 18);
    assert_int_equal(rk_sessions_touch(brief, t1), RK_MISS);
    assert_int_equal(rk_sessions_touch(brief, t2), RK_MISS);
    rk_sessions_free(brief);

    for (int u = 0; u < 3; u++) {
        rk_session_list *l;
        assert_int_equal(rk_sessions_list(sessions, users[u], &l), RK_OK);
        assert_int_equal(l->n, 5);
        for (size_t i = 0; i < l->n; i++) {
            assert_int_equal(strlen(l->sessions[i].id), RK_SESSION_ID_LEN);
            assert_true(l->sessions[i].issued_ms <= l->sessions[i].last_access_ms);
            assert_true(l->sessions[i].expires_ms <= l->sessions[i].deadline_ms);
            if (i) assert_true(l->sessions[i - 1].issued_ms <= l->sessions[i].issued_ms);
        }
        rk_session_list_free(l);
    }
    /* The expired ones were pruned from the index by the list. */
    assert_int_equal(rk_test_server_integer(server, "ZCARD %s", "app:sess#u:u0"), 5);

    /* "Log out my other devices" for u1, everything for u2. */
    size_t n = 0;
    assert_int_equal(rk_sessions_destroy_user(sessions, "u1", tokens[1][2], &n), RK_OK);
    assert_int_equal(n, 4);
    assert_int_equal(rk_sessions_touch(sessions, tokens[1][2]), RK_OK);
    assert_int_equal(rk_sessions_touch(sessions, tokens[1][0]), RK_MISS);
    rk_session_list *l;
    assert_int_equal(rk_sessions_list(sessions, "u1", &l), RK_OK);
    assert_int_equal(l->n, 1);
    rk_session_list_free(l);
    assert_int_equal(rk_sessions_destroy_user(sessions, "u2", NULL, &n), RK_OK);
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(rk_sessions_touch(sessions, tokens[2][i]), RK_MISS);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", "app:sess#u:u2"), 0);
    assert_int_equal(rk_sessions_list(sessions, "u2", &l), RK_OK);
    assert_int_equal(l->n, 0);
    rk_session_list_free(l);
    /* u0 untouched. */
    assert_int_equal(rk_sessions_list(sessions, "u0", &l), RK_OK);
    assert_int_equal(l->n, 5);
    rk_session_list_free(l);

    uint64_t count = 0;
    assert_int_equal(rk_sessions_count(sessions, &count), RK_OK);
    assert_int_equal(count, 6); /* u0's 5 and u1's last */
}

static bool contains(const char *hay, size_t len, const char *needle)
{
    return memmem(hay, len, needle, strlen(needle)) != NULL;
}

/* Nothing Redis holds contains a token: the keys (redis-cli --scan) and
 * a DUMP of every key. */
static void test_no_token_in_redis(void **state)
{
    (void)state;
    char tokens[4][RK_SESSION_TOKEN_SIZE];
    rk_session_attr a[1] = {{"k", "v", 1}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(rk_sessions_create(sessions, &(rk_session_create_options){.user = "zed", .attrs = a,
                                                                                     .nattrs = 1},
                                            tokens[i]),
                         RK_OK);
    assert_int_equal(rk_sessions_regenerate(sessions, tokens[2], NULL, tokens[3]), RK_OK);
    assert_int_equal(rk_sessions_set_str(sessions, tokens[3], "x", "y"), RK_OK);

    static char keys[16384];
    const char *args[] = {"--scan", NULL};
    assert_int_equal(rk_test_server_cli(server, keys, sizeof keys, args), 0);
    assert_non_null(strstr(keys, "app:sess:{"));
    for (int i = 0; i < 4; i++) assert_false(contains(keys, strlen(keys), tokens[i]));

    int dumped = 0;
    for (char *line = strtok(keys, "\n"); line; line = strtok(NULL, "\n")) {
        redisReply *r = rk_test_server_command(server, "DUMP %s", line);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        for (int i = 0; i < 4; i++) assert_false(contains(r->str, r->len, tokens[i]));
        freeReplyObject(r);
        dumped++;
    }
    assert_int_equal(dumped, 4); /* three sessions and the index */
}

/* Malformed tokens are refused before anything is sent. */
static void test_malformed_tokens(void **state)
{
    (void)state;
    char good[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(sessions, NULL, good), RK_OK);
    char too_long[RK_SESSION_TOKEN_SIZE + 1];
    memcpy(too_long, good, RK_SESSION_TOKEN_LEN);
    too_long[RK_SESSION_TOKEN_LEN] = 'A';
    too_long[RK_SESSION_TOKEN_LEN + 1] = '\0';
    char bad_char[RK_SESSION_TOKEN_SIZE], nul_inside[RK_SESSION_TOKEN_SIZE], non_canonical[RK_SESSION_TOKEN_SIZE];
    memcpy(bad_char, good, sizeof good);
    bad_char[5] = '+'; /* base64, not base64url */
    memcpy(nul_inside, good, sizeof good);
    nul_inside[20] = '\0';
    memcpy(non_canonical, good, sizeof good);
    non_canonical[RK_SESSION_TOKEN_LEN - 1] = 'B'; /* value 1: a padding bit set */
    const char *bad[] = {"", "short", too_long, bad_char, nul_inside, non_canonical, "../../etc/passwd", "*"};

    rk_test_server_ok(server, "CONFIG RESETSTAT");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_session *s = (rk_session *)1;
        assert_int_equal(rk_sessions_get(sessions, bad[i], NULL, 0, &s), RK_ERR_INVALID);
        assert_null(s);
        assert_null(strstr(rk_last_error(), good));
        assert_int_equal(rk_sessions_touch(sessions, bad[i]), RK_ERR_INVALID);
        assert_int_equal(rk_sessions_set_str(sessions, bad[i], "a", "b"), RK_ERR_INVALID);
        assert_int_equal(rk_sessions_destroy(sessions, bad[i]), RK_ERR_INVALID);
        char fresh[RK_SESSION_TOKEN_SIZE];
        assert_int_equal(rk_sessions_regenerate(sessions, bad[i], NULL, fresh), RK_ERR_INVALID);
        size_t n;
        assert_int_equal(rk_sessions_destroy_user(sessions, "x", bad[i], &n), RK_ERR_INVALID);
    }
    assert_int_equal(rk_sessions_get(sessions, NULL, NULL, 0, &(rk_session *){NULL}), RK_ERR_INVALID);
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "eval"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "zrange"), 0);
    assert_int_equal(rk_sessions_touch(sessions, good), RK_OK); /* the real one is fine */
}

/* Bad input gets its status and leaves the stored session unchanged. */
static void test_bad_input_keeps_session(void **state)
{
    (void)state;
    rk_sessions *small = new_store(&(rk_sessions_options){.max_bytes = 200, .max_attrs = 3});
    char token[RK_SESSION_TOKEN_SIZE];
    rk_session_attr a[1] = {{"keep", "me", 2}};
    assert_int_equal(rk_sessions_create(small, &(rk_session_create_options){.attrs = a, .nattrs = 1}, token), RK_OK);

    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(rk_sessions_set_str(small, token, "big", big), RK_ERR_TOO_LARGE);
    /* Under the client-side check but over max_bytes once stored. */
    char mid[150];
    memset(mid, 'y', sizeof mid - 1);
    mid[sizeof mid - 1] = '\0';
    assert_int_equal(rk_sessions_set_str(small, token, "m1", mid), RK_OK);
    assert_int_equal(rk_sessions_set_str(small, token, "m2", mid), RK_ERR_TOO_LARGE);
    const char *gone[1] = {"m1"};
    assert_int_equal(rk_sessions_unset(small, token, gone, 1), RK_OK);
    assert_int_equal(rk_sessions_set_str(small, token, "b", "1"), RK_OK);
    assert_int_equal(rk_sessions_set_str(small, token, "c", "1"), RK_OK);
    assert_int_equal(rk_sessions_set_str(small, token, "d", "1"), RK_ERR_TOO_LARGE); /* a 4th attribute */
    assert_int_equal(rk_sessions_set_str(small, token, "", "1"), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_set_str(small, token, NULL, "1"), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_set_str(small, token, "a", NULL), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_set(small, token, NULL, 1), RK_ERR_INVALID);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(rk_sessions_set_str(small, token, long_name, "1"), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_sessions_create(small, &(rk_session_create_options){.user = ""}, token), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_create(small, &(rk_session_create_options){.user = long_name}, token),
                     RK_ERR_TOO_LARGE);
    assert_int_equal(rk_sessions_list(small, "", &(rk_session_list *){NULL}), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_list(small, NULL, &(rk_session_list *){NULL}), RK_ERR_INVALID);

    rk_session *s;
    assert_int_equal(rk_sessions_get(small, token, NULL, 0, &s), RK_OK);
    assert_int_equal(s->nattrs, 3);
    assert_attr(s, "keep", "me");
    assert_attr(s, "b", "1");
    assert_attr(s, "c", "1");
    rk_session_free(s);

    /* A key that holds something else is not a session: RK_ERR_TYPE, and
     * what it holds stays. */
    char key[128];
    assert_int_equal(rk_sessions_create(sessions, &(rk_session_create_options){.user = "typ"}, token), RK_OK);
    key_of_token_via_list("typ", key, sizeof key);
    rk_test_server_ok(server, "SET %s %s", key, "not a session at all");
    assert_int_equal(rk_sessions_get(sessions, token, NULL, 0, &s), RK_ERR_TYPE);
    assert_int_equal(rk_sessions_set_str(sessions, token, "a", "b"), RK_ERR_TYPE);
    rk_test_server_ok(server, "DEL %s", key);
    rk_test_server_ok(server, "HSET %s f v", key);
    assert_int_equal(rk_sessions_touch(sessions, token), RK_ERR_TYPE);
    assert_int_equal(rk_test_server_integer(server, "HLEN %s", key), 1);

    /* Options out of range. */
    rk_sessions *x = NULL;
    assert_int_equal(rk_sessions_new(client, &(rk_sessions_options){.idle_ms = 10, .absolute_ms = 5}, &x),
                     RK_ERR_INVALID);
    assert_int_equal(rk_sessions_new(client, &(rk_sessions_options){.absolute_ms = RK_SESSIONS_MAX_ABSOLUTE_MS + 1},
                                     &x),
                     RK_ERR_INVALID);
    assert_int_equal(rk_sessions_new(client, &(rk_sessions_options){.ns = "a:b"}, &x), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_new(NULL, NULL, &x), RK_ERR_INVALID);
    assert_null(x);
    rk_sessions_free(NULL);
    rk_sessions_free(small);
}

/* Sessions survive a restart with AOF on. */
static void test_aof_restart(void **state)
{
    (void)state;
    const char *aof[] = {"--appendonly", "yes", "--appendfsync", "everysec", NULL};
    assert_true(rk_test_server_restart(server, aof));
    assert_true(rk_test_client_recovers(client, 5000));
    char token[RK_SESSION_TOKEN_SIZE];
    rk_session_attr a[1] = {{"cart", "[42]", 4}};
    assert_int_equal(rk_sessions_create(sessions, &(rk_session_create_options){.user = "aof", .attrs = a,
                                                                                 .nattrs = 1},
                                        token),
                     RK_OK);
    assert_int_equal(rk_sessions_set_str(sessions, token, "step", "2"), RK_OK);
    /* Wait (bounded) until the server has written its AOF buffer: with
     * everysec a write can be postponed while a fsync runs. */
    int64_t until = rk_test_now_ms() + 5000;
    for (;;) {
        redisReply *r = rk_test_server_command(server, "INFO persistence");
        assert_non_null(r);
        bool flushed = r->type == REDIS_REPLY_STRING && strstr(r->str, "aof_buffer_length:0\r\n") &&
                       strstr(r->str, "aof_pending_bio_fsync:0\r\n");
        freeReplyObject(r);
        if (flushed || rk_test_now_ms() > until) break;
        rk_test_sleep_ms(20);
    }
    /* The AOF is written after each command (fsync every second): a kill
     * loses nothing the OS already has. */
    assert_true(rk_test_server_restart(server, aof));
    assert_true(rk_test_client_recovers(client, 5000));
    rk_session *s;
    assert_int_equal(rk_sessions_get(sessions, token, NULL, 0, &s), RK_OK);
    assert_attr(s, "cart", "[42]");
    assert_attr(s, "step", "2");
    assert_string_equal(s->user, "aof");
    rk_session_free(s);
    rk_session_list *l;
    assert_int_equal(rk_sessions_list(sessions, "aof", &l), RK_OK);
    assert_int_equal(l->n, 1);
    rk_session_list_free(l);
    const char *no_aof[] = {"--appendonly", "no", NULL};
    assert_true(rk_test_server_restart(server, no_aof));
    assert_true(rk_test_client_recovers(client, 5000));
}

/* Redis down: get is RK_DEGRADED, writes fail within the deadline. */
static void test_redis_down(void **state)
{
    (void)state;
    rk_test_server *gone = rk_test_server_start_opts(&(rk_test_server_options){.cluster = rk_test_cluster_requested()});
    assert_non_null(gone);
    rk_client *c;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(gone)}, &c), RK_OK);
    rk_sessions *s;
    assert_int_equal(rk_sessions_new(c, NULL, &s), RK_OK);
    char token[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(s, NULL, token), RK_OK);
    rk_test_server_stop(gone);

    rk_session *got = (rk_session *)1;
    rk_status st = rk_sessions_get(s, token, NULL, 0, &got);
    assert_int_equal(st, RK_DEGRADED);
    assert_null(got);
    assert_null(strstr(rk_last_error(), token));
    st = rk_sessions_set_str(s, token, "a", "b");
    assert_true(st == RK_ERR_UNAVAILABLE || st == RK_ERR_TIMEOUT);
    st = rk_sessions_destroy(s, token);
    assert_true(st == RK_ERR_UNAVAILABLE || st == RK_ERR_TIMEOUT);
    char fresh[RK_SESSION_TOKEN_SIZE];
    st = rk_sessions_create(s, NULL, fresh);
    assert_true(st == RK_ERR_UNAVAILABLE || st == RK_ERR_TIMEOUT);
    rk_sessions_metrics m;
    assert_int_equal(rk_sessions_metrics_get(s, &m), RK_OK);
    assert_int_equal(m.degraded, 1);
    assert_int_equal(m.created, 1);
    assert_true(m.errors >= 3);
    rk_sessions_free(s);
    rk_client_free(c);
}

static void test_cookies(void **state)
{
    (void)state;
    char token[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(sessions, NULL, token), RK_OK);
    char buf[256], want[256];
    assert_int_equal(rk_sessions_cookie_format(token, 1800999, NULL, buf, sizeof buf), RK_OK);
    snprintf(want, sizeof want, "__Host-session=%s; Path=/; Max-Age=1800; Secure; HttpOnly; SameSite=Lax", token);
    assert_string_equal(buf, want);
    assert_int_equal(rk_sessions_cookie_clear(NULL, buf, sizeof buf), RK_OK);
    assert_string_equal(buf, "__Host-session=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax");
    rk_session_cookie_options dev = {.name = "sid", .insecure = true, .same_site = "Strict", .domain = "example.test"};
    assert_int_equal(rk_sessions_cookie_format(token, 5000, &dev, buf, sizeof buf), RK_OK);
    snprintf(want, sizeof want, "sid=%s; Path=/; Domain=example.test; Max-Age=5; HttpOnly; SameSite=Strict", token);
    assert_string_equal(buf, want);
    /* __Host- forbids Domain and insecure; bad names, tokens, sizes. */
    assert_int_equal(rk_sessions_cookie_format(token, 1, &(rk_session_cookie_options){.domain = "x.test"}, buf,
                                               sizeof buf),
                     RK_ERR_INVALID);
    assert_int_equal(rk_sessions_cookie_format(token, 1, &(rk_session_cookie_options){.insecure = true}, buf,
                                               sizeof buf),
                     RK_ERR_INVALID);
    assert_int_equal(rk_sessions_cookie_format(token, 1, &(rk_session_cookie_options){.name = "a b"}, buf, sizeof buf),
                     RK_ERR_INVALID);
    assert_int_equal(rk_sessions_cookie_format(token, 1, &(rk_session_cookie_options){.same_site = "Maybe"}, buf,
                                               sizeof buf),
                     RK_ERR_INVALID);
    assert_int_equal(rk_sessions_cookie_format("nope", 1, NULL, buf, sizeof buf), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_cookie_format(token, -1, NULL, buf, sizeof buf), RK_ERR_INVALID);
    assert_int_equal(rk_sessions_cookie_format(token, 1, NULL, buf, 20), RK_ERR_TOO_LARGE);

    char header[512], got[RK_SESSION_TOKEN_SIZE];
    snprintf(header, sizeof header, "theme=dark; __Host-session=%s ; other=1", token);
    assert_int_equal(rk_sessions_cookie_token(header, NULL, got), RK_OK);
    assert_string_equal(got, token);
    snprintf(header, sizeof header, "sid=\"%s\"", token);
    assert_int_equal(rk_sessions_cookie_token(header, "sid", got), RK_OK);
    assert_string_equal(got, token);
    assert_int_equal(rk_sessions_cookie_token("a=1; b=2", NULL, got), RK_MISS);
    assert_int_equal(rk_sessions_cookie_token("__Host-session=garbage", NULL, got), RK_MISS);
    assert_int_equal(rk_sessions_cookie_token("x__Host-session=1", NULL, got), RK_MISS);
    assert_int_equal(rk_sessions_cookie_token("", NULL, got), RK_MISS);
    assert_int_equal(rk_sessions_cookie_token(NULL, NULL, got), RK_ERR_INVALID);
}

/* The counters, in the snapshot and the Prometheus text; no token in the
 * text. */
static void test_metrics(void **state)
{
    (void)state;
    rk_sessions *m = new_store(&(rk_sessions_options){.ns = "msess"});
    char token[RK_SESSION_TOKEN_SIZE], fresh[RK_SESSION_TOKEN_SIZE];
    assert_int_equal(rk_sessions_create(m, NULL, token), RK_OK);
    assert_int_equal(rk_sessions_regenerate(m, token, NULL, fresh), RK_OK);
    assert_int_equal(rk_sessions_touch(m, token), RK_MISS);
    assert_int_equal(rk_sessions_destroy(m, fresh), RK_OK);
    rk_sessions_metrics s;
    assert_int_equal(rk_sessions_metrics_get(m, &s), RK_OK);
    assert_int_equal(s.created, 1);
    assert_int_equal(s.regenerated, 1);
    assert_int_equal(s.not_found, 1);
    assert_int_equal(s.destroyed, 1);
    assert_int_equal(s.expired, 0);
    assert_int_equal(rk_sessions_metrics_get(NULL, &s), RK_ERR_INVALID);

    char *text;
    size_t len;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    assert_non_null(strstr(text, "# TYPE redkit_sessions_created_total counter"));
    assert_non_null(strstr(text, "redkit_sessions_created_total{ns=\"msess\"} 1"));
    assert_non_null(strstr(text, "redkit_sessions_regenerated_total{ns=\"msess\"} 1"));
    assert_non_null(strstr(text, "redkit_sessions_degraded_total{ns=\"msess\"} 0"));
    assert_null(strstr(text, token));
    assert_null(strstr(text, fresh));
    rk_free(text);
    rk_sessions_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_create_get_set_destroy, rk_test_group_flush),
        cmocka_unit_test_setup(test_idle_slides, rk_test_group_flush),
        cmocka_unit_test_setup(test_absolute_wins, rk_test_group_flush),
        cmocka_unit_test_setup(test_deadline_enforced_by_get, rk_test_group_flush),
        cmocka_unit_test_setup(test_renewal_due, rk_test_group_flush),
        cmocka_unit_test_setup(test_old_format, rk_test_group_flush),
        cmocka_unit_test_setup(test_concurrent_attributes, rk_test_group_flush),
        cmocka_unit_test_setup(test_regenerate, rk_test_group_flush),
        cmocka_unit_test_setup(test_list_and_destroy_user, rk_test_group_flush),
        cmocka_unit_test_setup(test_no_token_in_redis, rk_test_group_flush),
        cmocka_unit_test_setup(test_malformed_tokens, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_input_keeps_session, rk_test_group_flush),
        cmocka_unit_test_setup(test_cookies, rk_test_group_flush),
        cmocka_unit_test_setup(test_metrics, rk_test_group_flush),
        cmocka_unit_test_setup(test_aof_restart, rk_test_group_flush),
        cmocka_unit_test(test_redis_down),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
