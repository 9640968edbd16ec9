/*
 * hostile_keys_test.c — key isolation against a real redis-server: user
 * keys made of glob characters, path tricks, CR/LF and protocol text, a NUL
 * in the middle, a 1 MiB key. Each is stored, read back and deleted
 * exactly; every key that exists afterwards starts with "<prefix>:<ns>:"
 * (listed with SCAN on a separate connection); a key "*" touches nothing
 * but the key "*"; and rk__key_glob_escape() makes SCAN MATCH find exactly
 * the literal key in a keyspace holding keys the unescaped pattern would
 * match too. The pure cases of the escape are in keys_test.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "keys.h"
#include "support/clock.h"
#include "support/fixture.h"
#include "support/redis_server.h"

#define PREFIX "tenant"
#define NS "hk"
#define HEAD PREFIX ":" NS ":"
#define HEAD_LEN (sizeof HEAD - 1)

/* SCAN is bounded: at most this many round trips and this much time for
 * one listing, however the server answers. */
#define SCAN_MAX_ROUNDS 10000
#define SCAN_MAX_MS 20000

static rk_test_server *server;
static rk_client *client; /* prefix "tenant": what the application uses */
static rk_client *admin;  /* no prefix: raw commands and SCAN */
static rk_cache *cache;   /* namespace "hk" on client */

/* User keys an attacker or a careless caller might send. None holds a NUL
 * (the C-string API cannot carry one; see test_nul_ends_the_key). */
static const char *const hostile[] = {
    "*", "?", "[a-z]", "[!a]", "[", "]", "\\", "\\*", "a*b", "*?*", "..", "../x",
    "../../etc/passwd", "/", "a\r\nb", "\r\n", "line\nbreak", "*1\r\n$8\r\nFLUSHALL\r\n",
    "a\r\nSET evil 1\r\n", " ", "a b", "\t", "^", "{hash}tag", ":", "::x", HEAD "nested",
    "\xff\xfe\x80", "%00", "%2A", "\"'`$()", "-", "key\x7f",
};
#define N_HOSTILE (sizeof hostile / sizeof hostile[0])

/* ---- listing keys --------------------------------------------------------- */

typedef struct keylist {
    size_t n, cap;
    char **key;
    size_t *len;
} keylist;

static void keylist_free(keylist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->key[i]);
    free(l->key);
    free(l->len);
    *l = (keylist){0};
}

static bool keylist_has(const keylist *l, const char *k, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->len[i] == len && memcmp(l->key[i], k, len) == 0) return true;
    return false;
}

/* Add a copy of k unless present: SCAN may return a key twice. */
static void keylist_add(keylist *l, const char *k, size_t len)
{
    if (keylist_has(l, k, len)) return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 32;
        l->key = realloc(l->key, l->cap * sizeof *l->key);
        l->len = realloc(l->len, l->cap * sizeof *l->len);
        assert_non_null(l->key);
        assert_non_null(l->len);
    }
    l->key[l->n] = malloc(len ? len : 1);
    assert_non_null(l->key[l->n]);
    memcpy(l->key[l->n], k, len);
    l->len[l->n++] = len;
}

/* Every key matching pattern (plen bytes, may hold NULs; NULL = all keys),
 * by SCAN on the admin connection. Fails the test if the listing does not
 * end within SCAN_MAX_ROUNDS round trips and SCAN_MAX_MS. */
static keylist scan(const char *pattern, size_t plen)
{
    keylist out = {0};
    char cursor[32] = "0";
    int64_t started = rk_test_now_ms();
    for (int round = 0;; round++) {
        if (round >= SCAN_MAX_ROUNDS || rk_test_now_ms() - started > SCAN_MAX_MS)
            fail_msg("SCAN did not finish in %d rounds / %d ms", SCAN_MAX_ROUNDS, SCAN_MAX_MS);
        const char *argv[] = {"SCAN", cursor, "COUNT", "1000", "MATCH", pattern ? pattern : "*"};
        size_t lens[] = {4, strlen(cursor), 5, 4, 5, pattern ? plen : 1};
        rk_reply *r = NULL;
        rk_status st = rk_client_command(admin, 6, argv, lens, &r);
        if (st != RK_OK) fail_msg("SCAN: %s: %s", rk_strerror(st), rk_last_error());
        assert_int_equal(r->type, RK_REPLY_ARRAY);
        assert_int_equal(r->elements, 2);
        assert_int_equal(r->element[0]->type, RK_REPLY_STRING);
        assert_true(r->element[0]->len < sizeof cursor);
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        rk_reply *keys = r->element[1];
        assert_int_equal(keys->type, RK_REPLY_ARRAY);
        for (size_t i = 0; i < keys->elements; i++) {
            assert_int_equal(keys->element[i]->type, RK_REPLY_STRING);
            keylist_add(&out, keys->element[i]->str, keys->element[i]->len);
        }
        rk_reply_free(r);
        if (strcmp(cursor, "0") == 0) return out;
    }
}

