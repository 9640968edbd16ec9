/*
 * verify_limit.c — rk_apikeys_verify_limit(): verify an API key and
 * consume from its rate limits in one round trip (contract in
 * include/redkit/apikeys.h, the story in docs/apikeys.md).
 *
 * One script reads the key's cached answer and, when it is a valid key
 * that has not expired, runs the limiter's own script on the same
 * identifier: the limiter's Lua text (src/ratelimit/limiter_lua.h) is
 * embedded as a function, so both modules keep one definition of every
 * algorithm. The limiter is asked for the check's KEYS and ARGV
 * (rk__limiter_begin), and decides from its part of the reply, or by its
 * failure policy (rk__limiter_end).
 *
 * Cluster: the identifier given to the limiter is the key's SHA-256 hex,
 * which the limiter wraps in braces ("<prefix>:<lns>:{<hex>}:<name>");
 * the cached answer is "<prefix>:<ns>:{<hex>}": one hash tag, one slot.
 * Every key arrives in KEYS.
 *
 * Everything that is not the warm path — an answer not yet in Redis,
 * Redis unavailable, a key refused by the block cache — goes through
 * rk_apikeys_verify() and then, for a valid key, the limiter's own call,
 * so that single-flight, degraded answers and failure policies stay
 * defined in one place each.
 */
#include <string.h>

#include <redkit/apikeys.h>
#include <redkit/ratelimit.h>

#include "alloc.h"
#include "apikeys.h"
#include "client.h"
#include "clock.h"
#include "error.h"
#include "keys.h"
#include "limiter_lua.h"
#include "number.h"
#include "ratelimit.h"
#include "reply.h"
#include "script.h"

/* KEYS[1] the cached answer, KEYS[2..] the limiter's; ARGV[1] the wall
 * clock (ms) that an owner record's expiry is compared with, ARGV[2..]
 * the limiter's. Reply: {answer} when nothing was consumed (answer nil
 * when Redis holds none), {answer, limiter reply} otherwise. */
static rk__script verify_limit_script = RK__SCRIPT("apikeys verify+limit",
    "local function rl(KEYS, ARGV)\n" RK__LIMITER_LUA "end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v or string.sub(v, 1, 1) ~= 'V' or string.len(v) < 9 then return {v} end\n"
    "local e = 0\n"
    "for i = 2, 9 do e = e * 256 + string.byte(v, i) end\n"
    "if e > 0 and e <= tonumber(ARGV[1]) then return {v} end\n"
    "local k, a = {}, {}\n"
    "for i = 2, #KEYS do k[i - 1] = KEYS[i] end\n"
    "for i = 2, #ARGV do a[i - 1] = ARGV[i] end\n"
    "return {v, rl(k, a)}\n");

struct rk__script *rk__apikeys_verify_limit_script(void)
{
    return &verify_limit_script;
}

/* A call with no verdict (or no decision), counted as verify counts it. */
static rk_status failed(rk_apikeys *ak, rk_status st)
{
    RK__AK_COUNT(ak, errors);
    return st;
}

/* Not on the warm path: verify as rk_apikeys_verify() does, then, for a
 * valid key, the limiter's own check (or, when Redis just failed, its
 * failure policy through c). */
static rk_status slow_path(rk_apikeys *ak, rk_limiter *lim, const char *key, const char *hex, int64_t cost,
                           rk__limit_call *c, rk_status redis_st, rk_apikey_result *r, rk_limit_result *dec)
{
    rk_status st = rk_apikeys_verify(ak, key, r);
    if (st != RK_OK || r->verdict != RK_APIKEY_VALID) {
        if (c) rk__limiter_cancel(c);
        memset(dec, 0, sizeof *dec);
        return st;
    }
    if (c) return rk__limiter_end(c, redis_st, NULL, dec);
    st = rk_limiter_check(lim, hex, cost, dec);
    if (st != RK_OK) rk_apikeys_result_clear(r);
    return st;
}

