/*
 * apikeys_test.c — rk_apikeys against real redis-servers started by the
 * fixture: the key format (checksum, display, hash), verify through its
 * layers (process, Redis, lookup), positive and negative caching with
 * their TTLs, a failing lookup never cached, expiry honoured, one lookup
 * for 16 threads x 2 processes on a cold key, revocation while threads of
 * two processes verify, a slow lookup that answers "valid" after a
 * revocation and cannot bring the key back, invalidations from other
 * processes, Redis killed (degraded answers, fail_closed), the database
 * down (stale answers), malformed keys costing no Redis command and no
 * lookup, the API key never in Redis, a log line, a message or a metric,
 * and an allocation-failure walk.
 *
 * The lookup callback is a small in-memory "database" (struct db) that
 * counts its calls; across processes it also INCRs a counter in Redis.
 * Assertions are on verdicts, layers, flags and counts, never on time.
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "apikeys.h" /* src/: rk__crc32, rk__apikeys_invalidated, rk__local_count */
#include "support/capture.h"
#include "support/clock.h"
#include "support/fail_alloc.h"
#include "support/fixture.h"
#include "support/fork_check.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;
static rk_test_log logs = RK_TEST_LOG_INIT;

#define PREFIX "shop"

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                       .client_options = {.key_prefix = PREFIX, .pool_size = 8,
                                                                          .log = rk_test_log_capture,
                                                                          .log_user = &logs,
                                                                          .log_level = RK_LOG_DEBUG}});
}

/* ---- the "database" --------------------------------------------------------- */

#define DB_ROWS 128

typedef struct db {
    pthread_mutex_t mu;
    int n;
    char hash[DB_ROWS][RK_APIKEYS_HASH_BUF];
    char owner[DB_ROWS][32];
    int64_t expires[DB_ROWS];
    atomic_int calls;
    rk_status fail;            /* when not RK_OK: every lookup fails with it */
    int sleep_ms;              /* each lookup takes this long */
    atomic_int entered;        /* lookups that started */
    rk_client *incr_client;    /* INCR incr_key per lookup (several processes) */
    const char *incr_key;
} db;

static void db_init(db *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
}

/* A new key for the handle, stored in d with owner (and expiry). */
static void db_add(db *d, rk_apikeys *ak, const char *owner, int64_t expires_at_ms, char key[RK_APIKEYS_KEY_BUF])
{
    char hash[RK_APIKEYS_HASH_BUF];
    assert_int_equal(rk_apikeys_generate(ak, key, hash), RK_OK);
    pthread_mutex_lock(&d->mu);
    assert_true(d->n < DB_ROWS);
    snprintf(d->hash[d->n], sizeof d->hash[d->n], "%s", hash);
    snprintf(d->owner[d->n], sizeof d->owner[d->n], "%s", owner);
    d->expires[d->n] = expires_at_ms;
    d->n++;
    pthread_mutex_unlock(&d->mu);
}

static rk_status db_lookup(const char *hash, rk_apikeys_record *rec, void *user)
{
    db *d = user;
    atomic_fetch_add(&d->entered, 1);
    if (d->sleep_ms) rk_test_sleep_ms(d->sleep_ms);
    atomic_fetch_add(&d->calls, 1);
    if (d->incr_client) {
        const char *argv[2] = {"INCR", d->incr_key};
        rk_reply *r;
        if (rk_client_command(d->incr_client, 2, argv, NULL, &r) == RK_OK) rk_reply_free(r);
    }
    if (d->fail != RK_OK) return d->fail;
    pthread_mutex_lock(&d->mu);
    int i = 0;
    while (i < d->n && strcmp(d->hash[i], hash) != 0) i++;
    rk_status st = RK_MISS;
    if (i < d->n) st = rk_apikeys_record_set(rec, d->owner[i], strlen(d->owner[i]), d->expires[i]);
    pthread_mutex_unlock(&d->mu);
    return st;
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

/* verify that must reach a verdict; returns it, with the layer in *layer. */
static rk_apikey_verdict verify(rk_apikeys *ak, const char *key, rk_apikey_layer *layer, bool *degraded)
{
    rk_apikey_result r;
    rk_status st = rk_apikeys_verify(ak, key, &r);
    if (st != RK_OK) fail_msg("rk_apikeys_verify: %s: %s", rk_strerror(st), rk_last_error());
    if (layer) *layer = r.layer;
    if (degraded) *degraded = r.degraded;
    rk_apikey_verdict v = r.verdict;
    rk_apikeys_result_clear(&r);
    return v;
}

static rk_apikeys_metrics metrics(rk_apikeys *ak)
{
    rk_apikeys_metrics m;
    assert_int_equal(rk_apikeys_metrics_get(ak, &m), RK_OK);
    return m;
}

/* The Redis key of an API key: "<prefix>:<ns>:{<sha256>}". */
static void redis_key_of(const char *key, const char *ns, char *out, size_t size)
{
    char hash[RK_APIKEYS_HASH_BUF];
    assert_int_equal(rk_apikeys_hash(key, hash), RK_OK);
    snprintf(out, size, PREFIX ":%s:{%s}", ns, hash);
}

/* ---- key format ------------------------------------------------------------- */

static void test_key_format(void **state)
{
    (void)state;
    /* The CRC-32 is zlib's: the check value of "123456789". */
    assert_int_equal(rk__crc32("123456789", 9), 0xCBF43926u);
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){.key_prefix = "sk_live"});
    char key[RK_APIKEYS_KEY_BUF], other[RK_APIKEYS_KEY_BUF], hash[RK_APIKEYS_HASH_BUF], again[RK_APIKEYS_HASH_BUF];
    assert_int_equal(rk_apikeys_generate(ak, key, hash), RK_OK);
    assert_int_equal(rk_apikeys_generate(ak, other, NULL), RK_OK);
    assert_string_not_equal(key, other);
    assert_int_equal(strlen(key), strlen("sk_live_") + RK_APIKEYS_BODY_CHARS + RK_APIKEYS_CHECKSUM_CHARS);
    assert_memory_equal(key, "sk_live_", 8);
    assert_int_equal(rk_apikeys_check(key), RK_OK);
    assert_int_equal(rk_apikeys_hash(key, again), RK_OK);
    assert_string_equal(hash, again);
    assert_int_equal(strlen(hash), 64);

    char disp[RK_APIKEYS_DISPLAY_BUF];
    assert_int_equal(rk_apikeys_display(key, disp), RK_OK);
    assert_int_equal(strlen(disp), 8 + 4 + 3 + 4);
    assert_memory_equal(disp, key, 12);
    assert_string_equal(disp + 15, key + strlen(key) - 4);

    /* Every single-character change is caught by the checksum. */
    size_t n = strlen(key);
    for (size_t i = 0; i < n; i++) {
        char bad[RK_APIKEYS_KEY_BUF];
        memcpy(bad, key, n + 1);
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        if (strcmp(bad, key) == 0) continue;
        assert_int_equal(rk_apikeys_check(bad), RK_ERR_INVALID);
        assert_null(strstr(rk_last_error(), bad));
    }
    const char *garbage[] = {"", "x", "sk_live_", "_abc", "no-underscore-here-at-all-but-long-enough-to-be-a-key-xxxxx",
                             "sk_live_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        assert_int_equal(rk_apikeys_check(garbage[i]), RK_ERR_INVALID);
        assert_int_equal(rk_apikeys_display(garbage[i], disp), RK_ERR_INVALID);
    }
    char longkey[300];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(rk_apikeys_check(longkey), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_hash(longkey, hash), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_apikeys_check(NULL), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_hash(NULL, hash), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_hash("", hash), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_generate(NULL, key, hash), RK_ERR_INVALID);
    rk_apikeys_free(ak);
}

