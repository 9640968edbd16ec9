/*
 * limiter.c — rk_limiter: rate limits checked in Redis, in one atomic
 * round trip per call (contract in include/redkit/ratelimit.h).
 *
 * One Lua script serves every call — check, peek, penalty, reward, lease
 * release — for every algorithm, because a limiter's limits must be
 * decided together: the script evaluates each limit on the current state
 * (phase one), and writes the new states only when every limit allowed
 * the request (phase two), so a refusal by one limit consumes from none.
 * Each limit has its own key, "<prefix>:<ns>:{<user key>}:<name>", all of
 * them passed in KEYS and sharing the hash tag {<user key>}: one slot,
 * one script, Cluster-safe. Nothing in the script builds a key name.
 *
 * The limits' parameters travel with every call (as with redis-cell), so
 * a deployment that changes a limit takes effect at once, and the server
 * keeps nothing but state: one string per key and limit (a ZSET of leases
 * for concurrency).
 *
 * The script runs by SHA with its own deadline (the limiter's timeout_ms,
 * or the client's command timeout) through rk__client_pipeline_until, and
 * falls back to EVAL on NOSCRIPT within the same deadline. When Redis
 * cannot answer, the failure policy decides, so a check never waits past
 * its deadline and never refuses for a Redis error unless asked to.
 */
#include <inttypes.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <redkit/keys.h>
#include <redkit/ratelimit.h>

#include "alloc.h"
#include "client.h"
#include "clock.h"
#include "error.h"
#include "keys.h"
#include "rand.h"
#include "limiter_lua.h"
#include "ratelimit.h"
#include "registry.h"
#include "script.h"
#include "sink.h"

/* ARGV: op, cost, fixed now (0 = TIME), offset, lease, then per limit
 * algo, limit, period_us, p1, p2 (see rk__limit_cfg). Reply: per limit
 * allowed, remaining, reset_us, retry_us, used * 1000. */
static rk__script limiter_script = RK__SCRIPT("rate limit", RK__LIMITER_LUA);

/* A block-cache entry: the refusal, with absolute times on the local
 * clock (us). A smaller cost than the one refused might pass, so only as
 * large a cost is answered from the entry. */
typedef struct block_entry {
    int64_t until_us, reset_us, cost, limit;
    size_t decided_by;
} block_entry;

/* ---- metrics -------------------------------------------------------------------- */

static const struct {
    const char *name, *help;
    size_t offset;
} families[] = {
    {"redkit_ratelimit_allowed_total", "Checks answered allowed (any path).",
     offsetof(rk__limiter_counters, allowed)},
    {"redkit_ratelimit_limited_total", "Checks refused (any path).", offsetof(rk__limiter_counters, limited)},
    {"redkit_ratelimit_near_limit_total", "Checks allowed with at least 80 % of the deciding limit used.",
     offsetof(rk__limiter_counters, near_limit)},
    {"redkit_ratelimit_shadow_limited_total", "Shadow mode: checks that would have been refused.",
     offsetof(rk__limiter_counters, shadow_limited)},
    {"redkit_ratelimit_fail_open_total", "Redis failed; allowed by the fail-open policy.",
     offsetof(rk__limiter_counters, fail_open)},
    {"redkit_ratelimit_fail_closed_total", "Redis failed; refused by the fail-closed policy.",
     offsetof(rk__limiter_counters, fail_closed)},
    {"redkit_ratelimit_local_decisions_total", "Redis failed; decided by the local limiter.",
     offsetof(rk__limiter_counters, local_decisions)},
    {"redkit_ratelimit_block_cache_hits_total", "Refusals answered by the local block cache.",
     offsetof(rk__limiter_counters, block_cache_hits)},
    {"redkit_ratelimit_errors_total", "Limiter calls that returned an error.",
     offsetof(rk__limiter_counters, errors)},
};

static uint64_t counter_at(const rk_limiter *l, size_t offset)
{
    return atomic_load_explicit((_Atomic uint64_t *)((char *)&((rk_limiter *)l)->counters + offset),
                                memory_order_relaxed);
}

/* One series per namespace: handles sharing one are summed, so the text
 * never holds the same series twice. No key or IP is ever a label. */
static void limiter_emit(void *const *handles, size_t n, rk__sink *sink)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        rk__sink_family(sink, families[f].name, "counter", families[f].help);
        for (size_t i = 0; i < n; i++) {
            const rk_limiter *l = handles[i];
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++) seen = strcmp(((const rk_limiter *)handles[j])->ns, l->ns) == 0;
            if (seen) continue;
            uint64_t v = 0;
            for (size_t j = i; j < n; j++)
                if (strcmp(((const rk_limiter *)handles[j])->ns, l->ns) == 0) v += counter_at(handles[j], families[f].offset);
            rk__sink_u64(sink, families[f].name, l->ns, NULL, NULL, v);
        }
    }
}

