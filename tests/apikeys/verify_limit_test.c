/*
 * verify_limit_test.c — rk_apikeys_verify_limit() against a real
 * redis-server started by the fixture: exactly `limit` requests allowed
 * over a bounded loop, one EVALSHA per call on a warm key (INFO
 * commandstats), malformed keys costing no Redis command, revoked, unknown
 * and expired keys consuming nothing, the limits kept under the key's
 * hash, Redis killed (each failure policy decides, degraded verdicts),
 * and an allocation-failure walk.
 *
 * The lookup callback is a one-table in-memory "database" that counts its
 * calls. Assertions are on verdicts, decisions and counts, never on time.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

#include "support/clock.h"
#include "support/fail_alloc.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

#define PREFIX "vl"

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                       .client_options = {.key_prefix = PREFIX}});
}

/* ---- the "database": keys by hash, each with an expiry --------------------- */

#define ROWS 8

typedef struct db {
    int n;
    char hash[ROWS][RK_APIKEYS_HASH_BUF];
    int64_t expires[ROWS];
    atomic_int calls;
} db;

static rk_status db_lookup(const char *hash, rk_apikeys_record *rec, void *user)
{
    db *d = user;
    atomic_fetch_add(&d->calls, 1);
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->hash[i], hash) == 0) return rk_apikeys_record_set(rec, "owner", 5, d->expires[i]);
    return RK_MISS;
}

static void db_add(db *d, rk_apikeys *ak, int64_t expires_at_ms, char key[RK_APIKEYS_KEY_BUF])
{
    assert_true(d->n < ROWS);
    assert_int_equal(rk_apikeys_generate(ak, key, d->hash[d->n]), RK_OK);
    d->expires[d->n++] = expires_at_ms;
}

static rk_apikeys *keys_new(rk_client *c, db *d, rk_apikeys_options o)
{
    o.lookup = db_lookup;
    o.lookup_user = d;
    rk_apikeys *ak = NULL;
    rk_status st = rk_apikeys_new(c, &o, &ak);
    if (st != RK_OK) fail_msg("rk_apikeys_new: %s: %s", rk_strerror(st), rk_last_error());
    return ak;
}

static rk_limiter *limiter_new(rk_client *c, rk_limit_algorithm algo, int64_t limit, rk_limit_failure_policy p)
{
    rk_limit l = {.name = "minute", .algorithm = algo, .limit = limit, .period_ms = 60000};
    if (algo == RK_LIMIT_GCRA) l.burst = limit - 1;
    rk_limiter *lim = NULL;
    rk_status st = rk_limiter_new(c, &(rk_limiter_options){.ns = "rl", .limits = &l, .nlimits = 1,
                                                           .failure_policy = p},
                                  &lim);
    if (st != RK_OK) fail_msg("rk_limiter_new: %s: %s", rk_strerror(st), rk_last_error());
    return lim;
}

/* One verify_limit that must reach a verdict; its decision in *dec. */
static rk_apikey_verdict vl(rk_apikeys *ak, rk_limiter *lim, const char *key, rk_limit_result *dec,
                            rk_apikey_result *out)
{
    rk_apikey_result r;
    rk_status st = rk_apikeys_verify_limit(ak, lim, key, 1, &r, dec);
    if (st != RK_OK) fail_msg("rk_apikeys_verify_limit: %s: %s", rk_strerror(st), rk_last_error());
    assert_null(strstr(rk_last_error(), key));
    rk_apikey_verdict v = r.verdict;
    if (out) *out = r;
    else rk_apikeys_result_clear(&r);
    return v;
}

/* What the limiter still has for key (by its hash), without consuming. */
static int64_t remaining(rk_limiter *lim, const char *key)
{
    char hash[RK_APIKEYS_HASH_BUF];
    assert_int_equal(rk_apikeys_hash(key, hash), RK_OK);
    rk_limit_result p;
    assert_int_equal(rk_limiter_peek(lim, hash, &p), RK_OK);
    assert_int_equal(p.path, RK_LIMIT_PATH_REDIS);
    return p.remaining;
}

/* ---- the warm path ----------------------------------------------------------- */