static void test_bad_options(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = (rk_apikeys *)1;
    assert_int_equal(rk_apikeys_new(client, NULL, &ak), RK_ERR_INVALID);
    assert_null(ak);
    assert_int_equal(rk_apikeys_new(client, &(rk_apikeys_options){0}, &ak), RK_ERR_INVALID); /* no lookup */
    const rk_apikeys_options bad[] = {
        {.lookup = db_lookup, .ns = "bad ns"},
        {.lookup = db_lookup, .key_prefix = "bad-prefix"},
        {.lookup = db_lookup, .key_prefix = "ends_"},
        {.lookup = db_lookup, .positive_ttl_ms = -5},
        {.lookup = db_lookup, .negative_ttl_ms = -5},
        {.lookup = db_lookup, .positive_ttl_ms = 1000, .tombstone_ttl_ms = 999},
        {.lookup = db_lookup, .fresh_ms = 5000, .stale_ms = 4000},
        {.lookup = db_lookup, .lock_ms = -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rk_apikeys_new(client, &bad[i], &ak), RK_ERR_INVALID);
        assert_null(ak);
    }
    assert_int_equal(rk_apikeys_new(NULL, &(rk_apikeys_options){.lookup = db_lookup}, &ak), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_new(client, &(rk_apikeys_options){.lookup = db_lookup}, NULL), RK_ERR_INVALID);
    rk_apikeys_free(NULL);
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(NULL, "x", &r), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_metrics_get(NULL, NULL), RK_ERR_INVALID);
    rk_apikeys_result_clear(NULL);
    assert_string_equal(rk_apikeys_verdict_name(RK_APIKEY_REVOKED), "revoked");
    assert_string_equal(rk_apikeys_verdict_name((rk_apikey_verdict)99), "unknown");
}

/* ---- verify through the layers ---------------------------------------------- */

static void test_layers_and_owner(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    rk_apikeys *nofresh = keys_new(client, &d, (rk_apikeys_options){.fresh_ms = RK_APIKEYS_OFF});
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "user:42 scopes=read plan=pro", 0, key);

    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, key, &r), RK_OK);
    assert_int_equal(r.verdict, RK_APIKEY_VALID);
    assert_int_equal(r.layer, RK_APIKEY_LAYER_LOOKUP);
    assert_false(r.degraded);
    assert_int_equal(r.owner_len, strlen("user:42 scopes=read plan=pro"));
    assert_string_equal(r.owner, "user:42 scopes=read plan=pro");
    rk_apikeys_result_clear(&r);
    assert_null(r.owner);
    rk_apikeys_result_clear(&r); /* twice is harmless */

    assert_int_equal(rk_apikeys_verify(ak, key, &r), RK_OK); /* this process */
    assert_int_equal(r.layer, RK_APIKEY_LAYER_PROCESS);
    assert_string_equal(r.owner, "user:42 scopes=read plan=pro");
    rk_apikeys_result_clear(&r);
    assert_int_equal(rk_apikeys_verify(nofresh, key, &r), RK_OK); /* Redis */
    assert_int_equal(r.layer, RK_APIKEY_LAYER_REDIS);
    assert_int_equal(r.verdict, RK_APIKEY_VALID);
    assert_string_equal(r.owner, "user:42 scopes=read plan=pro");
    rk_apikeys_result_clear(&r);
    assert_int_equal(atomic_load(&d.calls), 1);

    /* The positive answer lives positive_ttl_ms in Redis. */
    char rkey[200];
    redis_key_of(key, "apikey", rkey, sizeof rkey);
    long long pttl = rk_test_server_integer(server, "PTTL %s", rkey);
    assert_true(pttl > 0 && pttl <= RK_APIKEYS_DEFAULT_POSITIVE_TTL_MS);

    rk_apikeys_metrics m = metrics(ak);
    assert_int_equal(m.verifies, 2);
    assert_int_equal(m.lookups, 1);
    assert_int_equal(m.process_hits, 1);
    assert_int_equal(metrics(nofresh).redis_hits, 1);
    rk_apikeys_free(nofresh);
    rk_apikeys_free(ak);
}

