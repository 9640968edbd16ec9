/*
 * cache_tags.c — tagged sets, tag invalidation and namespace clear
 * (contract in include/redkit/cache.h).
 *
 * Tags. A tag is a Redis sorted set, "<prefix>:<ns>#tag:<tag>", of the
 * full names of the keys set with that tag, each scored by the time its
 * tagged value expires (ms on the server's clock; +inf without TTL).
 * Storing a tagged value and recording it in its tag sets is one Lua
 * script, so no reader ever sees a tagged value missing from its tag;
 * invalidating a tag (the members still live, UNLINKed with the set) is
 * one script too, so a value set with the tag either is removed or was
 * written after the invalidation. UNLINK of a member whose value was
 * deleted counts nothing, so the count reported is what was removed.
 *
 * Memory. The scores are what bound a tag set. A plain set could only
 * have its TTL pushed forward by each store, so a tag written at least
 * once per TTL never expired and kept every key it ever named. Now each
 * store first drops the members whose time has passed (ZREMRANGEBYSCORE:
 * it touches those only, and each member is dropped once, so the work is
 * paid for by the store that added it), then sets the set's expiry to its
 * highest score. A tag set therefore holds at most the members that were
 * live at its last store, and goes when the last of them expires, however
 * busy the tag. A member whose time has passed is no longer the tag's even
 * before it is dropped: invalidation skips it (ZCOUNT finds where the live
 * members start), so a key re-set without the tag after its tagged value
 * expired is never removed by the tag, whatever the timing of stores.
 *
 * Clock. Both scripts read the server's clock (TIME), the clock Redis
 * expires keys by, so scores and expiries agree however wrong a client's
 * clock is. A script may write after TIME since effects replication
 * became the default (Redis 5; the only mode since 7.0): replicas and the
 * AOF get the ZADD with the computed score and an absolute PEXPIREAT, not
 * the script. The store script reads TIME after its SETs, so a score is
 * never earlier than the expiry Redis gave the value.
 *
 * Clear. SCAN never blocks the server the way KEYS does, but it gives
 * weaker guarantees: a key may be returned twice (UNLINK of it then counts
 * 0) and keys written while the scan runs may or may not be seen. The
 * MATCH pattern is "<escaped prefix:ns>[:#]*", so one scan (and one
 * resumable cursor) covers both the values ("...:ns:") and the cache's
 * bookkeeping ("...:ns#"), and nothing else: the character after the
 * namespace must be ':' or '#', which rules out "cache2:..." and, since
 * the client prefix comes first, "shopping:..." for "shop". The keys found
 * are split on the client: values and tag sets are unlinked (two UNLINKs,
 * pipelined, so that only values are counted); fetch locks ("...#lock:")
 * are left alone: they live for lock_ms at most, and removing one would
 * let a second process start the same computation.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/cache.h>

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "clock.h"
#include "error.h"
#include "keys.h"
#include "reply.h"
#include "script.h"
#include "value.h"

/* Entries per store script: a script blocks the server while it runs,
 * and each entry costs one SET and one sorted-set member per tag; 256
 * entries with 32 tags keep one script at a few milliseconds. */
#define STORE_CHUNK 256
/* Members read (ZRANGE) and UNLINKed per step inside the invalidation
 * script: Lua's unpack() is limited by the C stack (LUAI_MAXCSTACK, 8000),
 * and the script's memory stays that of one batch. */
#define INVALIDATE_CHUNK "1000"
/* Rounds of a tagged batch: the EVALSHAs, then the chunks refused with
 * NOSCRIPT (the first in full), then, should a SCRIPT FLUSH land in
 * between, once more. */
#define STORE_ROUNDS 3
/* SCAN COUNT of a clear: about this many hash slots visited per round. */
#define CLEAR_COUNT "1000"
/* A second bound on a clear's loop, besides its time budget. */
#define CLEAR_MAX_ROUNDS ((size_t)1 << 20)

#define TAG_INFIX "tag:"
#define TAG_INFIX_LEN 4

/* clock(): the server's time in ms. The scripts turn it into `past`, the
 * exclusive bound "(now" of the members whose time has passed: Redis keeps
 * a key while its expiry time is not below the clock, so a member scored
 * exactly now is still live. string.format, not tostring, which keeps 14
 * significant digits only. */