static const rk__module_ops limiter_ops = {.kind = "ratelimit", .emit = limiter_emit};

/* ---- the handle ------------------------------------------------------------------ */

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len > RK_LIMIT_MAX_NAME_BYTES) return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

static rk_status make_cfg(const rk_limit *in, size_t i, rk__limit_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (in->name) {
        size_t len = strlen(in->name);
        if (!name_ok(in->name, len))
            return rk__fail(RK_ERR_INVALID, "limit %zu: name must be 1..%d of [A-Za-z0-9_.-]", i,
                            RK_LIMIT_MAX_NAME_BYTES);
        memcpy(cfg->name, in->name, len);
    } else if (i == 0) {
        strcpy(cfg->name, "default");
    } else {
        snprintf(cfg->name, sizeof cfg->name, "l%zu", i);
    }
    cfg->name_len = strlen(cfg->name);
    if ((unsigned)in->algorithm > RK_LIMIT_CONCURRENCY)
        return rk__fail(RK_ERR_INVALID, "limit \"%s\": unknown algorithm %d", cfg->name, (int)in->algorithm);
    if (in->limit < 1 || in->limit > RK_LIMIT_MAX_VALUE)
        return rk__fail(RK_ERR_INVALID, "limit \"%s\": limit %lld is outside 1..2^40", cfg->name,
                        (long long)in->limit);
    if (in->period_ms < 1 || in->period_ms > RK_LIMIT_MAX_PERIOD_MS)
        return rk__fail(RK_ERR_INVALID, "limit \"%s\": period_ms %lld is outside 1..%lld", cfg->name,
                        (long long)in->period_ms, (long long)RK_LIMIT_MAX_PERIOD_MS);
    if ((in->burst < 0 && !(in->algorithm == RK_LIMIT_GCRA && in->burst == RK_LIMIT_NO_BURST)) ||
        in->burst > RK_LIMIT_MAX_VALUE)
        return rk__fail(RK_ERR_INVALID, "limit \"%s\": burst %lld is out of range", cfg->name,
                        (long long)in->burst);
    cfg->algo = in->algorithm;
    cfg->limit = in->limit;
    cfg->period_us = in->period_ms * 1000;
    cfg->quota = in->limit;
    switch (in->algorithm) {
    case RK_LIMIT_GCRA: {
        int64_t burst = in->burst == 0 ? in->limit - 1 : in->burst == RK_LIMIT_NO_BURST ? 0 : in->burst;
        cfg->p1 = cfg->period_us / in->limit;
        if (cfg->p1 < 1)
            return rk__fail(RK_ERR_INVALID, "limit \"%s\": more than one request per microsecond", cfg->name);
        /* tau must stay exact in Lua's doubles. */
        if ((double)cfg->p1 * (double)(burst + 1) > 4503599627370496.0)
            return rk__fail(RK_ERR_INVALID, "limit \"%s\": burst %lld is too large for the period", cfg->name,
                            (long long)burst);
        cfg->p2 = cfg->p1 * (burst + 1);
        cfg->quota = burst + 1;
        break;
    }
    case RK_LIMIT_TOKEN_BUCKET:
        cfg->p1 = in->burst ? in->burst : in->limit;
        cfg->quota = cfg->p1;
        break;
    case RK_LIMIT_FIXED_WINDOW:
        cfg->p1 = in->aligned ? 1 : 0;
        break;
    default:
        break;
    }
    const int64_t v[4] = {cfg->limit, cfg->period_us, cfg->p1, cfg->p2};
    for (size_t k = 0; k < 4; k++)
        cfg->args_len[k] = (size_t)snprintf(cfg->args[k], sizeof cfg->args[k], "%lld", (long long)v[k]);
    return RK_OK;
}