rk_status rk_apikeys_verify_limit(rk_apikeys *ak, rk_limiter *lim, const char *key, int64_t cost,
                                  rk_apikey_result *r, rk_limit_result *dec)
{
    if (r) memset(r, 0, sizeof *r);
    if (dec) memset(dec, 0, sizeof *dec);
    if (!ak || !lim || !key || !r || !dec) return rk__fail(RK_ERR_INVALID, "rk_apikeys_verify_limit: NULL argument");
    size_t len;
    if (!rk__apikey_well_formed(key, &len)) {
        RK__AK_COUNT(ak, verifies);
        RK__AK_COUNT(ak, malformed);
        r->verdict = RK_APIKEY_MALFORMED;
        r->layer = RK_APIKEY_LAYER_CHECKSUM;
        return RK_OK;
    }
    rk__apikeys_check_fork(ak);
    unsigned char d[RK__SHA256_BYTES];
    if (!rk__sha256(key, len, d)) return failed(ak, rk__fail(RK_ERR_SYSTEM, "apikeys: SHA-256 unavailable"));

    /* This process knows the key is not to be served: no Redis call. */
    rk__answer a;
    if (ak->fresh_ms > 0) {
        int got = rk__local_get(ak->local, d, rk__now_ns(), false, &a);
        if (got < 0) return failed(ak, rk__fail(RK_ERR_NOMEM, "apikeys: out of memory"));
        if (got == 1 && (a.kind != 'V' || (a.expires_at_ms && a.expires_at_ms <= rk__wall_ms()))) {
            RK__AK_COUNT(ak, verifies);
            rk__apikeys_conclude(ak, r, &a, (char *)a.owner, RK_APIKEY_LAYER_PROCESS, false);
            return RK_OK;
        }
        if (got == 1) rk__free((void *)a.owner);
    }

    uint64_t mark = rk__local_mark(ak->local, d);
    rk__key k;
    char hex[RK_APIKEYS_HASH_BUF];
    rk_status st = rk__apikeys_redis_key(ak, d, &k, hex);
    if (st != RK_OK) return failed(ak, st);
    rk__limit_call c;
    st = rk__limiter_begin(lim, hex, RK__OP_CHECK, cost, NULL, dec, &c);
    if (st != RK_OK) {
        rk__key_release(&k);
        return failed(ak, st);
    }
    if (c.answered) { /* refused by the block cache: nothing to consume */
        rk__key_release(&k);
        rk_limit_result blocked = *dec;
        st = rk_apikeys_verify(ak, key, r);
        if (st == RK_OK && r->verdict == RK_APIKEY_VALID) *dec = blocked;
        else memset(dec, 0, sizeof *dec);
        return st;
    }
    char now[RK__NUMBER_TEXT_MAX + 1];
    const char *pre_keys[1] = {k.str};
    size_t pre_keylens[1] = {k.len};
    const char *pre_args[1] = {now};
    size_t pre_arglens[1] = {rk__i64_to_text(rk__wall_ms(), now)};
    rk_reply *rep = NULL;
    st = rk__limiter_run(&c, &verify_limit_script, 1, pre_keys, pre_keylens, 1, pre_args, pre_arglens, &rep);
    rk__key_release(&k);
    if (st == RK_ERR_NOMEM || st == RK_ERR_INVALID) {
        rk__limiter_cancel(&c);
        return failed(ak, st);
    }
    if (st != RK_OK) {
        /* Redis did not answer within the limiter's deadline. A key this
         * process knows (fresh or stale window) is answered from memory,
         * degraded, without waiting on Redis a second time; else verify's
         * own degraded paths. Then the limiter's failure policy. */
        int got = rk__local_get(ak->local, d, rk__now_ns(), true, &a);
        if (got <= 0) {
            /* Redis has just failed this call: verify asks it nothing
             * more (each of its calls fails at once, so it takes its
             * degraded paths), and the call ends by the limiter's
             * deadline plus the lookup callback's own time, not after
             * a second wait on Redis. */
            int64_t prev = rk__deadline_cap_swap(rk__now_ns());
            st = slow_path(ak, lim, key, hex, cost, &c, st, r, dec);
            rk__deadline_cap_swap(prev);
            return st;
        }
        RK__AK_COUNT(ak, verifies);
        rk__apikeys_conclude(ak, r, &a, (char *)a.owner, RK_APIKEY_LAYER_PROCESS, true);
        if (r->verdict == RK_APIKEY_VALID) return rk__limiter_end(&c, st, NULL, dec);
        rk__limiter_cancel(&c);
        memset(dec, 0, sizeof *dec);
        return RK_OK;
    }
    if (rep->type != RK_REPLY_ARRAY || rep->elements < 1 || rep->elements > 2 ||
        (rep->element[0]->type != RK_REPLY_NIL && rep->element[0]->type != RK_REPLY_STRING)) {
        rk_reply_free(rep);
        rk__limiter_cancel(&c);
        return failed(ak, rk__fail(RK_ERR_PROTOCOL, "apikeys verify+limit: unexpected reply shape"));
    }
    if (rep->element[0]->type == RK_REPLY_NIL) { /* not cached in Redis yet */
        rk_reply_free(rep);
        rk__limiter_cancel(&c);
        return slow_path(ak, lim, key, hex, cost, NULL, RK_OK, r, dec);
    }
    const rk_reply *v = rep->element[0];
    char *buf = rk__malloc(v->len + 1);
    if (!buf) {
        rk_reply_free(rep);
        rk__limiter_cancel(&c);
        return failed(ak, rk__fail(RK_ERR_NOMEM, "apikeys: out of memory"));
    }
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    if (!rk__apikeys_parse_answer(buf, v->len, &a)) {
        rk__free(buf);
        rk_reply_free(rep);
        rk__limiter_cancel(&c);
        return failed(ak, rk__fail(RK_ERR_TYPE, "apikeys: the value cached under the key's hash is not an "
                                                 "apikeys answer (written by something else)"));
    }
    if (rep->elements == 2) {
        st = rk__limiter_end(&c, RK_OK, rep->element[1], dec);
    } else {
        rk__limiter_cancel(&c);
    }
    rk_reply_free(rep);
    if (st != RK_OK) {
        rk__free(buf);
        return failed(ak, st);
    }
    RK__AK_COUNT(ak, verifies);
    rk__apikeys_learned(ak, d, &a, mark);
    char *owner = NULL;
    if (a.kind == 'V' && a.owner_len) { /* the record moves to the front of the buffer */
        memmove(buf, a.owner, a.owner_len);
        buf[a.owner_len] = '\0';
        owner = buf;
    } else {
        rk__free(buf);
    }
    a.owner = owner;
    rk__apikeys_conclude(ak, r, &a, owner, RK_APIKEY_LAYER_REDIS, false);
    /* The script and this host's clock may disagree on the expiry by the
     * time of one round trip: what was consumed stays consumed. */
    if (r->verdict != RK_APIKEY_VALID) memset(dec, 0, sizeof *dec);
    return RK_OK;
}
