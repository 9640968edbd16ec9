/*
 * client_test.c — rk_client against real redis-servers: the handshake
 * (AUTH with requirepass and with an ACL user, SELECT, CLIENT SETNAME),
 * TCP and Unix sockets, the generic command (binary-safe command names in
 * its messages), error replies, option validation, the pool shared by many
 * threads, and host names resolved within the connect deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <redkit/redkit.h>

#include "conn.h"
#include "support/clock.h"
#include "support/fixture.h"
#include "support/redis_server.h"

#define SECRET "hunter2-Sekr3t"

static rk_test_server *server;

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server});
}

static rk_client *connect_url(const char *url)
{
    rk_client *c = NULL;
    rk_status st = rk_client_new_url(url, &c);
    if (st != RK_OK) fail_msg("rk_client_new_url: %s: %s", rk_strerror(st), rk_last_error());
    return c;
}

static void test_ping_and_defaults(void **state)
{
    (void)state;
    rk_client *c = connect_url(rk_test_server_url(server));
    assert_int_equal(rk_client_ping(c), RK_OK);
    assert_string_equal(rk_client_key_prefix(c), "");
    rk_client_free(c);
    rk_client_free(NULL);
    assert_int_equal(rk_client_ping(NULL), RK_ERR_INVALID);
    assert_string_equal(rk_version(), RK_VERSION_STRING);
}

static void test_generic_command(void **state)
{
    (void)state;
    rk_client *c = connect_url(rk_test_server_url(server));
    const char *hset[] = {"HSET", "gen:h", "f1", "v1", "f2", "v2"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 6, hset, NULL, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_INTEGER);
    assert_int_equal(r->integer, 2);
    rk_reply_free(r);

    const char *hgetall[] = {"HGETALL", "gen:h"};
    assert_int_equal(rk_client_command(c, 2, hgetall, NULL, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    assert_int_equal(r->element[0]->type, RK_REPLY_STRING);
    rk_reply_free(r);

    /* Binary-safe arguments with explicit lengths. */
    const char *set[] = {"SET", "gen:bin", "a\0b"};
    const size_t lens[] = {3, 7, 3};
    assert_int_equal(rk_client_command(c, 3, set, lens, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_STATUS);
    assert_string_equal(r->str, "OK");
    rk_reply_free(r);
    const char *strlen_cmd[] = {"STRLEN", "gen:bin"};
    assert_int_equal(rk_client_command(c, 2, strlen_cmd, NULL, &r), RK_OK);
    assert_int_equal(r->integer, 3);
    rk_reply_free(r);

    const char *get_missing[] = {"GET", "gen:none"};
    assert_int_equal(rk_client_command(c, 2, get_missing, NULL, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_NIL);
    rk_reply_free(r);

    /* Server errors reach the caller with the server's text. */
    const char *wrongtype[] = {"LPUSH", "gen:h", "x"};
    r = (rk_reply *)1;
    assert_int_equal(rk_client_command(c, 3, wrongtype, NULL, &r), RK_ERR_SERVER);
    assert_null(r);
    assert_non_null(strstr(rk_last_error(), "WRONGTYPE"));
    const char *unknown[] = {"NOSUCHCOMMAND"};
    assert_int_equal(rk_client_command(c, 1, unknown, NULL, &r), RK_ERR_SERVER);
    assert_non_null(strstr(rk_last_error(), "ERR"));
    /* ...and the connection is still good afterwards. */
    assert_int_equal(rk_client_ping(c), RK_OK);

    /* MULTI would make every other caller's reply QUEUED: refused, with
     * the API to use instead (errors nested in EXEC's array: see
     * pipeline_test.c). */
    const char *multi[] = {"MULTI"};
    assert_int_equal(rk_client_command(c, 1, multi, NULL, &r), RK_ERR_INVALID);
    assert_null(r);
    assert_non_null(strstr(rk_last_error(), "rk_pipeline_exec"));

    /* Bad arguments. */
    const char *with_null[] = {"GET", NULL};
    assert_int_equal(rk_client_command(NULL, 1, hgetall, NULL, &r), RK_ERR_INVALID);
    assert_int_equal(rk_client_command(c, 0, hgetall, NULL, &r), RK_ERR_INVALID);
    assert_int_equal(rk_client_command(c, 2, with_null, NULL, &r), RK_ERR_INVALID);
    assert_int_equal(rk_client_command(c, 1, NULL, NULL, &r), RK_ERR_INVALID);
    assert_int_equal(rk_client_command(c, 1, hgetall, NULL, NULL), RK_ERR_INVALID);
    rk_reply_free(NULL);
    rk_client_free(c);
}

static void test_select_and_client_name(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s/3?name=redkit-test&prefix=app", rk_test_server_url(server));
    rk_client *c = connect_url(url);
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "where", "db3", NULL), RK_OK);

    redisReply *r = rk_test_server_command(server, "SELECT 3");
    freeReplyObject(r);
    char out[4096];
    const char *get3[] = {"-n", "3", "EXISTS", "app:cache:where", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, get3), 0);
    assert_string_equal(out, "1");
    const char *get0[] = {"-n", "0", "EXISTS", "app:cache:where", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, get0), 0);
    assert_string_equal(out, "0");

    const char *list[] = {"CLIENT", "LIST", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, list), 0);
    assert_non_null(strstr(out, "name=redkit-test"));
    assert_non_null(strstr(out, "db=3"));
    rk_cache_free(cache);
    rk_client_free(c);
}

