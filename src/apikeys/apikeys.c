/*
 * apikeys.c — an rk_apikeys handle: verify and revoke (contract in
 * include/redkit/apikeys.h; the flow, the numbers and the failure modes in
 * docs/apikeys.md).
 *
 * Verify is layered, cheapest first: the key's own checksum (no I/O),
 * this process's table (local.c: a hash and a probe), then an internal raw
 * rk_cache whose rk_cache_fetch() reads "<prefix>:<ns>:{<sha256>}" and, on
 * a miss, runs the lookup callback once per key across threads and
 * processes (see apikeys.h for why the cache's get-or-compute is reused).
 *
 * Revocation cannot be undone by a race. A verify that read "valid" from
 * the database before a revoke, and stores it after, goes through the
 * fill script, which leaves a tombstone in place and hands the tombstone
 * back, so that verify (and every verify waiting on it) answers revoked
 * too. In this process, answers learned by verifies that started before a
 * revoke finished are not kept (local.c's marks); other processes drop
 * the key when the invalidation published on the handle's channel reaches
 * them, and within fresh_ms at worst.
 *
 * Hearing revocations. Each handle owns an rk_pubsub (src/client/pubsub.c)
 * subscribed to its channel; a message drops that hash from local.c. When
 * the subscription is lost or made again, messages may have been
 * missed, so every answer held is demoted (rk__local_demote): it is never
 * served fresh again, but can still stand in, flagged degraded, while
 * Redis cannot answer — better than a flush, which would leave nothing to
 * serve during the very outage that cost the subscription. A fork() child
 * inherits an inert subscriber: its first verify notices (one relaxed
 * load), demotes, and subscribes anew.
 */
#include <stdio.h>
#include <string.h>

#include <redkit/apikeys.h>
#include <redkit/cache.h>

#include "alloc.h"
#include "apikeys.h"
#include "cache.h"
#include "client.h"
#include "clock.h"
#include "error.h"
#include "forkgen.h"
#include "keys.h"
#include "number.h"
#include "pubsub_internal.h"
#include "registry.h"
#include "reply.h"
#include "script.h"

#define HDR 9 /* 'V' + 8-byte expiry */

/* Store a computed answer unless the key holds a tombstone, which is then
 * returned (and served) instead. The key arrives in KEYS. */
static rk__script fill_script =
    RK__SCRIPT("apikeys fill",
               "local cur = redis.call('GET', KEYS[1])\n"
               "if cur and string.sub(cur, 1, 1) == 'R' then return cur end\n"
               "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
               "return false");

static rk_status fill(rk_cache *c, const rk__key *k, const char *v, size_t vlen, int64_t ttl_ms, char **kept,
                      size_t *kept_len)
{
    char ttl[RK__NUMBER_TEXT_MAX + 1];
    const char *keys[1] = {k->str};
    size_t keylens[1] = {k->len};
    const char *args[2] = {v, ttl};
    size_t arglens[2] = {vlen, rk__i64_to_text(ttl_ms, ttl)};
    rk_reply *r;
    rk_status st = rk__script_run(c->client, &fill_script, 1, keys, keylens, 2, args, arglens, false, &r);
    if (st != RK_OK) return st;
    if (r->type == RK_REPLY_NIL) {
        rk_reply_free(r);
        return RK_OK;
    }
    if (r->type != RK_REPLY_STRING) {
        rk_reply_free(r);
        return rk__fail(RK_ERR_PROTOCOL, "apikeys fill: unexpected reply type");
    }
    size_t n = r->len;
    *kept = rk__strndup(r->str, n);
    rk_reply_free(r);
    if (!*kept) return rk__fail(RK_ERR_NOMEM, "apikeys fill: out of memory");
    *kept_len = n;
    return RK_MISS;
}

/* ---- the lookup's side ------------------------------------------------------ */

struct rk_apikeys_record {
    char *data; /* 'V' + expiry + owner, ready to cache */
    size_t len;
    bool set;
    rk_status set_failed;
};