rk_status rk_limiter_new(rk_client *client, const rk_limiter_options *opts, rk_limiter **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_limiter_new: out is NULL");
    *out = NULL;
    if (!client) return rk__fail(RK_ERR_INVALID, "rk_limiter_new: client is NULL");
    if (!opts) return rk__fail(RK_ERR_INVALID, "rk_limiter_new: options are required (they hold the limits)");
    if (!opts->limits || opts->nlimits < 1 || opts->nlimits > RK_LIMITER_MAX_LIMITS)
        return rk__fail(RK_ERR_INVALID, "rk_limiter_new: 1..%d limits required, got %zu", RK_LIMITER_MAX_LIMITS,
                        opts->limits ? opts->nlimits : 0);
    if ((unsigned)opts->failure_policy > RK_LIMIT_FAIL_LOCAL)
        return rk__fail(RK_ERR_INVALID, "rk_limiter_new: unknown failure policy %d", (int)opts->failure_policy);
    if (opts->timeout_ms < 0 || opts->timeout_ms > 60000)
        return rk__fail(RK_ERR_INVALID, "rk_limiter_new: timeout_ms %d is outside 0..60000", opts->timeout_ms);
    if (opts->block_cache_keys > ((size_t)1 << 24) || opts->local_keys > ((size_t)1 << 24))
        return rk__fail(RK_ERR_INVALID, "rk_limiter_new: block_cache_keys and local_keys are at most 2^24");
    if (opts->max_key_bytes > ((size_t)1 << 20))
        return rk__fail(RK_ERR_INVALID, "rk_limiter_new: max_key_bytes is at most 1 MiB");
    const char *ns = opts->ns ? opts->ns : RK_LIMITER_DEFAULT_NAMESPACE;
    rk_status st = rk__key_check_name("namespace", ns);
    if (st != RK_OK) return st;

    rk_limiter *l = rk__calloc(1, sizeof *l);
    if (!l) return rk__fail(RK_ERR_NOMEM, "limiter: out of memory");
    l->client = client;
    l->n = opts->nlimits;
    for (size_t i = 0; i < l->n && st == RK_OK; i++) {
        st = make_cfg(&opts->limits[i], i, &l->cfg[i]);
        for (size_t j = 0; j < i && st == RK_OK; j++)
            if (strcmp(l->cfg[i].name, l->cfg[j].name) == 0)
                st = rk__fail(RK_ERR_INVALID, "limit name \"%s\" appears twice", l->cfg[i].name);
        if (l->cfg[i].algo == RK_LIMIT_CONCURRENCY) l->has_concurrency = true;
    }
    l->policy = opts->failure_policy;
    l->timeout_ms = opts->timeout_ms;
    l->shadow = opts->shadow;
    l->block_cache = opts->block_cache && !l->has_concurrency && !opts->shadow;
    l->max_key = opts->max_key_bytes ? opts->max_key_bytes : RK_DEFAULT_MAX_KEY_BYTES;
    if (st == RK_OK) {
        l->ns = rk__strdup(ns);
        if (!l->ns) st = rk__fail(RK_ERR_NOMEM, "limiter: out of memory");
    }
    if (st == RK_OK) st = rk__key_head(client, ns, &l->head, &l->head_len);
    if (st == RK_OK) {
        st = rk__rl_table_init(&l->blocks, opts->block_cache_keys ? opts->block_cache_keys
                                                                  : RK_LIMITER_DEFAULT_BLOCK_KEYS,
                               sizeof(block_entry));
        l->blocks_ready = st == RK_OK;
    }
    if (st == RK_OK) {
        st = rk__rl_table_init(&l->local, opts->local_keys ? opts->local_keys : RK_LIMITER_DEFAULT_LOCAL_KEYS,
                               sizeof(rk__rl_cell) * l->n);
        l->local_ready = st == RK_OK;
    }
    if (st == RK_OK) {
        st = rk__registry_add(client, l, &limiter_ops);
        l->registered = st == RK_OK;
    }
    if (st != RK_OK) {
        rk_limiter_free(l);
        return st;
    }
    *out = l;
    return RK_OK;
}

void rk_limiter_free(rk_limiter *l)
{
    if (!l) return;
    /* First: after this no scrape reads the handle (registry.h). */
    if (l->registered) rk__registry_remove(l->client, l);
    if (l->blocks_ready) rk__rl_table_destroy(&l->blocks);
    if (l->local_ready) rk__rl_table_destroy(&l->local);
    rk__free(l->head);
    rk__free(l->ns);
    rk__free(l);
}

void rk__limiter_test_clock(rk_limiter *l, int64_t fixed_now_us, int64_t offset_us)
{
    atomic_store(&l->fixed_now_us, fixed_now_us);
    atomic_store(&l->offset_us, offset_us);
}

void rk__limiter_local_clock(rk_limiter *l, int64_t (*now_us)(void *ctx), void *ctx)
{
    l->local_now = now_us;
    l->local_ctx = ctx;
}

static int64_t local_now(const rk_limiter *l)
{
    return l->local_now ? l->local_now(l->local_ctx) : rk__now_ns() / 1000;
}

#define COUNT(l, field) atomic_fetch_add_explicit(&(l)->counters.field, 1, memory_order_relaxed)

/* ---- keys ------------------------------------------------------------------------- */

/* The keys of one call: "<head>{<key>}:<name>" per limit, in one buffer. */
typedef struct keyset {
    const char *keys[RK_LIMITER_MAX_LIMITS];
    size_t lens[RK_LIMITER_MAX_LIMITS];
    char *heap;
    char stack[1024];
} keyset;

static rk_status check_key(const rk_limiter *l, const char *key, size_t *klen)
{
    if (!key) return rk__fail(RK_ERR_INVALID, "rate limit key is NULL");
    *klen = strlen(key);
    if (*klen == 0) return rk__fail(RK_ERR_INVALID, "rate limit key is empty");
    if (*klen > l->max_key)
        return rk__fail(RK_ERR_TOO_LARGE, "rate limit key of %zu bytes is over the maximum of %zu", *klen,
                        l->max_key);
    return RK_OK;
}

