/*
 * script_test.c — Lua scripts by SHA with the NOSCRIPT fallback
 * (src/client/script.c) against a real redis-server: the SHA redkit computes is
 * the one the server computes; a script runs by SHA once the server knows
 * it, and by source (which reloads it) after SCRIPT FLUSH; keys and
 * arguments travel binary-safe; a script error is RK_ERR_SERVER with the
 * script's name; many threads racing to the first SHA agree on it; the
 * EVALSHA and the EVAL after NOSCRIPT share one deadline; a pipeline
 * under a deadline already past sends nothing.
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

#include "client.h"
#include "script.h"
#include "support/fault_proxy.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client});
}

/* How many times the server ran a command, from INFO commandstats. */
static long long calls_of(const char *cmd) { return rk_test_server_command_calls(server, cmd); }

static bool server_knows(const char *sha)
{
    redisReply *r = rk_test_server_command(server, "SCRIPT EXISTS %s", sha);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    bool known = r->element[0]->integer == 1;
    freeReplyObject(r);
    return known;
}

/* Returns KEYS[1] .. ARGV[1], and writes it, so the test can see both. */
static rk__script concat = RK__SCRIPT("test concat",
                                      "local v = KEYS[1] .. '|' .. ARGV[1]\n"
                                      "redis.call('SET', KEYS[1], v)\n"
                                      "return v\n");

static void run_concat(const char *key, size_t klen, const char *arg, size_t alen, const char *want,
                       size_t want_len)
{
    rk_reply *r = NULL;
    assert_int_equal(rk__script_run(client, &concat, 1, &key, &klen, 1, &arg, &alen, false, &r), RK_OK);
    assert_non_null(r);
    assert_int_equal(r->type, RK_REPLY_STRING);
    assert_int_equal(r->len, want_len);
    assert_memory_equal(r->str, want, want_len);
    rk_reply_free(r);
}

/* The SHA is the server's own: SCRIPT LOAD of the same text answers it. */
static void test_sha_matches_server(void **state)
{
    (void)state;
    const char *sha = rk__script_sha(&concat);
    assert_non_null(sha);
    assert_int_equal(strlen(sha), 40);
    redisReply *r = rk_test_server_command(server, "SCRIPT LOAD %s", concat.source);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, sha);
    freeReplyObject(r);
    /* Asked again: the same pointer, computed once. */
    assert_ptr_equal(rk__script_sha(&concat), sha);
}

/* By SHA when the server knows the script; by source after SCRIPT FLUSH,
 * which also reloads it so that the next call goes by SHA again. */
static void test_noscript_fallback(void **state)
{
    (void)state;
    rk_test_server_ok(server, "SCRIPT FLUSH");
    assert_false(server_knows(rk__script_sha(&concat)));
    long long evalsha0 = calls_of("evalsha"), eval0 = calls_of("eval");

    run_concat("k", 1, "a", 1, "k|a", 3);
    assert_true(server_knows(rk__script_sha(&concat)));
    /* EVALSHA was refused (NOSCRIPT counts as a call in 7.0's stats or
     * as a failed call; either way EVAL ran exactly once). */
    assert_int_equal(calls_of("eval") - eval0, 1);
    long long evalsha1 = calls_of("evalsha");
    assert_true(evalsha1 - evalsha0 <= 1);

    run_concat("k", 1, "b", 1, "k|b", 3);
    assert_int_equal(calls_of("eval") - eval0, 1); /* no new EVAL */
    assert_int_equal(calls_of("evalsha") - evalsha1, 1);

    rk_test_server_ok(server, "SCRIPT FLUSH");
    run_concat("k", 1, "c", 1, "k|c", 3);
    assert_int_equal(calls_of("eval") - eval0, 2);

    redisReply *r = rk_test_server_command(server, "GET k");
    assert_non_null(r);
    assert_string_equal(r->str, "k|c");
    freeReplyObject(r);
}

/* Keys and arguments are sent with their lengths: NULs and CR/LF arrive. */
static void test_binary_safe(void **state)
{
    (void)state;
    static const char key[] = "a\0b";
    static const char arg[] = "x\r\n\0y";
    static const char want[] = "a\0b|x\r\n\0y";
    run_concat(key, sizeof key - 1, arg, sizeof arg - 1, want, sizeof want - 1);
}

/* A script that fails is RK_ERR_SERVER, named, with no reply. */
static rk__script broken = RK__SCRIPT("test broken", "return redis.call('INCR', KEYS[1])\n");

static void test_script_error(void **state)
{
    (void)state;
    rk_test_server_ok(server, "SET text notanumber");
    const char *key = "text";
    size_t klen = 4;
    rk_reply *r = (rk_reply *)&r;
    assert_int_equal(rk__script_run(client, &broken, 1, &key, &klen, 0, NULL, NULL, false, &r), RK_ERR_SERVER);
    assert_null(r);
    assert_non_null(strstr(rk_last_error(), "test broken"));
    /* Bad lists are refused before anything is sent. */
    assert_int_equal(rk__script_run(client, &broken, 1, NULL, NULL, 0, NULL, NULL, false, &r), RK_ERR_INVALID);
    assert_int_equal(rk__script_run(client, &broken, -1, NULL, NULL, 0, NULL, NULL, false, &r), RK_ERR_INVALID);
    assert_int_equal(rk__script_run(NULL, &broken, 0, NULL, NULL, 0, NULL, NULL, false, &r), RK_ERR_INVALID);
}

