/*
 * sessions_bench.c — what redkit's session store costs over a bare hiredis
 * loop, and what a session costs in Redis memory.
 *
 *     REDIS_URL=redis://127.0.0.1:6379 ./sessions_bench [OPS]
 *
 * Speed: create, get and set-attribute, one request in flight, redkit's
 * rk_sessions_create() / rk_sessions_get() / rk_sessions_set() against a
 * blocking hiredis connection sending the very same EVALSHA (the same Lua
 * script, the same key shape, the same arguments) — so the difference is
 * redkit's own work: the token check, the SHA-256 that names the key, the
 * pool, building the request and the rk_session the caller gets back. The
 * hiredis side is given its keys ready-made (it generates no token and
 * hashes nothing), which makes it the strictest baseline.
 *
 * Memory: used_memory before and after creating 10,000 sessions (delta /
 * 10,000) in several shapes, beside a plain SET of the same payload under a
 * connect-redis-style key ("sess:" + 32 characters) measured the same way;
 * then the per-user index's share, measured by deleting the indexes. Run it
 * on a server of its own (make bench starts one): other keys move the
 * figures (Redis's hash tables grow in powers of two).
 *
 * It prints figures and never judges them. OPS, the timed requests per
 * contender and operation, defaults to 20000 (argv[1] or $BENCH_OPS). The
 * machine is usually shared and busy: the figures are noisy, read the
 * spread column.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/redkit.h>

#define BENCH_NAME "sessions_bench"
#include "bench_support.h"
#include "measure.h"
#include "scripts.h"  /* src/sessions: the Lua the hiredis side sends too */
#include "sessions.h" /* src/sessions: token and id functions */

#define DEFAULT_OPS 20000
#define WARMUP_OPS 1000
#define ROUNDS 3
#define BLOCK_OPS 500
#define KEYSPACE 2000 /* sessions per contender for get and set */
#define PAYLOAD 194
#define MEM_SESSIONS 10000
#define NS "benchsess"
#define IDLE_MS 600000
#define ABS_MS 3600000
#define MAX_BYTES 65536
#define MAX_ATTRS 64