static void test_unix_socket(void **state)
{
    (void)state;
    char url[512];
    snprintf(url, sizeof url, "unix://%s/redis.sock?db=2", rk_test_server_dir(server));
    rk_client *c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_OK);
    const char *set[] = {"SET", "via-unix", "1"};
    rk_reply *r;
    assert_int_equal(rk_client_command(c, 3, set, NULL, &r), RK_OK);
    rk_reply_free(r);
    char out[64];
    const char *exists[] = {"-n", "2", "EXISTS", "via-unix", NULL};
    assert_int_equal(rk_test_server_cli(server, out, sizeof out, exists), 0);
    assert_string_equal(out, "1");
    rk_client_free(c);

    /* A socket that is not there. */
    c = connect_url("unix:///nonexistent/redkit.sock");
    assert_int_equal(rk_client_ping(c), RK_ERR_UNAVAILABLE);
    rk_client_free(c);
}

static void assert_no_secret(void)
{
    if (strstr(rk_last_error(), SECRET)) fail_msg("secret leaked into: %s", rk_last_error());
}

/* requirepass: no password, a wrong one, the right one. */
static void test_requirepass(void **state)
{
    (void)state;
    const char *args[] = {"--requirepass", SECRET, NULL};
    rk_test_server *s = rk_test_server_start(args);
    assert_non_null(s);
    int port = rk_test_server_port(s);
    char url[256];

    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rk_client *c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    rk_client_free(c);

    snprintf(url, sizeof url, "redis://:wrong-%s@127.0.0.1:%d", SECRET, port);
    c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    assert_no_secret();
    assert_non_null(strstr(rk_last_error(), "AUTH"));
    rk_client_free(c);

    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/1", SECRET, port);
    c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);

    /* The password as an option, overriding a URL without one. */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    assert_int_equal(rk_client_new(&(rk_client_options){.url = url, .password = SECRET}, &c), RK_OK);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);

    /* The redacted URL hides it. */
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/1", SECRET, port);
    char *shown = NULL;
    assert_int_equal(rk_url_redact(url, &shown), RK_OK);
    assert_null(strstr(shown, SECRET));
    assert_non_null(strstr(shown, ":***@"));
    rk_free(shown);
    rk_test_server_stop(s);
}

