/*
 * reply_fuzz.c — libFuzzer target for the reply path: bytes from a server
 * through the reply guard and hiredis's reader with redkit's reply functions (src/transport/reply.c,
 * the same rk__reader_new() a connection uses), then the code that
 * interprets each reply: the error-reply → status mapping of every command
 * (rk__reply_fail) and the cache's decoding of a GET reply
 * (rk__cache_decode).
 *
 * Input: one control byte, then the bytes "from the server".
 *   bit 0     the cache is raw (1) or typed (0)
 *   bits 1-2  the getter: 0 rk_cache_get, 1 _get_str, 2 _get_i64, 3 _get_double
 *   bits 3-7  how to split the stream, n: 0 = one piece; otherwise pieces
 *             of 1..(4n - 3) bytes (n = 1: byte by byte), sizes from a
 *             small generator seeded by n
 * Seeds in tests/fuzz/corpus/reply_fuzz/ start with a printable control
 * byte ('0' = typed, bytes, split pattern 6) followed by plain RESP.
 *
 * Checked (abort() on violation), besides the sanitizers:
 *  - Content: a small strict RESP2 reader written here (canonical numbers,
 *    no CR or LF inside simple strings, nesting under 8) reads the same
 *    stream; as long as it accepts it, the replies redkit built must be
 *    exactly the ones it reads (type, text, integer, elements), and a
 *    reply it reads completely must have been produced. Where the strict
 *    reader is unsure (hiredis is more lenient), comparing stops.
 *  - Split invariance: a reader fed the whole stream at once and one fed
 *    it in pieces produce the same replies, in the same order, and fail
 *    (or not) at the same point.
 *  - Every reply is a well-formed rk_reply tree: known types; strings
 *    NUL-terminated at len; arrays with an element for each count, none
 *    NULL; nesting no deeper than the reader allows.
 *  - A top-level error reply maps to RK_ERR_AUTH exactly when its error
 *    code (the first word, RESP's rule) is NOAUTH or WRONGPASS, to
 *    RK_ERR_UNAVAILABLE when it is LOADING, BUSY, MASTERDOWN, TRYAGAIN or
 *    CLUSTERDOWN,
 *    and to RK_ERR_SERVER otherwise, with the message "<command>: <text>".
 *  - The reply guard (reply_guard.c, which sees every byte before the
 *    reader) reaches the same verdict on the stream whole and in pieces.
 *  - The cache's reading of a string reply (top-level, as GET, and each
 *    string in a top-level array, as MGET): a raw cache gets the bytes
 *    unchanged; a typed cache accepts a format-1 value exactly when
 *    rk__value_decode does and the getter takes that type, and then gets
 *    the payload after the header; any accepted value that is not
 *    compressed is a suffix of the stored bytes, NUL-terminated; a
 *    compressed one is what zstd itself makes of the frame, within the
 *    handle's max_value. Any other reply type is RK_ERR_PROTOCOL. Numbers
 *    that decode print back the same.
 *
 * Memory is bounded by the input (at most FUZZ_MAX_INPUT bytes: the reply
 * functions allocate array slots as elements arrive, not as announced)
 * and by FUZZ_MAX_VALUE for a decompressed value.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redkit/client.h>
#include <zstd.h>

#include "alloc.h"
#include "cache.h"
#include "compress.h"
#include "error.h"
#include "reply.h"
#include "reply_guard.h"
#include "value.h"

#define FUZZ_MAX_INPUT 65536
/* hiredis nests arrays at most 8 deep (7 in 0.14's message); deeper would
 * be a reader bug, and the checks below recurse. */
#define MAX_DEPTH 16
#define MAX_ERROR_TEXT 300 /* what rk__reply_fail quotes */
/* The cache's max_value_bytes here: small, so that a frame may declare
 * more, and a fuzzer run never holds much. */
#define FUZZ_MAX_VALUE (1u << 20)

#define CHECK(cond)           \
    do {                      \
        if (!(cond)) abort(); \
    } while (0)

/* ---------------------------------------------------------------- trees */