static rk_status build_keys(const rk_limiter *l, const char *key, size_t klen, keyset *ks)
{
    size_t total = 0;
    for (size_t i = 0; i < l->n; i++) total += l->head_len + klen + 3 + l->cfg[i].name_len;
    char *p = ks->stack;
    ks->heap = NULL;
    if (total > sizeof ks->stack) {
        p = ks->heap = rk__malloc(total);
        if (!p) return rk__fail(RK_ERR_NOMEM, "limiter: out of memory");
    }
    for (size_t i = 0; i < l->n; i++) {
        ks->keys[i] = p;
        memcpy(p, l->head, l->head_len);
        p += l->head_len;
        *p++ = '{';
        memcpy(p, key, klen);
        p += klen;
        *p++ = '}';
        *p++ = ':';
        memcpy(p, l->cfg[i].name, l->cfg[i].name_len);
        p += l->cfg[i].name_len;
        ks->lens[i] = (size_t)(p - ks->keys[i]);
    }
    return RK_OK;
}

/* ---- running the script --------------------------------------------------------- */

const char rk__limiter_algo_code[5] = {'g', 's', 'f', 't', 'c'};

rk__script *rk__limiter_script(void)
{
    return &limiter_script;
}

/* Decimal digits of v into buf (at least 21 bytes); returns the length.
 * A check formats a few numbers per call: cheaper than snprintf. */
static size_t fmt_i64(char *buf, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0) buf[len++] = '-';
    while (n) buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

int64_t rk__limiter_deadline(const rk_limiter *l)
{
    return l->timeout_ms ? rk__now_ns() + (int64_t)l->timeout_ms * 1000000 : rk__client_deadline(l->client);
}

/* The script's ARGV for op and cost into c (KEYS are already there). */
static void build_args(rk__limit_call *c, const char *lease)
{
    const rk_limiter *l = c->l;
    char *np = c->nums;
    size_t a = 0;
#define NUM(v)                                                                   \
    do {                                                                         \
        size_t w_ = fmt_i64(np, (v));                                            \
        c->args[a] = np;                                                         \
        c->arglens[a++] = w_;                                                    \
        np += w_ + 1;                                                            \
    } while (0)
    c->opc = (char)c->op;
    c->args[a] = &c->opc;
    c->arglens[a++] = 1;
    NUM(c->cost);
    NUM(atomic_load(&((rk_limiter *)l)->fixed_now_us));
    NUM(atomic_load(&((rk_limiter *)l)->offset_us));
#undef NUM
    c->args[a] = lease ? lease : "";
    c->arglens[a++] = lease ? strlen(lease) : 0;
    for (size_t i = 0; i < l->n; i++) {
        const rk__limit_cfg *cfg = &l->cfg[i];
        c->args[a] = &rk__limiter_algo_code[cfg->algo];
        c->arglens[a++] = 1;
        for (size_t k = 0; k < 4; k++) {
            c->args[a] = cfg->args[k];
            c->arglens[a++] = cfg->args_len[k];
        }
    }
    c->nargs = a;
}

rk_status rk__limiter_run(rk__limit_call *c, rk__script *script, size_t npre_keys, const char *const *pre_keys,
                          const size_t *pre_keylens, size_t npre_args, const char *const *pre_args,
                          const size_t *pre_arglens, rk_reply **reply)
{
    enum { MAX = 3 + RK__LIMIT_PRE_MAX + RK_LIMITER_MAX_LIMITS + RK__LIMIT_PRE_MAX + RK__LIMIT_MAX_ARGS };
    *reply = NULL;
    if (npre_keys > RK__LIMIT_PRE_MAX || npre_args > RK__LIMIT_PRE_MAX)
        return rk__fail(RK_ERR_INVALID, "rate limit: too many keys or arguments around the check");
    const char *argv[MAX];
    size_t lens[MAX];
    char nkeys[24];
    size_t a = 0;
    const char *sha = rk__script_sha(script);
    argv[a] = sha ? "EVALSHA" : "EVAL";
    lens[a++] = sha ? 7 : 4;
    argv[a] = sha ? sha : script->source;
    lens[a++] = sha ? RK__SHA1_HEX : script->source_len;
    argv[a] = nkeys;
    lens[a++] = fmt_i64(nkeys, (int64_t)(npre_keys + c->l->n));
    for (size_t i = 0; i < npre_keys; i++) {
        argv[a] = pre_keys[i];
        lens[a++] = pre_keylens[i];
    }
    for (size_t i = 0; i < c->l->n; i++) {
        argv[a] = c->keys[i];
        lens[a++] = c->keylens[i];
    }
    for (size_t i = 0; i < npre_args; i++) {
        argv[a] = pre_args[i];
        lens[a++] = pre_arglens[i];
    }
    for (size_t i = 0; i < c->nargs; i++) {
        argv[a] = c->args[i];
        lens[a++] = c->arglens[i];
    }
    int64_t deadline = rk__limiter_deadline(c->l);
    rk__cmd cmd = {.argc = (int)a, .argv = argv, .argvlen = lens};
    rk_reply *r = NULL;
    rk_status st = rk__client_pipeline_until(c->l->client, 1, &cmd, false, &r, deadline);
    if (st == RK_OK && sha && rk__script_is_noscript(r)) {
        /* The server lost its script cache (restart, failover, SCRIPT
         * FLUSH): send the text once, within the same deadline. */
        rk_reply_free(r);
        r = NULL;
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = script->source;
        lens[1] = script->source_len;
        st = rk__client_pipeline_until(c->l->client, 1, &cmd, false, &r, deadline);
    }
    if (st != RK_OK) return st;
    if (r->type == RK_REPLY_ERROR) {
        st = rk__fail(RK_ERR_SERVER, "%s script: %.200s", script->name, r->str ? r->str : "");
        rk_reply_free(r);
        return st;
    }
    *reply = r;
    return RK_OK;
}