rk_status rk_apikeys_record_set(rk_apikeys_record *rec, const void *owner, size_t len, int64_t expires_at_ms)
{
    if (!rec) return rk__fail(RK_ERR_INVALID, "rk_apikeys_record_set: record is NULL");
    rk_status st = RK_OK;
    if (!owner && len) st = rk__fail(RK_ERR_INVALID, "rk_apikeys_record_set: owner is NULL with len %zu", len);
    else if (expires_at_ms < 0) st = rk__fail(RK_ERR_INVALID, "rk_apikeys_record_set: expiry is negative");
    else if (len > RK_APIKEYS_MAX_RECORD_BYTES)
        st = rk__fail(RK_ERR_TOO_LARGE, "rk_apikeys_record_set: owner record of %zu bytes is over %u", len,
                      RK_APIKEYS_MAX_RECORD_BYTES);
    char *d = st == RK_OK ? rk__malloc(HDR + len + 1) : NULL;
    if (st == RK_OK && !d) st = rk__fail(RK_ERR_NOMEM, "rk_apikeys_record_set: out of memory");
    if (st != RK_OK) {
        rk__free(rec->data);
        rec->data = NULL;
        rec->set = false;
        rec->set_failed = st;
        return st;
    }
    d[0] = 'V';
    uint64_t e = (uint64_t)expires_at_ms;
    for (int i = 0; i < 8; i++) d[1 + i] = (char)(e >> (56 - 8 * i));
    if (len) memcpy(d + HDR, owner, len);
    d[HDR + len] = '\0';
    rk__free(rec->data);
    rec->data = d;
    rec->len = HDR + len;
    rec->set = true;
    return RK_OK;
}

typedef struct verify_call {
    rk_apikeys *ak;
    const unsigned char *d;
    const char *hex;
} verify_call;

/* The compute callback given to rk_cache_fetch(): ask the database, or,
 * when Redis could not be read, leave the answer to this process's stale
 * window (or to fail_closed) without asking it. */
static rk_status compute(const char *key, rk_cache_computed *out, void *ctx)
{
    (void)key;
    verify_call *v = ctx;
    rk_apikeys *ak = v->ak;
    if (rk__cache_computed_degraded(out)) {
        rk__answer a;
        int got = ak->stale_ms > 0 ? rk__local_get(ak->local, v->d, rk__now_ns(), true, &a) : 0;
        if (got > 0) {
            rk__free((void *)a.owner);
            return rk__fail(RK_ERR_UNAVAILABLE, "redis unavailable: answered from this process's memory");
        }
        if (ak->fail_closed) return rk__fail(RK_ERR_UNAVAILABLE, "redis unavailable and fail_closed is set");
    }
    RK__AK_COUNT(ak, lookups);
    rk_apikeys_record rec = {0};
    int64_t cap = rk__deadline_cap_swap(0); /* the callback's redkit calls keep their own deadlines */
    rk_status st = ak->lookup(v->hex, &rec, ak->lookup_user);
    rk__deadline_cap_swap(cap);
    if (st == RK_OK && !rec.set)
        st = rk__fail(RK_ERR_INVALID, "apikeys: the lookup callback returned RK_OK without a record%s",
                      rec.set_failed ? " (its rk_apikeys_record_set failed)" : "");
    if (st == RK_OK) {
        st = rk_cache_computed_set(out, rec.data, rec.len);
    } else if (st == RK_MISS) {
        st = rk_cache_computed_set(out, "N", 1);
        if (st == RK_OK) st = rk_cache_computed_set_ttl_ms(out, ak->negative_ttl_ms);
    } else {
        RK__AK_COUNT(ak, lookup_errors);
    }
    rk__free(rec.data);
    return st;
}

/* ---- verify ------------------------------------------------------------------ */

/* "{<hex>}": the user key of the inner cache, a hash tag that keeps the
 * answer and its fetch lock in one cluster slot. */
static void braced(const char hex[RK_APIKEYS_HASH_BUF], char out[RK_APIKEYS_HASH_HEX + 3])
{
    out[0] = '{';
    memcpy(out + 1, hex, RK_APIKEYS_HASH_HEX);
    out[RK_APIKEYS_HASH_HEX + 1] = '}';
    out[RK_APIKEYS_HASH_HEX + 2] = '\0';
}