static void test_negative_ttl(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){.negative_ttl_ms = 400, .fresh_ms = RK_APIKEYS_OFF});
    char unknown[RK_APIKEYS_KEY_BUF];
    assert_int_equal(rk_apikeys_generate(ak, unknown, NULL), RK_OK); /* not in the database */
    rk_apikey_layer layer;
    assert_int_equal(verify(ak, unknown, &layer, NULL), RK_APIKEY_NOT_FOUND);
    assert_int_equal(layer, RK_APIKEY_LAYER_LOOKUP);
    assert_int_equal(verify(ak, unknown, &layer, NULL), RK_APIKEY_NOT_FOUND);
    assert_int_equal(layer, RK_APIKEY_LAYER_REDIS);
    assert_int_equal(atomic_load(&d.calls), 1);
    assert_int_equal(metrics(ak).negative_hits, 1);
    char rkey[200];
    redis_key_of(unknown, "apikey", rkey, sizeof rkey);
    long long pttl = rk_test_server_integer(server, "PTTL %s", rkey);
    assert_true(pttl > 0 && pttl <= 400);
    /* After the negative TTL, the database is asked again. */
    rk_test_sleep_ms(500);
    assert_int_equal(verify(ak, unknown, &layer, NULL), RK_APIKEY_NOT_FOUND);
    assert_int_equal(layer, RK_APIKEY_LAYER_LOOKUP);
    assert_int_equal(atomic_load(&d.calls), 2);
    rk_apikeys_free(ak);
}

static void test_failing_lookup_not_cached(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "u1", 0, key);
    d.fail = RK_ERR_TIMEOUT;
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, key, &r), RK_ERR_SOURCE);
    assert_int_equal(r.lookup_status, RK_ERR_TIMEOUT);
    assert_int_equal(r.verdict, 0);
    assert_null(strstr(rk_last_error(), key));
    char rkey[200];
    redis_key_of(key, "apikey", rkey, sizeof rkey);
    assert_int_equal(rk_test_server_integer(server, "EXISTS %s", rkey), 0);
    assert_int_equal(rk_apikeys_verify(ak, key, &r), RK_ERR_SOURCE);
    assert_int_equal(atomic_load(&d.calls), 2); /* asked again: nothing was cached */
    d.fail = RK_OK;
    assert_int_equal(verify(ak, key, NULL, NULL), RK_APIKEY_VALID);
    assert_int_equal(atomic_load(&d.calls), 3);
    rk_apikeys_metrics m = metrics(ak);
    assert_int_equal(m.lookup_errors, 2);
    assert_int_equal(m.errors, 2);
    rk_apikeys_free(ak);
}

static void test_expired_record(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    char old[RK_APIKEYS_KEY_BUF], later[RK_APIKEYS_KEY_BUF];
    int64_t now = (int64_t)time(NULL) * 1000;
    db_add(&d, ak, "u-old", now - 1000, old);
    db_add(&d, ak, "u-later", now + 3600 * 1000, later);
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, old, &r), RK_OK);
    assert_int_equal(r.verdict, RK_APIKEY_EXPIRED);
    assert_int_equal(r.expires_at_ms, now - 1000);
    assert_string_equal(r.owner, "u-old");
    rk_apikeys_result_clear(&r);
    assert_int_equal(verify(ak, old, NULL, NULL), RK_APIKEY_EXPIRED); /* from memory too */
    assert_int_equal(verify(ak, later, NULL, NULL), RK_APIKEY_VALID);
    rk_apikeys_free(ak);
}

/* Malformed keys and wrong checksums: no Redis command, no lookup. */
static void test_malformed_costs_nothing(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "u", 0, key);
    key[strlen(key) - 1] = key[strlen(key) - 1] == 'x' ? 'y' : 'x'; /* wrong checksum */
    rk_test_server_ok(server, "CONFIG RESETSTAT");
    const char *bad[] = {key, "", "hello", "rk_short", "Bearer rk_abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_apikey_layer layer;
        assert_int_equal(verify(ak, bad[i], &layer, NULL), RK_APIKEY_MALFORMED);
        assert_int_equal(layer, RK_APIKEY_LAYER_CHECKSUM);
    }
    assert_int_equal(rk_test_server_command_calls(server, "get"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "evalsha"), 0);
    assert_int_equal(rk_test_server_command_calls(server, "set"), 0);
    assert_int_equal(atomic_load(&d.calls), 0);
    assert_int_equal(metrics(ak).malformed, 5);
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, NULL, &r), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_revoke(ak, "garbage"), RK_ERR_INVALID);
    assert_int_equal(rk_apikeys_revoke_hash(ak, "abc"), RK_ERR_INVALID);
    rk_apikeys_free(ak);
}

