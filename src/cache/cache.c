/*
 * cache.c — rk_cache: namespaced values with TTLs (contract in
 * include/redkit/cache.h).
 *
 * Each call is one command, one round trip. The hot paths avoid the heap
 * where they can: keys and small values are assembled on the stack, and a
 * value read back is handed to the caller in the very buffer the protocol
 * reader filled (the header is shifted out in place), so a get costs one
 * copy of the value, the one the reader makes.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <redkit/cache.h>
#include <redkit/keys.h>

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "compress.h"
#include "error.h"
#include "keys.h"
#include "reply.h"
#include "value.h"

/* Redis's own limit on a bulk string (proto-max-bulk-len default). */
#define MAX_VALUE_LIMIT ((size_t)512 << 20)
#define MAX_TTL_MS ((int64_t)1 << 62)

/* Every size and time option is checked against a range before any
 * arithmetic is done on it: a value near the top of its type (SIZE_MAX,
 * INT64_MAX, or a negative number that went through size_t) must be
 * refused here rather than wrap later — max_key_bytes = SIZE_MAX once made
 * every key the same Redis key. SIZE_MAX keeps its documented meaning
 * ("off" / "none") where the header gives it one. */
static rk_status check_options(const rk_cache_options *o, int64_t *ttl, size_t *max_value)
{
    *ttl = o->default_ttl_ms ? o->default_ttl_ms : RK_CACHE_DEFAULT_TTL_MS;
    if (*ttl < 0 && *ttl != RK_TTL_NONE)
        return rk__fail(RK_ERR_INVALID, "default_ttl_ms: %lld is negative (use RK_TTL_NONE for no expiry)",
                        (long long)*ttl);
    /* Redis adds a TTL to its clock and refuses a sum that overflows: a
     * default it would refuse would make every set fail. */
    if (*ttl > MAX_TTL_MS)
        return rk__fail(RK_ERR_INVALID, "default_ttl_ms: %lld is over the maximum of 2^62 ms", (long long)*ttl);
    if (o->max_key_bytes > RK_MAX_KEY_BYTES)
        return rk__fail(RK_ERR_INVALID, "max_key_bytes: %zu is over the maximum of %zu", o->max_key_bytes,
                        (size_t)RK_MAX_KEY_BYTES);
    *max_value = o->max_value_bytes ? o->max_value_bytes : RK_CACHE_DEFAULT_MAX_VALUE_BYTES;
    if (*max_value > MAX_VALUE_LIMIT - RK__VALUE_HEADER_MAX)
        return rk__fail(RK_ERR_INVALID, "max_value_bytes: %zu is over Redis's 512 MiB limit", *max_value);
    /* zstd's levels: -7..-1 fast, 1..19 normal; 0 = the default (1). */
    if (o->compress_level < RK__COMPRESS_LEVEL_MIN || o->compress_level > RK__COMPRESS_LEVEL_MAX)
        return rk__fail(RK_ERR_INVALID, "compress_level: %d is outside %d..%d", o->compress_level,
                        RK__COMPRESS_LEVEL_MIN, RK__COMPRESS_LEVEL_MAX);
    if (o->lock_ms < 0 || o->lock_ms > 3600000)
        return rk__fail(RK_ERR_INVALID, "lock_ms: %lld is outside 0..3600000", (long long)o->lock_ms);
    if (o->clear_budget_ms < 0 || o->clear_budget_ms > 60000)
        return rk__fail(RK_ERR_INVALID, "clear_budget_ms: %d is outside 0..60000", o->clear_budget_ms);
    /* SIZE_MAX means no copies; anything else this large is a negative
     * number that went through size_t. */
    if (o->local_copies > (size_t)PTRDIFF_MAX && o->local_copies != SIZE_MAX)
        return rk__fail(RK_ERR_INVALID, "local_copies: %zu is too large (SIZE_MAX = no copies)", o->local_copies);
    if (o->local_copies_bytes > (size_t)PTRDIFF_MAX && o->local_copies_bytes != SIZE_MAX)
        return rk__fail(RK_ERR_INVALID, "local_copies_bytes: %zu is too large (SIZE_MAX = no copies)",
                        o->local_copies_bytes);
    /* compress_threshold: every value means something (SIZE_MAX, or
     * anything over max_value_bytes, = never), and it is only compared. */
    return RK_OK;
}