static int64_t fresh_for(const rk_apikeys *ak, char kind)
{
    int64_t ttl = kind == 'V' ? ak->positive_ttl_ms : kind == 'N' ? ak->negative_ttl_ms : ak->tombstone_ttl_ms;
    return ak->fresh_ms < ttl ? ak->fresh_ms : ttl;
}

/* A cached answer's bytes (NUL-terminated) into *a, the owner pointing
 * into them. */
bool rk__apikeys_parse_answer(const char *v, size_t len, rk__answer *a)
{
    memset(a, 0, sizeof *a);
    if (len == 1 && (v[0] == 'N' || v[0] == 'R')) {
        a->kind = v[0];
        return true;
    }
    if (len < HDR || v[0] != 'V') return false;
    uint64_t e = 0;
    for (int i = 0; i < 8; i++) e = e << 8 | (unsigned char)v[1 + i];
    if (e > (uint64_t)INT64_MAX) return false;
    a->kind = 'V';
    a->expires_at_ms = (int64_t)e;
    a->owner = v + HDR;
    a->owner_len = len - HDR;
    return true;
}

/* Fill in the result from answer a; owner is the heap buffer holding a's
 * record (or NULL), whose ownership passes to the result or is freed. */
void rk__apikeys_conclude(rk_apikeys *ak, rk_apikey_result *r, const rk__answer *a, char *owner,
                          rk_apikey_layer layer, bool degraded)
{
    r->layer = layer;
    r->degraded = degraded;
    if (a->kind == 'V') {
        r->expires_at_ms = a->expires_at_ms;
        r->verdict = a->expires_at_ms && a->expires_at_ms <= rk__wall_ms() ? RK_APIKEY_EXPIRED : RK_APIKEY_VALID;
        r->owner = owner;
        r->owner_len = owner ? a->owner_len : 0;
    } else {
        r->verdict = a->kind == 'N' ? RK_APIKEY_NOT_FOUND : RK_APIKEY_REVOKED;
        rk__free(owner);
    }
    if (degraded) RK__AK_COUNT(ak, degraded);
    else if (layer == RK_APIKEY_LAYER_PROCESS) RK__AK_COUNT(ak, process_hits);
    else if (layer == RK_APIKEY_LAYER_REDIS) RK__AK_COUNT(ak, redis_hits);
    if (a->kind == 'N' && !degraded && (layer == RK_APIKEY_LAYER_PROCESS || layer == RK_APIKEY_LAYER_REDIS))
        RK__AK_COUNT(ak, negative_hits);
}

static rk_status no_verdict(rk_apikeys *ak, rk_status st)
{
    RK__AK_COUNT(ak, errors);
    return st;
}