static void check_tree(const rk_reply *r, int depth)
{
    CHECK(r != NULL && depth <= MAX_DEPTH);
    switch (r->type) {
    case RK_REPLY_STRING:
    case RK_REPLY_STATUS:
    case RK_REPLY_ERROR:
        CHECK(r->str != NULL && r->str[r->len] == '\0');
        CHECK(r->elements == 0 && r->element == NULL);
        break;
    case RK_REPLY_ARRAY:
        CHECK(r->str == NULL);
        CHECK(r->elements == 0 || r->element != NULL);
        for (size_t i = 0; i < r->elements; i++) check_tree(r->element[i], depth + 1);
        break;
    case RK_REPLY_INTEGER:
    case RK_REPLY_NIL:
        CHECK(r->str == NULL && r->elements == 0 && r->element == NULL);
        break;
    default:
        abort();
    }
}

static bool same_tree(const rk_reply *a, const rk_reply *b, int depth)
{
    if (depth > MAX_DEPTH || a->type != b->type) return false;
    switch (a->type) {
    case RK_REPLY_STRING:
    case RK_REPLY_STATUS:
    case RK_REPLY_ERROR:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
    case RK_REPLY_INTEGER:
        return a->integer == b->integer;
    case RK_REPLY_ARRAY:
        if (a->elements != b->elements) return false;
        for (size_t i = 0; i < a->elements; i++)
            if (!same_tree(a->element[i], b->element[i], depth + 1)) return false;
        return true;
    default:
        return true;
    }
}

/* ---------------------------------------------------------------- strict RESP2 */

/* The strict reader's answer about one reply. */
typedef enum { SAME, DIFFERENT, UNSURE } verdict;

/* The line at s[*pos..n) up to "\r\n" (not included); false when there is
 * no complete line or it holds another CR or LF. */
static bool strict_line(const char *s, size_t n, size_t *pos, const char **text, size_t *len)
{
    size_t i = *pos;
    while (i < n && s[i] != '\r' && s[i] != '\n') i++;
    if (i + 1 >= n || s[i] != '\r' || s[i + 1] != '\n') return false;
    *text = s + *pos;
    *len = i - *pos;
    *pos = i + 2;
    return true;
}

/* A canonical decimal long long: "0" or -?[1-9][0-9]*, in range. */
static bool strict_number(const char *p, size_t len, long long *out)
{
    bool neg = len > 0 && p[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == len || len > 20 || (p[i] == '0' && (len > i + 1 || neg))) return false;
    unsigned long long limit = neg ? (unsigned long long)INT64_MAX + 1 : INT64_MAX, v = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = neg ? (v == 0 ? 0 : -(long long)(v - 1) - 1) : (long long)v;
    return true;
}

/* Read one reply at s[*pos..n) strictly and compare it with a (NULL: only
 * read; SAME then means "a complete, valid reply is there"). */
static verdict strict_reply(const char *s, size_t n, size_t *pos, const rk_reply *a, int depth)
{
    const char *text;
    size_t len;
    long long v;
    if (*pos >= n) return UNSURE;
    char kind = s[(*pos)++];
    if (!strict_line(s, n, pos, &text, &len)) return UNSURE;
    switch (kind) {
    case '+':
    case '-':
        if (!a) return SAME;
        return a->type == (kind == '+' ? RK_REPLY_STATUS : RK_REPLY_ERROR) && a->len == len &&
                       memcmp(a->str, text, len) == 0
                   ? SAME
                   : DIFFERENT;
    case ':':
        if (!strict_number(text, len, &v)) return UNSURE;
        if (!a) return SAME;
        return a->type == RK_REPLY_INTEGER && a->integer == v ? SAME : DIFFERENT;
    case '$':
        if (!strict_number(text, len, &v) || v < -1) return UNSURE;
        if (v == -1) return !a || a->type == RK_REPLY_NIL ? SAME : DIFFERENT;
        if ((unsigned long long)v > n - *pos || n - *pos - (size_t)v < 2) return UNSURE;
        text = s + *pos;
        *pos += (size_t)v;
        if (s[*pos] != '\r' || s[*pos + 1] != '\n') return UNSURE;
        *pos += 2;
        if (!a) return SAME;
        return a->type == RK_REPLY_STRING && a->len == (size_t)v && memcmp(a->str, text, a->len) == 0
                   ? SAME
                   : DIFFERENT;
    case '*':
        if (!strict_number(text, len, &v) || v < -1 || depth >= 8) return UNSURE;
        if (v == -1) return !a || a->type == RK_REPLY_NIL ? SAME : DIFFERENT;
        /* Each element takes at least 3 bytes: a larger count cannot be
         * complete, and checking it first bounds the loop. */
        if ((unsigned long long)v > (n - *pos) / 3) return UNSURE;
        if (a && (a->type != RK_REPLY_ARRAY || a->elements != (size_t)v)) return DIFFERENT;
        for (long long i = 0; i < v; i++) {
            verdict e = strict_reply(s, n, pos, a ? a->element[i] : NULL, depth + 1);
            if (e != SAME) return e;
        }
        return SAME;
    default:
        return UNSURE;
    }
}