enum { OP_CREATE, OP_GET, OP_SET, N_OPS };
static const char *const op_names[N_OPS] = {"create", "get", "set-attr"};
enum { IMPL_HIREDIS, IMPL_REDKIT, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {"hiredis", "redkit"};

static char payload[PAYLOAD];

typedef struct bench {
    redisContext *h;
    rk_client *client;
    rk_sessions *s;
    char sha[3][41];          /* create, get, write */
    char **hkeys;             /* hiredis: session keys, KEYSPACE */
    size_t *hkey_len;
    char (*tokens)[RK_SESSION_TOKEN_SIZE]; /* redkit: KEYSPACE sessions */
    char **fresh;             /* hiredis create: new keys for this round */
    size_t *fresh_len;
    char (*created)[RK_SESSION_TOKEN_SIZE]; /* redkit create: its tokens */
    size_t next[N_IMPLS];     /* creates done this round */
    size_t per_round;         /* warm-up + timed creates */
    int64_t *lat_ns[N_IMPLS];
    int op;
} bench;

/* A new session key, as redkit would name it, in a malloc'd string. */
static char *new_key(rk_client *client, char token[RK_SESSION_TOKEN_SIZE], size_t *len)
{
    char id[RK_SESSION_ID_SIZE], user_key[RK_SESSION_ID_SIZE + 2];
    if (rk__session_token_new(token) != RK_OK || rk__session_id(token, id) != RK_OK)
        bench_die("setup", "no token");
    snprintf(user_key, sizeof user_key, "{%s}", id);
    size_t n;
    rk_key_build(client, NS, user_key, NULL, 0, &n);
    char *k = malloc(n + 1);
    if (!k || rk_key_build(client, NS, user_key, k, n + 1, len) != RK_OK) bench_die("setup", "rk_key_build");
    return k;
}

static char *key_of_token(rk_client *client, const char *token, size_t *len)
{
    char id[RK_SESSION_ID_SIZE], user_key[RK_SESSION_ID_SIZE + 2];
    if (rk__session_id(token, id) != RK_OK) bench_die("cleanup", "no digest");
    snprintf(user_key, sizeof user_key, "{%s}", id);
    size_t n;
    rk_key_build(client, NS, user_key, NULL, 0, &n);
    char *k = malloc(n + 1);
    if (!k || rk_key_build(client, NS, user_key, k, n + 1, len) != RK_OK) bench_die("cleanup", "rk_key_build");
    return k;
}

/* The hiredis side: EVALSHA of redkit's own scripts, arguments as redkit
 * sends them. */
static int hiredis_step(bench *b, size_t k)
{
    redisReply *r = NULL;
    if (b->op == OP_CREATE) {
        size_t i = b->next[IMPL_HIREDIS]++;
        r = redisCommand(b->h, "EVALSHA %s 1 %b %d %d %d %s %s %b", b->sha[0], b->fresh[i], b->fresh_len[i],
                         IDLE_MS, ABS_MS, MAX_BYTES, "", "data", payload, (size_t)PAYLOAD);
    } else if (b->op == OP_GET) {
        r = redisCommand(b->h, "EVALSHA %s 1 %b %d", b->sha[1], b->hkeys[k], b->hkey_len[k], IDLE_MS);
    } else {
        r = redisCommand(b->h, "EVALSHA %s 1 %b %d %d %d s %s %s", b->sha[2], b->hkeys[k], b->hkey_len[k], IDLE_MS,
                         MAX_BYTES, MAX_ATTRS, "n", "1");
    }
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_INTEGER &&
             r->element[0]->integer == 1;
    if (!ok)
        fprintf(stderr, "sessions_bench: hiredis %s: %s\n", op_names[b->op],
                !r ? b->h->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int redkit_step(bench *b, size_t k)
{
    rk_status st;
    if (b->op == OP_CREATE) {
        size_t i = b->next[IMPL_REDKIT]++;
        rk_session_attr a = {"data", payload, PAYLOAD};
        st = rk_sessions_create(b->s, &(rk_session_create_options){.attrs = &a, .nattrs = 1}, b->created[i]);
    } else if (b->op == OP_GET) {
        rk_session *got;
        st = rk_sessions_get(b->s, b->tokens[k], NULL, 0, &got);
        if (st == RK_OK && (got->nattrs < 1 || !rk_session_find(got, "data"))) st = RK_ERR_PROTOCOL;
        rk_session_free(got);
    } else {
        rk_session_attr a = {"n", "1", 1};
        st = rk_sessions_set(b->s, b->tokens[k], &a, 1);
    }
    if (st != RK_OK)
        fprintf(stderr, "sessions_bench: redkit %s: %s: %s\n", op_names[b->op], rk_strerror(st), rk_last_error());
    return st == RK_OK ? 0 : -1;
}

static int step(void *ctx, size_t impl, size_t n)
{
    bench *b = ctx;
    return impl == IMPL_HIREDIS ? hiredis_step(b, n % KEYSPACE) : redkit_step(b, n % KEYSPACE);
}

/* UNLINK n keys through the hiredis connection, pipelined. */
static void unlink_keys(redisContext *h, char **keys, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) redisAppendCommand(h, "UNLINK %b", keys[i], lens[i]);
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(h, &r) != REDIS_OK) bench_die("UNLINK", h->errstr);
        freeReplyObject(r);
    }
}

/* Before a create phase: fresh keys for the hiredis side. After it: remove
 * what both sides created, so that memory stays bounded. */
static void create_prepare(bench *b)
{
    char token[RK_SESSION_TOKEN_SIZE];
    for (size_t i = 0; i < b->per_round; i++) b->fresh[i] = new_key(b->client, token, &b->fresh_len[i]);
    b->next[0] = b->next[1] = 0;
}

static void create_cleanup(bench *b)
{
    unlink_keys(b->h, b->fresh, b->fresh_len, b->next[IMPL_HIREDIS]);
    for (size_t i = 0; i < b->per_round; i++) free(b->fresh[i]);
    size_t n = b->next[IMPL_REDKIT];
    char **keys = malloc(n * sizeof *keys);
    size_t *lens = malloc(n * sizeof *lens);
    if (!keys || !lens) bench_die("cleanup", "out of memory");
    for (size_t i = 0; i < n; i++) keys[i] = key_of_token(b->client, b->created[i], &lens[i]);
    unlink_keys(b->h, keys, lens, n);
    for (size_t i = 0; i < n; i++) free(keys[i]);
    free(keys);
    free(lens);
}

