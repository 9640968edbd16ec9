/*
 * acl_test.c — redkit under a restricted Redis 6+ ACL user, against a real
 * redis-server: a user limited to the keys "shop:*" and to the commands the
 * cache and the connection handshake send. The cache with the prefix "shop"
 * works fully; anything outside the user's rights fails with RK_ERR_SERVER
 * and "NOPERM" in rk_last_error() (by design: no dedicated status), without
 * counting towards the circuit breaker; a wrong password and a disabled
 * user fail with RK_ERR_AUTH.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

#include "support/fixture.h"
#include "support/redis_server.h"

#define USER "shop"
#define PASSWORD "acl-Pa55-shop-9d2f"

/*
 * What redkit needs, and nothing else: the cache sends GET, SET (with PX),
 * UNLINK, EXISTS and PTTL; rk_client_ping() and the idle check send PING;
 * the handshake (src/transport/conn.c) sends AUTH, SELECT when db != 0 and CLIENT
 * SETNAME when a client name is set. -@dangerous comes last so that none of
 * those can ever let a dangerous command through. This is the line shown in
 * docs/client.md ("ACL users").
 */
#define ACL_RULES                                                                             \
    "on resetkeys ~shop:* resetchannels -@all +get +set +unlink +exists +pttl +ping +auth " \
    "+select +client|setname -@dangerous"

/* The whole cache — get-or-compute, batches, tags, clears — and
 * rk_server_memory(), as granted in README.md and docs/client.md ("ACL
 * users"), scripts' inner commands included. test_documented_acl_line
 * checks that both pages show exactly this line. */
#define FULL_USER "shopall"
#define FULL_ACL_RULES                                                                         \
    "on resetkeys ~shop:* resetchannels -@all +get +set +unlink +exists +pttl +ping +auth "     \
    "+select +client|setname +mget +evalsha +eval +time +zadd +zremrangebyscore +zrange "      \
    "+zcount +pexpireat +persist +del +scan +info"

static rk_test_server *server;
static int port;

/* ACL SETUSER name <rules...> >password on the admin connection. */
static void set_user(const char *name, const char *rules, const char *password)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ACL SETUSER %s %s >%%s", name, rules);
    redisReply *r = rk_test_server_command(server, cmd, password);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_STATUS) fail_msg("ACL SETUSER %s: %s", name, r->str ? r->str : "?");
    freeReplyObject(r);
}

static int group_setup(void **state)
{
    if (rk_test_group_setup(state, &(rk_test_group){.server = &server})) return -1;
    port = rk_test_server_port(server);
    set_user(USER, ACL_RULES, PASSWORD);
    set_user(FULL_USER, FULL_ACL_RULES, PASSWORD);
    return 0;
}

static void assert_noperm(rk_status st)
{
    if (st != RK_ERR_SERVER) fail_msg("want RK_ERR_SERVER, got %s: %s", rk_strerror(st), rk_last_error());
    if (!strstr(rk_last_error(), "NOPERM")) fail_msg("no NOPERM in: %s", rk_last_error());
}

/* The value of a key in db, read on the admin connection ("" if absent). */
static void admin_get(int db, const char *key, char *out, size_t cap)
{
    redisReply *r = rk_test_server_command(server, "EVAL %s 0 %d %s",
                                           "redis.call('SELECT', ARGV[1]) "
                                           "return redis.call('GET', ARGV[2])",
                                           db, key);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_STRING) snprintf(out, cap, "%.*s", (int)r->len, r->str);
    else out[0] = '\0';
    freeReplyObject(r);
}

