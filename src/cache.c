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
#include "client.h"
#include "error.h"
#include "keys.h"
#include "reply.h"
#include "value.h"

/* Redis's own limit on a bulk string (proto-max-bulk-len default). */
#define MAX_VALUE_LIMIT ((size_t)512 << 20)
#define MAX_TTL_MS ((int64_t)1 << 62)
/* Values up to this size are assembled (header + payload) on the stack. */
#define STACK_VALUE 512

struct rk_cache {
    rk_client *client;
    char *head;               /* "<prefix>:<ns>:" */
    size_t head_len;
    int64_t default_ttl_ms;   /* RK_TTL_NONE or > 0 */
    bool raw;
    size_t max_key;
    size_t max_value;
};

rk_status rk_cache_new(rk_client *client, const rk_cache_options *opts, rk_cache **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_cache_new: out is NULL");
    *out = NULL;
    if (!client) return rk__fail(RK_ERR_INVALID, "rk_cache_new: client is NULL");
    static const rk_cache_options defaults = {0};
    if (!opts) opts = &defaults;

    int64_t ttl = opts->default_ttl_ms ? opts->default_ttl_ms : RK_CACHE_DEFAULT_TTL_MS;
    if (ttl < 0 && ttl != RK_TTL_NONE)
        return rk__fail(RK_ERR_INVALID, "default_ttl_ms: %lld is negative (use RK_TTL_NONE for no expiry)",
                        (long long)ttl);
    size_t max_value = opts->max_value_bytes ? opts->max_value_bytes : RK_CACHE_DEFAULT_MAX_VALUE_BYTES;
    if (max_value > MAX_VALUE_LIMIT - RK__VALUE_HEADER)
        return rk__fail(RK_ERR_INVALID, "max_value_bytes: %zu is over Redis's 512 MiB limit", max_value);

    rk_cache *c = rk__calloc(1, sizeof *c);
    if (!c) return rk__fail(RK_ERR_NOMEM, "cache: out of memory");
    rk_status st = rk__key_head(client, opts->ns ? opts->ns : RK_CACHE_DEFAULT_NAMESPACE, &c->head,
                                &c->head_len);
    if (st != RK_OK) {
        rk__free(c);
        return st;
    }
    c->client = client;
    c->default_ttl_ms = ttl;
    c->raw = opts->raw;
    c->max_key = opts->max_key_bytes ? opts->max_key_bytes : RK_DEFAULT_MAX_KEY_BYTES;
    c->max_value = max_value;
    *out = c;
    return RK_OK;
}

void rk_cache_free(rk_cache *c)
{
    if (!c) return;
    rk__free(c->head);
    rk__free(c);
}

/* The TTL of one set, in ms; RK_TTL_NONE for none. */
static rk_status resolve_ttl(const rk_cache *c, const rk_set_options *o, int64_t *ttl_ms)
{
    int64_t ms = c->default_ttl_ms;
    if (o && o->ttl_ms) {
        ms = o->ttl_ms;
    } else if (o && o->ttl_s) {
        if (o->ttl_s < 0 && o->ttl_s != RK_TTL_NONE)
            return rk__fail(RK_ERR_INVALID, "TTL is negative (use RK_TTL_NONE for no expiry)");
        if (o->ttl_s > INT64_MAX / 1000)
            return rk__fail(RK_ERR_INVALID, "ttl_s: %lld is too large", (long long)o->ttl_s);
        ms = o->ttl_s == RK_TTL_NONE ? RK_TTL_NONE : o->ttl_s * 1000;
    }
    if (ms < 0 && ms != RK_TTL_NONE)
        return rk__fail(RK_ERR_INVALID, "TTL is negative (use RK_TTL_NONE for no expiry)");
    /* Redis adds the TTL to its clock and refuses a sum that overflows. */
    if (ms > MAX_TTL_MS) return rk__fail(RK_ERR_INVALID, "TTL is over the maximum of 2^62 ms");
    *ttl_ms = ms;
    return RK_OK;
}