#define LUA_NOW                                                                       \
    "local function clock()\n"                                                        \
    "  local t = redis.call('TIME')\n"                                                \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"           \
    "end\n"

/* The error of a tag set of another Redis type: the earlier format (a
 * plain set) is not migrated, and nothing is written or removed. */
#define LUA_WRONGTYPE(what)                                                           \
    "'WRONGTYPE " what " is not a sorted set (a tag set of an earlier redkit " \
    "format?): nothing was done; UNLINK it (rk_cache_clear does) to start the tag afresh'"

/*
 * KEYS: n value keys, then the tag sets. ARGV[1]: TTL in ms ("0" = none),
 * ARGV[2..n+1]: the n values. First every tag set is trimmed of the
 * members whose time has passed, which also checks its type before
 * anything is written (redis.pcall, to turn WRONGTYPE into a clear error;
 * any other error is returned as it is). Then the values, then each set:
 * the keys added at score now + TTL (+inf without TTL), and the set's own
 * expiry moved to its highest score (PERSIST when that is +inf). The
 * expiry may go down as well as up: it is the longest-lived member's.
 */
static rk__script store_script = RK__SCRIPT("cache tag store",
    LUA_NOW
    "local n = #ARGV - 1\n"
    "local px = ARGV[1]\n"
    "local ttl = tonumber(px)\n"
    "local past = '(' .. string.format('%.0f', clock())\n"
    "for s = n + 1, #KEYS do\n"
    "  local r = redis.pcall('ZREMRANGEBYSCORE', KEYS[s], '-inf', past)\n"
    "  if type(r) == 'table' and r.err then\n"
    "    if string.find(r.err, 'WRONGTYPE', 1, true) then\n"
    "      return redis.error_reply(" LUA_WRONGTYPE("the tag set of tags[' .. (s - n - 1) .. ']") ")\n"
    "    end\n"
    "    return r\n"
    "  end\n"
    "end\n"
    "for i = 1, n do\n"
    "  if ttl > 0 then\n"
    "    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', px)\n"
    "  else\n"
    "    redis.call('SET', KEYS[i], ARGV[i + 1])\n"
    "  end\n"
    "end\n"
    "local score = '+inf'\n"
    "if ttl > 0 then score = string.format('%.0f', clock() + ttl) end\n"
    "local members = {}\n"
    "for i = 1, n do\n"
    "  members[2 * i - 1] = score\n"
    "  members[2 * i] = KEYS[i]\n"
    "end\n"
    "for s = n + 1, #KEYS do\n"
    "  local set = KEYS[s]\n"
    "  redis.call('ZADD', set, unpack(members))\n"
    "  local last = tonumber(redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')[2])\n"
    "  if last == nil or last == math.huge then\n"
    "    redis.call('PERSIST', set)\n"
    "  else\n"
    "    redis.call('PEXPIREAT', set, string.format('%.0f', last))\n"
    "  end\n"
    "end\n"
    "return n\n");

/*
 * KEYS[1]: the tag set. ARGV[1]: the namespace's value head. The live
 * members (score not below now) are read by rank in batches, from the
 * first live one (ZCOUNT of those whose time has passed: the ranks do not
 * move, since members are UNLINKed, not removed from the set). Only
 * members inside the namespace are removed, so a tag set tampered with by
 * another Redis client still cannot make an invalidation reach outside
 * it. Returns the number of values removed.
 */
static rk__script invalidate_script = RK__SCRIPT("cache tag invalidate",
    LUA_NOW
    "local head = ARGV[1]\n"
    "local past = '(' .. string.format('%.0f', clock())\n"
    "local at = redis.pcall('ZCOUNT', KEYS[1], '-inf', past)\n"
    "if type(at) == 'table' and at.err then\n"
    "  if string.find(at.err, 'WRONGTYPE', 1, true) then\n"
    "    return redis.error_reply(" LUA_WRONGTYPE("the tag set") ")\n"
    "  end\n"
    "  return at\n"
    "end\n"
    "local removed = 0\n"
    "while true do\n"
    "  local members = redis.call('ZRANGE', KEYS[1], at, at + " INVALIDATE_CHUNK " - 1)\n"
    "  local batch = {}\n"
    "  for _, m in ipairs(members) do\n"
    "    if string.sub(m, 1, #head) == head then batch[#batch + 1] = m end\n"
    "  end\n"
    "  if #batch > 0 then removed = removed + redis.call('UNLINK', unpack(batch)) end\n"
    "  if #members < " INVALIDATE_CHUNK " then break end\n"
    "  at = at + " INVALIDATE_CHUNK "\n"
    "end\n"
    "redis.call('UNLINK', KEYS[1])\n"
    "return removed\n");