static long long dbsize(void)
{
    const char *argv[] = {"DBSIZE"};
    return rk_test_client_integer(admin, 1, argv, NULL);
}

/* HEAD followed by the len bytes of k, in a buffer the caller frees. */
static char *full_key(const char *k, size_t len, size_t *full_len)
{
    char *f = malloc(HEAD_LEN + len + 1);
    assert_non_null(f);
    memcpy(f, HEAD, HEAD_LEN);
    memcpy(f + HEAD_LEN, k, len);
    f[HEAD_LEN + len] = '\0';
    *full_len = HEAD_LEN + len;
    return f;
}

/* Store a raw value under a raw key (binary-safe), bypassing the cache. */
static void raw_set(const char *k, size_t klen, const char *v)
{
    const char *argv[] = {"SET", k, v};
    size_t lens[] = {3, klen, strlen(v)};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(admin, 3, argv, lens, &r), RK_OK);
    rk_reply_free(r);
}

/* ---- fixture ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    /* Generous timeouts: a 1 MiB key under a sanitizer is slow. */
    rk_client_options o = {.key_prefix = PREFIX, .command_timeout_ms = 10000};
    if (rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client, .client_options = o,
                                                    .cache = &cache, .cache_options = &(rk_cache_options){.ns = NS}}))
        return -1;
    o.url = rk_test_server_url(server);
    o.key_prefix = NULL;
    return rk_client_new(&o, &admin) == RK_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    rk_client_free(admin);
    return rk_test_group_teardown(state);
}

/* ---- tests ------------------------------------------------------------------ */

/* Each hostile key round-trips; the keyspace then holds exactly
 * HEAD + key for each, nothing else; deletes remove exactly them. */
static void test_round_trip_and_listing(void **state)
{
    (void)state;
    char value[32];
    for (size_t i = 0; i < N_HOSTILE; i++) {
        snprintf(value, sizeof value, "value-%zu", i);
        rk_status st = rk_cache_set_str(cache, hostile[i], value, &(rk_cache_set_options){.ttl_s = 600});
        if (st != RK_OK) fail_msg("set #%zu: %s: %s", i, rk_strerror(st), rk_last_error());
    }
    for (size_t i = 0; i < N_HOSTILE; i++) {
        snprintf(value, sizeof value, "value-%zu", i);
        rk_test_assert_cached(cache, hostile[i], value);
        assert_int_equal(rk_cache_exists(cache, hostile[i]), RK_OK);
        int64_t ttl = 0;
        assert_int_equal(rk_cache_ttl_ms(cache, hostile[i], &ttl), RK_OK);
        assert_true(ttl > 0 && ttl <= 600000);
    }

    keylist all = scan(NULL, 0);
    assert_int_equal(all.n, N_HOSTILE);
    assert_int_equal(dbsize(), (long long)N_HOSTILE);
    for (size_t i = 0; i < all.n; i++) {
        assert_true(all.len[i] >= HEAD_LEN);
        assert_memory_equal(all.key[i], HEAD, HEAD_LEN);
    }
    for (size_t i = 0; i < N_HOSTILE; i++) {
        size_t flen;
        char *f = full_key(hostile[i], strlen(hostile[i]), &flen);
        if (!keylist_has(&all, f, flen)) fail_msg("hostile key #%zu is not stored as HEAD + key", i);
        free(f);
    }
    keylist_free(&all);

    for (size_t i = 0; i < N_HOSTILE; i++) {
        assert_int_equal(rk_cache_delete(cache, hostile[i]), RK_OK);
        assert_int_equal(dbsize(), (long long)(N_HOSTILE - i - 1)); /* one key, not more */
        {
            bool existed = true;
            assert_int_equal(rk_cache_delete_ex(cache, hostile[i], &existed), RK_OK);
            assert_false(existed);
        }
        assert_int_equal(rk_cache_exists(cache, hostile[i]), RK_MISS);
    }
    assert_int_equal(dbsize(), 0);
}

/* Keys made of glob characters are literal: setting, reading and deleting
 * them never touches the keys a glob would match. */