/* An ACL user limited to its prefix and a few commands. */
static void test_acl_user(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    redisReply *r = rk_test_server_command(s, "ACL SETUSER app on >%s ~shop:* +@read +@write +ping -@dangerous",
                                           SECRET);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    int port = rk_test_server_port(s);
    char url[256];

    snprintf(url, sizeof url, "redis://app:%s@127.0.0.1:%d?prefix=shop", SECRET, port);
    rk_client *c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "k", "v", NULL), RK_OK);
    char *v;
    assert_int_equal(rk_cache_get_str(cache, "k", &v), RK_OK);
    assert_string_equal(v, "v");
    rk_free(v);
    /* Outside its rights: the server's NOPERM text, as RK_ERR_SERVER. */
    const char *other[] = {"GET", "other:key"};
    rk_reply *reply;
    assert_int_equal(rk_client_command(c, 2, other, NULL, &reply), RK_ERR_SERVER);
    assert_non_null(strstr(rk_last_error(), "NOPERM"));
    rk_cache_free(cache);
    rk_client_free(c);

    snprintf(url, sizeof url, "redis://app:nope@127.0.0.1:%d", port);
    c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    assert_non_null(strstr(rk_last_error(), "WRONGPASS"));
    rk_client_free(c);

    snprintf(url, sizeof url, "redis://nobody:%s@127.0.0.1:%d", SECRET, port);
    c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    assert_no_secret();
    rk_client_free(c);
    rk_test_server_stop(s);
}

static void test_unreachable(void **state)
{
    (void)state;
    /* Port 1 on loopback: nothing listens, the refusal is immediate. */
    rk_client *c = connect_url("redis://127.0.0.1:1?connect_timeout=300");
    assert_int_equal(rk_client_ping(c), RK_ERR_UNAVAILABLE);
    assert_non_null(strstr(rk_last_error(), "127.0.0.1:1"));
    rk_client_free(c);
    c = connect_url("redis://[::1]:1?connect_timeout=300");
    rk_status st = rk_client_ping(c);
    assert_true(st == RK_ERR_UNAVAILABLE); /* refused, or no IPv6 here */
    rk_client_free(c);
}

/* A paused server: the call ends at its deadline with RK_ERR_TIMEOUT, and
 * the connection it used is not reused afterwards. */
static void test_timeout(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    char url[128];
    snprintf(url, sizeof url, "%s?command_timeout=200&pool_size=1", rk_test_server_url(s));
    rk_client *c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_OK);
    assert_true(rk_test_server_signal(s, SIGSTOP));
    assert_int_equal(rk_client_ping(c), RK_ERR_TIMEOUT);
    assert_true(rk_test_server_signal(s, SIGCONT));
    /* The timed-out connection was closed; a new one answers. */
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);
    rk_test_server_stop(s);
}

static void test_bad_options(void **state)
{
    (void)state;
    rk_client *c = (rk_client *)1;
    assert_int_equal(rk_client_new(NULL, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_new_url("http://x", &c), RK_ERR_INVALID);
    assert_null(c);
    assert_int_equal(rk_client_new_url("redis://:" SECRET "@h:99999", &c), RK_ERR_INVALID);
    assert_no_secret();
    assert_int_equal(rk_client_new(&(rk_client_options){.pool_size = -1}, &c), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "pool_size"));
    assert_int_equal(rk_client_new(&(rk_client_options){.pool_size = RK_MAX_POOL_SIZE + 1}, &c), RK_ERR_INVALID);
    assert_int_equal(rk_client_new(&(rk_client_options){.port = 70000}, &c), RK_ERR_INVALID);
    assert_int_equal(rk_client_new(&(rk_client_options){.db = -1}, &c), RK_ERR_INVALID);
    assert_int_equal(rk_client_new(&(rk_client_options){.command_timeout_ms = -5}, &c), RK_ERR_INVALID);
    assert_int_equal(rk_client_new(&(rk_client_options){.client_name = "has space"}, &c), RK_ERR_INVALID);
    assert_int_equal(rk_client_new(&(rk_client_options){.key_prefix = "bad*prefix"}, &c), RK_ERR_INVALID);
    assert_int_equal(rk_client_new(&(rk_client_options){.tls = {.enabled = true, .ca_file = "/nonexistent/ca.pem"}},
                                   &c), RK_ERR_TLS);
    assert_int_equal(rk_client_new_url("rediss://127.0.0.1?tls_ca_file=/nonexistent/ca.pem", &c), RK_ERR_TLS);
    assert_null(c);

    /* NULL and "" URLs mean the defaults. */
    assert_int_equal(rk_client_new_url(NULL, &c), RK_OK);
    rk_client_free(c);
    assert_int_equal(rk_client_new_url("", &c), RK_OK);
    rk_client_free(c);
}