/* ---- tags --------------------------------------------------------------- */

rk_status rk__cache_check_tags(const char *const *tags, size_t ntags)
{
    if (!ntags) return RK_OK;
    if (!tags) return rk__fail(RK_ERR_INVALID, "tags is NULL with ntags %zu", ntags);
    if (ntags > RK_CACHE_MAX_TAGS) return rk__fail(RK_ERR_INVALID, "%zu tags: at most %d", ntags, RK_CACHE_MAX_TAGS);
    for (size_t i = 0; i < ntags; i++) {
        if (!tags[i]) return rk__fail(RK_ERR_INVALID, "tags[%zu] is NULL", i);
        if (!tags[i][0]) return rk__fail(RK_ERR_INVALID, "tags[%zu] is empty", i);
        if (strnlen(tags[i], RK_CACHE_MAX_TAG_BYTES + 1) > RK_CACHE_MAX_TAG_BYTES)
            return rk__fail(RK_ERR_TOO_LARGE, "tags[%zu] is longer than %d bytes", i, RK_CACHE_MAX_TAG_BYTES);
    }
    return RK_OK;
}

/* The Redis names of ntags checked tags, "<aux head>tag:<tag>", in one
 * allocation. */
typedef struct tag_keys {
    const char *str[RK_CACHE_MAX_TAGS];
    size_t len[RK_CACHE_MAX_TAGS];
    char *buf;
} tag_keys;

static rk_status tag_keys_make(const rk_cache *c, const char *const *tags, size_t ntags, tag_keys *out)
{
    size_t total = 0, tlen[RK_CACHE_MAX_TAGS];
    for (size_t i = 0; i < ntags; i++) {
        tlen[i] = strlen(tags[i]);
        total += c->aux_head_len + TAG_INFIX_LEN + tlen[i] + 1;
    }
    out->buf = rk__malloc(total ? total : 1);
    if (!out->buf) return rk__fail(RK_ERR_NOMEM, "cache tags: out of memory");
    char *p = out->buf;
    for (size_t i = 0; i < ntags; i++) {
        out->str[i] = p;
        out->len[i] = c->aux_head_len + TAG_INFIX_LEN + tlen[i];
        memcpy(p, c->aux_head, c->aux_head_len);
        memcpy(p + c->aux_head_len, TAG_INFIX, TAG_INFIX_LEN);
        memcpy(p + c->aux_head_len + TAG_INFIX_LEN, tags[i], tlen[i] + 1);
        p += out->len[i] + 1;
    }
    return RK_OK;
}

/* What one store script's reply means for its entries. Consumes r. */
static rk_status judge_store_reply(rk_reply *r, size_t m)
{
    if (r->type == RK_REPLY_ERROR) return rk__reply_fail(r, store_script.name);
    bool ok = r->type == RK_REPLY_INTEGER && r->integer == (long long)m;
    rk_reply_free(r);
    return ok ? RK_OK : rk__fail(RK_ERR_PROTOCOL, "%s: unexpected reply", store_script.name);
}

/* The failure of the lowest chunk so far, with its message, so that the
 * status returned is the one of the first failing entry (the caller names
 * that entry), whatever order the chunks were judged in. */
typedef struct first_failure {
    size_t chunk;
    rk_status st;
    char msg[RK__ERRMSG_MAX];
} first_failure;

static void note_failure(first_failure *f, size_t chunk, rk_status st)
{
    if (st == RK_OK || (f->st != RK_OK && f->chunk < chunk)) return;
    f->chunk = chunk;
    f->st = st;
    snprintf(f->msg, sizeof f->msg, "%s", rk_last_error());
}