static char *load_script(redisContext *h, const char *src)
{
    redisReply *r = redisCommand(h, "SCRIPT LOAD %s", src);
    if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) bench_die("SCRIPT LOAD", h->errstr);
    char *sha = strdup(r->str);
    freeReplyObject(r);
    return sha;
}

static long long used_memory(redisContext *h)
{
    redisReply *r = redisCommand(h, "INFO memory");
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    long long v = p ? atoll(p + 12) : -1;
    freeReplyObject(r);
    if (v < 0) bench_die("INFO memory", "no used_memory");
    return v;
}

/* ---- memory ---------------------------------------------------------------- */

/* Create MEM_SESSIONS sessions of one shape (user NULL = anonymous; users
 * > 0: user "user<N % users>"), print the per-session delta. With users,
 * delete the indexes and print their share. Then delete everything. */
static void memory_shape(bench *b, rk_sessions *s, const char *what, const rk_session_attr *attrs, size_t nattrs,
                         int users)
{
    char (*tok)[RK_SESSION_TOKEN_SIZE] = malloc(MEM_SESSIONS * sizeof *tok);
    if (!tok) bench_die("memory", "out of memory");
    long long before = used_memory(b->h);
    for (size_t i = 0; i < MEM_SESSIONS; i++) {
        char user[32];
        snprintf(user, sizeof user, "user%04d", users ? (int)(i % (size_t)users) : 0);
        rk_session_create_options o = {.user = users ? user : NULL, .attrs = attrs, .nattrs = nattrs};
        rk_status st = rk_sessions_create(s, &o, tok[i]);
        if (st != RK_OK) bench_die_rk("create", st);
    }
    long long after = used_memory(b->h);
    double total = (double)(after - before) / MEM_SESSIONS;
    if (users) {
        /* "<prefix>:<ns>" from the key of "x", then each "<...>#u:<user>". */
        char idx[128];
        size_t n;
        if (rk_key_build(b->client, NS, "x", idx, sizeof idx, &n) != RK_OK) bench_die("index", rk_last_error());
        idx[n - 2] = '\0';
        for (int u = 0; u < users; u++) freeReplyObject(redisCommand(b->h, "DEL %s#u:user%04d", idx, u));
        long long without = used_memory(b->h);
        double index = (double)(after - without) / MEM_SESSIONS;
        printf("%-58s %6.0f B/session (session %.0f + index %.0f)\n", what, total, total - index, index);
    } else {
        printf("%-58s %6.0f B/session\n", what, total);
    }
    char **keys = malloc(MEM_SESSIONS * sizeof *keys);
    size_t *lens = malloc(MEM_SESSIONS * sizeof *lens);
    if (!keys || !lens) bench_die("memory", "out of memory");
    for (size_t i = 0; i < MEM_SESSIONS; i++) keys[i] = key_of_token(b->client, tok[i], &lens[i]);
    unlink_keys(b->h, keys, lens, MEM_SESSIONS);
    for (size_t i = 0; i < MEM_SESSIONS; i++) free(keys[i]);
    free(keys);
    free(lens);
    free(tok);
}

/* connect-redis's layout for the same payload: SET sess:<32 chars> <payload> EX. */
static void memory_plain(bench *b)
{
    long long before = used_memory(b->h);
    char key[64];
    for (size_t i = 0; i < MEM_SESSIONS; i++) {
        snprintf(key, sizeof key, "sess:%032zu", i);
        redisAppendCommand(b->h, "SET %s %b EX 3600", key, payload, (size_t)PAYLOAD);
    }
    for (size_t i = 0; i < MEM_SESSIONS; i++) {
        void *r = NULL;
        if (redisGetReply(b->h, &r) != REDIS_OK) bench_die("SET", b->h->errstr);
        freeReplyObject(r);
    }
    long long after = used_memory(b->h);
    printf("%-58s %6.0f B/session\n", "plain SET sess:<32 chars> <194 B> EX (connect-redis layout)",
           (double)(after - before) / MEM_SESSIONS);
    for (size_t i = 0; i < MEM_SESSIONS; i++) {
        snprintf(key, sizeof key, "sess:%032zu", i);
        redisAppendCommand(b->h, "UNLINK %s", key);
    }
    for (size_t i = 0; i < MEM_SESSIONS; i++) {
        void *r = NULL;
        if (redisGetReply(b->h, &r) != REDIS_OK) bench_die("UNLINK", b->h->errstr);
        freeReplyObject(r);
    }
}