rk_status rk_apikeys_verify(rk_apikeys *ak, const char *key, rk_apikey_result *r)
{
    if (r) memset(r, 0, sizeof *r);
    if (!ak || !r) return rk__fail(RK_ERR_INVALID, "rk_apikeys_verify: NULL argument");
    if (!key) return no_verdict(ak, rk__fail(RK_ERR_INVALID, "rk_apikeys_verify: key is NULL"));
    RK__AK_COUNT(ak, verifies);
    size_t len;
    if (!rk__apikey_well_formed(key, &len)) {
        RK__AK_COUNT(ak, malformed);
        r->verdict = RK_APIKEY_MALFORMED;
        r->layer = RK_APIKEY_LAYER_CHECKSUM;
        return RK_OK;
    }
    unsigned char d[RK__SHA256_BYTES];
    if (!rk__sha256(key, len, d)) return no_verdict(ak, rk__fail(RK_ERR_SYSTEM, "apikeys: SHA-256 unavailable"));

    rk__answer a;
    rk__apikeys_check_fork(ak);
    if (ak->fresh_ms > 0) {
        int got = rk__local_get(ak->local, d, rk__now_ns(), false, &a);
        if (got < 0) return no_verdict(ak, rk__fail(RK_ERR_NOMEM, "apikeys: out of memory"));
        if (got == 1) {
            rk__apikeys_conclude(ak, r, &a, (char *)a.owner, RK_APIKEY_LAYER_PROCESS, false);
            return RK_OK;
        }
    }

    uint64_t mark = rk__local_mark(ak->local, d);
    char hex[RK_APIKEYS_HASH_BUF];
    rk__hex32(d, hex);
    char ukey[RK_APIKEYS_HASH_HEX + 3];
    braced(hex, ukey);
    verify_call v = {.ak = ak, .d = d, .hex = hex};
    void *val;
    size_t vlen;
    rk_cache_fetch_info info;
    rk_status st = rk_cache_fetch(ak->cache, ukey, compute, &v, &(rk_cache_fetch_options){.ttl_ms = ak->positive_ttl_ms},
                                  &val, &vlen, &info);
    if (st == RK_OK) {
        if (!rk__apikeys_parse_answer(val, vlen, &a)) {
            rk__free(val);
            return no_verdict(ak, rk__fail(RK_ERR_TYPE, "apikeys: the value cached under the key's hash is not an "
                                                         "apikeys answer (written by something else)"));
        }
        int64_t now = rk__now_ns();
        int64_t fresh = fresh_for(ak, a.kind);
        rk__local_put(ak->local, d, &a, now, fresh > 0 ? fresh * 1000000 : 0,
                      ak->stale_ms > 0 ? ak->stale_ms * 1000000 : 0, mark);
        char *owner = NULL;
        if (a.kind == 'V' && a.owner_len) { /* the record moves to the front of the buffer */
            memmove(val, val + HDR, a.owner_len);
            ((char *)val)[a.owner_len] = '\0';
            owner = val;
        } else {
            rk__free(val);
        }
        a.owner = owner;
        rk__apikeys_conclude(ak, r, &a, owner, info.computed ? RK_APIKEY_LAYER_LOOKUP : RK_APIKEY_LAYER_REDIS,
                             info.degraded);
        if (info.degraded) { /* (the message is copied first: rk__fail writes where it lives) */
            char why[RK__ERRMSG_MAX];
            snprintf(why, sizeof why, "%s", rk_last_error());
            rk__fail(RK_OK, "apikeys: degraded: %.440s", why);
        }
        return RK_OK;
    }
    /* No answer from Redis nor from the database: this process's stale
     * window, if it knows the key. */
    char why[RK__ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rk_last_error());
    if (st == RK_ERR_SOURCE) r->lookup_status = info.source_status;
    if (ak->stale_ms > 0 && st != RK_ERR_INVALID && st != RK_ERR_NOMEM) {
        int got = rk__local_get(ak->local, d, rk__now_ns(), true, &a);
        if (got > 0) {
            rk__apikeys_conclude(ak, r, &a, (char *)a.owner, RK_APIKEY_LAYER_PROCESS, true);
            rk__fail(RK_OK, "apikeys: degraded: served this process's %s answer (%.400s)",
                     got == 1 ? "fresh" : "stale", why);
            return RK_OK;
        }
    }
    /* Redis down and the lookup refused (fail_closed) or down as well. */
    if (st == RK_ERR_SOURCE && info.degraded && info.source_status == RK_ERR_UNAVAILABLE) {
        r->lookup_status = RK_OK;
        st = RK_ERR_UNAVAILABLE;
    }
    return no_verdict(ak, rk__fail(st, "apikeys: no verdict: %.440s", why));
}

void rk_apikeys_result_clear(rk_apikey_result *r)
{
    if (!r) return;
    rk__free(r->owner);
    memset(r, 0, sizeof *r);
}

const char *rk_apikeys_verdict_name(rk_apikey_verdict v)
{
    switch (v) {
    case RK_APIKEY_VALID: return "valid";
    case RK_APIKEY_NOT_FOUND: return "not_found";
    case RK_APIKEY_REVOKED: return "revoked";
    case RK_APIKEY_EXPIRED: return "expired";
    case RK_APIKEY_MALFORMED: return "malformed";
    }
    return "unknown";
}

/* ---- revoke ----------------------------------------------------------------- */