/* Make a chunk's command (its arguments a, their lengths l) send the
 * script in full: EVAL <source> instead of EVALSHA <sha>. */
static void by_source(const char **a, size_t *l)
{
    a[0] = "EVAL";
    l[0] = 4;
    a[1] = store_script.source;
    l[1] = store_script.source_len;
}

rk_status rk__cache_store_tagged_batch(rk_cache *c, size_t n, const char *const *keys, const size_t *keylens,
                                       const char *const *values, const size_t *vlens, int64_t ttl_ms,
                                       const char *const *tags, size_t ntags, rk_status *statuses)
{
    rk_status st = rk__cache_check_tags(tags, ntags);
    if (st == RK_OK && !ntags) st = rk__fail(RK_ERR_INVALID, "tagged store without tags");
    if (st != RK_OK) {
        for (size_t i = 0; i < n; i++) statuses[i] = st;
        return st;
    }
    if (n == 0) return RK_OK;
    /* One deadline for the whole call, taken before anything is built. */
    int64_t deadline_ns = rk__client_deadline(c->client);
    tag_keys tk;
    if ((st = tag_keys_make(c, tags, ntags, &tk)) != RK_OK) {
        for (size_t i = 0; i < n; i++) statuses[i] = st;
        return st;
    }
    char px[RK__NUMBER_TEXT_MAX + 1] = "0";
    size_t pxlen = 1;
    if (ttl_ms != RK_TTL_NONE) pxlen = rk__i64_to_text(ttl_ms, px);

    /* Each chunk's command laid out as EVALSHA sha numkeys KEYS... ARGV... */
    size_t nchunks = (n + STORE_CHUNK - 1) / STORE_CHUNK;
    size_t per_chunk = 3 + STORE_CHUNK + ntags + 1 + STORE_CHUNK;
    const char **argv = rk__malloc(nchunks * per_chunk * sizeof *argv);
    size_t *lens = rk__malloc(nchunks * per_chunk * sizeof *lens);
    char (*numkeys)[16] = rk__malloc(nchunks * sizeof *numkeys);
    rk__cmd *cmds = rk__malloc(nchunks * sizeof *cmds);
    rk__cmd *sending = rk__malloc(nchunks * sizeof *sending);
    size_t *todo = rk__malloc(nchunks * sizeof *todo);
    rk_reply **replies = rk__calloc(nchunks, sizeof *replies);
    if (!argv || !lens || !numkeys || !cmds || !sending || !todo || !replies) {
        st = rk__fail(RK_ERR_NOMEM, "cache tags: out of memory");
        for (size_t i = 0; i < n; i++) statuses[i] = st;
        goto done;
    }
    const char *sha = rk__script_sha(&store_script);
    for (size_t k = 0; k < nchunks; k++) {
        size_t from = k * STORE_CHUNK, m = n - from < STORE_CHUNK ? n - from : STORE_CHUNK;
        const char **a = argv + k * per_chunk;
        size_t *l = lens + k * per_chunk, at = 3;
        a[0] = "EVALSHA";
        l[0] = 7;
        a[1] = sha;
        l[1] = RK__SHA1_HEX;
        a[2] = numkeys[k];
        l[2] = (size_t)snprintf(numkeys[k], sizeof numkeys[k], "%zu", m + ntags);
        for (size_t i = 0; i < m; i++, at++) a[at] = keys[from + i], l[at] = keylens[from + i];
        for (size_t t = 0; t < ntags; t++, at++) a[at] = tk.str[t], l[at] = tk.len[t];
        a[at] = px, l[at] = pxlen, at++;
        for (size_t i = 0; i < m; i++, at++) a[at] = values[from + i], l[at] = vlens[from + i];
        cmds[k] = (rk__cmd){.argc = (int)at, .argv = a, .argvlen = l};
        if (!sha) by_source(a, l); /* no digest: EVAL every time */
        todo[k] = k;
    }

    /* Round 1 sends every chunk in one pipeline, by SHA. The chunks the
     * server refused with NOSCRIPT (nothing of them ran, so they are safe
     * to send again) go in round 2, again in one pipeline: the first in
     * full, which loads the script, the others by SHA, which the server
     * runs after it. All rounds share the call's deadline, so a batch
     * costs two round trips after a SCRIPT FLUSH, not one per chunk. */
    first_failure first = {.st = RK_OK};
    size_t ntodo = nchunks;
    for (int round = 0; round < STORE_ROUNDS && ntodo; round++) {
        for (size_t j = 0; j < ntodo; j++) sending[j] = cmds[todo[j]];
        st = rk__client_pipeline_until(c->client, ntodo, sending, false, replies, deadline_ns);
        if (st != RK_OK) {
            /* Nothing is known of the chunks of this round. */
            for (size_t j = 0; j < ntodo; j++) note_failure(&first, todo[j], st);
            break;
        }
        size_t left = 0;
        for (size_t j = 0; j < ntodo; j++) {
            size_t k = todo[j], from = k * STORE_CHUNK, m = n - from < STORE_CHUNK ? n - from : STORE_CHUNK;
            if (rk__script_is_noscript(replies[j]) && round + 1 < STORE_ROUNDS) {
                rk_reply_free(replies[j]);
                replies[j] = NULL;
                if (!left) by_source(argv + k * per_chunk, lens + k * per_chunk);
                todo[left++] = k;
                continue;
            }
            rk_status cst = judge_store_reply(replies[j], m);
            replies[j] = NULL;
            for (size_t i = 0; i < m; i++) statuses[from + i] = cst;
            note_failure(&first, k, cst);
        }
        ntodo = left;
    }
    if (st != RK_OK) /* a round failed as a whole: its chunks carry the error */
        for (size_t j = 0; j < ntodo; j++) {
            size_t from = todo[j] * STORE_CHUNK, m = n - from < STORE_CHUNK ? n - from : STORE_CHUNK;
            for (size_t i = 0; i < m; i++) statuses[from + i] = st;
        }
    st = first.st;
    if (st != RK_OK) rk__fail_str(st, first.msg);
done:
    if (replies)
        for (size_t k = 0; k < nchunks; k++) rk_reply_free(replies[k]);
    rk__free(replies);
    rk__free(todo);
    rk__free(sending);
    rk__free(cmds);
    rk__free(numkeys);
    rk__free(lens);
    rk__free(argv);
    rk__free(tk.buf);
    return st;
}