rk_status rk_cache_new(rk_client *client, const rk_cache_options *opts, rk_cache **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_cache_new: out is NULL");
    *out = NULL;
    if (!client) return rk__fail(RK_ERR_INVALID, "rk_cache_new: client is NULL");
    static const rk_cache_options defaults = {0};
    if (!opts) opts = &defaults;
    int64_t ttl = 0;
    size_t max_value = 0;
    rk_status st = check_options(opts, &ttl, &max_value);
    if (st != RK_OK) return st;

    rk_cache *c = rk__calloc(1, sizeof *c);
    if (!c) return rk__fail(RK_ERR_NOMEM, "cache: out of memory");
    st = rk__key_head(client, opts->ns ? opts->ns : RK_CACHE_DEFAULT_NAMESPACE, &c->head, &c->head_len);
    if (st == RK_OK) {
        /* "<prefix>:<ns>#": the head with its last ':' turned into '#'. */
        c->aux_head = rk__malloc(c->head_len + 1);
        if (c->aux_head) {
            memcpy(c->aux_head, c->head, c->head_len + 1);
            c->aux_head[c->head_len - 1] = '#';
            c->aux_head_len = c->head_len;
        } else {
            st = rk__fail(RK_ERR_NOMEM, "cache: out of memory");
        }
    }
    c->client = client;
    c->default_ttl_ms = ttl;
    c->raw = opts->raw;
    c->max_key = opts->max_key_bytes ? opts->max_key_bytes : RK_DEFAULT_MAX_KEY_BYTES;
    c->max_value = max_value;
    c->compress_threshold =
        opts->compress_threshold ? opts->compress_threshold : RK_CACHE_DEFAULT_COMPRESS_THRESHOLD;
    c->compress_level = opts->compress_level;
    c->lock_ms = opts->lock_ms ? opts->lock_ms : RK_CACHE_DEFAULT_LOCK_MS;
    c->local_copies = opts->local_copies ? opts->local_copies : RK_CACHE_DEFAULT_LOCAL_COPIES;
    c->local_copies_bytes = opts->local_copies_bytes ? opts->local_copies_bytes : RK_CACHE_DEFAULT_LOCAL_COPIES_BYTES;
    if (c->local_copies == SIZE_MAX || c->local_copies_bytes == SIZE_MAX) c->local_copies = 0;
    c->clear_budget_ms = opts->clear_budget_ms ? opts->clear_budget_ms : RK_CACHE_DEFAULT_CLEAR_BUDGET_MS;
    if (st == RK_OK) st = rk__fetch_state_new(c);
    if (st == RK_OK) st = rk__cache_near_start(c, opts);
    if (st == RK_OK) st = rk__registry_add(client, c, &rk__cache_ops);
    if (st != RK_OK) {
        rk_cache_free(c);
        return st;
    }
    /* A value must be readable whatever the client's max_reply_bytes: room
     * for a few of the largest (a batch read, a fetch's value and its
     * companions) in one reply. */
    rk__client_raise_max_reply(client, 4 * (max_value + RK__VALUE_HEADER_MAX));
    *out = c;
    return RK_OK;
}

void rk_cache_free(rk_cache *c)
{
    if (!c) return;
    rk__cache_near_stop(c); /* its thread uses the client, alive until the next line */
    /* No scrape may see a handle half freed. The client may be gone after
     * this (registry.h), and nothing below touches it. */
    rk__registry_remove(c->client, c);
    rk__cache_near_free(c);
    rk__fetch_state_free(c);
    rk__zpool_clear(&c->zpool);
    rk__free(c->aux_head);
    rk__free(c->head);
    rk__free(c);
}