static void test_exactly_limit(void **state)
{
    (void)state;
    const rk_limit_algorithm algos[] = {RK_LIMIT_GCRA, RK_LIMIT_FIXED_WINDOW, RK_LIMIT_SLIDING_WINDOW,
                                        RK_LIMIT_TOKEN_BUCKET};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
        db d = {0};
        rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
        rk_limiter *lim = limiter_new(client, algos[a], 5, RK_LIMIT_FAIL_CLOSED);
        char key[RK_APIKEYS_KEY_BUF];
        db_add(&d, ak, 0, key);
        int allowed = 0;
        for (int i = 0; i < 12; i++) {
            rk_limit_result dec;
            rk_apikey_result r;
            assert_int_equal(vl(ak, lim, key, &dec, &r), RK_APIKEY_VALID);
            assert_int_equal(r.layer, i == 0 ? RK_APIKEY_LAYER_LOOKUP : RK_APIKEY_LAYER_REDIS);
            assert_string_equal(r.owner, "owner");
            rk_apikeys_result_clear(&r);
            assert_int_equal(dec.path, RK_LIMIT_PATH_REDIS);
            assert_int_equal(dec.nlimits, 1);
            assert_string_equal(dec.decided_name, "minute");
            assert_int_equal(dec.limit, 5);
            if (dec.allowed) {
                allowed++;
                assert_int_equal(dec.remaining, 5 - allowed);
            } else {
                assert_true(dec.retry_after_ms > 0);
            }
        }
        assert_int_equal(allowed, 5);
        assert_int_equal(atomic_load(&d.calls), 1);
        /* The limits live under the key's hash: the limiter sees them. */
        assert_int_equal(remaining(lim, key), 0);
        rk_limiter_free(lim);
        rk_apikeys_free(ak);
        rk_test_server_flush(server);
    }
}

static void test_one_round_trip(void **state)
{
    (void)state;
    db d = {0};
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    rk_limiter *lim = limiter_new(client, RK_LIMIT_GCRA, 100, RK_LIMIT_FAIL_CLOSED);
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, 0, key);
    rk_limit_result dec;
    assert_int_equal(vl(ak, lim, key, &dec, NULL), RK_APIKEY_VALID); /* warms Redis */
    rk_test_server_ok(server, "CONFIG RESETSTAT");
    for (int i = 0; i < 10; i++) {
        assert_int_equal(vl(ak, lim, key, &dec, NULL), RK_APIKEY_VALID);
        assert_true(dec.allowed);
    }
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 10);
    assert_int_equal(rk_test_server_command_calls(server, "eval"), 0);
    /* Reads and writes ran inside the scripts: no command of its own. */
    assert_int_equal(rk_test_server_command_calls(server, "set"), 10);
    assert_int_equal(rk_test_server_command_calls(server, "get"), 30); /* the answer; the limit, in each phase */
    assert_int_equal(atomic_load(&d.calls), 1);
    assert_int_equal(remaining(lim, key), 100 - 11);

    /* The script's keys: the answer and the limit, one hash tag. */
    char hash[RK_APIKEYS_HASH_BUF], name[200];
    assert_int_equal(rk_apikeys_hash(key, hash), RK_OK);
    snprintf(name, sizeof name, PREFIX ":rl:{%s}:minute", hash);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", name), 1);
    snprintf(name, sizeof name, PREFIX ":apikey:{%s}", hash);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", name), 1);
    rk_limiter_free(lim);
    rk_apikeys_free(ak);
}

static void test_malformed_no_redis(void **state)
{
    (void)state;
    db d = {0};
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    rk_limiter *lim = limiter_new(client, RK_LIMIT_GCRA, 5, RK_LIMIT_FAIL_CLOSED);
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, 0, key);
    char bad[RK_APIKEYS_KEY_BUF];
    snprintf(bad, sizeof bad, "%s", key);
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    const char *garbage[] = {bad, "", "x", "rk_", "rk_!!!"};
    rk_test_server_ok(server, "CONFIG RESETSTAT");
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        rk_limit_result dec;
        rk_apikey_result r;
        assert_int_equal(rk_apikeys_verify_limit(ak, lim, garbage[i], 1, &r, &dec), RK_OK);
        assert_int_equal(r.verdict, RK_APIKEY_MALFORMED);
        assert_int_equal(r.layer, RK_APIKEY_LAYER_CHECKSUM);
        assert_false(dec.allowed);
        assert_int_equal(dec.nlimits, 0);
    }
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "eval"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "get"), 0);
    assert_int_equal(atomic_load(&d.calls), 0);

    /* Bad arguments. */
    rk_limit_result dec;
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify_limit(NULL, lim, key, 1, &r, &dec), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_verify_limit(ak, NULL, key, 1, &r, &dec), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_verify_limit(ak, lim, NULL, 1, &r, &dec), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_verify_limit(ak, lim, key, 1, NULL, &dec), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_verify_limit(ak, lim, key, 1, &r, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_verify_limit(ak, lim, key, -1, &r, &dec), RK_ERR_INVALID);
    assert_int_equal(r.verdict, 0);
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 0);
    rk_limiter_free(lim);
    rk_apikeys_free(ak);
}