/* ---------------------------------------------------------------- errors */

/* RESP: "the first word after the '-', up to the first space or newline,
 * represents the kind of error returned". */
static bool is_code(const char *s, size_t len, const char *code)
{
    size_t n = 0, c = strlen(code);
    while (n < len && s[n] != ' ' && s[n] != '\r' && s[n] != '\n') n++;
    return n == c && memcmp(s, code, c) == 0;
}

/* The status an error reply maps to: auth failures, the "not now" states
 * (docs/resilience.md), anything else a server error. */
static rk_status error_status(const char *s, size_t len)
{
    if (is_code(s, len, "NOAUTH") || is_code(s, len, "WRONGPASS")) return RK_ERR_AUTH;
    if (is_code(s, len, "LOADING") || is_code(s, len, "BUSY") || is_code(s, len, "MASTERDOWN") ||
        is_code(s, len, "TRYAGAIN") || is_code(s, len, "CLUSTERDOWN"))
        return RK_ERR_UNAVAILABLE;
    return RK_ERR_SERVER;
}

/* A top-level error reply, as rk__client_run handles it (consumes r). */
static void interpret_error(rk_reply *r)
{
    static const char what[] = "GET";
    rk_status expect = error_status(r->str, r->len);

    /* The expected message: "GET: " and at most 300 bytes of the text
     * (up to a NUL), cut to the message buffer. */
    char want[RK__ERRMSG_MAX];
    size_t quoted = r->len < MAX_ERROR_TEXT ? r->len : MAX_ERROR_TEXT;
    quoted = strnlen(r->str, quoted);
    size_t head = sizeof what - 1 + 2;
    size_t total = head + quoted < sizeof want - 1 ? head + quoted : sizeof want - 1;
    memcpy(want, "GET: ", head);
    memcpy(want + head, r->str, total - head);
    want[total] = '\0';

    rk_status st = rk__reply_fail(r, what);
    CHECK(st == expect);
    CHECK(strcmp(rk_last_error(), want) == 0);
}

/* ---------------------------------------------------------------- cache */

static const struct getter {
    unsigned accept_typed; /* bit set of (1 << rk__vtype) */
    rk__vtype want;
} getters[4] = {
    {RK__ACCEPT(RK__V_BYTES) | RK__ACCEPT(RK__V_STRING), RK__V_BYTES}, /* rk_cache_get */
    {RK__ACCEPT(RK__V_STRING), RK__V_STRING},                         /* rk_cache_get_str */
    {RK__ACCEPT(RK__V_INT64), RK__V_INT64},                           /* rk_cache_get_i64 */
    {RK__ACCEPT(RK__V_DOUBLE), RK__V_DOUBLE},                         /* rk_cache_get_double */
};

/* rk_cache_get_i64 / _double parse the payload after decoding it. */
static void check_number(const struct getter *g, const char *text, size_t len)
{
    char buf[RK__NUMBER_TEXT_MAX + 1];
    if (g->want == RK__V_INT64) {
        int64_t v;
        if (rk__text_to_i64(text, len, &v) != RK_OK) return;
        size_t n = rk__i64_to_text(v, buf);
        int64_t back;
        CHECK(rk__text_to_i64(buf, n, &back) == RK_OK && back == v);
    } else if (g->want == RK__V_DOUBLE) {
        double v;
        if (rk__text_to_double(text, len, &v) != RK_OK) return;
        size_t n = rk__double_to_text(v, buf);
        double back;
        CHECK(rk__text_to_double(buf, n, &back) == RK_OK && memcmp(&back, &v, sizeof v) == 0);
    }
}

/* A compressed value that decoded: zstd itself, called directly, must give
 * the same bytes from the same frame (the payload after the header, and
 * after the META block when there is one; value.h). */