/* Every cache operation, through a client authenticated as the user. */
static void exercise_cache(rk_client *c, int db)
{
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK); /* keys shop:cache:... */
    assert_int_equal(rk_client_ping(c), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "user:1", "Ada", &(rk_cache_set_options){.ttl_s = 60}), RK_OK);
    char *s = NULL;
    assert_int_equal(rk_cache_get_str(cache, "user:1", &s), RK_OK);
    assert_string_equal(s, "Ada");
    rk_free(s);
    assert_int_equal(rk_cache_exists(cache, "user:1"), RK_OK);
    int64_t ttl = 0;
    assert_int_equal(rk_cache_ttl_ms(cache, "user:1", &ttl), RK_OK);
    assert_true(ttl > 0 && ttl <= 60000);
    assert_int_equal(rk_cache_set_i64(cache, "n", 42, &(rk_cache_set_options){.ttl_s = RK_TTL_NONE}), RK_OK);
    int64_t n = 0;
    assert_int_equal(rk_cache_get_i64(cache, "n", &n), RK_OK);
    assert_int_equal(n, 42);
    assert_int_equal(rk_cache_ttl_ms(cache, "n", &ttl), RK_OK);
    assert_int_equal(ttl, RK_TTL_NONE);

    /* The keys landed in the user's pattern, in the selected database. */
    char raw[64];
    admin_get(db, "shop:cache:user:1", raw, sizeof raw);
    assert_string_equal(raw + 2, "Ada"); /* after the 2-byte type header */

    assert_int_equal(rk_cache_delete(cache, "user:1"), RK_OK);
    assert_int_equal(rk_cache_delete(cache, "user:1"), RK_OK); /* idempotent */
    assert_int_equal(rk_cache_exists(cache, "user:1"), RK_MISS);
    assert_int_equal(rk_cache_ttl_ms(cache, "user:1", &ttl), RK_MISS);
    assert_int_equal(rk_cache_get_str(cache, "user:1", &s), RK_MISS);
    assert_int_equal(rk_cache_delete(cache, "n"), RK_OK);
    rk_cache_free(cache);

    rk_client_stats stats;
    assert_int_equal(rk_client_stats_get(c, &stats), RK_OK);
    assert_int_equal(stats.connect_failures, 0);
    assert_true(stats.connects >= 1);
}

/* The user and password in the URL, with a database and a client name, so
 * the handshake sends AUTH user pw, SELECT and CLIENT SETNAME. */
static void test_cache_works_url(void **state)
{
    (void)state;
    char url[256];
    snprintf(url, sizeof url, "redis://" USER ":" PASSWORD "@127.0.0.1:%d/2?prefix=shop&name=shop-api", port);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
    exercise_cache(c, 2);

    /* The connection really is the ACL user's, named as asked. */
    redisReply *r = rk_test_server_command(server, "CLIENT LIST");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_non_null(strstr(r->str, "name=shop-api"));
    assert_non_null(strstr(r->str, "user=" USER));
    freeReplyObject(r);
    rk_client_free(c);
}

/* The same with every field set in rk_client_options, no URL. */
static void test_cache_works_options(void **state)
{
    (void)state;
    rk_client *c = rk_test_client_new(&(rk_client_options){
        .host = "127.0.0.1", .port = port, .username = USER, .password = PASSWORD,
        .key_prefix = "shop", .db = 3, .client_name = "shop-worker"});
    exercise_cache(c, 3);
    rk_client_free(c);

    /* Over the Unix socket, credentials in the URL. */
    char url[512];
    snprintf(url, sizeof url, "unix://" USER ":" PASSWORD "@%s/redis.sock?prefix=shop", rk_test_server_dir(server));
    c = rk_test_client_new(&(rk_client_options){.url = url});
    exercise_cache(c, 0);
    rk_client_free(c);
}

static rk_status compute_answer(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key;
    ++*(int *)ctx;
    return rk_cache_computed_set(out, "42", 2);
}