rk_status rk_cache_key_build(const rk_cache *c, const char *key, char *buf, size_t buf_size, size_t *len)
{
    if (!c || !len || (!buf && buf_size)) return rk__fail(RK_ERR_INVALID, "rk_cache_key_build: NULL argument");
    rk__key k;
    rk_status st = rk__key_make(&k, c->head, c->head_len, key, c->max_key);
    if (st != RK_OK) return st;
    *len = k.len;
    if (buf_size < k.len + 1) {
        rk__key_release(&k);
        return rk__fail(RK_ERR_TOO_LARGE, "rk_cache_key_build: buffer of %zu bytes, %zu needed", buf_size, *len + 1);
    }
    memcpy(buf, k.str, k.len + 1);
    rk__key_release(&k);
    return RK_OK;
}

void rk__cache_count_error(rk_cache *c, rk_status st)
{
    if (!c || st == RK_OK || rk_status_is_miss(st)) return;
    unsigned slot = (unsigned)st < RK__STATUS_SLOTS ? (unsigned)st : RK__STATUS_SLOTS - 1;
    atomic_fetch_add_explicit(&c->counters.errors[slot], 1, memory_order_relaxed);
}

/* Count the outcome of a public read and pass the status through. */
static rk_status read_done(rk_cache *c, rk_status st)
{
    if (!c) return st;
    if (st == RK_OK) RK__COUNT(c, hits, 1);
    else if (st == RK_MISS) RK__COUNT(c, misses, 1);
    else if (st == RK_DEGRADED) RK__COUNT(c, degraded, 1);
    else rk__cache_count_error(c, st);
    return st;
}

static rk_status write_done(rk_cache *c, rk_status st)
{
    if (c) rk__cache_count_error(c, st);
    return st;
}

rk_status rk__cache_resolve_ttl(const rk_cache *c, int64_t ttl_s, int64_t ttl_ms, int64_t *out)
{
    int64_t ms = c->default_ttl_ms;
    if (ttl_ms) {
        ms = ttl_ms;
    } else if (ttl_s) {
        if (ttl_s < 0 && ttl_s != RK_TTL_NONE)
            return rk__fail(RK_ERR_INVALID, "TTL is negative (use RK_TTL_NONE for no expiry)");
        if (ttl_s > INT64_MAX / 1000)
            return rk__fail(RK_ERR_INVALID, "ttl_s: %lld is too large", (long long)ttl_s);
        ms = ttl_s == RK_TTL_NONE ? RK_TTL_NONE : ttl_s * 1000;
    }
    if (ms < 0 && ms != RK_TTL_NONE)
        return rk__fail(RK_ERR_INVALID, "TTL is negative (use RK_TTL_NONE for no expiry)");
    /* Redis adds the TTL to its clock and refuses a sum that overflows. */
    if (ms > MAX_TTL_MS) return rk__fail(RK_ERR_INVALID, "TTL is over the maximum of 2^62 ms");
    *out = ms;
    return RK_OK;
}

rk_status rk__cache_encode(rk_cache *c, rk__vtype type, const void *payload, size_t plen,
                           const rk__value_meta *meta, rk__encoded *e)
{
    e->heap = NULL;
    e->data = payload ? payload : "";
    e->len = plen;
    if (!payload && plen) return rk__fail(RK_ERR_INVALID, "value is NULL");
    if (plen > c->max_value)
        return rk__fail(RK_ERR_TOO_LARGE, "value of %zu bytes is over the cache's maximum of %zu", plen,
                        c->max_value);
    if (c->raw) return RK_OK;
    unsigned flags = meta ? RK__VF_META : 0;
    unsigned char header[RK__VALUE_HEADER_MAX];
    size_t hlen = rk__value_encode_header(type, flags, meta, header);
    size_t vlen = hlen + plen;
    char *buf = vlen <= sizeof e->small ? e->small : (e->heap = rk__malloc(vlen));
    if (!buf) return rk__fail(RK_ERR_NOMEM, "cache set: out of memory");
    /* A large value is compressed straight into the buffer it would be
     * stored in anyway, with room for one byte less than the payload: a
     * frame that fits is smaller by construction, and one that does not
     * (incompressible data) leaves the buffer to the plain copy below, so
     * compression never costs a second buffer. The threshold test is all
     * a small value pays. */
    size_t clen = 0;
    if (plen >= c->compress_threshold && plen > 0) {
        rk_status st = rk__compress(&c->zpool, c->compress_level, payload, plen, buf + hlen, plen - 1, &clen);
        if (st != RK_OK) {
            rk__cache_encoded_release(e);
            return st;
        }
        if (clen) {
            flags |= RK__VF_COMPRESSED;
            rk__value_encode_header(type, flags, meta, header); /* same length, flag set */
        }
    }
    memcpy(buf, header, hlen);
    if (!clen && plen) memcpy(buf + hlen, payload, plen);
    e->data = buf;
    e->len = hlen + (clen ? clen : plen);
    return RK_OK;
}