/* The Redis key of digest d ("<prefix>:<ns>:{<hex>}") into k, its hex into hex. */
rk_status rk__apikeys_redis_key(rk_apikeys *ak, const unsigned char d[RK__SHA256_BYTES], rk__key *k,
                           char hex[RK_APIKEYS_HASH_BUF])
{
    rk__hex32(d, hex);
    char ukey[RK_APIKEYS_HASH_HEX + 3];
    braced(hex, ukey);
    return rk__key_make(k, ak->cache->head, ak->cache->head_len, ukey, sizeof ukey);
}

/* A reply to PUBLISH: a refusal (an ACL without it) is logged, not
 * failed: the write it follows stands, and other processes then learn of
 * it within fresh_ms. */
static void published(rk_apikeys *ak, rk_reply *r)
{
    if (r && r->type == RK_REPLY_ERROR)
        rk__client_log(ak->client, RK_LOG_WARN, "apikeys: PUBLISH of an invalidation was refused");
    rk_reply_free(r);
}

/* SET <key> R PX <tombstone>, then PUBLISH <channel> <hash>, in one round
 * trip; then this process forgets the key. Forgetting after the write, not
 * before: a verify that starts in between reads the tombstone. */
static rk_status revoke_digest(rk_apikeys *ak, const unsigned char d[RK__SHA256_BYTES])
{
    char hex[RK_APIKEYS_HASH_BUF];
    rk__key k;
    rk_status st = rk__apikeys_redis_key(ak, d, &k, hex);
    if (st != RK_OK) return st;
    char ttl[RK__NUMBER_TEXT_MAX + 1];
    const char *set_argv[5] = {"SET", k.str, "R", "PX", ttl};
    size_t set_lens[5] = {3, k.len, 1, 2, rk__i64_to_text(ak->tombstone_ttl_ms, ttl)};
    const char *pub_argv[3] = {"PUBLISH", ak->channel, hex};
    size_t pub_lens[3] = {7, ak->channel_len, RK_APIKEYS_HASH_HEX};
    rk__cmd cmds[2] = {{5, set_argv, set_lens}, {3, pub_argv, pub_lens}};
    rk_reply *rep[2];
    st = rk__client_pipeline(ak->client, 2, cmds, false, rep);
    rk__key_release(&k);
    if (st == RK_OK) {
        if (rep[0]->type == RK_REPLY_ERROR) st = rk__reply_fail(rep[0], "SET (tombstone)"), rep[0] = NULL;
        else if (rep[0]->type != RK_REPLY_STATUS) st = rk__fail(RK_ERR_PROTOCOL, "SET (tombstone): unexpected reply");
        rk_reply_free(rep[0]);
        if (st == RK_OK) published(ak, rep[1]);
        else rk_reply_free(rep[1]);
    }
    rk__local_drop(ak->local, d);
    if (st == RK_OK) RK__AK_COUNT(ak, revocations);
    return st;
}

/* Delete the cached answer unless it is a tombstone. */
static rk__script forget_script =
    RK__SCRIPT("apikeys forget",
               "local cur = redis.call('GET', KEYS[1])\n"
               "if cur and string.sub(cur, 1, 1) == 'R' then return 0 end\n"
               "return redis.call('DEL', KEYS[1])");

rk_status rk_apikeys_forget(rk_apikeys *ak, const char *key)
{
    if (!ak || !key) return rk__fail(RK_ERR_INVALID, "rk_apikeys_forget: NULL argument");
    size_t len;
    if (!rk__apikey_well_formed(key, &len)) return rk__fail(RK_ERR_INVALID, "rk_apikeys_forget: the key is malformed");
    unsigned char d[RK__SHA256_BYTES];
    if (!rk__sha256(key, len, d)) return rk__fail(RK_ERR_SYSTEM, "apikeys: SHA-256 unavailable");
    char hex[RK_APIKEYS_HASH_BUF];
    rk__key k;
    rk_status st = rk__apikeys_redis_key(ak, d, &k, hex);
    if (st != RK_OK) return st;
    const char *keys[1] = {k.str};
    size_t keylens[1] = {k.len};
    rk_reply *r;
    st = rk__script_run(ak->client, &forget_script, 1, keys, keylens, 0, NULL, NULL, false, &r);
    rk__key_release(&k);
    if (st == RK_OK) {
        rk_reply_free(r);
        const char *pub_argv[3] = {"PUBLISH", ak->channel, hex};
        size_t pub_lens[3] = {7, ak->channel_len, RK_APIKEYS_HASH_HEX};
        r = NULL;
        if (rk_client_command(ak->client, 3, pub_argv, pub_lens, &r) == RK_OK) published(ak, r);
    }
    rk__local_drop(ak->local, d);
    return st;
}