/* Whether r has the shape of the limiter script's reply for l. */
static bool reply_ok(const rk_limiter *l, const rk_reply *r)
{
    if (!r || r->type != RK_REPLY_ARRAY || r->elements != 5 * l->n) return false;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type != RK_REPLY_INTEGER) return false;
    return true;
}

static int64_t us_to_ms(long long us)
{
    return us < 0 ? -1 : (int64_t)((us + 999) / 1000);
}

/* Pick the deciding limit and fill the result's summary fields. */
static void decide(const rk_limiter *l, rk_limit_result *res)
{
    bool all = true;
    size_t d = 0;
    for (size_t i = 0; i < res->nlimits; i++)
        if (!res->limits[i].allowed) all = false;
    for (size_t i = 0; i < res->nlimits; i++) {
        const rk_limit_state *s = &res->limits[i], *b = &res->limits[d];
        if (all) {
            if (s->remaining < b->remaining) d = i;
        } else if (!s->allowed) {
            if (b->allowed) d = i;
            else if (b->retry_after_ms >= 0 && (s->retry_after_ms < 0 || s->retry_after_ms > b->retry_after_ms))
                d = i;
        }
    }
    res->allowed = all;
    res->decided_by = d;
    res->decided_name = l->cfg[d].name;
    if (res->nlimits) {
        res->limit = res->limits[d].limit;
        res->remaining = res->limits[d].remaining;
        res->reset_ms = res->limits[d].reset_ms;
        res->retry_after_ms = res->limits[d].retry_after_ms;
    }
}

/* ---- the local limiter and the block cache ----------------------------------- */

static rk_status local_eval(rk_limiter *l, const char *key, size_t klen, int op, int64_t cost,
                            rk_limit_result *res)
{
    int64_t now = local_now(l);
    pthread_mutex_lock(&l->local.mu);
    rk__rl_cell *cells = rk__rl_table_get(&l->local, key, klen, true, NULL);
    if (!cells) {
        pthread_mutex_unlock(&l->local.mu);
        return rk__fail(RK_ERR_NOMEM, "limiter: out of memory (local limiter)");
    }
    /* As the script: a check decides every limit first (consuming
     * nothing), and consumes only when all of them allow it. */
    rk__rl_cell next[RK_LIMITER_MAX_LIMITS];
    bool all = true;
    int first = op == RK__OP_CHECK ? RK__OP_DRY : op;
    for (size_t i = 0; i < l->n; i++)
        if (!rk__rl_eval(&l->cfg[i], &cells[i], first, cost, now, &res->limits[i], &next[i])) all = false;
    if (all && op == RK__OP_CHECK)
        for (size_t i = 0; i < l->n; i++) rk__rl_eval(&l->cfg[i], &cells[i], op, cost, now, &res->limits[i], &next[i]);
    if ((all && op == RK__OP_CHECK) || op == RK__OP_PENALTY || op == RK__OP_REWARD || op == RK__OP_RELEASE)
        memcpy(cells, next, sizeof(rk__rl_cell) * l->n);
    pthread_mutex_unlock(&l->local.mu);
    res->nlimits = l->n;
    decide(l, res);
    return RK_OK;
}

static bool block_lookup(rk_limiter *l, const char *key, size_t klen, int64_t cost, rk_limit_result *res)
{
    int64_t now = local_now(l);
    bool hit = false;
    pthread_mutex_lock(&l->blocks.mu);
    block_entry *e = rk__rl_table_get(&l->blocks, key, klen, false, NULL);
    if (e) {
        if (now >= e->until_us) {
            rk__rl_table_remove(&l->blocks, key, klen);
        } else if (cost >= e->cost) {
            res->allowed = false;
            res->decided_by = e->decided_by;
            res->decided_name = l->cfg[e->decided_by].name;
            res->limit = e->limit;
            res->remaining = 0;
            res->retry_after_ms = (e->until_us - now + 999) / 1000;
            res->reset_ms = e->reset_us > now ? (e->reset_us - now + 999) / 1000 : 0;
            if (res->reset_ms < res->retry_after_ms) res->reset_ms = res->retry_after_ms;
            res->path = RK_LIMIT_PATH_BLOCK_CACHE;
            hit = true;
        }
    }
    pthread_mutex_unlock(&l->blocks.mu);
    return hit;
}