/* ---- one lookup for 16 threads x 2 processes ---------------------------------- */

#define THREADS 16

typedef struct verifier {
    rk_apikeys *ak;
    const char *key;
    pthread_barrier_t *start;
    rk_status st;
    rk_apikey_verdict verdict;
} verifier;

static void *verify_once(void *arg)
{
    verifier *v = arg;
    pthread_barrier_wait(v->start);
    rk_apikey_result r;
    v->st = rk_apikeys_verify(v->ak, v->key, &r);
    v->verdict = r.verdict;
    rk_apikeys_result_clear(&r);
    return NULL;
}

/* THREADS threads of this process verify key at once; the number that
 * did not get VALID. */
static int verify_threads(rk_apikeys *ak, const char *key)
{
    verifier v[THREADS];
    pthread_t t[THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        v[i] = (verifier){.ak = ak, .key = key, .start = &start};
        if (pthread_create(&t[i], NULL, verify_once, &v[i]) != 0) return 100;
    }
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += v[i].st != RK_OK || v[i].verdict != RK_APIKEY_VALID;
    }
    pthread_barrier_destroy(&start);
    return bad;
}

static int process_side(const char *url, const char *hash, const char *owner, const char *key, int go_fd)
{
    rk_client *pc = NULL;
    if (rk_client_new(&(rk_client_options){.url = url, .key_prefix = PREFIX, .pool_size = 8}, &pc) != RK_OK)
        return 100;
    db d;
    db_init(&d);
    snprintf(d.hash[0], sizeof d.hash[0], "%s", hash);
    snprintf(d.owner[0], sizeof d.owner[0], "%s", owner);
    d.n = 1;
    d.sleep_ms = 300;
    d.incr_client = pc;
    d.incr_key = "apikeys-test:lookups";
    rk_apikeys *ak = NULL;
    if (rk_apikeys_new(pc, &(rk_apikeys_options){.lookup = db_lookup, .lookup_user = &d}, &ak) != RK_OK) return 101;
    char go;
    if (read(go_fd, &go, 1) != 1) return 102;
    int bad = verify_threads(ak, key);
    rk_apikeys_free(ak);
    rk_client_free(pc);
    return bad;
}

static int wait_child(pid_t pid)
{
    int status = rk_test_wait_child(pid, 30000);
    if (status == -1) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

static void test_one_lookup_two_processes(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "cold-owner", 0, key);
    rk_apikeys_free(ak);
    int go[2];
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        int bad = process_side(rk_test_server_url(server), d.hash[0], "cold-owner", key, go[0]);
        _exit(bad > 0 ? (bad > 99 ? bad : 10 + bad) : 0);
    }
    close(go[0]);
    int self[2];
    assert_int_equal(pipe(self), 0);
    assert_int_equal(write(go[1], "g", 1), 1);
    assert_int_equal(write(self[1], "g", 1), 1);
    int bad = process_side(rk_test_server_url(server), d.hash[0], "cold-owner", key, self[0]);
    close(self[0]);
    close(self[1]);
    close(go[1]);
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(bad, 0);
    redisReply *r = rk_test_server_command(server, "GET apikeys-test:lookups");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1"); /* exactly one lookup, 32 verifies */
    freeReplyObject(r);
}

/* ---- revocation -------------------------------------------------------------- */

#define REV_THREADS 4

typedef struct looper {
    rk_apikeys *ak;
    const char *key;
    atomic_bool *revoked;      /* set once rk_apikeys_revoke returned */
    atomic_bool *stop;
    long after;                /* verifies that started after the revoke ... */
    long valid_after;          /* ... and still said VALID */
    long first_revoked_at;     /* index (after the revoke) of the first REVOKED */
    bool back_to_valid;        /* VALID seen after a REVOKED: a resurrection */
    bool failed;
    atomic_long done;          /* verifies made */
} looper;

static void *verify_loop(void *arg)
{
    looper *l = arg;
    bool seen_revoked = false;
    l->first_revoked_at = -1;
    /* Bounded in count and in time (20 s). */
    int64_t until = rk_test_now_ms() + 20000;
    for (long i = 0; i < 50000000 && !atomic_load(l->stop) && rk_test_now_ms() < until; i++) {
        atomic_fetch_add(&l->done, 1);
        bool after = atomic_load(l->revoked);
        rk_apikey_result r;
        if (rk_apikeys_verify(l->ak, l->key, &r) != RK_OK) {
            l->failed = true;
            break;
        }
        if (r.verdict == RK_APIKEY_REVOKED && !seen_revoked) {
            seen_revoked = true;
            if (after) l->first_revoked_at = l->after;
        }
        if (r.verdict == RK_APIKEY_VALID && seen_revoked) l->back_to_valid = true;
        if (after) {
            if (r.verdict == RK_APIKEY_VALID) l->valid_after++;
            l->after++;
        }
        rk_apikeys_result_clear(&r);
        if (l->after >= 50) break;
    }
    return NULL;
}

/* REV_THREADS threads verify key in a loop until each made 50 verifies
 * after *revoked became true. 0, or what went wrong. */