rk_status rk__cache_store_tagged(rk_cache *c, const rk__key *k, const rk__encoded *v, int64_t ttl_ms,
                                 const char *const *tags, size_t ntags)
{
    const char *key = k->str, *value = v->data;
    rk_status one;
    return rk__cache_store_tagged_batch(c, 1, &key, &k->len, &value, &v->len, ttl_ms, tags, ntags, &one);
}

rk_status rk_cache_invalidate_tag(rk_cache *c, const char *tag, size_t *removed)
{
    rk__fetch_forget_all(c); /* the fetch copies of keys it may remove (src/cache/cache.h) */
    rk__cache_near_clear(c);  /* and the near cache's (src/cache/cache_near.c) */
    if (removed) *removed = 0;
    if (!c) return rk__fail(RK_ERR_INVALID, "rk_cache_invalidate_tag: cache is NULL");
    rk_status st = rk__cache_check_tags(&tag, 1);
    if (st != RK_OK) {
        rk__cache_count_error(c, st);
        return st;
    }
    tag_keys tk;
    if ((st = tag_keys_make(c, &tag, 1, &tk)) != RK_OK) {
        rk__cache_count_error(c, st);
        return st;
    }
    const char *head = c->head;
    rk_reply *r;
    st = rk__script_run(c->client, &invalidate_script, 1, tk.str, tk.len, 1, &head, &c->head_len, false, &r);
    rk__free(tk.buf);
    if (st == RK_OK) {
        bool ok = r->type == RK_REPLY_INTEGER && r->integer >= 0;
        if (ok) {
            RK__COUNT(c, deletes, r->integer);
            if (removed) *removed = (size_t)r->integer;
        }
        rk_reply_free(r);
        if (!ok) st = rk__fail(RK_ERR_PROTOCOL, "%s: unexpected reply", invalidate_script.name);
    }
    rk__cache_count_error(c, st);
    return st;
}

/* ---- clear -------------------------------------------------------------- */