static void block_store(rk_limiter *l, const char *key, size_t klen, int64_t cost, const rk_limit_result *res)
{
    if (res->retry_after_ms <= 0) return; /* never passes, or nothing to wait for */
    int64_t now = local_now(l);
    pthread_mutex_lock(&l->blocks.mu);
    block_entry *e = rk__rl_table_get(&l->blocks, key, klen, true, NULL);
    if (e) {
        e->until_us = now + res->retry_after_ms * 1000;
        e->reset_us = now + res->reset_ms * 1000;
        e->cost = cost;
        e->limit = res->limit;
        e->decided_by = res->decided_by;
    }
    pthread_mutex_unlock(&l->blocks.mu);
}

static void forget_local(rk_limiter *l, const char *key, size_t klen)
{
    pthread_mutex_lock(&l->blocks.mu);
    rk__rl_table_remove(&l->blocks, key, klen);
    pthread_mutex_unlock(&l->blocks.mu);
    pthread_mutex_lock(&l->local.mu);
    rk__rl_table_remove(&l->local, key, klen);
    pthread_mutex_unlock(&l->local.mu);
}

/* ---- the calls -------------------------------------------------------------------- */

static bool make_lease(char *lease)
{
    unsigned char b[RK_LEASE_ID_BYTES / 2];
    if (!rk__fill_random(b, sizeof b)) return false;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) {
        lease[2 * i] = hex[b[i] >> 4];
        lease[2 * i + 1] = hex[b[i] & 15];
    }
    lease[RK_LEASE_ID_BYTES] = '\0';
    return true;
}

/* Redis leases start with a hex digit 0-7, local ones with 8-f, so a
 * release knows which side took the lease. */
static void mark_lease(char *lease, bool local)
{
    static const char hex[] = "0123456789abcdef";
    unsigned v = (unsigned)(strchr(hex, lease[0]) - hex) & 7u;
    lease[0] = hex[v | (local ? 8u : 0u)];
}

static bool redis_failure(rk_status st)
{
    return st != RK_OK && st != RK_ERR_NOMEM && st != RK_ERR_INVALID;
}

static void count_result(rk_limiter *l, const rk_limit_result *r)
{
    if (r->allowed && !r->shadow_limited) {
        COUNT(l, allowed);
        if (r->limit > 0 && (r->limit - r->remaining) * 5 >= r->limit * 4) COUNT(l, near_limit);
    } else if (r->shadow_limited) {
        COUNT(l, allowed);
        COUNT(l, shadow_limited);
    } else {
        COUNT(l, limited);
    }
    if (r->path == RK_LIMIT_PATH_FAIL_OPEN) COUNT(l, fail_open);
    else if (r->path == RK_LIMIT_PATH_FAIL_CLOSED) COUNT(l, fail_closed);
    else if (r->path == RK_LIMIT_PATH_LOCAL) COUNT(l, local_decisions);
    else if (r->path == RK_LIMIT_PATH_BLOCK_CACHE) COUNT(l, block_cache_hits);
}

static rk_status fail(rk_limiter *l, rk_status st)
{
    if (l) COUNT(l, errors);
    return st;
}

rk_status rk__limiter_begin(rk_limiter *l, const char *key, int op, int64_t cost, const char *lease_in,
                            rk_limit_result *res, rk__limit_call *c)
{
    memset(res, 0, sizeof *res);
    c->l = l;
    c->answered = false;
    c->heap = NULL;
    if (!l) return rk__fail(RK_ERR_INVALID, "rate limit: limiter is NULL");
    size_t klen = 0;
    rk_status st = check_key(l, key, &klen);
    if (st != RK_OK) return fail(l, st);
    if (cost < 0 || cost > RK_LIMIT_MAX_VALUE)
        return fail(l, rk__fail(RK_ERR_INVALID, "rate limit: cost %lld is outside 0..2^40", (long long)cost));
    if (op == RK__OP_CHECK && cost == 0) op = RK__OP_PEEK;
    if (op == RK__OP_CHECK && cost > 1 && l->has_concurrency)
        return fail(l, rk__fail(RK_ERR_INVALID, "rate limit: cost %lld with a concurrency limit (0 or 1)",
                                (long long)cost));
    c->key = key;
    c->klen = klen;
    c->op = op;
    c->cost = cost;
    if (op == RK__OP_CHECK && l->block_cache && block_lookup(l, key, klen, cost, res)) {
        count_result(l, res);
        c->answered = true;
        return RK_OK;
    }
    c->lease[0] = '\0';
    if (op == RK__OP_CHECK && l->has_concurrency) {
        if (!make_lease(c->lease)) return fail(l, rk__fail(RK_ERR_SYSTEM, "rate limit: no random bytes for a lease"));
        mark_lease(c->lease, false);
    }
    keyset ks;
    st = build_keys(l, key, klen, &ks);
    if (st != RK_OK) return fail(l, st);
    /* ks's buffers move into c (the keys point into c->stack or heap). */
    if (ks.heap) {
        c->heap = ks.heap;
        for (size_t i = 0; i < l->n; i++) c->keys[i] = ks.keys[i];
    } else {
        memcpy(c->stack, ks.stack, sizeof c->stack);
        for (size_t i = 0; i < l->n; i++) c->keys[i] = c->stack + (ks.keys[i] - ks.stack);
    }
    memcpy(c->keylens, ks.lens, sizeof(size_t) * l->n);
    build_args(c, lease_in ? lease_in : c->lease);
    return RK_OK;
}