static void test_statuses(void **state)
{
    (void)state;
    for (int s = RK_OK; s <= RK_ERR_SYSTEM; s++) {
        assert_non_null(rk_strerror((rk_status)s));
        assert_string_not_equal(rk_strerror((rk_status)s), "unknown status");
    }
    assert_string_equal(rk_strerror((rk_status)999), "unknown status");
    assert_false(rk_status_is_error(RK_OK));
    assert_false(rk_status_is_error(RK_MISS));
    assert_true(rk_status_is_error(RK_ERR_SERVER));
    assert_true(rk_status_is_retryable(RK_ERR_TIMEOUT));
    assert_true(rk_status_is_retryable(RK_ERR_UNAVAILABLE));
    assert_false(rk_status_is_retryable(RK_ERR_INVALID));
    /* Frozen numbers. */
    assert_int_equal(RK_MISS, 1);
    assert_int_equal(RK_ERR_SERVER, 8);
    assert_int_equal(RK_ERR_SYSTEM, 12);
}

/* 8 threads × 10,000 mixed operations on one client with a pool of 4:
 * no error, and every value read is the one that thread wrote. */
#define THREADS 8
#define OPS 10000

struct worker {
    rk_cache *cache;
    int id;
    int errors;
    int wrong;
    char first_error[256];
};

static void note_error(struct worker *w, const char *what, rk_status st)
{
    if (w->errors++ == 0)
        snprintf(w->first_error, sizeof w->first_error, "%s: %s: %s", what, rk_strerror(st), rk_last_error());
}

static void *work(void *arg)
{
    struct worker *w = arg;
    char key[32], val[64];
    for (int i = 0; i < OPS; i++) {
        snprintf(key, sizeof key, "t%d:k%d", w->id, i % 50);
        snprintf(val, sizeof val, "thread %d value %d", w->id, i);
        rk_status st;
        switch (i % 5) {
        case 0:
        case 1: {
            if ((st = rk_cache_set_str(w->cache, key, val, &(rk_cache_set_options){.ttl_s = 60})) != RK_OK) {
                note_error(w, "set", st);
                break;
            }
            char *got = NULL;
            if ((st = rk_cache_get_str(w->cache, key, &got)) != RK_OK) note_error(w, "get", st);
            else if (strcmp(got, val) != 0) w->wrong++;
            rk_free(got);
            break;
        }
        case 2: {
            int64_t n = 0;
            if ((st = rk_cache_set_i64(w->cache, key, (int64_t)w->id * 1000000 + i, NULL)) != RK_OK)
                note_error(w, "set_i64", st);
            else if ((st = rk_cache_get_i64(w->cache, key, &n)) != RK_OK) note_error(w, "get_i64", st);
            else if (n != (int64_t)w->id * 1000000 + i) w->wrong++;
            break;
        }
        case 3:
            if ((st = rk_cache_exists(w->cache, key)) != RK_OK && st != RK_MISS) note_error(w, "exists", st);
            break;
        default:
            if ((st = rk_cache_delete(w->cache, key)) != RK_OK && st != RK_MISS) note_error(w, "delete", st);
            break;
        }
    }
    return NULL;
}