/* Revoked, unknown and expired keys consume nothing, warm or cold. */
static void test_invalid_consumes_nothing(void **state)
{
    (void)state;
    db d = {0};
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    rk_apikeys *nofresh = keys_new(client, &d, (rk_apikeys_options){.fresh_ms = RK_APIKEYS_OFF});
    rk_limiter *lim = limiter_new(client, RK_LIMIT_FIXED_WINDOW, 5, RK_LIMIT_FAIL_CLOSED);
    char revoked[RK_APIKEYS_KEY_BUF], expired[RK_APIKEYS_KEY_BUF], unknown[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, 0, revoked);
    db_add(&d, ak, rk_test_now_ms() - 1000, expired);
    assert_int_equal(rk_apikeys_generate(ak, unknown, NULL), RK_OK);
    rk_limit_result dec;
    assert_int_equal(vl(ak, lim, revoked, &dec, NULL), RK_APIKEY_VALID);
    assert_true(dec.allowed);
    assert_int_equal(rk_apikeys_revoke(ak, revoked), RK_OK);
    rk_apikeys *handles[2] = {ak, nofresh};
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < 3; i++) {
            assert_int_equal(vl(handles[h], lim, revoked, &dec, NULL), RK_APIKEY_REVOKED);
            assert_false(dec.allowed);
            assert_int_equal(dec.nlimits, 0);
            assert_int_equal(vl(handles[h], lim, unknown, &dec, NULL), RK_APIKEY_NOT_FOUND);
            assert_false(dec.allowed);
            assert_int_equal(vl(handles[h], lim, expired, &dec, NULL), RK_APIKEY_EXPIRED);
            assert_false(dec.allowed);
        }
    }
    assert_int_equal(remaining(lim, revoked), 4); /* only the one before revoke */
    assert_int_equal(remaining(lim, unknown), 5);
    assert_int_equal(remaining(lim, expired), 5);
    assert_int_equal(atomic_load(&d.calls), 3); /* revoked (before), unknown, expired */
    rk_limiter_free(lim);
    rk_apikeys_free(nofresh);
    rk_apikeys_free(ak);
}

/* The block cache answers a refused key; the verdict is still given. */
static void test_block_cache(void **state)
{
    (void)state;
    db d = {0};
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    rk_limit l = {.name = "minute", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 2, .period_ms = 60000};
    rk_limiter *lim = NULL;
    assert_int_equal(rk_limiter_new(client, &(rk_limiter_options){.limits = &l, .nlimits = 1, .block_cache = true},
                                    &lim),
                     RK_OK);
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, 0, key);
    rk_limit_result dec;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(vl(ak, lim, key, &dec, NULL), RK_APIKEY_VALID);
        assert_int_equal(dec.allowed, i < 2);
    }
    rk_test_server_ok(server, "CONFIG RESETSTAT");
    assert_int_equal(vl(ak, lim, key, &dec, NULL), RK_APIKEY_VALID);
    assert_false(dec.allowed);
    assert_int_equal(dec.path, RK_LIMIT_PATH_BLOCK_CACHE);
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 0);
    rk_limiter_free(lim);
    rk_apikeys_free(ak);
}

/* ---- Redis killed ------------------------------------------------------------ */