void rk__limiter_cancel(rk__limit_call *c)
{
    rk__free(c->heap);
    c->heap = NULL;
}

rk_status rk__limiter_end(rk__limit_call *c, rk_status st, const rk_reply *r, rk_limit_result *res)
{
    rk_limiter *l = c->l;
    int op = c->op;
    rk__free(c->heap);
    c->heap = NULL;
    if (st == RK_OK && !reply_ok(l, r)) st = rk__fail(RK_ERR_PROTOCOL, "rate limit script: unexpected reply shape");
    if (st == RK_OK) {
        res->nlimits = l->n;
        for (size_t i = 0; i < l->n; i++) {
            rk_limit_state *s = &res->limits[i];
            rk_reply *const *e = r->element + 5 * i;
            s->allowed = e[0]->integer != 0;
            s->limit = l->cfg[i].quota;
            s->remaining = e[1]->integer;
            s->reset_ms = us_to_ms(e[2]->integer);
            s->retry_after_ms = s->allowed ? 0 : us_to_ms(e[3]->integer);
            s->used = (double)e[4]->integer / 1000.0;
        }
        decide(l, res);
        res->path = RK_LIMIT_PATH_REDIS;
        if (op == RK__OP_CHECK && !res->allowed && l->block_cache) block_store(l, c->key, c->klen, c->cost, res);
    } else if (!redis_failure(st)) {
        return fail(l, st);
    } else if (op != RK__OP_CHECK && op != RK__OP_PEEK) {
        return fail(l, st); /* penalty, reward, release need Redis */
    } else {
        res->redis_status = st;
        if (l->policy == RK_LIMIT_FAIL_LOCAL) {
            rk_status ls = local_eval(l, c->key, c->klen, op, c->cost, res);
            if (ls != RK_OK) return fail(l, ls);
            res->redis_status = st;
            res->path = RK_LIMIT_PATH_LOCAL;
            if (c->lease[0] && res->allowed) mark_lease(c->lease, true);
        } else {
            res->allowed = l->policy == RK_LIMIT_FAIL_OPEN;
            res->path = res->allowed ? RK_LIMIT_PATH_FAIL_OPEN : RK_LIMIT_PATH_FAIL_CLOSED;
            res->decided_name = l->cfg[0].name;
            res->limit = l->cfg[0].quota;
            /* fail closed: come back in a second, Redis may be back. */
            res->retry_after_ms = res->allowed ? 0 : 1000;
            res->reset_ms = res->retry_after_ms;
        }
        /* Keep the cause for the caller: the decision is an answer. */
        rk__fail(st, "rate limit: Redis did not answer (%s); decided by the %s policy", rk_strerror(st),
                 l->policy == RK_LIMIT_FAIL_LOCAL ? "local" : l->policy == RK_LIMIT_FAIL_OPEN ? "fail-open"
                                                                                              : "fail-closed");
    }
    if (op == RK__OP_CHECK && res->allowed && c->lease[0]) memcpy(res->lease, c->lease, sizeof c->lease);
    if (op == RK__OP_CHECK || op == RK__OP_PEEK) {
        if (l->shadow && !res->allowed) {
            res->allowed = true;
            res->shadow_limited = true;
        }
        if (op == RK__OP_CHECK) count_result(l, res);
    }
    return RK_OK;
}

/* One call: validate, build the keys, run the script (or answer from
 * the block cache, or by the failure policy). */
static rk_status call(rk_limiter *l, const char *key, int op, int64_t cost, const char *lease_in,
                      rk_limit_result *out)
{
    rk_limit_result tmp;
    rk_limit_result *res = out ? out : &tmp;
    if (out) memset(out, 0, sizeof *out);
    if (!l) return rk__fail(RK_ERR_INVALID, "rate limit: limiter is NULL");
    if ((op == RK__OP_CHECK || op == RK__OP_PEEK) && !out)
        return fail(l, rk__fail(RK_ERR_INVALID, "rate limit: result is NULL"));
    rk__limit_call c;
    rk_status st = rk__limiter_begin(l, key, op, cost, lease_in, res, &c);
    if (st != RK_OK || c.answered) return st;
    rk_reply *r = NULL;
    st = rk__limiter_run(&c, &limiter_script, 0, NULL, NULL, 0, NULL, NULL, &r);
    st = rk__limiter_end(&c, st, r, res);
    rk_reply_free(r);
    return st;
}