static void test_glob_keys_are_literal(void **state)
{
    (void)state;
    rk_cache *other;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "other"}, &other), RK_OK);
    static const char *const decoys[] = {"alpha", "b", "x", "aXb", "ab", "*x", "\\", "[", "?!"};
    const size_t n_decoys = sizeof decoys / sizeof decoys[0];
    char value[32];
    for (size_t i = 0; i < n_decoys; i++) {
        snprintf(value, sizeof value, "decoy-%zu", i);
        assert_int_equal(rk_cache_set_str(cache, decoys[i], value, NULL), RK_OK);
        assert_int_equal(rk_cache_set_str(other, decoys[i], value, NULL), RK_OK);
    }
    raw_set("unrelated", 9, "raw");
    const long long base = (long long)(2 * n_decoys + 1);
    assert_int_equal(dbsize(), base);

    static const char *const globs[] = {"*", "?", "[a-z]", "[!a]", "a*b", "\\*", "*?*", "]", "?*"};
    for (size_t g = 0; g < sizeof globs / sizeof globs[0]; g++) {
        const char *k = globs[g];
        /* "\\" and "[" are decoys too: skip the ones that are the same key. */
        bool is_decoy = false;
        for (size_t i = 0; i < n_decoys; i++) is_decoy |= strcmp(decoys[i], k) == 0;
        assert_false(is_decoy);

        assert_int_equal(rk_cache_set_str(cache, k, "glob", NULL), RK_OK);
        assert_int_equal(dbsize(), base + 1);
        rk_test_assert_cached(cache, k, "glob");
        for (size_t i = 0; i < n_decoys; i++) {
            snprintf(value, sizeof value, "decoy-%zu", i);
            rk_test_assert_cached(cache, decoys[i], value);
            rk_test_assert_cached(other, decoys[i], value);
        }
        assert_int_equal(rk_cache_delete(cache, k), RK_OK);
        assert_int_equal(dbsize(), base);
        {
            bool existed = true;
            assert_int_equal(rk_cache_delete_ex(cache, k, &existed), RK_OK);
            assert_false(existed);
        }
        char *v = NULL;
        assert_int_equal(rk_cache_get_str(cache, k, &v), RK_MISS);
        assert_null(v);
        for (size_t i = 0; i < n_decoys; i++) {
            snprintf(value, sizeof value, "decoy-%zu", i);
            rk_test_assert_cached(cache, decoys[i], value);
            rk_test_assert_cached(other, decoys[i], value);
        }
    }
    rk_cache_free(other);
}

/* The C-string API sees a key up to its first NUL: "ab\0cd" is the key
 * "ab", stored as exactly HEAD "ab". */
static void test_nul_ends_the_key(void **state)
{
    (void)state;
    static const char with_nul[] = "ab\0cd";
    assert_int_equal(rk_cache_set_str(cache, with_nul, "nul", NULL), RK_OK);
    keylist all = scan(NULL, 0);
    assert_int_equal(all.n, 1);
    assert_int_equal(all.len[0], HEAD_LEN + 2);
    assert_memory_equal(all.key[0], HEAD "ab", HEAD_LEN + 2);
    keylist_free(&all);
    rk_test_assert_cached(cache, "ab", "nul");
    rk_test_assert_cached(cache, "ab\0zz", "nul"); /* the same key */
    assert_int_equal(rk_cache_delete(cache, "ab"), RK_OK);
    assert_int_equal(dbsize(), 0);
}

/* Fill a key of n bytes with a mix of hostile characters. */
static char *big_key(size_t n)
{
    static const char mix[] = "*?[]\\\r\n.:/x{} ";
    char *k = malloc(n + 1);
    assert_non_null(k);
    for (size_t i = 0; i < n; i++) k[i] = mix[i % (sizeof mix - 1)];
    k[n] = '\0';
    return k;
}

/* A 1 MiB key: refused with the default limit, before anything is sent;
 * stored and listed exactly with the limit raised. */
static void test_one_mib_key(void **state)
{
    (void)state;
    const size_t mib = (size_t)1 << 20;
    char *k = big_key(mib);
    char *v = NULL;
    int64_t ttl = 0;
    assert_int_equal(rk_cache_set_str(cache, k, "big", NULL), RK_ERR_TOO_LARGE);
    assert_null(strstr(rk_last_error(), "*?[]")); /* the key is never quoted */
    assert_int_equal(rk_cache_get_str(cache, k, &v), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_exists(cache, k), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_ttl_ms(cache, k, &ttl), RK_ERR_TOO_LARGE);
    assert_int_equal(rk_cache_delete(cache, k), RK_ERR_TOO_LARGE);
    size_t len;
    assert_int_equal(rk_key_build(client, NS, k, NULL, 0, &len), RK_ERR_TOO_LARGE);
    assert_int_equal(dbsize(), 0);

    rk_cache *big;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = NS, .max_key_bytes = mib}, &big), RK_OK);
    assert_int_equal(rk_cache_set_str(big, k, "big", NULL), RK_OK);
    rk_test_assert_cached(big, k, "big");
    rk_test_assert_cached(big, k, "big");
    assert_int_equal(rk_cache_exists(big, k), RK_OK);
    assert_int_equal(rk_cache_ttl_ms(big, k, &ttl), RK_OK);
    assert_true(ttl > 0);
    keylist all = scan(NULL, 0);
    assert_int_equal(all.n, 1);
    size_t flen;
    char *f = full_key(k, mib, &flen);
    assert_int_equal(all.len[0], flen);
    assert_memory_equal(all.key[0], f, flen);
    keylist_free(&all);

    /* SCAN MATCH with the escaped 1 MiB key finds it, and only it. */
    size_t need = rk__key_glob_escape(f, flen, NULL, 0);
    char *pattern = malloc(need + 1);
    assert_non_null(pattern);
    assert_int_equal(rk__key_glob_escape(f, flen, pattern, need + 1), need);
    all = scan(pattern, need);
    assert_int_equal(all.n, 1);
    assert_int_equal(all.len[0], flen);
    keylist_free(&all);
    free(pattern);
    free(f);

    /* One byte over the raised limit is refused again. */
    char *k2 = big_key(mib + 1);
    assert_int_equal(rk_cache_set_str(big, k2, "big", NULL), RK_ERR_TOO_LARGE);
    free(k2);

    assert_int_equal(rk_cache_delete(big, k), RK_OK);
    assert_int_equal(dbsize(), 0);
    rk_cache_free(big);
    free(k);
}