/* A SCAN cursor: decimal digits of a uint64, nothing else. */
static bool parse_cursor(const rk_reply *r, uint64_t *out)
{
    if (r->type != RK_REPLY_STRING || r->len == 0 || r->len > 20) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        unsigned d = (unsigned char)r->str[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool starts_with(const rk_reply *r, const char *p, size_t plen)
{
    return r->len >= plen && memcmp(r->str, p, plen) == 0;
}

/* The deadline of one round trip of a clear: its own command timeout, but
 * never past the call's limit (start + budget + one command timeout), so
 * that a call ends within that however its last round goes. */
static int64_t round_trip_deadline(rk_cache *c, int64_t limit_ns)
{
    int64_t d = rk__client_deadline(c->client);
    return d < limit_ns ? d : limit_ns;
}

/* One round: SCAN from *cursor, then UNLINK what it found. *cursor moves
 * only once the UNLINKs are done, so a failed round is repeated by the
 * next call instead of skipping keys. */
static rk_status clear_round(rk_cache *c, const char *pattern, size_t pattern_len, const char *tag_head,
                             size_t tag_head_len, int64_t limit_ns, uint64_t *cursor, size_t *removed)
{
    char ctext[24];
    int clen = snprintf(ctext, sizeof ctext, "%" PRIu64, *cursor);
    const char *argv[6] = {"SCAN", ctext, "MATCH", pattern, "COUNT", CLEAR_COUNT};
    size_t lens[6] = {4, (size_t)clen, 5, pattern_len, 5, sizeof CLEAR_COUNT - 1};
    rk__cmd scan = {.argc = 6, .argv = argv, .argvlen = lens};
    rk_reply *r;
    rk_status st = rk__client_pipeline_until(c->client, 1, &scan, true, &r, round_trip_deadline(c, limit_ns));
    if (st != RK_OK) return st;
    if (r->type == RK_REPLY_ERROR) return rk__reply_fail(r, "SCAN");
    uint64_t next;
    if (r->type != RK_REPLY_ARRAY || r->elements != 2 || !parse_cursor(r->element[0], &next) ||
        r->element[1]->type != RK_REPLY_ARRAY) {
        rk_reply_free(r);
        return rk__fail(RK_ERR_PROTOCOL, "SCAN: unexpected reply");
    }
    const rk_reply *found = r->element[1];
    size_t nfound = found->elements;
    for (size_t i = 0; i < nfound; i++)
        if (found->element[i]->type != RK_REPLY_STRING) {
            rk_reply_free(r);
            return rk__fail(RK_ERR_PROTOCOL, "SCAN: unexpected reply");
        }

    /* Values in one UNLINK, tag sets in another: UNLINK's count is then the
     * number of values, which is what the caller is told. */
    const char **vargv = NULL, **targv = NULL;
    size_t *vlens = NULL, *tlens = NULL, nv = 1, nt = 1;
    if (nfound) {
        vargv = rk__malloc((nfound + 1) * sizeof *vargv);
        targv = rk__malloc((nfound + 1) * sizeof *targv);
        vlens = rk__malloc((nfound + 1) * sizeof *vlens);
        tlens = rk__malloc((nfound + 1) * sizeof *tlens);
        if (!vargv || !targv || !vlens || !tlens) {
            st = rk__fail(RK_ERR_NOMEM, "rk_cache_clear: out of memory");
            goto done;
        }
        vargv[0] = targv[0] = "UNLINK";
        vlens[0] = tlens[0] = 6;
        for (size_t i = 0; i < nfound; i++) {
            const rk_reply *k = found->element[i];
            if (starts_with(k, c->head, c->head_len)) {
                vargv[nv] = k->str;
                vlens[nv++] = k->len;
            } else if (starts_with(k, tag_head, tag_head_len)) {
                targv[nt] = k->str;
                tlens[nt++] = k->len;
            } /* else a fetch lock: left to expire (see the top of the file) */
        }
    }
    rk__cmd cmds[2];
    size_t ncmds = 0;
    if (nv > 1) cmds[ncmds++] = (rk__cmd){.argc = (int)nv, .argv = vargv, .argvlen = vlens};
    if (nt > 1) cmds[ncmds++] = (rk__cmd){.argc = (int)nt, .argv = targv, .argvlen = tlens};
    size_t values_removed = 0;
    if (ncmds) {
        rk_reply *ur[2] = {NULL, NULL};
        st = rk__client_pipeline_until(c->client, ncmds, cmds, false, ur, round_trip_deadline(c, limit_ns));
        for (size_t i = 0; i < ncmds && st == RK_OK; i++) {
            if (ur[i]->type == RK_REPLY_ERROR) {
                st = rk__reply_fail(ur[i], "UNLINK");
                ur[i] = NULL;
            } else if (ur[i]->type != RK_REPLY_INTEGER || ur[i]->integer < 0) {
                st = rk__fail(RK_ERR_PROTOCOL, "UNLINK: unexpected reply");
            } else if (nv > 1 && i == 0) {
                values_removed = (size_t)ur[i]->integer;
            }
        }
        rk_reply_free(ur[0]);
        rk_reply_free(ur[1]);
    }
    if (st == RK_OK) {
        *cursor = next;
        *removed += values_removed;
        RK__COUNT(c, deletes, values_removed);
    }
done:
    rk__free(vargv);
    rk__free(targv);
    rk__free(vlens);
    rk__free(tlens);
    rk_reply_free(r);
    return st;
}

rk_status rk__cache_clear_run(rk_cache *c, uint64_t *cursor, size_t *removed, int64_t budget_ms,
                              size_t max_rounds)
{
    if (removed) *removed = 0; /* an output: overwritten, as by every call (docs/common.md) */
    if (!c || !cursor) return rk__fail(RK_ERR_INVALID, "rk_cache_clear: NULL cache or cursor");
    /* "<escaped prefix:ns>[:#]*": the head without its ':' (no glob byte
     * can be in a prefix or namespace today, but the pattern must not
     * depend on that), then the class of the two separators. */
    size_t base = c->head_len - 1;
    size_t esc = rk__key_glob_escape(c->head, base, NULL, 0);
    static const char tail[] = "[:#]*";
    size_t pattern_len = esc + sizeof tail - 1;
    size_t tag_head_len = c->aux_head_len + TAG_INFIX_LEN;
    char *pattern = rk__malloc(pattern_len + 1);
    char *tag_head = rk__malloc(tag_head_len + 1);
    rk_status st = RK_OK;
    if (!pattern || !tag_head) {
        st = rk__fail(RK_ERR_NOMEM, "rk_cache_clear: out of memory");
        goto out;
    }
    rk__key_glob_escape(c->head, base, pattern, esc + 1);
    memcpy(pattern + esc, tail, sizeof tail);
    memcpy(tag_head, c->aux_head, c->aux_head_len);
    memcpy(tag_head + c->aux_head_len, TAG_INFIX, TAG_INFIX_LEN + 1);

    /* Rounds start while the budget lasts; every round trip of the call
     * ends by the limit, so a call lasts budget + one command timeout at
     * most (a SCAN round is two round trips, which with a deadline each
     * could have taken two). Both clocks are CLOCK_MONOTONIC. */
    size_t count = 0;
    int64_t start = rk__now_ns() / 1000000;
    int64_t limit_ns = rk__client_deadline(c->client) + budget_ms * 1000000;
    for (size_t round = 0; round < max_rounds || round == 0; round++) {
        st = clear_round(c, pattern, pattern_len, tag_head, tag_head_len, limit_ns, cursor, &count);
        if (st != RK_OK || *cursor == 0 || rk__now_ns() / 1000000 - start >= budget_ms) break;
    }
    if (removed) *removed = count; /* on a failure too: earlier rounds' keys are gone */
out:
    rk__free(pattern);
    rk__free(tag_head);
    rk__cache_count_error(c, st);
    return st;
}

rk_status rk_cache_clear(rk_cache *c, uint64_t *cursor, size_t *removed)
{
    rk__fetch_forget_all(c); /* the fetch copies of keys it may remove (src/cache/cache.h) */
    rk__cache_near_clear(c);  /* and the near cache's (src/cache/cache_near.c) */
    if (removed) *removed = 0;
    if (!c) return rk__fail(RK_ERR_INVALID, "rk_cache_clear: cache is NULL");
    return rk__cache_clear_run(c, cursor, removed, c->clear_budget_ms, CLEAR_MAX_ROUNDS);
}
