/*
 * fixture_test.c — tests of the test fixture itself (tests/support/
 * redis_server.c, and the group fixture and server checks of fixture.c).
 * Every integration and fault test relies on it starting, pausing, killing
 * and restarting a real redis-server exactly as asked, so it is checked on
 * its own first: a fixture bug must not look like a library bug.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "fixture.h"
#include "redis_server.h"

/* PING through the admin helper; true on +PONG. */
static bool admin_ping(rk_test_server *s)
{
    redisReply *r = rk_test_server_command(s, "PING");
    bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r) freeReplyObject(r);
    return ok;
}

static int start_plain(void **state)
{
    *state = rk_test_server_start(NULL);
    return *state ? 0 : -1;
}

static int start_with_password(void **state)
{
    static const char *const args[] = { "--requirepass", "s3cret pw", NULL };
    *state = rk_test_server_start(args);
    return *state ? 0 : -1;
}

static int stop_server(void **state)
{
    rk_test_server_stop(*state);
    *state = NULL;
    return 0;
}

static void test_start_ping_stop(void **state)
{
    rk_test_server *s = *state;
    int port = rk_test_server_port(s);
    assert_true(port > 0 && port < 65536);
    assert_true(rk_test_server_pid(s) > 0);

    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    assert_string_equal(rk_test_server_url(s), url);

    struct stat st;
    assert_int_equal(stat(rk_test_server_dir(s), &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    assert_true(admin_ping(s));

    /* Persistence is off and DEBUG is enabled, as integration tests expect. */
    redisReply *r = rk_test_server_command(s, "CONFIG GET save");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[1]->str, "");
    freeReplyObject(r);
    r = rk_test_server_command(s, "DEBUG SLEEP 0");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    /* The unix socket lives in the private directory. */
    char sock[128];
    snprintf(sock, sizeof sock, "%s/redis.sock", rk_test_server_dir(s));
    redisContext *c = redisConnectUnix(sock);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    r = redisCommand(c, "PING");
    assert_non_null(r);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    redisFree(c);
}

static void test_stop_removes_everything(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    char dir[64];
    snprintf(dir, sizeof dir, "%s", rk_test_server_dir(s));
    pid_t pid = rk_test_server_pid(s);
    rk_test_server_stop(s);

    struct stat st;
    assert_int_equal(stat(dir, &st), -1);
    assert_int_equal(errno, ENOENT);
    /* Reaped: no such process any more (not even a zombie of ours). */
    assert_int_equal(kill(pid, 0), -1);

    rk_test_server_stop(NULL); /* no-op */
}

static void test_requirepass_and_admin_password(void **state)
{
    rk_test_server *s = *state;

    redisReply *r = rk_test_server_command(s, "PING");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "NOAUTH"));
    freeReplyObject(r);

    rk_test_server_set_admin_password(s, "wrong");
    r = rk_test_server_command(s, "PING");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);

    rk_test_server_set_admin_password(s, "s3cret pw");
    assert_true(admin_ping(s));

    char out[64];
    static const char *const ping[] = { "PING", NULL };
    assert_int_equal(rk_test_server_cli(s, out, sizeof out, ping), 0);
    assert_string_equal(out, "PONG");
}

/* A single-node cluster: every slot on the node, CROSSSLOT for keys of two
 * slots, the same keys fine under one hash tag, and the slots kept across a
 * restart. */
static void test_single_node_cluster(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start_opts(&(rk_test_server_options){.cluster = true});
    assert_non_null(s);
    assert_true(rk_test_server_is_cluster(s));
    for (int round = 0; round < 2; round++) {
        redisReply *r = rk_test_server_command(s, "CLUSTER INFO");
        assert_non_null(r);
        assert_non_null(strstr(r->str, "cluster_slots_assigned:16384"));
        freeReplyObject(r);
        r = rk_test_server_command(s, "MSET a 1 b 2");
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ERROR);
        assert_non_null(strstr(r->str, "CROSSSLOT"));
        freeReplyObject(r);
        r = rk_test_server_command(s, "EVAL %s 2 {u}a {u}b", "return redis.call('MSET', KEYS[1], 1, KEYS[2], 2)");
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
        if (round == 0) assert_true(rk_test_server_restart(s, NULL));
    }
    rk_test_server_stop(s);
}

static void test_kill_and_restart_same_port(void **state)
{
    rk_test_server *s = *state;
    int port = rk_test_server_port(s);
    pid_t old = rk_test_server_pid(s);

    redisReply *r = rk_test_server_command(s, "SET fixture:k v");
    assert_non_null(r);
    freeReplyObject(r);

    assert_true(rk_test_server_signal(s, SIGKILL));
    assert_int_equal(rk_test_server_pid(s), -1);
    assert_null(rk_test_server_command(s, "PING")); /* connection refused */
    assert_false(rk_test_server_signal(s, SIGCONT)); /* nothing to signal */

    assert_true(rk_test_server_restart(s, NULL));
    assert_int_equal(rk_test_server_port(s), port);
    assert_true(rk_test_server_pid(s) > 0);
    assert_int_not_equal(rk_test_server_pid(s), old);
    assert_true(admin_ping(s));

    /* No persistence: the restarted server starts empty. */
    r = rk_test_server_command(s, "EXISTS fixture:k");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    /* Restart with new args, while running: the old process is replaced. */
    static const char *const args[] = { "--maxmemory", "10mb", NULL };
    assert_true(rk_test_server_restart(s, args));
    r = rk_test_server_command(s, "CONFIG GET maxmemory");
    assert_non_null(r);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[1]->str, "10485760");
    freeReplyObject(r);
}