/* For each hostile key K, SCAN MATCH escape(HEAD K) returns exactly HEAD K,
 * in a keyspace where the unescaped pattern matches other keys (checked
 * too, so the test would notice an escape that does nothing). */
static void test_scan_match_escaped(void **state)
{
    (void)state;
    /* Keys that the unescaped patterns would also match. */
    static const char *const decoys[] = {"a", "x", "q", "b", "aXYZb", "*x*", "abc"};
    for (size_t i = 0; i < sizeof decoys / sizeof decoys[0]; i++)
        assert_int_equal(rk_cache_set_str(cache, decoys[i], "decoy", NULL), RK_OK);
    for (size_t i = 0; i < N_HOSTILE; i++)
        assert_int_equal(rk_cache_set_str(cache, hostile[i], "hostile", NULL), RK_OK);
    /* Keys with a NUL, which only raw commands can write, with the same
     * trap: "a\0*" unescaped also matches "a\0zz". */
    static const char nul_star[] = HEAD "a\0*", nul_zz[] = HEAD "a\0zz";
    raw_set(nul_star, sizeof nul_star - 1, "raw");
    raw_set(nul_zz, sizeof nul_zz - 1, "raw");

    /* The keys whose unescaped pattern surely matches another key here
     * ("[!a]" is the class of '!' and 'a': Redis negates with '^'). */
    static const char *const globs[] = {"*", "?", "[a-z]", "[!a]", "\\*", "a*b", "*?*"};
    typedef struct scan_case {
        const char *k;
        size_t len;
        bool glob;
    } scan_case;
    scan_case cases[N_HOSTILE + 3];
    size_t n = 0;
    for (size_t i = 0; i < N_HOSTILE; i++) {
        bool glob = false;
        for (size_t g = 0; g < sizeof globs / sizeof globs[0]; g++) glob |= strcmp(globs[g], hostile[i]) == 0;
        cases[n++] = (scan_case){hostile[i], strlen(hostile[i]), glob};
    }
    cases[n++] = (scan_case){"a\0*", 3, true};
    cases[n++] = (scan_case){"a\0zz", 4, false};
    cases[n++] = (scan_case){"x", 1, false};

    size_t globs_checked = 0;
    for (size_t i = 0; i < n; i++) {
        size_t flen;
        char *f = full_key(cases[i].k, cases[i].len, &flen);
        size_t need = rk__key_glob_escape(f, flen, NULL, 0);
        char pattern[512];
        assert_true(need < sizeof pattern);
        assert_int_equal(rk__key_glob_escape(f, flen, pattern, sizeof pattern), need);

        keylist got = scan(pattern, need);
        if (got.n != 1 || got.len[0] != flen || memcmp(got.key[0], f, flen) != 0)
            fail_msg("case #%zu: escaped SCAN MATCH returned %zu key(s), not exactly the literal key", i,
                     got.n);
        keylist_free(&got);

        if (cases[i].glob) {
            /* The control: unescaped, the same pattern finds something else. */
            keylist raw = scan(f, flen);
            bool exact = raw.n == 1 && raw.len[0] == flen && memcmp(raw.key[0], f, flen) == 0;
            if (exact) fail_msg("case #%zu: the unescaped pattern has no decoy to match", i);
            keylist_free(&raw);
            globs_checked++;
        }
        free(f);
    }
    assert_true(globs_checked >= 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip_and_listing, rk_test_group_flush),
        cmocka_unit_test_setup(test_glob_keys_are_literal, rk_test_group_flush),
        cmocka_unit_test_setup(test_nul_ends_the_key, rk_test_group_flush),
        cmocka_unit_test_setup(test_one_mib_key, rk_test_group_flush),
        cmocka_unit_test_setup(test_scan_match_escaped, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
