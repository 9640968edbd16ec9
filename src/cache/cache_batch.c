/*
 * cache_batch.c — multi-get and multi-set (contract in
 * include/redkit/cache.h).
 *
 * A batch is one round trip: MGET of every key, or every SET in one
 * pipeline (tagged sets go through the tag store script, see
 * cache_tags.c). The whole batch is checked before anything is sent, so
 * bad input never leaves half a batch written.
 *
 * Memory: a batch may hold up to RK_CACHE_MAX_BATCH keys, too many for the
 * per-key stack buffers of the single-key calls, so the full keys (and,
 * for a set, the small encoded values) are copied into an arena of large
 * blocks, freed in one go at the end. Values read by MGET are handed to
 * the caller in the buffers the protocol reader filled, as rk_cache_get()
 * does: each element is detached from the array reply and decoded in
 * place.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <redkit/cache.h>

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "error.h"
#include "keys.h"
#include "reply.h"
#include "value.h"

#define ARENA_BLOCK ((size_t)64 << 10)

/* ---- a bump allocator whose blocks never move --------------------------- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

typedef struct arena {
    arena_block *head;
} arena;

/* Copy len bytes (and a NUL) into the arena; NULL when out of memory. */
static char *arena_copy(arena *a, const char *s, size_t len)
{
    arena_block *b = a->head;
    if (!b || b->cap - b->used < len + 1) {
        size_t cap = len + 1 > ARENA_BLOCK ? len + 1 : ARENA_BLOCK;
        b = rk__malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, len);
    p[len] = '\0';
    b->used += len + 1;
    return p;
}

static void arena_free(arena *a)
{
    for (arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        rk__free(b);
    }
    a->head = NULL;
}

/* ---- shared checks ------------------------------------------------------ */

/* Put "<fn>: <what>[i]: " in front of the message just set by a check, so
 * the caller learns which entry was refused, never its key or value. */
static rk_status fail_at(const char *fn, const char *what, size_t i, rk_status st)
{
    char why[RK__ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rk_last_error());
    return rk__fail(st, "%s: %s[%zu]: %s", fn, what, i, why);
}

/* Build the full key of keys[i] into the arena. */
static rk_status batch_key(rk_cache *c, arena *a, const char *fn, const char *what, size_t i, const char *key,
                           const char **out, size_t *out_len)
{
    rk__key k;
    rk_status st = rk__key_make(&k, c->head, c->head_len, key, c->max_key);
    if (st != RK_OK) return fail_at(fn, what, i, st);
    *out = arena_copy(a, k.str, k.len);
    *out_len = k.len;
    rk__key_release(&k);
    return *out ? RK_OK : rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
}

/* ---- multi-get ---------------------------------------------------------- */

static void fill_results(rk_cache_result *results, size_t n, rk_status st)
{
    for (size_t i = 0; i < n; i++) results[i] = (rk_cache_result){.status = st, .value = NULL, .len = 0};
}

/* One element of MGET's reply, detached from the array (consumed). */
static rk_status decode_one(rk_cache *c, rk_reply *e, rk_cache_result *res)
{
    if (e->type == RK_REPLY_NIL) {
        rk_reply_free(e);
        RK__COUNT(c, misses, 1);
        return RK_MISS;
    }
    char *data;
    rk_status st = rk__cache_decode(c, e, RK__ACCEPT(RK__V_BYTES) | RK__ACCEPT(RK__V_STRING), RK__V_BYTES,
                                    &data, &res->len, NULL);
    if (st == RK_OK) {
        res->value = data;
        RK__COUNT(c, hits, 1);
    } else {
        /* A wrong-typed value is an error of that key's read, counted as
         * rk_cache_get() would count it. */
        rk__cache_count_error(c, st);
    }
    return st;
}

