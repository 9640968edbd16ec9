/*
 * cache_near.c — the near cache in the cache's read and write paths
 * (declarations in cache.h; the store is near.c, its coherence the
 * tracking connection of near_tracking.c).
 *
 * A read asks the near cache first. On a miss it announces a fill, then
 * reads the value and its remaining TTL in one round trip (GET and PTTL,
 * pipelined), and hands both to the near cache, which keeps the value no
 * longer than Redis will, nor longer than the handle's cap. Misses (nil)
 * are not kept: a key that does not exist yet is the one most likely to
 * be written next.
 *
 * A write by this handle drops the key locally before it is sent and again
 * once it is answered. The first keeps this thread from reading its old
 * value while the write is in flight; the second removes a value that a
 * concurrent read, sent before the write, may have filled in meanwhile
 * (its placeholder is gone, so that fill cannot land): after the write
 * returns, no read in this process sees the old value. Other processes'
 * writes reach us as invalidations.
 *
 * After fork() the child's near cache is reset on its first use: the
 * parent's tracking connection is abandoned (not closed over the wire)
 * and a new one is started; until it is subscribed, reads go to Redis.
 */
#include <stdatomic.h>
#include <string.h>

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "clock.h"
#include "error.h"
#include "forkgen.h"
#include "near.h"
#include "near_tracking.h"

#define NEAR_MIN_BYTES ((size_t)64 << 10)
#define NEAR_MAX_ENTRIES ((size_t)1 << 32)
#define NEAR_MAX_TTL_MS 86400000

static int64_t now_ms(void) { return rk__now_ns() / 1000000; }

void (*rk__cache_near_test_hook)(rk_cache *c, const char *key, size_t len);

rk_status rk__cache_near_start(rk_cache *c, const rk_cache_options *o)
{
    if (!o->near_cache) return RK_OK;
    size_t bytes = o->near_max_bytes ? o->near_max_bytes : RK_CACHE_DEFAULT_NEAR_MAX_BYTES;
    size_t entries = o->near_max_entries ? o->near_max_entries : RK_CACHE_DEFAULT_NEAR_MAX_ENTRIES;
    int64_t ttl = o->near_max_ttl_ms ? o->near_max_ttl_ms : RK_CACHE_DEFAULT_NEAR_MAX_TTL_MS;
    if (bytes < NEAR_MIN_BYTES || bytes > (size_t)PTRDIFF_MAX)
        return rk__fail(RK_ERR_INVALID, "near_max_bytes: %zu is outside %zu..PTRDIFF_MAX", bytes, NEAR_MIN_BYTES);
    if (entries > NEAR_MAX_ENTRIES)
        return rk__fail(RK_ERR_INVALID, "near_max_entries: %zu is over 2^32", entries);
    if (ttl < 1 || ttl > NEAR_MAX_TTL_MS)
        return rk__fail(RK_ERR_INVALID, "near_max_ttl_ms: %lld is outside 1..%d", (long long)ttl, NEAR_MAX_TTL_MS);
    c->near = rk__near_new(&(rk__near_limits){.max_bytes = bytes, .max_entries = entries, .max_ttl_ms = ttl});
    if (!c->near) return rk__fail(RK_ERR_NOMEM, "near cache: out of memory");
    atomic_store(&c->near_gen, rk__fork_generation());
    return rk__tracker_start(c->client, c->near, c->head, c->head_len, &c->tracker);
}

void rk__cache_near_stop(rk_cache *c)
{
    rk__tracker_stop(c->tracker);
    c->tracker = NULL;
}

void rk__cache_near_free(rk_cache *c)
{
    rk__near_free(c->near);
    c->near = NULL;
}

/* True when the near cache may be used by this call. In a child process
 * after fork() the first caller resets it (and restarts its tracking);
 * until that is done every call goes to Redis. */
static bool near_usable(rk_cache *c)
{
    if (!c->near) return false;
    unsigned gen = rk__fork_generation();
    if (atomic_load_explicit(&c->near_gen, memory_order_acquire) == gen) return true;
    bool expected = false;
    if (!atomic_compare_exchange_strong(&c->near_resetting, &expected, true)) return false;
    if (atomic_load(&c->near_gen) != gen) {
        if (c->tracker) rk__tracker_abandon(c->tracker);
        c->tracker = NULL;
        rk__near_reset_after_fork(c->near);
        /* Without a tracker the near cache simply stays off. */
        rk__tracker_start(c->client, c->near, c->head, c->head_len, &c->tracker);
        atomic_store_explicit(&c->near_gen, gen, memory_order_release);
    }
    atomic_store(&c->near_resetting, false);
    return false;
}