void rk__cache_encoded_release(rk__encoded *e)
{
    rk__free(e->heap);
    e->heap = NULL;
}

static rk_status store(rk_cache *c, const rk__key *k, const rk__encoded *v, int64_t ttl_ms,
                       const char *const *tags, size_t ntags)
{
    if (ntags) return rk__cache_store_tagged(c, k, v, ttl_ms, tags, ntags);
    char ttl_text[RK__NUMBER_TEXT_MAX + 1];
    const char *argv[5] = {"SET", k->str, v->data, "PX", ttl_text};
    size_t lens[5] = {3, k->len, v->len, 2, 0};
    int argc = 3;
    if (ttl_ms != RK_TTL_NONE) {
        lens[4] = rk__i64_to_text(ttl_ms, ttl_text);
        argc = 5;
    }
    rk_reply *r;
    rk_status st = rk__client_run(c->client, argc, argv, lens, false, &r);
    if (st != RK_OK) return st;
    bool ok = r->type == RK_REPLY_STATUS;
    rk_reply_free(r);
    return ok ? RK_OK : rk__fail(RK_ERR_PROTOCOL, "SET: unexpected reply type");
}

rk_status rk__cache_store(rk_cache *c, const rk__key *k, const rk__encoded *v, int64_t ttl_ms,
                          const char *const *tags, size_t ntags)
{
    rk__cache_near_forget(c, k->str, k->len); /* before and after: cache_near.c */
    rk_status st = store(c, k, v, ttl_ms, tags, ntags);
    rk__cache_near_forget(c, k->str, k->len);
    return st;
}

static rk_status check_tags(const rk_cache_set_options *o)
{
    if (!o || !o->ntags) return RK_OK;
    if (!o->tags) return rk__fail(RK_ERR_INVALID, "tags is NULL with ntags %zu", o->ntags);
    if (o->ntags > RK_CACHE_MAX_TAGS) return rk__fail(RK_ERR_INVALID, "more than %d tags", RK_CACHE_MAX_TAGS);
    return RK_OK;
}

/* SET key <header><payload> [PX ttl]. */
static rk_status set_value(rk_cache *c, const char *key, rk__vtype type, const void *payload,
                           size_t plen, const rk_cache_set_options *opts)
{
    if (!c) return rk__fail(RK_ERR_INVALID, "cache is NULL");
    int64_t ttl_ms = 0;
    rk_status st = rk__cache_resolve_ttl(c, opts ? opts->ttl_s : 0, opts ? opts->ttl_ms : 0, &ttl_ms);
    if (st == RK_OK) st = check_tags(opts);
    if (st != RK_OK) return write_done(c, st);
    rk__key k;
    if ((st = rk__key_make(&k, c->head, c->head_len, key, c->max_key)) != RK_OK) return write_done(c, st);
    rk__encoded v;
    st = rk__cache_encode(c, type, payload, plen, NULL, &v);
    if (st == RK_OK) {
        st = rk__cache_store(c, &k, &v, ttl_ms, opts ? opts->tags : NULL, opts ? opts->ntags : 0);
        /* Whatever the reply, a fetch copy of this key may now be older
         * than the value in Redis: never serve it when Redis is down. */
        rk__fetch_forget(c, key);
        if (st == RK_OK) {
            RK__COUNT(c, sets, 1);
            RK__COUNT(c, bytes_in, plen);
            RK__COUNT(c, bytes_stored, v.len);
        }
    }
    rk__cache_encoded_release(&v);
    rk__key_release(&k);
    return write_done(c, st);
}

rk_status rk_cache_set(rk_cache *c, const char *key, const void *value, size_t len,
                       const rk_cache_set_options *opts)
{
    return set_value(c, key, RK__V_BYTES, value, len, opts);
}