static void test_sigstop_times_out_sigcont_recovers(void **state)
{
    rk_test_server *s = *state;
    struct timeval tv = { 0, 300 * 1000 };

    assert_true(rk_test_server_signal(s, SIGSTOP));

    /* The kernel still accepts the connection (listen backlog), but the
     * paused server never answers: the command must time out. */
    int64_t t0 = rk_test_now_ms();
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rk_test_server_port(s), tv);
    assert_non_null(c);
    redisReply *r = NULL;
    if (!c->err) {
        assert_int_equal(redisSetTimeout(c, tv), REDIS_OK);
        r = redisCommand(c, "PING");
    }
    int64_t elapsed = rk_test_now_ms() - t0;
    assert_null(r);
    assert_int_not_equal(c->err, 0);
    assert_true(elapsed < 2000);
    redisFree(c);

    assert_true(rk_test_server_signal(s, SIGCONT));
    assert_true(admin_ping(s));
}

static void test_cli_helper(void **state)
{
    rk_test_server *s = *state;
    char out[64];

    static const char *const ping[] = { "PING", NULL };
    assert_int_equal(rk_test_server_cli(s, out, sizeof out, ping), 0);
    assert_string_equal(out, "PONG");

    static const char *const set[] = { "SET", "fixture:cli", "hello world", NULL };
    assert_int_equal(rk_test_server_cli(s, out, sizeof out, set), 0);
    assert_string_equal(out, "OK");
    static const char *const get[] = { "GET", "fixture:cli", NULL };
    assert_int_equal(rk_test_server_cli(s, out, sizeof out, get), 0);
    assert_string_equal(out, "hello world");

    /* Output larger than the buffer is cut, still NUL-terminated. */
    char small[4];
    assert_int_equal(rk_test_server_cli(s, small, sizeof small, get), 0);
    assert_string_equal(small, "hel");
}

/* The handles a program using the group fixture keeps. */
static rk_test_server *g_server;
static rk_client *g_client;
static rk_cache *g_cache;

/* rk_test_group_setup() fills them, with the client on the server and the
 * options asked for; the server checks see what the client wrote;
 * rk_test_group_flush() empties the server; rk_test_group_teardown() frees
 * and clears everything. */
static void test_group_fixture_and_server_checks(void **state)
{
    (void)state;
    void *group = NULL;
    assert_int_equal(rk_test_group_setup(&group, &(rk_test_group){.server = &g_server, .client = &g_client,
                                                                   .client_options = {.key_prefix = "fx"},
                                                                   .cache = &g_cache}),
                     0);
    assert_non_null(group);
    assert_non_null(g_server);
    assert_non_null(g_client);
    assert_non_null(g_cache);

    long long sets = rk_test_server_command_calls(g_server, "set");
    assert_int_equal(rk_cache_set_str(g_cache, "k", "v", NULL), RK_OK);
    assert_int_equal(rk_test_server_command_calls(g_server, "set"), sets + 1);
    assert_int_equal(rk_test_server_command_calls(g_server, "nosuchcommand"), 0);
    rk_test_assert_cached(g_cache, "k", "v");
    assert_int_equal(rk_test_server_integer(g_server, "EXISTS %s", "fx:cache:k"), 1);
    rk_test_server_ok(g_server, "SET %s %s", "fx:raw", "1");
    const char *dbsize[] = {"DBSIZE"};
    assert_int_equal(rk_test_client_integer(g_client, 1, dbsize, NULL), 2);

    assert_int_equal(rk_test_group_flush(&group), 0);
    assert_int_equal(rk_test_server_integer(g_server, "DBSIZE"), 0);

    assert_int_equal(rk_test_group_teardown(&group), 0);
    assert_null(group);
    assert_null(g_server);
    assert_null(g_client);
    assert_null(g_cache);
}

/* A group setup that fails part way undoes what it made. */
static void test_group_setup_failure_cleans_up(void **state)
{
    (void)state;
    void *group = NULL;
    assert_int_equal(rk_test_group_setup(&group, &(rk_test_group){.server = &g_server, .client = &g_client,
                                                                   .cache = &g_cache,
                                                                   .cache_options = &(rk_cache_options){
                                                                       .ns = "not a namespace"}}),
                     -1);
    assert_null(group);
    assert_null(g_server);
    assert_null(g_client);
    assert_null(g_cache);
    assert_int_equal(rk_test_group_teardown(&group), 0); /* a no-op now */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_ping_stop, start_plain, stop_server),
        cmocka_unit_test(test_stop_removes_everything),
        cmocka_unit_test_setup_teardown(test_requirepass_and_admin_password, start_with_password,
                                        stop_server),
        cmocka_unit_test_setup_teardown(test_kill_and_restart_same_port, start_plain, stop_server),
        cmocka_unit_test_setup_teardown(test_sigstop_times_out_sigcont_recovers, start_plain,
                                        stop_server),
        cmocka_unit_test_setup_teardown(test_cli_helper, start_plain, stop_server),
        cmocka_unit_test(test_group_fixture_and_server_checks),
        cmocka_unit_test(test_single_node_cluster),
        cmocka_unit_test(test_group_setup_failure_cleans_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