/* SET key <header><payload> [PX ttl]. */
static rk_status set_value(rk_cache *c, const char *key, rk__vtype type, const void *payload,
                           size_t plen, const rk_set_options *opts)
{
    if (!c) return rk__fail(RK_ERR_INVALID, "cache is NULL");
    if (!payload && plen) return rk__fail(RK_ERR_INVALID, "value is NULL");
    if (plen > c->max_value)
        return rk__fail(RK_ERR_TOO_LARGE, "value of %zu bytes is over the cache's maximum of %zu", plen,
                        c->max_value);
    int64_t ttl_ms = 0;
    rk_status st = resolve_ttl(c, opts, &ttl_ms);
    if (st != RK_OK) return st;
    rk__key k;
    if ((st = rk__key_make(&k, c->head, c->head_len, key, c->max_key)) != RK_OK) return st;

    char small[STACK_VALUE];
    const char *value = payload ? payload : "";
    size_t vlen = plen;
    char *heap = NULL;
    if (!c->raw) {
        vlen = plen + RK__VALUE_HEADER;
        char *buf = vlen <= sizeof small ? small : (heap = rk__malloc(vlen));
        if (!buf) {
            rk__key_release(&k);
            return rk__fail(RK_ERR_NOMEM, "cache set: out of memory");
        }
        rk__value_header(type, (unsigned char *)buf);
        if (plen) memcpy(buf + RK__VALUE_HEADER, payload, plen);
        value = buf;
    }

    char ttl_text[RK__NUMBER_TEXT_MAX + 1];
    const char *argv[5] = {"SET", k.str, value, "PX", ttl_text};
    size_t lens[5] = {3, k.len, vlen, 2, 0};
    int argc = 3;
    if (ttl_ms != RK_TTL_NONE) {
        lens[4] = rk__i64_to_text(ttl_ms, ttl_text);
        argc = 5;
    }
    rk_reply *r;
    st = rk__client_run(c->client, argc, argv, lens, false, &r);
    rk__free(heap);
    rk__key_release(&k);
    if (st != RK_OK) return st;
    bool ok = r->type == RK_REPLY_STATUS;
    rk_reply_free(r);
    return ok ? RK_OK : rk__fail(RK_ERR_PROTOCOL, "SET: unexpected reply type");
}

rk_status rk_cache_set(rk_cache *c, const char *key, const void *value, size_t len,
                       const rk_set_options *opts)
{
    return set_value(c, key, RK__V_BYTES, value, len, opts);
}

rk_status rk_cache_set_str(rk_cache *c, const char *key, const char *value, const rk_set_options *opts)
{
    if (!value) return rk__fail(RK_ERR_INVALID, "value is NULL");
    return set_value(c, key, RK__V_STRING, value, strlen(value), opts);
}

rk_status rk_cache_set_i64(rk_cache *c, const char *key, int64_t value, const rk_set_options *opts)
{
    char text[RK__NUMBER_TEXT_MAX + 1];
    return set_value(c, key, RK__V_INT64, text, rk__i64_to_text(value, text), opts);
}

rk_status rk_cache_set_double(rk_cache *c, const char *key, double value, const rk_set_options *opts)
{
    if (!isfinite(value)) return rk__fail(RK_ERR_INVALID, "value is not a finite double");
    char text[RK__NUMBER_TEXT_MAX + 1];
    return set_value(c, key, RK__V_DOUBLE, text, rk__double_to_text(value, text), opts);
}

/* A read that could not reach Redis answers "no value" instead of an
 * error: the caller falls back to its source of truth, as on a miss, and
 * can still tell the two apart. */
static rk_status degrade(rk_status st)
{
    if (st != RK_ERR_UNAVAILABLE && st != RK_ERR_TIMEOUT) return st;
    char why[RK__ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rk_last_error());
    return rk__fail(RK_DEGRADED, "degraded to a miss (%s): %s", rk_strerror(st), why);
}

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
    return is_read ? degrade(st) : st;
}

static rk_status miss(void) { return rk__fail(RK_MISS, "key not found"); }

/* GET and check the type. On RK_OK *data is the reply's buffer with the
 * payload moved to its start (NUL-terminated), owned by the caller. */