static int revoke_side(rk_apikeys *ak, const char *key, atomic_bool *revoked, long bound)
{
    atomic_bool stop = false;
    looper l[REV_THREADS];
    pthread_t t[REV_THREADS];
    for (int i = 0; i < REV_THREADS; i++) {
        l[i] = (looper){.ak = ak, .key = key, .revoked = revoked, .stop = &stop};
        if (pthread_create(&t[i], NULL, verify_loop, &l[i]) != 0) return 100;
    }
    int bad = 0;
    for (int i = 0; i < REV_THREADS; i++) {
        pthread_join(t[i], NULL);
        if (l[i].failed) bad |= 1;
        if (l[i].back_to_valid) bad |= 2;
        if (l[i].after < 50) bad |= 4;
        if (l[i].valid_after > bound) bad |= 8;
    }
    return bad;
}

/* The other process: no fresh window, so it sees the tombstone on its
 * next verify whatever its subscriber hears (revoke_test covers the
 * pub/sub path). It learns that the revoke returned from a byte on a
 * pipe. */
static void test_revoke_while_verifying(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "soon-revoked", 0, key);
    assert_int_equal(verify(ak, key, NULL, NULL), RK_APIKEY_VALID);
    int rev[2];
    assert_int_equal(pipe(rev), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(rev[1]);
        rk_client *pc = NULL;
        if (rk_client_new(&(rk_client_options){.url = rk_test_server_url(server), .key_prefix = PREFIX,
                                               .pool_size = 8},
                          &pc) != RK_OK)
            _exit(100);
        rk_apikeys *cak = NULL;
        if (rk_apikeys_new(pc, &(rk_apikeys_options){.lookup = db_lookup, .lookup_user = &d,
                                                     .fresh_ms = RK_APIKEYS_OFF},
                           &cak) != RK_OK)
            _exit(101);
        atomic_bool flag = false;
        rk_test_pipe_flag cr = {.fd = rev[0], .flag = &flag};
        pthread_t w;
        pthread_create(&w, NULL, rk_test_pipe_watch, &cr);
        /* A verify that started before the byte arrived may still say
         * VALID: at most one per thread. */
        int bad = revoke_side(cak, key, &flag, 1);
        pthread_join(w, NULL);
        rk_apikeys_free(cak);
        rk_client_free(pc);
        _exit(bad);
    }
    close(rev[0]);
    atomic_bool revoked = false;
    /* Threads of this process verify; the main thread revokes. */
    looper l[REV_THREADS];
    pthread_t t[REV_THREADS];
    atomic_bool stop = false;
    for (int i = 0; i < REV_THREADS; i++) {
        l[i] = (looper){.ak = ak, .key = key, .revoked = &revoked, .stop = &stop};
        assert_int_equal(pthread_create(&t[i], NULL, verify_loop, &l[i]), 0);
    }
    for (int w = 0; w < 500; w++) { /* every thread is verifying: at most 5 s */
        bool all = true;
        for (int i = 0; i < REV_THREADS; i++) all = all && atomic_load(&l[i].done) >= 100;
        if (all) break;
        rk_test_sleep_ms(10);
    }
    assert_int_equal(rk_apikeys_revoke(ak, key), RK_OK);
    atomic_store(&revoked, true);
    assert_int_equal(write(rev[1], "r", 1), 1);
    for (int i = 0; i < REV_THREADS; i++) {
        pthread_join(t[i], NULL);
        if (l[i].after != 50)
            print_message("thread %d: done %ld after %ld failed %d\n", i, atomic_load(&l[i].done), l[i].after, l[i].failed);
        assert_false(l[i].failed);
        assert_false(l[i].back_to_valid);
        assert_int_equal(l[i].after, 50);
        /* This process dropped the key as the revoke returned: a verify
         * that started after it can only say REVOKED... except one that
         * read the flag a moment late (at most one per thread). */
        assert_true(l[i].valid_after <= 1);
    }
    close(rev[1]);
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(verify(ak, key, NULL, NULL), RK_APIKEY_REVOKED);
    char rkey[200];
    redis_key_of(key, "apikey", rkey, sizeof rkey);
    long long pttl = rk_test_server_integer(server, "PTTL %s", rkey);
    assert_true(pttl > RK_APIKEYS_DEFAULT_POSITIVE_TTL_MS); /* the tombstone outlives any cached answer */
    assert_int_equal(metrics(ak).revocations, 1);
    rk_apikeys_free(ak);
}

/* A lookup that answers "valid" after the key was revoked (a stale
 * database read) cannot bring it back. */
typedef struct slow_verify {
    rk_apikeys *ak;
    const char *key;
    rk_status st;
    rk_apikey_verdict verdict;
} slow_verify;

static void *slow_verify_run(void *arg)
{
    slow_verify *s = arg;
    rk_apikey_result r;
    s->st = rk_apikeys_verify(s->ak, s->key, &r);
    s->verdict = r.verdict;
    rk_apikeys_result_clear(&r);
    return NULL;
}