rk_status rk_cache_set_str(rk_cache *c, const char *key, const char *value, const rk_cache_set_options *opts)
{
    if (!value) return write_done(c, rk__fail(RK_ERR_INVALID, "value is NULL"));
    return set_value(c, key, RK__V_STRING, value, strlen(value), opts);
}

rk_status rk_cache_set_i64(rk_cache *c, const char *key, int64_t value, const rk_cache_set_options *opts)
{
    char text[RK__NUMBER_TEXT_MAX + 1];
    return set_value(c, key, RK__V_INT64, text, rk__i64_to_text(value, text), opts);
}

rk_status rk_cache_set_double(rk_cache *c, const char *key, double value, const rk_cache_set_options *opts)
{
    if (!isfinite(value)) return write_done(c, rk__fail(RK_ERR_INVALID, "value is not a finite double"));
    char text[RK__NUMBER_TEXT_MAX + 1];
    return set_value(c, key, RK__V_DOUBLE, text, rk__double_to_text(value, text), opts);
}

/* A read that could not reach Redis answers "no value" instead of an
 * error: the caller falls back to its source of truth, as on a miss, and
 * can still tell the two apart. */
rk_status rk__cache_degrade(rk_status st)
{
    if (st != RK_ERR_UNAVAILABLE && st != RK_ERR_TIMEOUT) return st;
    char why[RK__ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rk_last_error());
    return rk__fail(RK_DEGRADED, "degraded to a miss (%s): %s", rk_strerror(st), why);
}

rk_status rk__cache_miss(void) { return rk__fail(RK_MISS, "key not found"); }

/* Run a one-key command (GET, UNLINK, EXISTS, PTTL) on the namespaced key.
 * Reads may be retried once on a fresh connection and degrade to a miss
 * when Redis is unreachable; writes (UNLINK) do neither. */
static rk_status key_command(rk_cache *c, const char *cmd, const char *key, bool is_read, rk_reply **r)
{
    *r = NULL;
    if (!c) return rk__fail(RK_ERR_INVALID, "cache is NULL");
    rk__key k;
    rk_status st = rk__key_make(&k, c->head, c->head_len, key, c->max_key);
    if (st != RK_OK) return st;
    const char *argv[2] = {cmd, k.str};
    size_t lens[2] = {strlen(cmd), k.len};
    st = rk__client_run(c->client, 2, argv, lens, is_read, r);
    rk__key_release(&k);
    return is_read ? rk__cache_degrade(st) : st;
}

bool rk__cache_foreign(const rk_cache *c, const char *data, size_t len)
{
    /* 0xFE never starts UTF-8 text, so text from another client is never
     * taken for a typed value. A binary value of another client that
     * happens to start with 0xFE and a valid type byte would be; one that
     * starts with 0xFE and is not a valid header is refused (RK_ERR_TYPE)
     * rather than guessed at, as is a redkit value of a newer format. */
    return !c->raw && (len < RK__VALUE_HEADER || (unsigned char)data[0] != RK__VALUE_MAGIC);
}

rk_status rk__cache_decode(rk_cache *c, rk_reply *r, unsigned accept, rk__vtype want, char **data, size_t *len,
                           rk__value_meta *meta)
{
    *data = NULL;
    *len = 0;
    if (meta) memset(meta, 0, sizeof *meta);
    if (r->type != RK_REPLY_STRING) {
        rk_reply_free(r);
        return rk__fail(RK_ERR_PROTOCOL, "GET: unexpected reply type");
    }
    size_t n;
    char *s = rk__reply_take_str(r, &n);
    return rk__cache_decode_bytes(c, s, n, accept, want, data, len, meta);
}

