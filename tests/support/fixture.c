/*
 * fixture.c — the group fixture and the asserting helpers of fixture.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fixture.h"

/* What rk_test_group_setup() keeps in cmocka's group state: where the
 * test program keeps its handles. */
typedef struct group_record {
    rk_test_server **server;
    rk_client **client;
    rk_cache **cache;
} group_record;

int rk_test_group_teardown(void **state)
{
    group_record *g = *state;
    if (!g) return 0;
    if (g->cache) {
        rk_cache_free(*g->cache);
        *g->cache = NULL;
    }
    if (g->client) {
        rk_client_free(*g->client);
        *g->client = NULL;
    }
    rk_test_server_stop(*g->server);
    *g->server = NULL;
    free(g);
    *state = NULL;
    return 0;
}

int rk_test_group_setup(void **state, const rk_test_group *g)
{
    group_record *rec = calloc(1, sizeof *rec);
    if (!rec) return -1;
    *rec = (group_record){.server = g->server, .client = g->client, .cache = g->cache};
    *state = rec;
    if (rec->cache) *rec->cache = NULL;
    if (rec->client) *rec->client = NULL;

    *rec->server = rk_test_server_start_opts(&(rk_test_server_options){
        .extra_args = g->server_args, .cluster = rk_test_cluster_requested()});
    if (!*rec->server) goto fail; /* the fixture said why */
    if (g->admin_password) rk_test_server_set_admin_password(*rec->server, g->admin_password);
    if (rec->client) {
        rk_client_options o = g->client_options;
        o.url = rk_test_server_url(*rec->server);
        rk_status st = rk_client_new(&o, rec->client);
        if (st != RK_OK) {
            fprintf(stderr, "group setup: rk_client_new: %s: %s\n", rk_strerror(st), rk_last_error());
            goto fail;
        }
    }
    if (rec->cache) {
        rk_status st = rec->client ? rk_cache_new(*rec->client, g->cache_options, rec->cache) : RK_ERR_INVALID;
        if (st != RK_OK) {
            fprintf(stderr, "group setup: rk_cache_new: %s: %s\n", rk_strerror(st),
                    rec->client ? rk_last_error() : "a cache needs a client");
            goto fail;
        }
    }
    return 0;

fail:
    rk_test_group_teardown(state);
    return -1;
}

int rk_test_group_flush(void **state)
{
    const group_record *g = *state;
    return g && rk_test_server_flush(*g->server) ? 0 : -1;
}

rk_client *rk_test_client_new(const rk_client_options *o)
{
    rk_client *c = NULL;
    rk_status st = rk_client_new(o, &c);
    if (st != RK_OK) fail_msg("rk_client_new: %s: %s", rk_strerror(st), rk_last_error());
    return c;
}

rk_cache *rk_test_cache_new(rk_client *client, const rk_cache_options *o)
{
    rk_cache *c = NULL;
    rk_status st = rk_cache_new(client, o, &c);
    if (st != RK_OK) fail_msg("rk_cache_new: %s: %s", rk_strerror(st), rk_last_error());
    return c;
}

void rk_test_assert_cached(rk_cache *c, const char *key, const char *want)
{
    char *v = NULL;
    rk_status st = rk_cache_get_str(c, key, &v);
    if (st != RK_OK) fail_msg("get: %s: %s", rk_strerror(st), rk_last_error());
    assert_string_equal(v, want);
    rk_free(v);
}

long long rk_test_client_integer(rk_client *c, int argc, const char **argv, const size_t *lens)
{
    rk_reply *r = NULL;
    rk_status st = rk_client_command(c, argc, argv, lens, &r);
    if (st != RK_OK) fail_msg("%s: %s: %s", argv[0], rk_strerror(st), rk_last_error());
    assert_int_equal(r->type, RK_REPLY_INTEGER);
    long long n = r->integer;
    rk_reply_free(r);
    return n;
}

bool rk_test_client_recovers(rk_client *c, int within_ms)
{
    int64_t end = rk_test_now_ms() + within_ms;
    for (int i = 0; i < 100000 && rk_test_now_ms() < end; i++) {
        if (rk_client_ping(c) == RK_OK) return true;
        rk_test_sleep_ms(20);
    }
    return false;
}

void rk_test_proxy_heal(rk_fault_proxy *p, rk_client *c, int within_ms)
{
    rk_fault_proxy_set(p, RK_FAULT_PASS, 0);
    if (!rk_test_client_recovers(c, within_ms))
        fail_msg("the client did not recover within %d ms of the proxy passing traffic again", within_ms);
}

/* The reply to an admin command, which must have come. */
static redisReply *command(rk_test_server *s, const char *fmt, va_list ap)
{
    redisReply *r = rk_test_server_vcommand(s, fmt, ap);
    if (!r) fail_msg("%s: no reply from the test server", fmt);
    return r;
}

void rk_test_server_ok(rk_test_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = command(s, fmt, ap);
    va_end(ap);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("%s: %s", fmt, r->str);
    freeReplyObject(r);
}

long long rk_test_server_integer(rk_test_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = command(s, fmt, ap);
    va_end(ap);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

long long rk_test_server_command_calls(rk_test_server *s, const char *cmd)
{
    redisReply *r = rk_test_server_command(s, "INFO commandstats");
    if (!r) fail_msg("INFO commandstats: no reply from the test server");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char needle[64];
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", cmd);
    const char *at = strstr(r->str, needle);
    long long n = at ? strtoll(at + strlen(needle), NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}