static void test_slow_lookup_cannot_resurrect(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    rk_apikeys *other = keys_new(client, &d, (rk_apikeys_options){.fresh_ms = RK_APIKEYS_OFF});
    char key[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "zombie", 0, key);
    d.sleep_ms = 600;
    slow_verify s[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (slow_verify){.ak = ak, .key = key};
        assert_int_equal(pthread_create(&t[i], NULL, slow_verify_run, &s[i]), 0);
    }
    for (int i = 0; i < 200 && atomic_load(&d.entered) == 0; i++) rk_test_sleep_ms(10);
    assert_int_equal(atomic_load(&d.entered), 1);
    assert_int_equal(rk_apikeys_revoke(ak, key), RK_OK); /* while the lookup runs */
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(s[i].st, RK_OK);
        /* The fill found the tombstone and served it: the leader and its
         * waiters all say REVOKED. */
        assert_int_equal(s[i].verdict, RK_APIKEY_REVOKED);
    }
    assert_int_equal(atomic_load(&d.calls), 1);
    d.sleep_ms = 0;
    assert_int_equal(verify(ak, key, NULL, NULL), RK_APIKEY_REVOKED);
    assert_int_equal(verify(other, key, NULL, NULL), RK_APIKEY_REVOKED);
    char rkey[200];
    redis_key_of(key, "apikey", rkey, sizeof rkey);
    redisReply *r = rk_test_server_command(server, "GET %s", rkey);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "R");
    freeReplyObject(r);
    assert_int_equal(atomic_load(&d.calls), 1);
    rk_apikeys_free(other);
    rk_apikeys_free(ak);
}

/* Another process's revocation reaches this one through an invalidation
 * (what the subscriber calls), or within fresh_ms without one; after a
 * lost subscription nothing held is served fresh. */
static void test_invalidation(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    /* here hears no invalidation but those the test hands it. */
    rk_apikeys *here = keys_new(client, &d, (rk_apikeys_options){.fresh_ms = 60000, .no_subscribe = true});
    rk_apikeys *there = keys_new(client, &d, (rk_apikeys_options){0});
    char a[RK_APIKEYS_KEY_BUF], b[RK_APIKEYS_KEY_BUF], hash[RK_APIKEYS_HASH_BUF];
    db_add(&d, here, "a", 0, a);
    db_add(&d, here, "b", 0, b);
    assert_int_equal(verify(here, a, NULL, NULL), RK_APIKEY_VALID);
    assert_int_equal(verify(here, b, NULL, NULL), RK_APIKEY_VALID);
    assert_int_equal(rk__local_count(here->local), 2);
    assert_int_equal(rk_apikeys_revoke(there, a), RK_OK);
    rk_apikey_layer layer;
    /* No invalidation yet: this process still answers from memory. */
    assert_int_equal(verify(here, a, &layer, NULL), RK_APIKEY_VALID);
    assert_int_equal(layer, RK_APIKEY_LAYER_PROCESS);
    assert_int_equal(rk_apikeys_hash(a, hash), RK_OK);
    rk__apikeys_invalidated(here, "not a hash", 10); /* ignored */
    rk__apikeys_invalidated(here, hash, strlen(hash));
    assert_int_equal(metrics(here).invalidations, 1);
    assert_int_equal(verify(here, a, &layer, NULL), RK_APIKEY_REVOKED);
    assert_int_equal(layer, RK_APIKEY_LAYER_REDIS);
    /* By hash, as an operator does. */
    assert_int_equal(rk_apikeys_hash(b, hash), RK_OK);
    assert_int_equal(rk_apikeys_revoke_hash(there, hash), RK_OK);
    /* A lost subscription (as the subscriber reports it): what is held
     * may have missed invalidations, so it is not served fresh again. */
    rk__apikeys_subscription_changed(here, true);
    assert_int_equal(metrics(here).subscription_losses, 1);
    assert_int_equal(verify(here, b, NULL, NULL), RK_APIKEY_REVOKED);
    /* forget: a changed record is read again; a tombstone stays. */
    char c[RK_APIKEYS_KEY_BUF];
    db_add(&d, here, "plan=free", 0, c);
    assert_int_equal(verify(here, c, NULL, NULL), RK_APIKEY_VALID);
    snprintf(d.owner[d.n - 1], sizeof d.owner[0], "plan=pro");
    assert_int_equal(rk_apikeys_forget(there, c), RK_OK);
    rk__apikeys_invalidated(here, hash, strlen(hash)); /* (b's: this process keeps c's answer) */
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(there, c, &r), RK_OK);
    assert_string_equal(r.owner, "plan=pro");
    assert_int_equal(r.layer, RK_APIKEY_LAYER_LOOKUP);
    rk_apikeys_result_clear(&r);
    assert_int_equal(rk_apikeys_forget(there, b), RK_OK);
    assert_int_equal(verify(there, b, NULL, NULL), RK_APIKEY_REVOKED);
    assert_int_equal(rk_apikeys_forget(there, "garbage"), RK_ERR_INVALID);
    rk_apikeys_free(there);
    rk_apikeys_free(here);
}

/* ---- failures ------------------------------------------------------------------ */