rk_status rk__cache_decode_bytes(rk_cache *c, char *s, size_t n, unsigned accept, rk__vtype want, char **data,
                                 size_t *len, rk__value_meta *meta)
{
    *data = NULL;
    *len = 0;
    if (meta) memset(meta, 0, sizeof *meta);
    rk__value_view view;
    rk_status st;
    if (rk__cache_foreign(c, s, n)) {
        /* Written by another client (redis-cli, ioredis, Rails, ...): plain
         * bytes, which every getter accepts (the number getters parse the
         * text). See docs/cache.md, "Values written by other clients". */
        memset(&view, 0, sizeof view);
        view.type = RK__V_BYTES;
        st = RK_OK;
    } else {
        st = rk__value_parse(s, n, c->raw, &view);
    }
    if (st == RK_OK && !(accept & RK__ACCEPT(view.type)))
        st = rk__fail(RK_ERR_TYPE, "value is %s, read as %s", rk__vtype_name(view.type), rk__vtype_name(want));
    if (st == RK_OK && (view.flags & RK__VF_COMPRESSED)) {
        /* The buffer holds the frame, so the payload goes to a new one:
         * bounded by max_value, whatever size the frame claims. */
        st = rk__decompress(&c->zpool, s + view.offset, n - view.offset, c->max_value, data, len);
        rk__free(s);
        if (st == RK_OK && meta) *meta = view.meta;
        return st;
    }
    if (st != RK_OK) {
        rk__free(s);
        return st;
    }
    if (meta) *meta = view.meta;
    if (view.offset) memmove(s, s + view.offset, n - view.offset + 1); /* the payload and its NUL */
    *data = s;
    *len = n - view.offset;
    return RK_OK;
}

/* GET and check the type. On RK_OK *data is the payload, NUL-terminated,
 * owned by the caller. */
static rk_status get_value(rk_cache *c, const char *key, unsigned accept, rk__vtype want, char **data,
                           size_t *len)
{
    *data = NULL;
    *len = 0;
    rk_reply *r;
    rk_status st;
    if (c && c->near) {
        rk__key k;
        if ((st = rk__key_make(&k, c->head, c->head_len, key, c->max_key)) != RK_OK) return st;
        char *hit;
        size_t hit_len;
        st = rk__cache_degrade(rk__cache_near_read(c, &k, &hit, &hit_len, &r));
        rk__key_release(&k);
        if (st == RK_OK && hit) return rk__cache_decode_bytes(c, hit, hit_len, accept, want, data, len, NULL);
    } else {
        st = key_command(c, "GET", key, true, &r);
    }
    if (st != RK_OK) return st;
    if (r->type == RK_REPLY_NIL) {
        rk_reply_free(r);
        return rk__cache_miss();
    }
    return rk__cache_decode(c, r, accept, want, data, len, NULL);
}

rk_status rk_cache_get(rk_cache *c, const char *key, void **value, size_t *len)
{
    if (!value || !len) return read_done(c, rk__fail(RK_ERR_INVALID, "rk_cache_get: NULL output"));
    char *data;
    rk_status st =
        get_value(c, key, RK__ACCEPT(RK__V_BYTES) | RK__ACCEPT(RK__V_STRING), RK__V_BYTES, &data, len);
    *value = data;
    return read_done(c, st);
}

/* Strings and bytes read interchangeably (a value rk_cache_fetch stored
 * as bytes is text to the caller who wrote it); only a NUL inside, which
 * a C string cannot carry, is refused rather than cut short. */
rk_status rk_cache_get_str(rk_cache *c, const char *key, char **value)
{
    if (!value) return read_done(c, rk__fail(RK_ERR_INVALID, "rk_cache_get_str: NULL output"));
    size_t len;
    rk_status st = get_value(c, key, RK__ACCEPT(RK__V_BYTES) | RK__ACCEPT(RK__V_STRING), RK__V_STRING, value, &len);
    if (st == RK_OK && memchr(*value, '\0', len) != NULL) {
        rk__free(*value);
        *value = NULL;
        st = rk__fail(RK_ERR_TYPE, "value holds a NUL byte, which a C string cannot: read it with rk_cache_get");
    }
    return read_done(c, st);
}

/* Numbers: a value stored as that number, or text — a string, bytes or a
 * value from another client — that parses as one ("42" written by
 * `redkit set n 42` or by redis-cli). A number of the other type is a
 * real mismatch (RK_ERR_TYPE), as in C++ without a cast. */