/* Every feature of the cache under the least-privilege user of the docs. */
static void test_whole_cache_under_acl(void **state)
{
    (void)state;
    rk_client *c = rk_test_client_new(&(rk_client_options){
        .host = "127.0.0.1", .port = port, .username = FULL_USER, .password = PASSWORD, .key_prefix = "shop"});
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);

    /* get-or-compute: a miss (lock, compute, store, scripted unlock), a hit */
    int computed = 0;
    void *v = NULL;
    size_t len = 0;
    for (int i = 0; i < 2; i++) {
        rk_status st = rk_cache_fetch(cache, "answer", compute_answer, &computed,
                                      &(rk_cache_fetch_options){.ttl_s = 60, .stale_ms = 1000}, &v, &len, NULL);
        if (st != RK_OK) fail_msg("fetch: %s: %s", rk_strerror(st), rk_last_error());
        assert_memory_equal(v, "42", 2);
        rk_free(v);
    }
    assert_int_equal(computed, 1);

    /* batches, with tags */
    const char *tags[] = {"team"};
    rk_cache_entry entries[] = {{"a", "1", 1}, {"b", "2", 1}};
    assert_int_equal(rk_cache_mset(cache, entries, 2, &(rk_cache_set_options){.ttl_s = 60, .tags = tags, .ntags = 1}, NULL),
                     RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "c", "3", &(rk_cache_set_options){.ttl_s = 60, .tags = tags, .ntags = 1}),
                     RK_OK);
    const char *keys[] = {"a", "b", "nope"};
    rk_cache_result res[3];
    assert_int_equal(rk_cache_mget(cache, keys, 3, res), RK_OK);
    assert_int_equal(res[0].status, RK_OK);
    assert_int_equal(res[1].status, RK_OK);
    assert_int_equal(res[2].status, RK_MISS);
    rk_cache_results_free(res, 3);

    /* tag invalidation and namespace clear */
    size_t removed = 0;
    rk_status st = rk_cache_invalidate_tag(cache, "team", &removed);
    if (st != RK_OK) fail_msg("invalidate: %s: %s", rk_strerror(st), rk_last_error());
    assert_int_equal(removed, 3);
    uint64_t cursor = 0;
    removed = 0;
    for (int i = 0; i < 100; i++) {
        size_t n;
        st = rk_cache_clear(cache, &cursor, &n);
        if (st != RK_OK) fail_msg("clear: %s: %s", rk_strerror(st), rk_last_error());
        removed += n;
        if (cursor == 0) break;
    }
    assert_int_equal(cursor, 0);
    assert_int_equal(removed, 1); /* "answer" */
    assert_int_equal(rk_cache_exists(cache, "answer"), RK_MISS);

    /* rk_server_memory (redkit stats / memory): INFO */
    rk_memory_info m;
    st = rk_server_memory(c, &m);
    if (st != RK_OK) fail_msg("server memory: %s: %s", rk_strerror(st), rk_last_error());
    assert_true(m.used_memory > 0);

    rk_cache_free(cache);
    rk_client_free(c);
}