rk_status rk_apikeys_revoke(rk_apikeys *ak, const char *key)
{
    if (!ak || !key) return rk__fail(RK_ERR_INVALID, "rk_apikeys_revoke: NULL argument");
    size_t len;
    if (!rk__apikey_well_formed(key, &len))
        return rk__fail(RK_ERR_INVALID, "rk_apikeys_revoke: the key is malformed (revoke it by hash)");
    unsigned char d[RK__SHA256_BYTES];
    if (!rk__sha256(key, len, d)) return rk__fail(RK_ERR_SYSTEM, "apikeys: SHA-256 unavailable");
    return revoke_digest(ak, d);
}

rk_status rk_apikeys_revoke_hash(rk_apikeys *ak, const char *hash_hex)
{
    if (!ak || !hash_hex) return rk__fail(RK_ERR_INVALID, "rk_apikeys_revoke_hash: NULL argument");
    unsigned char d[RK__SHA256_BYTES];
    if (!rk__unhex32(hash_hex, d))
        return rk__fail(RK_ERR_INVALID, "rk_apikeys_revoke_hash: not a SHA-256 in hex (64 digits)");
    return revoke_digest(ak, d);
}

void rk__apikeys_invalidated(rk_apikeys *ak, const char *payload, size_t len)
{
    unsigned char d[RK__SHA256_BYTES];
    char hex[RK_APIKEYS_HASH_BUF];
    if (!ak || !payload || len != RK_APIKEYS_HASH_HEX) return;
    memcpy(hex, payload, len);
    hex[len] = '\0';
    if (!rk__unhex32(hex, d)) return;
    RK__AK_COUNT(ak, invalidations);
    rk__local_drop(ak->local, d);
}

void rk__apikeys_subscription_changed(rk_apikeys *ak, bool lost)
{
    if (lost) RK__AK_COUNT(ak, subscription_losses);
    rk__local_demote(ak->local);
}

static void on_invalidation(const char *channel, const char *pattern, const char *payload, size_t len, void *user)
{
    (void)channel;
    (void)pattern;
    rk__apikeys_invalidated(user, payload, len);
}

/* LOST: what is held may miss the invalidations to come. RESUBSCRIBED:
 * what was learned during the outage may have missed some. The first
 * SUBSCRIBED changes nothing: answers learned before it are held for
 * fresh_ms at most, the bound that holds whenever pub/sub is down, and
 * demoting them would only cost the round trips of a handle's first
 * seconds. */
static void on_subscriber_event(rk_pubsub_event ev, void *user)
{
    if (ev != RK_PUBSUB_SUBSCRIBED) rk__apikeys_subscription_changed(user, ev == RK_PUBSUB_LOST);
}

static rk_status start_subscriber(rk_apikeys *ak)
{
    atomic_store_explicit(&ak->fork_gen, rk__fork_generation(), memory_order_relaxed);
    rk_pubsub_options po = {.on_message = on_invalidation, .on_event = on_subscriber_event, .user = ak};
    rk_status st = rk__pubsub_new_labelled(ak->client, &po, ak->ns, &ak->ps);
    if (st == RK_OK && (st = rk_pubsub_subscribe(ak->ps, ak->channel)) != RK_OK) {
        rk_pubsub_free(ak->ps);
        ak->ps = NULL;
    }
    return st;
}

/* In a fork() child, on the first verify: the inherited subscriber is
 * inert (pubsub.h), so answers held are demoted and a new one is made.
 * One thread wins the exchange and does it; the others go on (with
 * answers that are at worst demoted a moment later). */