/* More than the on-stack argument slots: the heap path. */
static rk__script count_args = RK__SCRIPT("test count", "return #KEYS * 1000 + #ARGV\n");

static void test_many_arguments(void **state)
{
    (void)state;
    enum { NK = 40, NA = 70 };
    const char *keys[NK], *args[NA];
    size_t klens[NK], alens[NA];
    for (int i = 0; i < NK; i++) keys[i] = "k", klens[i] = 1;
    for (int i = 0; i < NA; i++) args[i] = "", alens[i] = 0;
    rk_reply *r;
    assert_int_equal(rk__script_run(client, &count_args, NK, keys, klens, NA, args, alens, true, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_INTEGER);
    assert_int_equal(r->integer, NK * 1000 + NA);
    rk_reply_free(r);
}

/* Threads racing to the first use of a script all see the same SHA. */
static rk__script raced = RK__SCRIPT("test raced", "return 1\n");
static const char *seen[8];

static void *race(void *arg)
{
    seen[(intptr_t)arg] = rk__script_sha(&raced);
    return NULL;
}

static void test_sha_once_under_threads(void **state)
{
    (void)state;
    pthread_t t[8];
    for (intptr_t i = 0; i < 8; i++) assert_int_equal(pthread_create(&t[i], NULL, race, (void *)i), 0);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 8; i++) {
        assert_non_null(seen[i]);
        assert_ptr_equal(seen[i], seen[0]);
    }
    assert_int_equal(strlen(seen[0]), 40);
}

/* EVALSHA and the EVAL that follows NOSCRIPT share one deadline: with
 * 200 ms of latency each way, the two round trips take 800 ms or more,
 * beyond one command timeout of 500 ms, so the call times out (each
 * request with a deadline of its own would have succeeded). Only lower
 * bounds of time are relied on. */
static void test_noscript_fallback_one_deadline(void **state)
{
    (void)state;
    rk_fault_proxy *p = rk_fault_proxy_start(rk_test_server_port(server));
    assert_non_null(p);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rk_fault_proxy_port(p));
    rk_client *slow = rk_test_client_new(
        &(rk_client_options){.url = url, .command_timeout_ms = 500, .breaker_threshold = -1});
    assert_int_equal(rk_client_ping(slow), RK_OK); /* connected while the proxy passes */
    rk_test_server_ok(server, "SCRIPT FLUSH");
    rk_fault_proxy_set(p, RK_FAULT_LATENCY, 200);
    const char *key = "slow", *arg = "x";
    size_t one = 1, four = 4;
    rk_reply *r = (rk_reply *)&r;
    rk_status st = rk__script_run(slow, &concat, 1, &key, &four, 1, &arg, &one, false, &r);
    if (st != RK_ERR_TIMEOUT) fail_msg("want RK_ERR_TIMEOUT, got %s: %s", rk_strerror(st), rk_last_error());
    assert_null(r);
    rk_fault_proxy_set(p, RK_FAULT_PASS, 0);
    rk_client_free(slow);
    rk_fault_proxy_stop(p);
}

/* rk__client_pipeline_until: a deadline already past fails before
 * anything is sent; a future one runs the commands. */
static void test_pipeline_until(void **state)
{
    (void)state;
    const char *argv[] = {"INCR", "until"};
    size_t lens[] = {4, 5};
    rk__cmd cmd = {.argc = 2, .argv = argv, .argvlen = lens};
    rk_reply *r = (rk_reply *)&r;
    long long incr0 = calls_of("incr");
    /* 1 ns after the monotonic clock's origin: long past. */
    assert_int_equal(rk__client_pipeline_until(client, 1, &cmd, false, &r, 1), RK_ERR_TIMEOUT);
    assert_null(r);
    assert_non_null(strstr(rk_last_error(), "deadline"));
    assert_int_equal(calls_of("incr"), incr0);

    assert_int_equal(rk__client_pipeline_until(client, 1, &cmd, false, &r, rk__client_deadline(client)), RK_OK);
    assert_non_null(r);
    assert_int_equal(r->type, RK_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    rk_reply_free(r);
    assert_int_equal(calls_of("incr"), incr0 + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha_matches_server),
        cmocka_unit_test(test_noscript_fallback),
        cmocka_unit_test(test_binary_safe),
        cmocka_unit_test(test_script_error),
        cmocka_unit_test(test_many_arguments),
        cmocka_unit_test(test_sha_once_under_threads),
        cmocka_unit_test(test_noscript_fallback_one_deadline),
        cmocka_unit_test(test_pipeline_until),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