/* A near-cache copy as the reply a GET would have given. */
static rk_status as_reply(void *value, size_t len, rk_reply **r)
{
    rk_reply *reply = rk__calloc(1, sizeof *reply);
    if (!reply) {
        rk__free(value);
        return rk__fail(RK_ERR_NOMEM, "near cache: out of memory");
    }
    reply->type = RK_REPLY_STRING;
    reply->str = value;
    reply->len = len;
    *r = reply;
    return RK_OK;
}

static rk_status plain_get(rk_cache *c, const rk__key *k, rk_reply **r)
{
    const char *argv[2] = {"GET", k->str};
    size_t lens[2] = {3, k->len};
    return rk__client_run(c->client, 2, argv, lens, true, r);
}

static void land(rk_cache *c, const char *key, size_t klen, uint64_t token, const rk_reply *get, const rk_reply *pttl,
                 int64_t sent);

rk_status rk__cache_near_get(rk_cache *c, const rk__key *k, rk_reply **r)
{
    char *hit;
    size_t len;
    rk_status st = rk__cache_near_read(c, k, &hit, &len, r);
    return st == RK_OK && hit ? as_reply(hit, len, r) : st;
}

rk_status rk__cache_near_read(rk_cache *c, const rk__key *k, char **hit, size_t *hit_len, rk_reply **r)
{
    *r = NULL;
    *hit = NULL;
    *hit_len = 0;
    if (!near_usable(c)) return plain_get(c, k, r);
    void *value;
    rk_status st = rk__near_get(c->near, k->str, k->len, now_ms(), &value, hit_len);
    if (st == RK_OK) {
        *hit = value;
        return RK_OK;
    }
    if (st != RK_MISS) return st;

    uint64_t token = rk__near_fill_begin(c->near, k->str, k->len);
    if (!token) return plain_get(c, k, r);
    int64_t sent = now_ms();
    const char *get_argv[2] = {"GET", k->str}, *pttl_argv[2] = {"PTTL", k->str};
    size_t lens[2] = {3, k->len}, pttl_lens[2] = {4, k->len};
    rk__cmd cmds[2] = {{2, get_argv, lens}, {2, pttl_argv, pttl_lens}};
    rk_reply *replies[2];
    st = rk__client_pipeline(c->client, 2, cmds, true, replies);
    if (st != RK_OK) {
        rk__near_fill_end(c->near, k->str, k->len, token, NULL, 0, 0, 0);
        return st;
    }
    rk_reply *get = replies[0], *pttl = replies[1];
    if (rk__cache_near_test_hook) rk__cache_near_test_hook(c, k->str, k->len);
    land(c, k->str, k->len, token, get, pttl, sent);
    rk_reply_free(pttl);
    if (get->type == RK_REPLY_ERROR) {
        rk_status err = rk__reply_fail(get, "GET");
        return err;
    }
    *r = get;
    return RK_OK;
}

/* Land the reply of a filling GET (with its PTTL) into the near cache, or
 * cancel the fill (nil, an error, a wrong type). The TTL counts from when
 * the server answered, which is after `sent` (when the read was sent,
 * monotonic ms): counting from `sent` errs on the short side. */
static void land(rk_cache *c, const char *key, size_t klen, uint64_t token, const rk_reply *get, const rk_reply *pttl,
                 int64_t sent)
{
    if (get->type == RK_REPLY_STRING && pttl->type == RK_REPLY_INTEGER && pttl->integer != -2) {
        int64_t expires = pttl->integer == -1 ? 0 : sent + pttl->integer;
        if (pttl->integer >= 0 && expires <= sent) expires = sent; /* about to expire: not kept */
        rk__near_fill_end(c->near, key, klen, token, get->str, get->len, now_ms(), expires);
    } else {
        rk__near_fill_end(c->near, key, klen, token, NULL, 0, 0, 0);
    }
}