static void memory(bench *b)
{
    printf("\nRedis memory, used_memory delta over %d sessions (%d-byte payload):\n", MEM_SESSIONS, PAYLOAD);
    /* Warm the script cache and the allocator first. */
    char t[RK_SESSION_TOKEN_SIZE];
    if (rk_sessions_create(b->s, NULL, t) != RK_OK || rk_sessions_destroy(b->s, t) != RK_OK)
        bench_die("memory", rk_last_error());
    memory_plain(b);
    rk_session_attr one = {"data", payload, PAYLOAD};
    memory_shape(b, b->s, "redkit: attribute \"data\" = 194 B, anonymous", &one, 1, 0);
    /* The same 194 bytes of session content, user id included: user
     * "user0042" (8) + names "data" (4), "role" (4) + values 174 + 4. */
    rk_session_attr two[2] = {{"data", payload, 174}, {"role", "user", 4}};
    memory_shape(b, b->s, "redkit: user (8 B) + 2 attributes, 194 B of content in all", two, 2, 1000);
    memory_shape(b, b->s, "redkit: user (8 B) + attribute \"data\" = 194 B (202 B)", &one, 1, 1000);
}

/* ---- main ------------------------------------------------------------------ */

static void print_row(int op, const char *impl, bench_result r, double spread)
{
    printf("%-9s %-8s %9.0f %8.1f %8.1f %7.0f%%\n", op_names[op], impl, r.per_s, r.p50_us, r.p99_us, spread * 100);
}