/* Outside the user's rights: RK_ERR_SERVER with NOPERM, nothing written. */
static void test_noperm(void **state)
{
    (void)state;
    char url[256];
    rk_reply *reply = (rk_reply *)1;

    /* A prefix whose keys fall outside ~shop:* — "shopx:..." and
     * "cache:..." (no prefix) do not match it. */
    static const char *const outside[] = {"?prefix=shopx", "?prefix=other", ""};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        snprintf(url, sizeof url, "redis://" USER ":" PASSWORD "@127.0.0.1:%d%s", port, outside[i]);
        rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
        rk_cache *cache;
        assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
        assert_noperm(rk_cache_set_str(cache, "k", "v", NULL));
        char *s = (char *)"untouched";
        assert_noperm(rk_cache_get_str(cache, "k", &s)); /* an error, not a degraded miss */
        assert_null(s);
        assert_noperm(rk_cache_exists(cache, "k"));
        int64_t ttl = 7;
        assert_noperm(rk_cache_ttl_ms(cache, "k", &ttl));
        assert_int_equal(ttl, 7);
        assert_noperm(rk_cache_delete(cache, "k"));
        rk_cache_free(cache);
        /* The connection survived the refusals and was reused. */
        rk_client_stats stats;
        assert_int_equal(rk_client_stats_get(c, &stats), RK_OK);
        assert_int_equal(stats.connects, 1);
        assert_int_equal(stats.disconnects, 0);
        rk_client_free(c);
    }

    /* Forbidden commands, and a key outside the pattern, by hand. */
    snprintf(url, sizeof url, "redis://" USER ":" PASSWORD "@127.0.0.1:%d?prefix=shop", port);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
    const char *flushall[] = {"FLUSHALL"};
    const char *keys[] = {"KEYS", "*"};
    const char *other_key[] = {"GET", "other:key"};
    const char *config[] = {"CONFIG", "GET", "requirepass"};
    const char *hset[] = {"HSET", "shop:h", "f", "v"}; /* inside the pattern, not an allowed command */
    const char *acl[] = {"ACL", "SETUSER", USER, "+@all"};
    assert_noperm(rk_client_command(c, 1, flushall, NULL, &reply));
    assert_null(reply);
    assert_noperm(rk_client_command(c, 2, keys, NULL, &reply));
    assert_noperm(rk_client_command(c, 2, other_key, NULL, &reply));
    assert_noperm(rk_client_command(c, 3, config, NULL, &reply));
    assert_noperm(rk_client_command(c, 4, hset, NULL, &reply));
    assert_noperm(rk_client_command(c, 4, acl, NULL, &reply));
    assert_int_equal(rk_client_ping(c), RK_OK);

    /* Nothing was written anywhere, and the user's rights are unchanged. */
    redisReply *r = rk_test_server_command(server, "DBSIZE");
    assert_non_null(r);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = rk_test_server_command(server, "ACL DRYRUN %s FLUSHALL", USER);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING); /* the reason it is refused */
    freeReplyObject(r);
    rk_client_free(c);
}

/* A NOPERM is an answer from a healthy server: 20 of them in a row leave
 * the circuit breaker closed, and normal calls keep working. */
static void test_noperm_does_not_trip_breaker(void **state)
{
    (void)state;
    char url[256];
    snprintf(url, sizeof url, "redis://" USER ":" PASSWORD "@127.0.0.1:%d?prefix=shop", port);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url, .breaker_threshold = 2});
    rk_cache *mine, *foreign;
    assert_int_equal(rk_cache_new(c, NULL, &mine), RK_OK);
    rk_client *outside = rk_test_client_new(&(rk_client_options){.url = url, .key_prefix = "other",
                                                                 .breaker_threshold = 2});
    assert_int_equal(rk_cache_new(outside, NULL, &foreign), RK_OK);

    const char *flushall[] = {"FLUSHALL"};
    rk_reply *reply;
    for (int i = 0; i < 20; i++) {
        assert_noperm(rk_client_command(c, 1, flushall, NULL, &reply));
        assert_noperm(rk_cache_set_str(foreign, "k", "v", NULL));
        assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_CLOSED);
        assert_int_equal(rk_client_circuit(outside), RK_CIRCUIT_CLOSED);
    }
    rk_client_stats stats;
    assert_int_equal(rk_client_stats_get(c, &stats), RK_OK);
    assert_int_equal(stats.circuit, RK_CIRCUIT_CLOSED);
    assert_int_equal(stats.circuit_opened, 0);
    assert_int_equal(stats.connect_failures, 0);
    assert_int_equal(stats.fast_failed, 0);
    assert_int_equal(stats.requests, 20);

    /* Normal calls still work, on both clients. */
    assert_int_equal(rk_cache_set_str(mine, "k", "v", NULL), RK_OK);
    char *s;
    assert_int_equal(rk_cache_get_str(mine, "k", &s), RK_OK);
    assert_string_equal(s, "v");
    rk_free(s);
    assert_int_equal(rk_client_ping(outside), RK_OK);
    rk_cache_free(foreign);
    rk_cache_free(mine);
    rk_client_free(outside);
    rk_client_free(c);

    /* The control: with the same threshold, transport failures do open
     * the circuit, so the loop above would have noticed. */
    rk_client *dead = rk_test_client_new(&(rk_client_options){
        .url = "redis://127.0.0.1:1", .breaker_threshold = 2, .reconnect_base_ms = 1,
        .reconnect_max_ms = 1, .connect_timeout_ms = 300});
    for (int i = 0; i < 50 && rk_client_circuit(dead) == RK_CIRCUIT_CLOSED; i++)
        assert_int_equal(rk_client_ping(dead), RK_ERR_UNAVAILABLE);
    assert_int_not_equal(rk_client_circuit(dead), RK_CIRCUIT_CLOSED);
    rk_client_free(dead);
}