rk_status rk_limiter_check(rk_limiter *l, const char *key, int64_t cost, rk_limit_result *out)
{
    return call(l, key, RK__OP_CHECK, cost, NULL, out);
}

rk_status rk_limiter_peek(rk_limiter *l, const char *key, rk_limit_result *out)
{
    return call(l, key, RK__OP_PEEK, 0, NULL, out);
}

rk_status rk_limiter_penalty(rk_limiter *l, const char *key, int64_t cost, rk_limit_result *out)
{
    return call(l, key, RK__OP_PENALTY, cost, NULL, out);
}

rk_status rk_limiter_reward(rk_limiter *l, const char *key, int64_t cost, rk_limit_result *out)
{
    rk_status st = call(l, key, RK__OP_REWARD, cost, NULL, out);
    if (st == RK_OK) {
        size_t klen = strlen(key);
        pthread_mutex_lock(&l->blocks.mu);
        rk__rl_table_remove(&l->blocks, key, klen);
        pthread_mutex_unlock(&l->blocks.mu);
    }
    return st;
}

rk_status rk_limiter_release(rk_limiter *l, const char *key, const char *lease)
{
    if (!l) return rk__fail(RK_ERR_INVALID, "rate limit: limiter is NULL");
    if (!lease || strlen(lease) != RK_LEASE_ID_BYTES || strspn(lease, "0123456789abcdef") != RK_LEASE_ID_BYTES)
        return fail(l, rk__fail(RK_ERR_INVALID, "rate limit: lease must be %d hex digits", RK_LEASE_ID_BYTES));
    if (strchr("89abcdef", lease[0])) {
        /* Taken by the local limiter while Redis was away. */
        size_t klen = 0;
        rk_status st = check_key(l, key, &klen);
        if (st != RK_OK) return fail(l, st);
        rk_limit_result res;
        memset(&res, 0, sizeof res);
        return local_eval(l, key, klen, RK__OP_RELEASE, 0, &res);
    }
    return call(l, key, RK__OP_RELEASE, 0, lease, NULL);
}

rk_status rk_limiter_reset(rk_limiter *l, const char *key)
{
    if (!l) return rk__fail(RK_ERR_INVALID, "rate limit: limiter is NULL");
    size_t klen = 0;
    rk_status st = check_key(l, key, &klen);
    if (st != RK_OK) return fail(l, st);
    forget_local(l, key, klen);
    keyset ks;
    st = build_keys(l, key, klen, &ks);
    if (st != RK_OK) return fail(l, st);
    const char *argv[1 + RK_LIMITER_MAX_LIMITS];
    size_t lens[1 + RK_LIMITER_MAX_LIMITS];
    argv[0] = "DEL";
    lens[0] = 3;
    for (size_t i = 0; i < l->n; i++) {
        argv[i + 1] = ks.keys[i];
        lens[i + 1] = ks.lens[i];
    }
    rk_reply *r = NULL;
    /* One DEL for all keys: they share a hash tag, so this is one slot. */
    st = rk__client_run(l->client, (int)l->n + 1, argv, lens, false, &r);
    rk__free(ks.heap);
    rk_reply_free(r);
    return st == RK_OK ? RK_OK : fail(l, st);
}

rk_status rk_limiter_metrics_get(const rk_limiter *l, rk_limiter_metrics *out)
{
    if (!l || !out) return rk__fail(RK_ERR_INVALID, "rk_limiter_metrics_get: NULL argument");
    rk_limiter *m = (rk_limiter *)l; /* atomics are read, never written */
    out->allowed = atomic_load_explicit(&m->counters.allowed, memory_order_relaxed);
    out->limited = atomic_load_explicit(&m->counters.limited, memory_order_relaxed);
    out->near_limit = atomic_load_explicit(&m->counters.near_limit, memory_order_relaxed);
    out->shadow_limited = atomic_load_explicit(&m->counters.shadow_limited, memory_order_relaxed);
    out->fail_open = atomic_load_explicit(&m->counters.fail_open, memory_order_relaxed);
    out->fail_closed = atomic_load_explicit(&m->counters.fail_closed, memory_order_relaxed);
    out->local_decisions = atomic_load_explicit(&m->counters.local_decisions, memory_order_relaxed);
    out->block_cache_hits = atomic_load_explicit(&m->counters.block_cache_hits, memory_order_relaxed);
    out->errors = atomic_load_explicit(&m->counters.errors, memory_order_relaxed);
    return RK_OK;
}