void rk__apikeys_check_fork(rk_apikeys *ak)
{
    unsigned seen = atomic_load_explicit(&ak->fork_gen, memory_order_relaxed);
    unsigned now = rk__fork_generation();
    if (seen == now || ak->no_subscribe ||
        !atomic_compare_exchange_strong_explicit(&ak->fork_gen, &seen, now, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    rk__apikeys_subscription_changed(ak, true);
    rk_pubsub_free(ak->ps); /* inert: closes the child's copy of the socket only */
    ak->ps = NULL;
    if (start_subscriber(ak) != RK_OK)
        rk__client_log(ak->client, RK_LOG_WARN, "apikeys: cannot subscribe to revocations after fork(): other "
                                                "processes' revocations reach this one within fresh_ms");
}

rk_status rk__apikeys_subscribed(rk_apikeys *ak, int timeout_ms)
{
    rk__apikeys_check_fork(ak);
    if (!ak->ps) return rk__fail(RK_ERR_INVALID, "apikeys: no subscriber");
    return rk_pubsub_sync(ak->ps, timeout_ms);
}

/* ---- the handle ------------------------------------------------------------- */

static rk_status check_ms(const char *what, int64_t v, bool may_be_off)
{
    if (v == 0 || (may_be_off && v == RK_APIKEYS_OFF)) return RK_OK;
    if (v < 0) return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: %s is negative", what);
    if (v > ((int64_t)1 << 62)) return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: %s is over 2^62 ms", what);
    return RK_OK;
}

static int64_t or_default(int64_t v, int64_t def) { return v == 0 ? def : v == RK_APIKEYS_OFF ? 0 : v; }

static rk_status check_options(const rk_apikeys_options *o)
{
    if (!o->lookup) return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: lookup is NULL");
    rk_status st;
    if ((st = check_ms("positive_ttl_ms", o->positive_ttl_ms, false)) != RK_OK ||
        (st = check_ms("negative_ttl_ms", o->negative_ttl_ms, false)) != RK_OK ||
        (st = check_ms("tombstone_ttl_ms", o->tombstone_ttl_ms, false)) != RK_OK ||
        (st = check_ms("fresh_ms", o->fresh_ms, true)) != RK_OK ||
        (st = check_ms("stale_ms", o->stale_ms, true)) != RK_OK ||
        (st = check_ms("lock_ms", o->lock_ms, false)) != RK_OK)
        return st;
    if (o->key_prefix && !rk__apikey_prefix_ok(o->key_prefix))
        return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: key_prefix must be 1..%d of [A-Za-z0-9_], not ending in '_'",
                        RK_APIKEYS_MAX_PREFIX_BYTES);
    int64_t pos = or_default(o->positive_ttl_ms, RK_APIKEYS_DEFAULT_POSITIVE_TTL_MS);
    if (or_default(o->tombstone_ttl_ms, RK_APIKEYS_DEFAULT_TOMBSTONE_TTL_MS) < pos)
        return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: tombstone_ttl_ms is shorter than positive_ttl_ms");
    int64_t fresh = or_default(o->fresh_ms, RK_APIKEYS_DEFAULT_FRESH_MS);
    int64_t stale = or_default(o->stale_ms, RK_APIKEYS_DEFAULT_STALE_MS);
    if (stale && stale < fresh) return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: stale_ms is shorter than fresh_ms");
    return RK_OK;
}

rk_status rk_apikeys_new(rk_client *client, const rk_apikeys_options *o, rk_apikeys **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: out is NULL");
    *out = NULL;
    if (!client || !o) return rk__fail(RK_ERR_INVALID, "rk_apikeys_new: NULL client or options");
    rk_status st = check_options(o);
    if (st != RK_OK) return st;
    const char *ns = o->ns ? o->ns : RK_APIKEYS_DEFAULT_NAMESPACE;
    if ((st = rk__key_check_name("namespace", ns)) != RK_OK) return st;

    rk_apikeys *ak = rk__calloc(1, sizeof *ak);
    if (!ak) return rk__fail(RK_ERR_NOMEM, "apikeys: out of memory");
    ak->client = client;
    ak->lookup = o->lookup;
    ak->lookup_user = o->lookup_user;
    ak->positive_ttl_ms = or_default(o->positive_ttl_ms, RK_APIKEYS_DEFAULT_POSITIVE_TTL_MS);
    ak->negative_ttl_ms = or_default(o->negative_ttl_ms, RK_APIKEYS_DEFAULT_NEGATIVE_TTL_MS);
    ak->tombstone_ttl_ms = or_default(o->tombstone_ttl_ms, RK_APIKEYS_DEFAULT_TOMBSTONE_TTL_MS);
    ak->fresh_ms = or_default(o->fresh_ms, RK_APIKEYS_DEFAULT_FRESH_MS);
    ak->stale_ms = or_default(o->stale_ms, RK_APIKEYS_DEFAULT_STALE_MS);
    ak->fail_closed = o->fail_closed;
    ak->ns = rk__strdup(ns);
    ak->key_prefix = rk__strdup(o->key_prefix ? o->key_prefix : RK_APIKEYS_DEFAULT_KEY_PREFIX);
    size_t head_len;
    const char *head = rk__client_key_head(client, &head_len);
    ak->channel_len = head_len + strlen(ns) + strlen("#invalidate");
    ak->channel = rk__malloc(ak->channel_len + 1);
    if (ak->channel) snprintf(ak->channel, ak->channel_len + 1, "%s%s#invalidate", head, ns);
    ak->local = rk__local_new(o->local_entries ? o->local_entries : RK_APIKEYS_DEFAULT_LOCAL_ENTRIES);
    if (!ak->ns || !ak->key_prefix || !ak->channel || !ak->local) {
        rk_apikeys_free(ak);
        return rk__fail(RK_ERR_NOMEM, "apikeys: out of memory");
    }
    /* Our own registry entry holds the client; the inner cache's is taken
     * away again, so that its counters do not appear as a cache of
     * namespace ns (ours are the apikeys families). */
    st = rk__registry_add(client, ak, &rk__apikeys_ops);
    if (st == RK_OK) {
        rk_cache_options co = {.ns = ns,
                               .raw = true,
                               .default_ttl_ms = ak->positive_ttl_ms,
                               .local_copies = SIZE_MAX,
                               .lock_ms = o->lock_ms ? o->lock_ms : RK_APIKEYS_DEFAULT_LOCK_MS};
        st = rk_cache_new(client, &co, &ak->cache);
        if (st == RK_OK) {
            rk__registry_remove(client, ak->cache);
            ak->cache->fill = fill;
        }
        ak->no_subscribe = o->no_subscribe;
        atomic_store_explicit(&ak->fork_gen, rk__fork_generation(), memory_order_relaxed);
        if (st == RK_OK && !o->no_subscribe) st = start_subscriber(ak);
    } else {
        ak->client = NULL; /* not registered: _free must not unregister */
    }
    if (st != RK_OK) {
        rk_apikeys_free(ak);
        return st;
    }
    *out = ak;
    return RK_OK;
}

void rk_apikeys_free(rk_apikeys *ak)
{
    if (!ak) return;
    rk_pubsub_free(ak->ps); /* no callback touches ak after this */
    /* The inner cache first: its registry entry is gone, and our own keeps
     * the client alive until the line after. */
    rk_cache_free(ak->cache);
    if (ak->client) rk__registry_remove(ak->client, ak);
    rk__local_free(ak->local);
    rk__free(ak->channel);
    rk__free(ak->key_prefix);
    rk__free(ak->ns);
    rk__free(ak);
}

/* ---- for verify_limit.c (apikeys.h) -------------------------------------------- */

void rk__apikeys_learned(rk_apikeys *ak, const unsigned char d[RK__SHA256_BYTES], const rk__answer *a,
                         uint64_t mark)
{
    int64_t fresh = fresh_for(ak, a->kind);
    rk__local_put(ak->local, d, a, rk__now_ns(), fresh > 0 ? fresh * 1000000 : 0,
                  ak->stale_ms > 0 ? ak->stale_ms * 1000000 : 0, mark);
}