/* A wrong password: RK_ERR_AUTH with the server's WRONGPASS, URL or options. */
static void test_wrong_password(void **state)
{
    (void)state;
    char url[256];
    snprintf(url, sizeof url, "redis://" USER ":not-the-password@127.0.0.1:%d?prefix=shop", port);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    assert_non_null(strstr(rk_last_error(), "WRONGPASS"));
    assert_null(strstr(rk_last_error(), "not-the-password"));
    rk_cache *cache;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    rk_status st = rk_cache_set_str(cache, "k", "v", NULL);
    /* The attempt itself says AUTH; a call inside the backoff fails fast. */
    assert_true(st == RK_ERR_AUTH || st == RK_ERR_UNAVAILABLE);
    rk_cache_free(cache);
    rk_client_free(c);

    c = rk_test_client_new(&(rk_client_options){.host = "127.0.0.1", .port = port, .username = USER,
                                                .password = PASSWORD "x"});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    rk_client_free(c);

    /* The right password for another user is not enough either. */
    c = rk_test_client_new(&(rk_client_options){.host = "127.0.0.1", .port = port, .username = "nobody",
                                                .password = PASSWORD});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    rk_client_free(c);
}

/* A user that is "off" cannot log in, even with its password. */
static void test_user_off(void **state)
{
    (void)state;
    set_user("shop_off", "off resetkeys ~shop:* -@all +@read +ping", PASSWORD);
    char url[256];
    snprintf(url, sizeof url, "redis://shop_off:" PASSWORD "@127.0.0.1:%d", port);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    assert_non_null(strstr(rk_last_error(), "WRONGPASS"));
    rk_client_free(c);

    /* Switched on, the same client options work; off again, new
     * connections are refused. */
    set_user("shop_off", "on", PASSWORD);
    c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);
    set_user("shop_off", "off", PASSWORD);
    c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    rk_client_free(c);
}

/* A user without the handshake's commands: a client name it may not set
 * makes every connection fail with RK_ERR_SERVER and the NOPERM text (a
 * refused handshake, counted as a failed connect). Documented in
 * docs/client.md: grant +client|setname and +select when they are used. */
static void test_handshake_noperm(void **state)
{
    (void)state;
    set_user("shop_min", "on resetkeys ~shop:* -@all +get +set +unlink +exists +pttl +ping", PASSWORD);
    char url[256];
    snprintf(url, sizeof url, "redis://shop_min:" PASSWORD "@127.0.0.1:%d?prefix=shop", port);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_OK); /* AUTH needs no permission */
    rk_client_free(c);

    c = rk_test_client_new(&(rk_client_options){.url = url, .client_name = "named"});
    assert_noperm(rk_client_ping(c));
    assert_non_null(strstr(rk_last_error(), "CLIENT SETNAME"));
    rk_client_stats stats;
    assert_int_equal(rk_client_stats_get(c, &stats), RK_OK);
    assert_int_equal(stats.connect_failures, 1);
    rk_client_free(c);

    c = rk_test_client_new(&(rk_client_options){.url = url, .db = 1});
    assert_noperm(rk_client_ping(c));
    assert_non_null(strstr(rk_last_error(), "SELECT"));
    rk_client_free(c);
}