static void test_redis_killed(void **state)
{
    (void)state;
    rk_test_server *s = rk_test_server_start(NULL);
    assert_non_null(s);
    rk_client *dc = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = rk_test_server_url(s), .command_timeout_ms = 200,
                                                        .connect_timeout_ms = 200, .pool_size = 4},
                                   &dc),
                     RK_OK);
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(dc, &d, (rk_apikeys_options){.fresh_ms = 100, .stale_ms = 60000});
    rk_apikeys *closed = keys_new(dc, &d, (rk_apikeys_options){.fresh_ms = 100, .fail_closed = true});
    char known[RK_APIKEYS_KEY_BUF], fresh[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "known", 0, known);
    db_add(&d, ak, "fresh", 0, fresh);
    assert_int_equal(verify(ak, known, NULL, NULL), RK_APIKEY_VALID);
    rk_test_sleep_ms(150); /* past the fresh window: only stale now */
    assert_true(rk_test_server_signal(s, SIGKILL));
    int calls = atomic_load(&d.calls);

    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, known, &r), RK_OK);
    assert_int_equal(r.verdict, RK_APIKEY_VALID);
    assert_true(r.degraded);
    assert_int_equal(r.layer, RK_APIKEY_LAYER_PROCESS);
    assert_string_equal(r.owner, "known");
    assert_null(strstr(rk_last_error(), known));
    rk_apikeys_result_clear(&r);
    assert_int_equal(atomic_load(&d.calls), calls); /* the database was not asked */

    /* Unknown to this process: the database is asked directly. */
    assert_int_equal(rk_apikeys_verify(ak, fresh, &r), RK_OK);
    assert_int_equal(r.verdict, RK_APIKEY_VALID);
    assert_true(r.degraded);
    assert_int_equal(r.layer, RK_APIKEY_LAYER_LOOKUP);
    rk_apikeys_result_clear(&r);
    assert_int_equal(atomic_load(&d.calls), calls + 1);

    /* fail_closed: no answer in memory, no database: unavailable. */
    assert_int_equal(rk_apikeys_verify(closed, known, &r), RK_ERR_UNAVAILABLE);
    assert_int_equal(r.verdict, 0);
    assert_int_equal(atomic_load(&d.calls), calls + 1);
    assert_true(metrics(ak).degraded >= 2);

    assert_true(rk_test_server_restart(s, NULL));
    rk_apikeys_free(closed);
    rk_apikeys_free(ak);
    rk_client_free(dc);
    rk_test_server_stop(s);
}

/* The database down: a cached answer is served up to the stale window. */
static void test_database_down(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){.positive_ttl_ms = 150, .tombstone_ttl_ms = 150,
                                                               .fresh_ms = 100, .stale_ms = 60000});
    char key[RK_APIKEYS_KEY_BUF], never[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "steady", 0, key);
    db_add(&d, ak, "never-seen", 0, never);
    assert_int_equal(verify(ak, key, NULL, NULL), RK_APIKEY_VALID);
    rk_test_sleep_ms(250); /* gone from Redis, stale in memory */
    d.fail = RK_ERR_UNAVAILABLE;
    bool degraded;
    rk_apikey_layer layer;
    assert_int_equal(verify(ak, key, &layer, &degraded), RK_APIKEY_VALID);
    assert_true(degraded);
    assert_int_equal(layer, RK_APIKEY_LAYER_PROCESS);
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, never, &r), RK_ERR_SOURCE);
    assert_int_equal(r.lookup_status, RK_ERR_UNAVAILABLE);
    rk_apikeys_free(ak);
}

/* ---- no secret anywhere -------------------------------------------------------- */

static void assert_no_key(const char *text, const char *key, const char *where)
{
    if (text && strstr(text, key)) fail_msg("the API key appears in %s", where);
    /* Nor its random part alone. */
    const char *body = strrchr(key, '_') + 1;
    if (text && strstr(text, body)) fail_msg("the API key's body appears in %s", where);
}

static void test_no_secret_anywhere(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){.negative_ttl_ms = 60000});
    char key[RK_APIKEYS_KEY_BUF], unknown[RK_APIKEYS_KEY_BUF], revoked[RK_APIKEYS_KEY_BUF];
    db_add(&d, ak, "owner-record", 0, key);
    db_add(&d, ak, "to-revoke", 0, revoked);
    assert_int_equal(rk_apikeys_generate(ak, unknown, NULL), RK_OK);
    const char *all[] = {key, unknown, revoked};
    assert_int_equal(verify(ak, key, NULL, NULL), RK_APIKEY_VALID);
    assert_no_key(rk_last_error(), key, "rk_last_error");
    assert_int_equal(verify(ak, unknown, NULL, NULL), RK_APIKEY_NOT_FOUND);
    assert_no_key(rk_last_error(), unknown, "rk_last_error");
    assert_int_equal(rk_apikeys_revoke(ak, revoked), RK_OK);
    assert_no_key(rk_last_error(), revoked, "rk_last_error");
    d.fail = RK_ERR_SERVER;
    char fresh[RK_APIKEYS_KEY_BUF];
    assert_int_equal(rk_apikeys_generate(ak, fresh, NULL), RK_OK);
    rk_apikey_result r;
    assert_int_equal(rk_apikeys_verify(ak, fresh, &r), RK_ERR_SOURCE);
    assert_no_key(rk_last_error(), fresh, "rk_last_error");
    d.fail = RK_OK;

    /* Redis: every key name and every value (DUMP). */
    char out[65536];
    int rc = rk_test_server_cli(server, out, sizeof out, (const char *const[]){"--scan", NULL});
    assert_int_equal(rc, 0);
    assert_true(strlen(out) > 0);
    for (size_t i = 0; i < 3; i++) assert_no_key(out, all[i], "a Redis key name");
    char *save = NULL;
    int dumped = 0;
    for (char *line = strtok_r(out, "\n", &save); line && dumped < 100; line = strtok_r(NULL, "\n", &save)) {
        redisReply *dump = rk_test_server_command(server, "DUMP %s", line);
        assert_non_null(dump);
        if (dump->type == REDIS_REPLY_STRING)
            for (size_t i = 0; i < 3; i++) {
                assert_null(memmem(dump->str, dump->len, all[i], strlen(all[i])));
                const char *body = strrchr(all[i], '_') + 1;
                assert_null(memmem(dump->str, dump->len, body, strlen(body)));
            }
        freeReplyObject(dump);
        dumped++;
    }
    assert_true(dumped >= 3);

    /* Metrics text and log lines. */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    assert_non_null(strstr(text, "redkit_apikeys_verifies_total{ns=\"apikey\"}"));
    assert_non_null(strstr(text, "redkit_apikeys_hits_total{ns=\"apikey\",layer=\"process\"}"));
    for (size_t i = 0; i < 3; i++) assert_no_key(text, all[i], "the metrics");
    rk_free(text);
    pthread_mutex_lock(&logs.lock);
    for (size_t i = 0; i < 3; i++) assert_no_key(logs.text, all[i], "a log line");
    pthread_mutex_unlock(&logs.lock);
    rk_apikeys_free(ak);
}