static void test_pool_shared_by_threads(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s?pool_size=4&command_timeout=5000", rk_test_server_url(server));
    rk_client *c = connect_url(url);
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, &(rk_cache_options){.ns = "threads"}, &cache), RK_OK);

    pthread_t tid[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.cache = cache, .id = i};
        assert_int_equal(pthread_create(&tid[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(tid[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        if (w[i].errors) fail_msg("thread %d: %d errors, first: %s", i, w[i].errors, w[i].first_error);
        assert_int_equal(w[i].wrong, 0);
    }
    /* The pool never opened more than its size. */
    redisReply *r = rk_test_server_command(server, "CLIENT LIST");
    assert_non_null(r);
    int conns = 0;
    for (const char *p = r->str; (p = strstr(p, "id=")); p += 3) conns++;
    freeReplyObject(r);
    assert_true(conns <= 4 + 1); /* + the fixture's own connection */
    rk_cache_free(cache);
    rk_client_free(c);
}

/* A caller that finds every connection busy waits, but only until its own
 * deadline. */
struct blocker {
    rk_client *client;
    const char *list;
    rk_status st;
    char msg[256];
};

static void *block(void *arg)
{
    struct blocker *b = arg;
    const char *blpop[] = {"BLPOP", b->list, "0"};
    rk_reply *r = NULL;
    b->st = rk_client_command(b->client, 3, blpop, NULL, &r);
    snprintf(b->msg, sizeof b->msg, "%s", rk_last_error());
    rk_reply_free(r);
    return NULL;
}

static void test_pool_wait_is_bounded(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s?pool_size=1&command_timeout=300", rk_test_server_url(server));
    rk_client *c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_OK); /* the one connection is open */
    struct blocker b[3] = {{c, "q1", 0, ""}, {c, "q2", 0, ""}, {c, "q3", 0, ""}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&t[i], NULL, block, &b[i]), 0);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    /* Every BLPOP 0 blocks forever on the server, so each call that got the
     * connection timed out reading, and at least one never got it. */
    int pool_timeouts = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b[i].st, RK_ERR_TIMEOUT);
        if (strstr(b[i].msg, "no free connection")) pool_timeouts++;
    }
    assert_true(pool_timeouts >= 1);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);
}

/* ---- command names: binary-safe, bounded in messages ------------------ */

/* rk_client_command with argvlen is binary-safe: argv[0] need not be
 * NUL-terminated, and the error message must not read past its length
 * (under ASan a read past the 3-byte block is a heap-buffer-overflow). */
static void test_command_name_not_nul_terminated(void **state)
{
    (void)state;
    rk_client *c = connect_url(rk_test_server_url(server));
    const char *lpush[] = {"LPUSH", "name:list", "x"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 3, lpush, NULL, &r), RK_OK);
    rk_reply_free(r);

    char *get = malloc(3);
    assert_non_null(get);
    memcpy(get, "GET", 3); /* no NUL */
    const char *argv[] = {get, "name:list"};
    const size_t lens[] = {3, 9};
    assert_int_equal(rk_client_command(c, 2, argv, lens, &r), RK_ERR_SERVER);
    assert_null(r);
    assert_int_equal(strncmp(rk_last_error(), "GET: WRONGTYPE", 14), 0);
    free(get);

    /* A name with bytes that are not printable, and one far too long:
     * shown with '?' for the former, cut at 64 bytes with "..." for the
     * latter; the server's own text follows as before. */
    const char odd[] = {'N', 'O', '\n', 'S', '\0', 'U', 'C', 'H', '\x7f'};
    const char *odd_argv[] = {odd};
    const size_t odd_len[] = {sizeof odd};
    assert_int_equal(rk_client_command(c, 1, odd_argv, odd_len, &r), RK_ERR_SERVER);
    assert_int_equal(strncmp(rk_last_error(), "NO?S?UCH?: ERR", 14), 0);
    char longname[200];
    memset(longname, 'X', sizeof longname);
    const char *long_argv[] = {longname};
    const size_t long_len[] = {sizeof longname};
    assert_int_equal(rk_client_command(c, 1, long_argv, long_len, &r), RK_ERR_SERVER);
    char want[80];
    memset(want, 'X', 64);
    memcpy(want + 64, "...: ERR", 9);
    assert_int_equal(strncmp(rk_last_error(), want, strlen(want)), 0);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);
}

/* ---- host names: resolved within the connect deadline ----------------- */