/* Every ACL line of a documentation page (lines starting "ACL SETUSER
 * shop on >s3cret ") must be one the tests above run under — the minimal
 * one (ACL_RULES) or the whole cache's (FULL_ACL_RULES, +info included) —
 * and the page must show the whole one. */
static void check_documented_lines(const char *page)
{
    char path[1024];
    const char *file = __FILE__;
    const char *cut = strstr(file, "tests/security/acl_test.c");
    snprintf(path, sizeof path, "%.*s%s", cut ? (int)(cut - file) : 0, file, page);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    static const char start[] = "ACL SETUSER shop on >s3cret ";
    char line[2048], rules[2048];
    bool full = false;
    for (int n = 0; n < 100000 && fgets(line, sizeof line, f); n++) {
        if (strncmp(line, start, sizeof start - 1) != 0) continue;
        line[strcspn(line, "\n")] = '\0';
        snprintf(rules, sizeof rules, "on %s", line + sizeof start - 1);
        if (strcmp(rules, FULL_ACL_RULES) == 0) full = true;
        else if (strcmp(rules, ACL_RULES) != 0) fail_msg("%s shows an untested ACL line:\n  %s", page, rules);
    }
    fclose(f);
    if (!full) fail_msg("%s does not show the tested line\n  %s", page, FULL_ACL_RULES);
}

static void test_documented_acl_line(void **state)
{
    (void)state;
    check_documented_lines("README.md");
    check_documented_lines("docs/client.md");
}

/* A user name with no password (redis://limited@host, or .username
 * alone) authenticates as that user — a nopass user accepts any password
 * — or is refused; never silently as "default". */
static void expect_whoami(rk_client *c, const char *want)
{
    const char *argv[] = {"ACL", "WHOAMI"};
    rk_reply *r = NULL;
    rk_status st = rk_client_command(c, 2, argv, NULL, &r);
    if (st != RK_OK) fail_msg("ACL WHOAMI: %s: %s", rk_strerror(st), rk_last_error());
    assert_int_equal(r->type, RK_REPLY_STRING);
    assert_string_equal(r->str, want);
    rk_reply_free(r);
}

static void test_user_without_password(void **state)
{
    (void)state;
    redisReply *r = rk_test_server_command(server, "ACL SETUSER limited on nopass resetkeys ~shop:* -@all +ping "
                                                   "+acl|whoami +get +set");
    assert_non_null(r);
    freeReplyObject(r);
    char url[256];
    snprintf(url, sizeof url, "redis://limited@127.0.0.1:%d", port);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_OK);
    expect_whoami(c, "limited");
    rk_client_free(c);

    c = rk_test_client_new(&(rk_client_options){.host = "127.0.0.1", .port = port, .username = "limited"});
    expect_whoami(c, "limited");
    rk_client_free(c);

    /* A user that has a password, named without one: refused, not default. */
    snprintf(url, sizeof url, "redis://" USER "@127.0.0.1:%d", port);
    c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    rk_client_free(c);

    /* An unknown user too. */
    snprintf(url, sizeof url, "redis://nobody-here@127.0.0.1:%d", port);
    c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    rk_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_cache_works_url, rk_test_group_flush),
        cmocka_unit_test_setup(test_cache_works_options, rk_test_group_flush),
        cmocka_unit_test_setup(test_whole_cache_under_acl, rk_test_group_flush),
        cmocka_unit_test_setup(test_noperm, rk_test_group_flush),
        cmocka_unit_test_setup(test_noperm_does_not_trip_breaker, rk_test_group_flush),
        cmocka_unit_test_setup(test_wrong_password, rk_test_group_flush),
        cmocka_unit_test_setup(test_user_off, rk_test_group_flush),
        cmocka_unit_test_setup(test_handshake_noperm, rk_test_group_flush),
        cmocka_unit_test(test_documented_acl_line),
        cmocka_unit_test_setup(test_user_without_password, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