static void check_decompressed(const char *orig, size_t olen, const char *data, size_t len)
{
    size_t off = ((unsigned char)orig[1] & RK__VF_META) ? RK__VALUE_HEADER_MAX : RK__VALUE_HEADER;
    CHECK(olen >= off);
    unsigned long long size = ZSTD_getFrameContentSize(orig + off, olen - off);
    CHECK(size == len && len <= FUZZ_MAX_VALUE);
    char *want = malloc(len + 1);
    CHECK(want != NULL);
    size_t got = ZSTD_decompress(want, len, orig + off, olen - off);
    CHECK(!ZSTD_isError(got) && got == len && memcmp(want, data, len) == 0);
    free(want);
}

/* The cache's reading of one non-NIL reply, as get_value in cache.c
 * (consumes r). The handle matters only for its raw flag, its value size
 * limit and its pool of zstd contexts: a zeroed one with those set is
 * what rk_cache_new would give, and the pool is emptied afterwards. */
static void interpret_value(rk_reply *r, bool raw, const struct getter *g)
{
    rk_cache cache;
    memset(&cache, 0, sizeof cache);
    cache.raw = raw;
    cache.max_value = FUZZ_MAX_VALUE;
    cache.compress_threshold = RK_CACHE_COMPRESS_OFF;

    unsigned accept = raw ? (g->want == RK__V_BYTES ? g->accept_typed : RK__ACCEPT(RK__V_BYTES))
                          : g->accept_typed;
    bool is_string = r->type == RK_REPLY_STRING;
    /* A copy of what was stored, to compare with what comes out. */
    size_t olen = is_string ? r->len : 0;
    char *orig = malloc(olen + 1);
    CHECK(orig != NULL);
    if (is_string) memcpy(orig, r->str, olen);

    char *data = (char *)"untouched";
    size_t len = 12345;
    rk_status st = rk__cache_decode(&cache, r, accept, g->want, &data, &len, NULL);
    rk__zpool_clear(&cache.zpool);
    /* No redkit header: another client's value (src/cache/cache.c,
     * rk__cache_foreign). */
    bool foreign = is_string && (olen < RK__VALUE_HEADER || (unsigned char)orig[0] != RK__VALUE_MAGIC);
    unsigned flags = !raw && !foreign && olen >= 2 ? (unsigned char)orig[1] & 0xF0u : 0;
    bool compressed = (flags & RK__VF_COMPRESSED) != 0;
    if (!is_string) {
        CHECK(st == RK_ERR_PROTOCOL && data == NULL && len == 0);
    } else if (raw) {
        CHECK(st == RK_OK && len == olen && memcmp(data, orig, olen) == 0);
    } else {
        rk__vtype t;
        size_t off;
        bool format1 = rk__value_decode(orig, olen, false, &t, &off) == RK_OK;
        if (format1) {
            bool accepted = (accept & RK__ACCEPT(t)) != 0;
            CHECK((st == RK_OK) == accepted);
            if (st == RK_OK) CHECK(len == olen - off && memcmp(data, orig + off, len) == 0);
        } else if (flags == 0 && foreign) {
            /* Another client's value (docs/cache.md, "Values written by
             * other clients"): read as it is, or refused as a type. */
            if (st == RK_OK) CHECK(len == olen && memcmp(data, orig, olen) == 0);
        } else if (flags == 0) {
            CHECK(st != RK_OK); /* redkit's magic with an unknown type */
        }
        if (st == RK_OK && !foreign) {
            /* Format 2 (a META block, compression) adds flags; the type
             * tag stays in the low bits and must still be one accepted. */
            CHECK(olen >= 2 && (unsigned char)orig[0] == RK__VALUE_MAGIC);
            CHECK((accept & RK__ACCEPT((unsigned char)orig[1] & 0x0F)) != 0);
            if (compressed)
                check_decompressed(orig, olen, data, len);
            else
                CHECK(len <= olen - 2 && memcmp(data, orig + (olen - len), len) == 0);
        }
    }
    if (st == RK_OK) {
        CHECK(data != NULL && data[len] == '\0');
        check_number(g, data, len);
        rk__free(data);
    } else {
        /* Only a compressed value can be too large: its frame says how
         * much it would expand to. */
        CHECK(st == RK_ERR_TYPE || st == RK_ERR_PROTOCOL || (st == RK_ERR_TOO_LARGE && compressed));
        CHECK(data == NULL && len == 0);
    }
    free(orig);
}