/* ---- allocation failures --------------------------------------------------------- */

static int nomem_scenario(const char *url, const char *hash, const char *key, const char *unknown)
{
    rk_client *c = NULL;
    if (rk_client_new(&(rk_client_options){.url = url, .key_prefix = PREFIX}, &c) != RK_OK) return 0;
    db d;
    db_init(&d);
    snprintf(d.hash[0], sizeof d.hash[0], "%s", hash);
    snprintf(d.owner[0], sizeof d.owner[0], "%s", "nomem-owner");
    d.n = 1;
    rk_apikeys *ak = NULL;
    int answered = 0;
    /* A failed allocation can leave the fetch lock in Redis (its release
     * needs memory too); it then expires after lock_ms, which the later
     * verifies of the key wait out: keep that short here. */
    if (rk_apikeys_new(c, &(rk_apikeys_options){.lookup = db_lookup, .lookup_user = &d, .lock_ms = 200}, &ak) ==
        RK_OK) {
        rk_apikey_result r;
        for (int i = 0; i < 3; i++) { /* lookup, then memory */
            rk_status st = rk_apikeys_verify(ak, i == 1 ? unknown : key, &r);
            if (st == RK_OK) answered++;
            else if (st != RK_ERR_NOMEM && st != RK_ERR_UNAVAILABLE && st != RK_ERR_SOURCE)
                fail_msg("verify: unexpected %s: %s", rk_strerror(st), rk_last_error());
            rk_apikeys_result_clear(&r);
        }
        rk_status st = rk_apikeys_revoke(ak, key);
        if (st != RK_OK && st != RK_ERR_NOMEM && st != RK_ERR_UNAVAILABLE)
            fail_msg("revoke: unexpected %s", rk_strerror(st));
        char *text = NULL;
        size_t len;
        if (rk_metrics_prometheus(c, &text, &len) == RK_OK) rk_free(text);
        rk_apikeys_free(ak);
    }
    rk_client_free(c);
    return answered;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    db d;
    db_init(&d);
    rk_apikeys *ak = keys_new(client, &d, (rk_apikeys_options){0});
    char key[RK_APIKEYS_KEY_BUF], unknown[RK_APIKEYS_KEY_BUF], hash[RK_APIKEYS_HASH_BUF];
    assert_int_equal(rk_apikeys_generate(ak, key, hash), RK_OK);
    assert_int_equal(rk_apikeys_generate(ak, unknown, NULL), RK_OK);
    rk_apikeys_free(ak);
    char url[128];
    snprintf(url, sizeof url, "%s", rk_test_server_url(server));
    long n;
    for (n = 1; n < 5000; n++) {
        rk_test_server_flush(server);
        long live = rk_test_fail_live();
        rk_test_fail_arm(n);
        nomem_scenario(url, hash, key, unknown);
        rk_test_fail_disarm();
        if (rk_test_fail_live() != live) fail_msg("N=%ld: %ld blocks leaked", n, rk_test_fail_live() - live);
        if (!rk_test_fail_hit()) break;
    }
    assert_true(n < 5000);
    /* And without failures, the scenario answers every verify. */
    rk_test_server_flush(server);
    assert_int_equal(nomem_scenario(url, hash, key, unknown), 3);
    print_message("out-of-memory walk: %ld allocation points\n", n - 1);
}

int main(void)
{
    /* Before any other redkit call, as rk_set_allocator asks. */
    if (rk_set_allocator(&rk_test_fail_allocator) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_key_format, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_options, rk_test_group_flush),
        cmocka_unit_test_setup(test_layers_and_owner, rk_test_group_flush),
        cmocka_unit_test_setup(test_negative_ttl, rk_test_group_flush),
        cmocka_unit_test_setup(test_failing_lookup_not_cached, rk_test_group_flush),
        cmocka_unit_test_setup(test_expired_record, rk_test_group_flush),
        cmocka_unit_test_setup(test_malformed_costs_nothing, rk_test_group_flush),
        cmocka_unit_test_setup(test_one_lookup_two_processes, rk_test_group_flush),
        cmocka_unit_test_setup(test_revoke_while_verifying, rk_test_group_flush),
        cmocka_unit_test_setup(test_slow_lookup_cannot_resurrect, rk_test_group_flush),
        cmocka_unit_test_setup(test_invalidation, rk_test_group_flush),
        cmocka_unit_test_setup(test_redis_killed, rk_test_group_flush),
        cmocka_unit_test_setup(test_database_down, rk_test_group_flush),
        cmocka_unit_test_setup(test_no_secret_anywhere, rk_test_group_flush),
        cmocka_unit_test_setup(test_out_of_memory, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