rk_status rk_cache_mget(rk_cache *c, const char *const *keys, size_t n, rk_cache_result *results)
{
    static const char fn[] = "rk_cache_mget";
    if (n == 0) return RK_OK;
    if (!results) {
        rk__cache_count_error(c, RK_ERR_INVALID);
        return rk__fail(RK_ERR_INVALID, "%s: results is NULL", fn);
    }
    if (n > RK_CACHE_MAX_BATCH) {
        /* results may be shorter than n: leave it alone. */
        rk__cache_count_error(c, RK_ERR_INVALID);
        return rk__fail(RK_ERR_INVALID, "%s: %zu keys: at most %d in one batch", fn, n, RK_CACHE_MAX_BATCH);
    }
    fill_results(results, n, RK_ERR_INVALID);
    if (!c) return rk__fail(RK_ERR_INVALID, "%s: cache is NULL", fn);
    if (!keys) {
        rk__cache_count_error(c, RK_ERR_INVALID);
        return rk__fail(RK_ERR_INVALID, "%s: keys is NULL", fn);
    }

    arena a = {NULL};
    const char **argv = rk__malloc((n + 1) * sizeof *argv);
    size_t *lens = rk__malloc((n + 1) * sizeof *lens);
    rk_reply *r = NULL;
    rk_status st = RK_OK;
    if (!argv || !lens) st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0; i < n && st == RK_OK; i++)
        st = batch_key(c, &a, fn, "keys", i, keys[i], &argv[i + 1], &lens[i + 1]);
    if (st == RK_OK) {
        argv[0] = "MGET";
        lens[0] = 4;
        if (c->near) st = rk__cache_near_mget(c, n, argv + 1, lens + 1, &r); /* src/cache/cache_near.c */
        else st = rk__client_run(c->client, (int)(n + 1), argv, lens, true, &r);
        st = rk__cache_degrade(st);
    }
    if (st == RK_OK && (r->type != RK_REPLY_ARRAY || r->elements != n))
        st = rk__fail(RK_ERR_PROTOCOL, "MGET: unexpected reply");
    if (st != RK_OK) {
        fill_results(results, n, st);
        if (st == RK_DEGRADED) RK__COUNT(c, degraded, n);
        else rk__cache_count_error(c, st);
        goto done;
    }
    rk_status first = RK_OK;
    size_t first_at = 0;
    char first_msg[RK__ERRMSG_MAX] = "";
    for (size_t i = 0; i < n; i++) {
        rk_reply *e = r->element[i];
        r->element[i] = NULL; /* now ours: decoding consumes it */
        if (e->type != RK_REPLY_NIL && e->type != RK_REPLY_STRING) {
            rk_reply_free(e);
            results[i].status = rk__fail(RK_ERR_PROTOCOL, "MGET: unexpected reply type");
            rk__cache_count_error(c, RK_ERR_PROTOCOL);
        } else {
            results[i].status = decode_one(c, e, &results[i]);
        }
        if (rk_status_is_error(results[i].status) && first == RK_OK) {
            first = results[i].status;
            first_at = i;
            snprintf(first_msg, sizeof first_msg, "%s", rk_last_error());
        }
    }
    /* The batch was read: RK_OK. The first key that failed is named in the
     * last error, for a caller who looks at the results and wonders why. */
    if (first != RK_OK) rk__fail(first, "%s: keys[%zu]: %s", fn, first_at, first_msg);
done:
    rk_reply_free(r);
    arena_free(&a);
    rk__free(argv);
    rk__free(lens);
    return st;
}

void rk_cache_results_free(rk_cache_result *results, size_t n)
{
    if (!results) return;
    for (size_t i = 0; i < n; i++) {
        rk__free(results[i].value);
        results[i].value = NULL;
        results[i].len = 0;
    }
}

/* ---- multi-set ---------------------------------------------------------- */

/* One entry, checked and encoded: what goes on the wire. */
typedef struct prepared {
    const char *key, *value;
    size_t key_len, value_len;
    char *owned; /* heap buffer of the encoding, if it made one */
} prepared;

static void fill_statuses(rk_status *statuses, size_t n, rk_status st)
{
    if (statuses)
        for (size_t i = 0; i < n; i++) statuses[i] = st;
}