static rk_status get_number(rk_cache *c, const char *key, rk__vtype want, char **text, size_t *len)
{
    return get_value(c, key, RK__ACCEPT(want) | RK__ACCEPT(RK__V_BYTES) | RK__ACCEPT(RK__V_STRING), want, text,
                     len);
}

/* The text of a number getter did not parse: say what it was. */
static rk_status not_a_number(rk_status st, rk__vtype want)
{
    return st == RK_OK ? RK_OK : rk__fail(st, "value is text (a string or bytes) that is not %s %s",
                                          want == RK__V_INT64 ? "an" : "a", rk__vtype_name(want));
}

rk_status rk_cache_get_i64(rk_cache *c, const char *key, int64_t *value)
{
    if (!value) return read_done(c, rk__fail(RK_ERR_INVALID, "rk_cache_get_i64: NULL output"));
    char *text;
    size_t len;
    rk_status st = get_number(c, key, RK__V_INT64, &text, &len);
    if (st == RK_OK) {
        st = not_a_number(rk__text_to_i64(text, len, value), RK__V_INT64);
        rk__free(text);
    }
    return read_done(c, st);
}

rk_status rk_cache_get_double(rk_cache *c, const char *key, double *value)
{
    if (!value) return read_done(c, rk__fail(RK_ERR_INVALID, "rk_cache_get_double: NULL output"));
    char *text;
    size_t len;
    rk_status st = get_number(c, key, RK__V_DOUBLE, &text, &len);
    if (st == RK_OK) {
        st = not_a_number(rk__text_to_double(text, len, value), RK__V_DOUBLE);
        rk__free(text);
    }
    return read_done(c, st);
}

/* Commands answering an integer: UNLINK and EXISTS (count), PTTL (ms). */
static rk_status integer_command(rk_cache *c, const char *cmd, const char *key, bool is_read, long long *out)
{
    rk_reply *r;
    rk_status st = key_command(c, cmd, key, is_read, &r);
    if (st != RK_OK) return st;
    bool ok = r->type == RK_REPLY_INTEGER;
    *out = r->integer;
    rk_reply_free(r);
    return ok ? RK_OK : rk__fail(RK_ERR_PROTOCOL, "%s: unexpected reply type", cmd);
}

/* A delete is idempotent: "the key is gone" is what the caller asked for,
 * so an absent key is RK_OK too (a delete that failed on RK_MISS made
 * every `st != RK_OK` check, the README's own included, treat a normal
 * cleanup as an error). Whether there was a value is the optional
 * *existed. */
rk_status rk_cache_delete_ex(rk_cache *c, const char *key, bool *existed)
{
    long long n = 0;
    if (existed) *existed = false;
    rk__cache_near_forget_user_key(c, key); /* before and after: cache_near.c */
    rk_status st = integer_command(c, "UNLINK", key, false, &n);
    rk__cache_near_forget_user_key(c, key);
    /* Whatever the reply (the UNLINK may have run before a timeout, and a
     * delete the caller asked for must not be undone by a copy), the
     * fetch copy of the key goes. */
    rk__fetch_forget(c, key);
    if (st != RK_OK) return write_done(c, st);
    if (n > 0) {
        RK__COUNT(c, deletes, 1);
        if (existed) *existed = true;
    }
    return RK_OK;
}

rk_status rk_cache_delete(rk_cache *c, const char *key) { return rk_cache_delete_ex(c, key, NULL); }

rk_status rk_cache_exists(rk_cache *c, const char *key)
{
    long long n;
    rk_status st = integer_command(c, "EXISTS", key, true, &n);
    return write_done(c, st != RK_OK ? st : n > 0 ? RK_OK : rk__cache_miss());
}

rk_status rk_cache_ttl_ms(rk_cache *c, const char *key, int64_t *ttl_ms)
{
    if (!ttl_ms) return write_done(c, rk__fail(RK_ERR_INVALID, "rk_cache_ttl_ms: NULL output"));
    long long ms;
    rk_status st = integer_command(c, "PTTL", key, true, &ms);
    if (st != RK_OK) return write_done(c, st);
    if (ms == -2) return rk__cache_miss();
    *ttl_ms = ms == -1 ? RK_TTL_NONE : ms;
    return RK_OK;
}