int main(int argc, char **argv)
{
    static bench b;
    static bench_result rounds[N_IMPLS][N_OPS][ROUNDS];
    size_t ops = bench_count(argc, argv, DEFAULT_OPS, "OPS", "operations", 10000000);
    const char *url = bench_redis_url();
    char version[32], *shown = NULL;

    /* A generous command timeout: on a busy machine a rare slow reply must
     * not end the run (the p99 column shows such replies). */
    rk_status st = rk_client_new(&(rk_client_options){.url = url, .command_timeout_ms = 5000}, &b.client);
    if (st != RK_OK) bench_die_rk("rk_client_new", st);
    st = rk_sessions_new(b.client,
                         &(rk_sessions_options){.ns = NS, .idle_ms = IDLE_MS, .absolute_ms = ABS_MS,
                                                .max_bytes = MAX_BYTES, .max_attrs = MAX_ATTRS},
                         &b.s);
    if (st != RK_OK) bench_die_rk("rk_sessions_new", st);
    b.h = bench_hiredis_connect(url);
    redisReply *info = redisCommand(b.h, "INFO server");
    bench_server_version(info, version, sizeof version);
    freeReplyObject(info);
    if (rk_url_redact(url, &shown) != RK_OK) shown = NULL;
    for (size_t i = 0; i < PAYLOAD; i++) payload[i] = (char)('a' + i % 26);

    const char *sources[3] = {RK__SESS_LUA_CREATE, RK__SESS_LUA_GET, RK__SESS_LUA_WRITE};
    for (int i = 0; i < 3; i++) {
        char *sha = load_script(b.h, sources[i]);
        snprintf(b.sha[i], sizeof b.sha[i], "%s", sha);
        free(sha);
    }

    /* The get/set sessions: KEYSPACE each, same payload. */
    b.hkeys = malloc(KEYSPACE * sizeof *b.hkeys);
    b.hkey_len = malloc(KEYSPACE * sizeof *b.hkey_len);
    b.tokens = malloc(KEYSPACE * sizeof *b.tokens);
    b.per_round = WARMUP_OPS + ops;
    b.fresh = malloc(b.per_round * sizeof *b.fresh);
    b.fresh_len = malloc(b.per_round * sizeof *b.fresh_len);
    b.created = malloc(b.per_round * sizeof *b.created);
    if (!b.hkeys || !b.hkey_len || !b.tokens || !b.fresh || !b.fresh_len || !b.created)
        bench_die("setup", "out of memory");
    bench_alloc_samples(b.lat_ns, N_IMPLS, ops);
    rk_session_attr a = {"data", payload, PAYLOAD};
    for (size_t k = 0; k < KEYSPACE; k++) {
        st = rk_sessions_create(b.s, &(rk_session_create_options){.attrs = &a, .nattrs = 1}, b.tokens[k]);
        if (st != RK_OK) bench_die_rk("create", st);
        char token[RK_SESSION_TOKEN_SIZE];
        b.hkeys[k] = new_key(b.client, token, &b.hkey_len[k]);
        redisReply *r = redisCommand(b.h, "EVALSHA %s 1 %b %d %d %d %s %s %b", b.sha[0], b.hkeys[k], b.hkey_len[k],
                                     IDLE_MS, ABS_MS, MAX_BYTES, "", "data", payload, (size_t)PAYLOAD);
        if (!r || r->type != REDIS_REPLY_ARRAY) bench_die("hiredis create", b.h->errstr);
        freeReplyObject(r);
    }

    printf("redkit %s sessions bench: redis %s at %s\n", rk_version(), version, shown ? shown : "(unprintable URL)");
    printf("%zu ops per contender and operation after %d warm-up, one %d-byte attribute per session,\n"
           "1 request in flight, turns of %d ops; median of %d rounds (spread: max-min over median).\n"
           "hiredis sends the same EVALSHA with ready-made keys. Shared machine: figures are noisy.\n\n",
           ops, WARMUP_OPS, PAYLOAD, BLOCK_OPS, ROUNDS);
    rk_free(shown);
    fflush(stdout);

    for (size_t round = 0; round < ROUNDS; round++)
        for (int op = 0; op < N_OPS; op++) {
            bench_result r[N_IMPLS];
            b.op = op;
            if (op == OP_CREATE) create_prepare(&b);
            bench_measure_round(step, &b, N_IMPLS, WARMUP_OPS, ops, BLOCK_OPS, round, b.lat_ns, r);
            if (op == OP_CREATE) create_cleanup(&b);
            for (size_t i = 0; i < N_IMPLS; i++) rounds[i][op][round] = r[i];
        }

    printf("%-9s %-8s %9s %8s %8s %8s\n", "op", "impl", "ops/s", "p50_us", "p99_us", "spread");
    for (int op = 0; op < N_OPS; op++) {
        bench_result med[N_IMPLS];
        double spread[N_IMPLS];
        for (size_t i = 0; i < N_IMPLS; i++) {
            med[i] = bench_median_round(rounds[i][op], ROUNDS, &spread[i]);
            print_row(op, impl_names[i], med[i], spread[i]);
        }
        printf("ratio %s redkit/hiredis = %.2f\n", op_names[op], med[IMPL_REDKIT].per_s / med[IMPL_HIREDIS].per_s);
    }

    /* The get/set sessions go before the memory figures are taken. */
    unlink_keys(b.h, b.hkeys, b.hkey_len, KEYSPACE);
    for (size_t k = 0; k < KEYSPACE; k++) {
        char *key;
        size_t len;
        key = key_of_token(b.client, b.tokens[k], &len);
        unlink_keys(b.h, &key, &len, 1);
        free(key);
        free(b.hkeys[k]);
    }
    memory(&b);

    for (size_t i = 0; i < N_IMPLS; i++) free(b.lat_ns[i]);
    free(b.hkeys);
    free(b.hkey_len);
    free(b.tokens);
    free(b.fresh);
    free(b.fresh_len);
    free(b.created);
    redisFree(b.h);
    rk_sessions_free(b.s);
    rk_client_free(b.client);
    return 0;
}