/* Encode entry i and keep its bytes alive until the batch is sent: a
 * heap encoding is taken over, one in the rk__encoded's own small buffer
 * is copied to the arena, and one that is the caller's payload (raw mode)
 * is used where it is. */
static rk_status prepare_value(rk_cache *c, arena *a, size_t i, const rk_cache_entry *e, prepared *p)
{
    if (!e->value && e->len) return fail_at("rk_cache_mset", "entries", i, rk__fail(RK_ERR_INVALID, "value is NULL"));
    rk__encoded enc;
    rk_status st = rk__cache_encode(c, RK__V_BYTES, e->value, e->len, NULL, &enc);
    if (st != RK_OK) return fail_at("rk_cache_mset", "entries", i, st);
    p->value_len = enc.len;
    /* Whether the bytes lie in enc.small, compared as addresses: the
     * relational operators are not defined across objects. */
    uintptr_t d = (uintptr_t)enc.data, s = (uintptr_t)enc.small;
    if (enc.heap) {
        p->owned = enc.heap;
        p->value = enc.data;
        enc.heap = NULL;
    } else if (d >= s && d - s < sizeof enc.small) {
        p->value = arena_copy(a, enc.data, enc.len);
        if (!p->value) st = rk__fail(RK_ERR_NOMEM, "rk_cache_mset: out of memory");
    } else {
        p->value = enc.data;
    }
    rk__cache_encoded_release(&enc);
    return st;
}

/* Judge the SET replies (consumed). */
static rk_status judge_sets(rk_reply **replies, size_t n, rk_status *statuses)
{
    rk_status first = RK_OK;
    size_t first_at = 0;
    char msg[RK__ERRMSG_MAX] = "";
    for (size_t i = 0; i < n; i++) {
        rk_status st = RK_OK;
        if (replies[i]->type == RK_REPLY_ERROR) {
            st = rk__reply_fail(replies[i], "SET"); /* frees it */
        } else {
            if (replies[i]->type != RK_REPLY_STATUS) st = rk__fail(RK_ERR_PROTOCOL, "SET: unexpected reply type");
            rk_reply_free(replies[i]);
        }
        replies[i] = NULL;
        statuses[i] = st;
        if (st != RK_OK && first == RK_OK) {
            first = st;
            first_at = i;
            snprintf(msg, sizeof msg, "%s", rk_last_error());
        }
    }
    if (first != RK_OK) rk__fail(first, "rk_cache_mset: entries[%zu]: %s", first_at, msg);
    return first;
}