static void test_host_name_resolution(void **state)
{
    (void)state;
    /* A name still resolves and connects (IP literals skip the resolver). */
    char url[128];
    snprintf(url, sizeof url, "redis://localhost:%d", rk_test_server_port(server));
    rk_client *c = connect_url(url);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);

    /* A name that does not exist: unavailable, with the resolver's answer
     * (RFC 6761 reserves .invalid: no resolver has an address for it). */
    c = connect_url("redis://nosuch.invalid:6379?connect_timeout=5000");
    assert_int_equal(rk_client_ping(c), RK_ERR_UNAVAILABLE);
    assert_non_null(strstr(rk_last_error(), "resolve nosuch.invalid"));
    rk_client_free(c);

    /* A deadline already past: a timeout, without waiting on the
     * resolver, and nothing left behind. */
    struct addrinfo *res = (struct addrinfo *)1;
    assert_int_equal(rk__resolve("localhost", 6379, rk__now_ns() - 1, &res), RK_ERR_TIMEOUT);
    assert_null(res);
    assert_string_equal(rk_last_error(), "resolving localhost: timed out");

    /* And in time: addresses for the port asked. */
    assert_int_equal(rk__resolve("localhost", 6380, rk__now_ns() + 5000000000LL, &res), RK_OK);
    assert_non_null(res);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        assert_int_equal(ai->ai_socktype, SOCK_STREAM);
        if (ai->ai_family == AF_INET) assert_int_equal(ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port), 6380);
    }
    freeaddrinfo(res);
}

/* Lookups abandoned at their deadline stay owned by exactly one side: the
 * caller when the lookup could be cancelled, else the resolver's
 * completion. Many threads, deadlines of 0 to 2 ms, names that resolve
 * and names that do not: no crash, and (under ASan) no leak and no use
 * after free; every abandoned lookup is eventually freed. */
#define LOOKUP_THREADS 8
#define LOOKUPS_PER_THREAD 40

static void *lookup_storm(void *arg)
{
    int id = (int)(intptr_t)arg;
    static const char *const names[] = {"localhost", "nosuch.invalid", "ip6-localhost", "localhost.localdomain"};
    long unexpected = 0;
    for (int i = 0; i < LOOKUPS_PER_THREAD; i++) {
        struct addrinfo *res = NULL;
        int64_t deadline = rk__now_ns() + ((i + id) % 5) * 500000; /* 0 to 2 ms */
        rk_status st = rk__resolve(names[(i + id) % 4], 6379, deadline, &res);
        if (st == RK_OK) freeaddrinfo(res);
        else if (st != RK_ERR_TIMEOUT && st != RK_ERR_UNAVAILABLE) unexpected++;
        if (st != RK_OK && res) unexpected++;
    }
    return (void *)(intptr_t)unexpected;
}

static void test_resolver_deadline_ownership(void **state)
{
    (void)state;
    pthread_t t[LOOKUP_THREADS];
    for (int i = 0; i < LOOKUP_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, lookup_storm, (void *)(intptr_t)i), 0);
    long unexpected = 0;
    for (int i = 0; i < LOOKUP_THREADS; i++) {
        void *ret;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        unexpected += (long)(intptr_t)ret;
    }
    assert_int_equal(unexpected, 0);
    /* Abandoned lookups finish in the background; wait for the last one
     * (bounded: the resolver's own timeouts are seconds). */
    for (int i = 0; i < 3000 && rk__resolve_pending() > 0; i++) rk_test_sleep_ms(10);
    assert_int_equal(rk__resolve_pending(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_and_defaults),
        cmocka_unit_test(test_generic_command),
        cmocka_unit_test(test_select_and_client_name),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_requirepass),
        cmocka_unit_test(test_acl_user),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_pool_shared_by_threads),
        cmocka_unit_test(test_pool_wait_is_bounded),
        cmocka_unit_test(test_command_name_not_nul_terminated),
        cmocka_unit_test(test_host_name_resolution),
        cmocka_unit_test(test_resolver_deadline_ownership),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