/* Everything redkit does with one top-level reply (consumes r). */
static void interpret(rk_reply *r, bool raw, const struct getter *g)
{
    if (r->type == RK_REPLY_ERROR) {
        interpret_error(r);
        return;
    }
    if (r->type == RK_REPLY_NIL) { /* a miss: get_value never decodes it */
        rk_reply_free(r);
        return;
    }
    if (r->type == RK_REPLY_ARRAY) {
        /* As a multi-get would: each string element, taken out. */
        for (size_t i = 0; i < r->elements; i++) {
            if (r->element[i]->type != RK_REPLY_STRING) continue;
            rk_reply *e = r->element[i];
            r->element[i] = NULL;
            interpret_value(e, raw, g);
        }
        rk_reply_free(r); /* must cope with the NULL slots */
        return;
    }
    interpret_value(r, raw, g);
}

/* ---------------------------------------------------------------- driver */

/* Piece sizes for split pattern n (1..31): 1..(4n - 3) bytes. */
static size_t next_piece(uint32_t *x, unsigned n)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return 1 + *x % (4 * n - 3);
}

/* The reply guard (reply_guard.h) over the same bytes: no crash, and the
 * same verdict whether the stream comes whole or in the split reader's
 * pieces (its state carries every header across a cut). */
static void guard_check(const char *stream, size_t n, unsigned pattern)
{
    size_t limit = 16 + (size_t)pattern * 97; /* small enough for the seeds to cross */
    rk__reply_guard whole, split;
    rk__reply_guard_init(&whole);
    rk__reply_guard_init(&split);
    rk_status w = rk__reply_guard_scan(&whole, stream, n, limit, "fuzz");
    uint32_t x = 88172645u ^ pattern;
    rk_status sp = RK_OK;
    for (size_t pos = 0; pos < n && sp == RK_OK;) {
        size_t piece = pattern ? next_piece(&x, pattern) : n;
        if (piece > n - pos) piece = n - pos;
        sp = rk__reply_guard_scan(&split, stream + pos, piece, limit, "fuzz");
        pos += piece;
    }
    CHECK(w == sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT) return 0;
    bool raw = data[0] & 1;
    const struct getter *g = &getters[(data[0] >> 1) & 3];
    unsigned pattern = data[0] >> 3;
    const char *stream = (const char *)data + 1;
    size_t n = size - 1;
    guard_check(stream, n, pattern);

    redisReader *whole = rk__reader_new();
    redisReader *split = rk__reader_new();
    if (!whole || !split) abort();
    CHECK(redisReaderFeed(whole, stream, n) == REDIS_OK);

    uint32_t x = 2463534242u ^ pattern;
    size_t pos = 0, spos = 0; /* fed to split; read by the strict reader */
    bool failed = false, strict = true;
    /* Each round feeds at least one byte; each reply takes at least 3. */
    for (size_t round = 0; round <= n && !failed; round++) {
        if (pos < n) {
            size_t piece = pattern ? next_piece(&x, pattern) : n;
            if (piece > n - pos) piece = n - pos;
            CHECK(redisReaderFeed(split, stream + pos, piece) == REDIS_OK);
            pos += piece;
        }
        for (size_t k = 0; k <= n; k++) {
            void *b = NULL;
            if (redisReaderGetReply(split, &b) != REDIS_OK) {
                failed = true;
                break;
            }
            if (!b) break;
            void *a = NULL;
            CHECK(redisReaderGetReply(whole, &a) == REDIS_OK && a != NULL);
            check_tree(a, 0);
            check_tree(b, 0);
            CHECK(same_tree(a, b, 0));
            if (strict) {
                verdict v = strict_reply(stream, n, &spos, a, 0);
                CHECK(v != DIFFERENT);
                strict = v == SAME;
            }
            rk_reply_free(a);
            interpret(b, raw, g);
        }
        if (pos == n && !failed) break;
    }
    CHECK(pos == n || failed);

    /* Both readers have now seen the same bytes up to the same point. */
    void *a = NULL;
    int rc = redisReaderGetReply(whole, &a);
    if (failed) {
        CHECK(rc != REDIS_OK && whole->err == split->err);
        CHECK(strcmp(whole->errstr, split->errstr) == 0);
    } else {
        CHECK(rc == REDIS_OK && a == NULL);
    }
    /* No valid, complete reply was left unread or refused. */
    if (strict) CHECK(strict_reply(stream, n, &spos, NULL, 0) != SAME);
    redisReaderFree(whole);
    redisReaderFree(split);
    return 0;
}