static void test_redis_killed(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_client *dc = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(s), .command_timeout_ms = 200,
                                                        .connect_timeout_ms = 200},
                                   &dc),
                     RK_OK);
    db d = {0};
    rk_apikeys *ak = keys_new(dc, &d, (rk_apikeys_options){.fresh_ms = 100, .stale_ms = 60000});
    rk_limiter *closed = limiter_new(dc, RK_LIMIT_GCRA, 5, RK_LIMIT_FAIL_CLOSED);
    rk_limiter *open = limiter_new(dc, RK_LIMIT_GCRA, 5, RK_LIMIT_FAIL_OPEN);
    rk_limiter *local = limiter_new(dc, RK_LIMIT_FIXED_WINDOW, 2, RK_LIMIT_FAIL_LOCAL);
    char key[RK_APIKEYS_KEY_BUF], cold[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, 0, key);
    db_add(&d, ak, 0, cold);
    rk_limit_result dec;
    assert_int_equal(vl(ak, closed, key, &dec, NULL), RK_APIKEY_VALID);
    assert_true(dec.allowed);
    rk_test_sleep_ms(150); /* past the fresh window: only stale now */
    assert_true(rk_test_server_signal(s, SIGKILL));

    rk_apikey_result r;
    int calls = atomic_load(&d.calls);
    assert_int_equal(vl(ak, closed, key, &dec, &r), RK_APIKEY_VALID);
    assert_false(dec.allowed);
    assert_int_equal(dec.path, RK_LIMIT_PATH_FAIL_CLOSED);
    assert_int_not_equal(dec.redis_status, RK_OK);
    assert_true(r.degraded);
    assert_int_equal(r.layer, RK_APIKEY_LAYER_PROCESS); /* this process's stale answer */
    assert_string_equal(r.owner, "owner");
    assert_int_equal(atomic_load(&d.calls), calls);     /* the database was not asked */
    rk_apikeys_result_clear(&r);

    assert_int_equal(vl(ak, open, key, &dec, &r), RK_APIKEY_VALID);
    assert_true(dec.allowed);
    assert_int_equal(dec.path, RK_LIMIT_PATH_FAIL_OPEN);
    assert_true(r.degraded);
    rk_apikeys_result_clear(&r);

    /* A key this process never saw: the database is asked directly. */
    int allowed = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(vl(ak, local, cold, &dec, &r), RK_APIKEY_VALID);
        assert_true(r.degraded || r.layer == RK_APIKEY_LAYER_PROCESS); /* (fresh after the first) */
        assert_int_equal(dec.path, RK_LIMIT_PATH_LOCAL);
        allowed += dec.allowed;
        rk_apikeys_result_clear(&r);
    }
    assert_int_equal(allowed, 2);

    assert_true(rk_test_server_restart(s, NULL));
    rk_limiter_free(local);
    rk_limiter_free(open);
    rk_limiter_free(closed);
    rk_apikeys_free(ak);
    rk_client_free(dc);
    rk_test_server_stop(s);
}

/* Redis paused (SIGSTOP) and a key this process never saw: the call waits
 * on Redis once, not twice — it ends by the client's timeout plus the
 * lookup, answered degraded from the database, under the limiter's
 * failure policy. */
#define PAUSED_TIMEOUT_MS 500

static void test_redis_paused_cold_key(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_client *dc = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(s),
                                                        .command_timeout_ms = PAUSED_TIMEOUT_MS,
                                                        .connect_timeout_ms = PAUSED_TIMEOUT_MS},
                                   &dc),
                     RK_OK);
    db d = {0};
    rk_apikeys *ak = keys_new(dc, &d, (rk_apikeys_options){.no_subscribe = true});
    rk_limiter *open = limiter_new(dc, RK_LIMIT_GCRA, 5, RK_LIMIT_FAIL_OPEN);
    char cold[RK_APIKEYS_KEY_BUF], warm[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, 0, cold);
    db_add(&d, ak, 0, warm);
    rk_limit_result dec;
    assert_int_equal(vl(ak, open, warm, &dec, NULL), RK_APIKEY_VALID); /* connections open */
    assert_true(rk_test_server_signal(s, SIGSTOP));

    rk_apikey_result r;
    int64_t t0 = rk_test_now_ms();
    assert_int_equal(vl(ak, open, cold, &dec, &r), RK_APIKEY_VALID);
    int64_t took = rk_test_now_ms() - t0;
    assert_true(r.degraded);
    assert_true(dec.allowed);
    assert_int_equal(dec.path, RK_LIMIT_PATH_FAIL_OPEN);
    rk_apikeys_result_clear(&r);
    print_message("verify_limit, Redis paused, cold key: %lld ms (timeout %d ms)\n", (long long)took,
                  PAUSED_TIMEOUT_MS);
    if (took >= 2 * PAUSED_TIMEOUT_MS)
        fail_msg("verify_limit waited on a paused Redis twice: %lld ms, timeout %d ms", (long long)took,
                 PAUSED_TIMEOUT_MS);

    assert_true(rk_test_server_signal(s, SIGCONT));
    rk_limiter_free(open);
    rk_apikeys_free(ak);
    rk_client_free(dc);
    rk_test_server_stop(s);
}