rk_status rk_cache_mset(rk_cache *c, const rk_cache_entry *entries, size_t n, const rk_cache_set_options *opts,
                        rk_status *statuses)
{
    static const char fn[] = "rk_cache_mset";
    if (n == 0) return RK_OK;
    if (n > RK_CACHE_MAX_BATCH) {
        rk__cache_count_error(c, RK_ERR_INVALID);
        return rk__fail(RK_ERR_INVALID, "%s: %zu entries: at most %d in one batch", fn, n, RK_CACHE_MAX_BATCH);
    }
    fill_statuses(statuses, n, RK_ERR_INVALID);
    if (!c) return rk__fail(RK_ERR_INVALID, "%s: cache is NULL", fn);
    rk_status st = RK_OK;
    int64_t ttl_ms = 0;
    const char *const *tags = opts ? opts->tags : NULL;
    size_t ntags = opts ? opts->ntags : 0;
    if (!entries) st = rk__fail(RK_ERR_INVALID, "%s: entries is NULL", fn);
    if (st == RK_OK) st = rk__cache_resolve_ttl(c, opts ? opts->ttl_s : 0, opts ? opts->ttl_ms : 0, &ttl_ms);
    if (st == RK_OK) st = rk__cache_check_tags(tags, ntags);
    if (st != RK_OK) {
        fill_statuses(statuses, n, st);
        rk__cache_count_error(c, st);
        return st;
    }

    /* Before the writes are sent, and again below once they are answered
     * (src/cache/cache_near.c says why both). */
    for (size_t i = 0; i < n; i++) rk__cache_near_forget_user_key(c, entries[i].key);

    /* Our statuses when the caller passed none: judging needs somewhere
     * to write. */
    rk_status *own = statuses ? NULL : rk__malloc(n * sizeof *own);
    rk_status *out = statuses ? statuses : own;
    prepared *p = rk__calloc(n, sizeof *p);
    arena a = {NULL};
    if (!out || !p) st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0; i < n && st == RK_OK; i++) {
        st = batch_key(c, &a, fn, "entries", i, entries[i].key, &p[i].key, &p[i].key_len);
        if (st == RK_OK) st = prepare_value(c, &a, i, &entries[i], &p[i]);
    }
    if (st != RK_OK) {
        fill_statuses(out, n, st);
        goto done;
    }

    if (ntags) {
        const char **keys = rk__malloc(2 * n * sizeof *keys);
        size_t *lens = rk__malloc(2 * n * sizeof *lens);
        if (keys && lens) {
            for (size_t i = 0; i < n; i++) {
                keys[i] = p[i].key, lens[i] = p[i].key_len;
                keys[n + i] = p[i].value, lens[n + i] = p[i].value_len;
            }
            st = rk__cache_store_tagged_batch(c, n, keys, lens, keys + n, lens + n, ttl_ms, tags, ntags, out);
            if (st != RK_OK) {
                size_t i = 0;
                while (i + 1 < n && out[i] == RK_OK) i++;
                fail_at(fn, "entries", i, st);
            }
        } else {
            st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
            fill_statuses(out, n, st);
        }
        rk__free(keys);
        rk__free(lens);
    } else {
        /* SET key value [PX ttl], every entry in one pipeline. */
        char px[RK__NUMBER_TEXT_MAX + 1];
        size_t pxlen = ttl_ms == RK_TTL_NONE ? 0 : rk__i64_to_text(ttl_ms, px);
        int argc = ttl_ms == RK_TTL_NONE ? 3 : 5;
        const char **argv = rk__malloc(n * 5 * sizeof *argv);
        size_t *lens = rk__malloc(n * 5 * sizeof *lens);
        rk__cmd *cmds = rk__malloc(n * sizeof *cmds);
        rk_reply **replies = rk__malloc(n * sizeof *replies);
        if (argv && lens && cmds && replies) {
            for (size_t i = 0; i < n; i++) {
                const char **v = argv + 5 * i;
                size_t *l = lens + 5 * i;
                v[0] = "SET", l[0] = 3;
                v[1] = p[i].key, l[1] = p[i].key_len;
                v[2] = p[i].value, l[2] = p[i].value_len;
                v[3] = "PX", l[3] = 2;
                v[4] = px, l[4] = pxlen;
                cmds[i] = (rk__cmd){.argc = argc, .argv = v, .argvlen = l};
            }
            st = rk__client_pipeline(c->client, n, cmds, false, replies);
            if (st == RK_OK) st = judge_sets(replies, n, out);
            else fill_statuses(out, n, st);
        } else {
            st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
            fill_statuses(out, n, st);
        }
        rk__free(argv);
        rk__free(lens);
        rk__free(cmds);
        rk__free(replies);
    }
    /* Sent: whatever came back, this process's fetch copies of these keys
     * may now be older than Redis's values (src/cache/cache.h). */
    for (size_t i = 0; i < n; i++) {
        rk__fetch_forget(c, entries[i].key);
        rk__cache_near_forget_user_key(c, entries[i].key);
    }
    for (size_t i = 0; i < n; i++)
        if (out[i] == RK_OK) {
            RK__COUNT(c, sets, 1);
            RK__COUNT(c, bytes_in, entries[i].len);
            RK__COUNT(c, bytes_stored, p[i].value_len);
        }
done:
    if (p)
        for (size_t i = 0; i < n; i++) rk__free(p[i].owned);
    rk__free(p);
    arena_free(&a);
    rk__free(own);
    rk__cache_count_error(c, st);
    return st;
}