static rk_status get_value(rk_cache *c, const char *key, unsigned accept, rk__vtype want, char **data,
                           size_t *len)
{
    *data = NULL;
    *len = 0;
    rk_reply *r;
    rk_status st = key_command(c, "GET", key, true, &r);
    if (st != RK_OK) return st;
    if (r->type == RK_REPLY_NIL) {
        rk_reply_free(r);
        return miss();
    }
    if (r->type != RK_REPLY_STRING) {
        rk_reply_free(r);
        return rk__fail(RK_ERR_PROTOCOL, "GET: unexpected reply type");
    }
    rk__vtype type;
    size_t off;
    st = rk__value_decode(r->str, r->len, c->raw, &type, &off);
    if (st == RK_OK && !(accept & (1u << type)))
        st = rk__fail(RK_ERR_TYPE, "value is %s, read as %s", rk__vtype_name(type), rk__vtype_name(want));
    if (st != RK_OK) {
        rk_reply_free(r);
        return st;
    }
    size_t n;
    char *s = rk__reply_take_str(r, &n);
    memmove(s, s + off, n - off + 1); /* the payload and the reader's NUL */
    *data = s;
    *len = n - off;
    return RK_OK;
}

#define ACCEPT(t) (1u << (t))

rk_status rk_cache_get(rk_cache *c, const char *key, void **value, size_t *len)
{
    if (!value || !len) return rk__fail(RK_ERR_INVALID, "rk_cache_get: NULL output");
    char *data;
    rk_status st = get_value(c, key, ACCEPT(RK__V_BYTES) | ACCEPT(RK__V_STRING), RK__V_BYTES, &data, len);
    *value = data;
    return st;
}

rk_status rk_cache_get_str(rk_cache *c, const char *key, char **value)
{
    if (!value) return rk__fail(RK_ERR_INVALID, "rk_cache_get_str: NULL output");
    size_t len;
    unsigned accept = c && c->raw ? ACCEPT(RK__V_BYTES) : ACCEPT(RK__V_STRING);
    return get_value(c, key, accept, RK__V_STRING, value, &len);
}

/* Numbers: in typed mode the header must say so; in raw mode any text
 * that parses is a number. */
static rk_status get_number(rk_cache *c, const char *key, rk__vtype want, char **text, size_t *len)
{
    unsigned accept = c && c->raw ? ACCEPT(RK__V_BYTES) : ACCEPT(want);
    return get_value(c, key, accept, want, text, len);
}

rk_status rk_cache_get_i64(rk_cache *c, const char *key, int64_t *value)
{
    if (!value) return rk__fail(RK_ERR_INVALID, "rk_cache_get_i64: NULL output");
    char *text;
    size_t len;
    rk_status st = get_number(c, key, RK__V_INT64, &text, &len);
    if (st == RK_OK) {
        st = rk__text_to_i64(text, len, value);
        rk__free(text);
    }
    return st;
}

rk_status rk_cache_get_double(rk_cache *c, const char *key, double *value)
{
    if (!value) return rk__fail(RK_ERR_INVALID, "rk_cache_get_double: NULL output");
    char *text;
    size_t len;
    rk_status st = get_number(c, key, RK__V_DOUBLE, &text, &len);
    if (st == RK_OK) {
        st = rk__text_to_double(text, len, value);
        rk__free(text);
    }
    return st;
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

rk_status rk_cache_delete(rk_cache *c, const char *key)
{
    long long n;
    rk_status st = integer_command(c, "UNLINK", key, false, &n);
    return st != RK_OK ? st : n > 0 ? RK_OK : miss();
}

rk_status rk_cache_exists(rk_cache *c, const char *key)
{
    long long n;
    rk_status st = integer_command(c, "EXISTS", key, true, &n);
    return st != RK_OK ? st : n > 0 ? RK_OK : miss();
}

rk_status rk_cache_ttl_ms(rk_cache *c, const char *key, int64_t *ttl_ms)
{
    if (!ttl_ms) return rk__fail(RK_ERR_INVALID, "rk_cache_ttl_ms: NULL output");
    long long ms;
    rk_status st = integer_command(c, "PTTL", key, true, &ms);
    if (st != RK_OK) return st;
    if (ms == -2) return miss();
    *ttl_ms = ms == -1 ? RK_TTL_NONE : ms;
    return RK_OK;
}