/* ---- allocation failures ------------------------------------------------------ */

static int nomem_scenario(const char *url, const char *hash, const char *key)
{
    rk_client *c = NULL;
    if (rk_client_new(&(rk_client_options){.url = url, .key_prefix = PREFIX}, &c) != RK_OK) return 0;
    db d = {0};
    snprintf(d.hash[0], sizeof d.hash[0], "%s", hash);
    d.n = 1;
    rk_apikeys *ak = NULL;
    rk_limiter *lim = NULL;
    rk_limit l = {.algorithm = RK_LIMIT_GCRA, .limit = 10, .period_ms = 60000};
    int answered = 0;
    /* A short lock: a lookup cut short by a failure leaves its lock behind. */
    rk_apikeys_options o = {.lookup = db_lookup, .lookup_user = &d, .lock_ms = 100};
    if (rk_apikeys_new(c, &o, &ak) == RK_OK &&
        rk_limiter_new(c, &(rk_limiter_options){.limits = &l, .nlimits = 1}, &lim) == RK_OK) {
        for (int i = 0; i < 3; i++) { /* cold (lookup), warm, from memory */
            rk_apikey_result r;
            rk_limit_result dec;
            rk_status st = rk_apikeys_verify_limit(ak, lim, key, 1, &r, &dec);
            if (st == RK_OK && r.verdict == RK_APIKEY_VALID && dec.allowed) answered++;
            else if (st != RK_OK && st != RK_ERR_NOMEM && st != RK_ERR_UNAVAILABLE && st != RK_ERR_SOURCE)
                fail_msg("verify_limit: unexpected %s: %s", rk_strerror(st), rk_last_error());
            rk_apikeys_result_clear(&r);
        }
    }
    rk_limiter_free(lim);
    rk_apikeys_free(ak);
    rk_client_free(c);
    return answered;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    db d = {0};
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    char key[RK_APIKEYS_KEY_BUF], hash[RK_APIKEYS_HASH_BUF];
    assert_int_equal(rk_apikeys_generate(ak, key, hash), RK_OK);
    rk_apikeys_free(ak);
    char url[128];
    snprintf(url, sizeof url, "%s", rk_test_server_url(server));
    long n;
    for (n = 1; n < 5000; n++) {
        rk_test_server_flush(server);
        long live = rk_test_fail_live();
        rk_test_fail_arm(n);
        nomem_scenario(url, hash, key);
        rk_test_fail_disarm();
        if (rk_test_fail_live() != live) fail_msg("N=%ld: %ld blocks leaked", n, rk_test_fail_live() - live);
        if (!rk_test_fail_hit()) break;
    }
    assert_true(n < 5000);
    rk_test_server_flush(server);
    assert_int_equal(nomem_scenario(url, hash, key), 3);
    print_message("out-of-memory walk: %ld allocation points\n", n - 1);
}

int main(void)
{
    /* Before any other redkit call, as rk_set_allocator asks. */
    if (rk_set_allocator(&rk_test_fail_allocator) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_exactly_limit, rk_test_group_flush),
        cmocka_unit_test_setup(test_one_round_trip, rk_test_group_flush),
        cmocka_unit_test_setup(test_malformed_no_redis, rk_test_group_flush),
        cmocka_unit_test_setup(test_invalid_consumes_nothing, rk_test_group_flush),
        cmocka_unit_test_setup(test_block_cache, rk_test_group_flush),
        cmocka_unit_test_setup(test_redis_killed, rk_test_group_flush),
        cmocka_unit_test_setup(test_redis_paused_cold_key, rk_test_group_flush),
        cmocka_unit_test_setup(test_out_of_memory, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