rk_status rk__cache_near_mget(rk_cache *c, size_t n, const char *const *keys, const size_t *lens, rk_reply **array)
{
    *array = NULL;
    bool usable = near_usable(c);
    rk_reply *r = rk__calloc(1, sizeof *r);
    rk_reply **elements = rk__calloc(n ? n : 1, sizeof *elements);
    size_t *miss = rk__malloc((n ? n : 1) * sizeof *miss);
    uint64_t *tokens = rk__calloc(n ? n : 1, sizeof *tokens);
    rk__cmd *cmds = rk__malloc(2 * (n ? n : 1) * sizeof *cmds);
    rk_reply **replies = rk__calloc(2 * (n ? n : 1), sizeof *replies);
    const char **argv = rk__malloc(4 * (n ? n : 1) * sizeof *argv);
    size_t *argl = rk__malloc(4 * (n ? n : 1) * sizeof *argl);
    rk_status st = r && elements && miss && tokens && cmds && replies && argv && argl
                       ? RK_OK
                       : rk__fail(RK_ERR_NOMEM, "rk_cache_mget: out of memory");
    size_t nmiss = 0;
    int64_t now = now_ms();
    for (size_t i = 0; i < n && st == RK_OK; i++) {
        void *value;
        size_t len;
        rk_status got = usable ? rk__near_get(c->near, keys[i], lens[i], now, &value, &len) : RK_MISS;
        if (got == RK_OK) got = as_reply(value, len, &elements[i]);
        if (got == RK_OK) continue;
        if (got != RK_MISS) {
            st = got;
            break;
        }
        tokens[nmiss] = usable ? rk__near_fill_begin(c->near, keys[i], lens[i]) : 0;
        miss[nmiss++] = i;
    }
    /* The misses: GET and PTTL of each, pipelined — one round trip, and
     * single-key commands, so keys of any slot may be in one batch. */
    int64_t sent = now_ms();
    if (st == RK_OK && nmiss) {
        for (size_t m = 0; m < nmiss; m++) {
            const char **a = argv + 4 * m;
            size_t *l = argl + 4 * m;
            a[0] = "GET", l[0] = 3, a[1] = keys[miss[m]], l[1] = lens[miss[m]];
            a[2] = "PTTL", l[2] = 4, a[3] = keys[miss[m]], l[3] = lens[miss[m]];
            cmds[2 * m] = (rk__cmd){2, a, l};
            cmds[2 * m + 1] = (rk__cmd){2, a + 2, l + 2};
        }
        st = rk__client_pipeline(c->client, 2 * nmiss, cmds, true, replies);
    }
    for (size_t m = 0; m < nmiss; m++) {
        size_t i = miss[m];
        if (st == RK_OK) {
            if (tokens[m]) land(c, keys[i], lens[i], tokens[m], replies[2 * m], replies[2 * m + 1], sent);
            elements[i] = replies[2 * m];
            replies[2 * m] = NULL;
            if (elements[i]->type == RK_REPLY_ERROR) { /* a key of another type: MGET would say nil */
                rk__free(elements[i]->str);
                elements[i]->str = NULL;
                elements[i]->len = 0;
                elements[i]->type = RK_REPLY_NIL;
            }
            rk_reply_free(replies[2 * m + 1]);
        } else if (tokens[m]) {
            rk__near_fill_end(c->near, keys[i], lens[i], tokens[m], NULL, 0, 0, 0);
        }
    }
    if (st == RK_OK) {
        r->type = RK_REPLY_ARRAY;
        r->elements = n;
        r->element = elements;
        *array = r;
    } else {
        if (elements)
            for (size_t i = 0; i < n; i++) rk_reply_free(elements[i]);
        rk__free(elements);
        rk__free(r);
    }
    rk__free(miss);
    rk__free(tokens);
    rk__free(cmds);
    rk__free(replies);
    rk__free(argv);
    rk__free(argl);
    return st;
}

void rk__cache_near_forget(rk_cache *c, const char *full_key, size_t len)
{
    if (c && c->near) rk__near_forget(c->near, full_key, len);
}

void rk__cache_near_forget_user_key(rk_cache *c, const char *key)
{
    if (!c || !c->near || !key) return;
    rk__key k;
    if (rk__key_make(&k, c->head, c->head_len, key, c->max_key) != RK_OK) return;
    rk__near_forget(c->near, k.str, k.len);
    rk__key_release(&k);
}

void rk__cache_near_clear(rk_cache *c)
{
    if (c && c->near) rk__near_clear(c->near, RK__NEAR_FLUSH_OTHER);
}
