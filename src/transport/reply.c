/*
 * reply.c — the reply-object functions given to hiredis's reader (see
 * reply.h for why), rk_reply_free(), and the helpers that interpret
 * replies.
 *
 * The reader calls these as it parses; each new object is linked into its
 * parent array at task->idx. If any function returns NULL the reader fails
 * with an out-of-memory error and frees the partial tree through
 * freeObject, so no half-built reply escapes.
 *
 * An array's slots are allocated as its elements arrive, not when its
 * header announces them: "*2147483647\r\n" is 14 bytes from a server,
 * and allocating 16 GiB for it on trust (then walking every slot to free
 * them when the connection drops) would let any peer on the path exhaust
 * memory or stall a thread. Memory stays proportional to the bytes
 * received. While an array is being filled, `elements` counts the slots
 * linked so far, so a partial tree is always safe to free; once complete
 * it equals the announced count.
 *
 * redkit speaks RESP2. hiredis 1.x also parses RESP3 types (doubles,
 * booleans, maps, ...); a server only sends those after HELLO 3, which
 * redkit never sends, so any of them means the stream is not what redkit
 * asked for, and the functions refuse them rather than build objects of a
 * type rk_reply cannot describe.
 *
 * A reply function can only fail by returning NULL, which hiredis reports
 * as out of memory. So that a malformed stream is not mistaken for a
 * shortage of memory (RK_ERR_NOMEM would also hide it from the circuit
 * breaker), every refusal that is about the stream sets the flag the
 * reader's privdata points to (rk__reader_report_malformed), and
 * rk__reader_fail() turns it into RK_ERR_PROTOCOL. hiredis copies the
 * reader's privdata into every task it hands to these functions.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "alloc.h"
#include "error.h"
#include "reply.h"

/* Slots allocated for an array's first elements; doubled from there. */
#define FIRST_SLOTS 16

/* The stream is not valid RESP2: say so through the reader's privdata
 * (see the top of the file) and refuse. */
static void *malformed(const redisReadTask *task)
{
    bool *flag = task->privdata;
    if (flag) *flag = true;
    return NULL;
}

static bool resp2_type(int type)
{
    return type == REDIS_REPLY_STRING || type == REDIS_REPLY_ARRAY || type == REDIS_REPLY_INTEGER ||
           type == REDIS_REPLY_NIL || type == REDIS_REPLY_STATUS || type == REDIS_REPLY_ERROR;
}

/* Make room in parent for child number idx of the `announced` it expects
 * (the caller has checked idx < announced). The capacity is a function of
 * idx alone — FIRST_SLOTS (or fewer when fewer are announced), then
 * doubling at each power of two — so it need not be stored: growth happens
 * exactly when idx reaches it. False only when memory runs out. */
static bool make_room(rk_reply *parent, size_t idx, size_t announced)
{
    size_t cap;
    if (idx == 0) {
        cap = announced < FIRST_SLOTS ? announced : FIRST_SLOTS;
    } else if (idx >= FIRST_SLOTS && (idx & (idx - 1)) == 0) {
        cap = announced / 2 < idx ? announced : idx * 2;
    } else {
        return true;
    }
    if (cap > SIZE_MAX / sizeof *parent->element) return false;
    rk_reply **grown = rk__realloc(parent->element, cap * sizeof *grown);
    if (!grown) return false;
    parent->element = grown;
    return true;
}

/* The task's place in its parent is one the reader may fill: the next
 * slot of an array, within the count the array announced. */
static bool fits_parent(const redisReadTask *task)
{
    const rk_reply *parent = task->parent->obj;
    return task->idx >= 0 && task->parent->elements > 0 && parent && parent->type == RK_REPLY_ARRAY &&
           (size_t)task->idx == parent->elements && (size_t)task->idx < (size_t)task->parent->elements;
}

static rk_reply *reply_new(const redisReadTask *task, rk_reply_type type)
{
    if (!resp2_type(task->type) || (task->parent && !fits_parent(task))) return malformed(task);
    rk_reply *r = rk__calloc(1, sizeof *r);
    if (!r) return NULL;
    r->type = type;
    if (task->parent) {
        rk_reply *parent = task->parent->obj;
        size_t idx = (size_t)task->idx;
        if (!make_room(parent, idx, (size_t)task->parent->elements)) {
            rk__free(r);
            return NULL;
        }
        parent->element[idx] = r;
        parent->elements = idx + 1;
    }
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    if (len == SIZE_MAX) return malformed(task);
    char *copy = rk__malloc(len + 1);
    if (!copy) return NULL;
    rk_reply *r = reply_new(task, (rk_reply_type)task->type);
    if (!r) {
        rk__free(copy);
        return NULL;
    }
    memcpy(copy, str, len);
    copy[len] = '\0';
    r->str = copy;
    r->len = len;
    return r;
}

/* The count n is not used here: slots come with the elements (see the
 * top of the file), which find it in their parent's task. */
#if HIREDIS_MAJOR >= 1
static void *create_array(const redisReadTask *task, size_t n)
{
    (void)n;
#else
static void *create_array(const redisReadTask *task, int n)
{
    /* hiredis turns "*-1" into a nil and refuses other negative counts. */
    if (n < 0) return malformed(task);
#endif
    if (task->type != REDIS_REPLY_ARRAY) return malformed(task);
    return reply_new(task, RK_REPLY_ARRAY);
}

static void *create_integer(const redisReadTask *task, long long value)
{
    rk_reply *r = reply_new(task, RK_REPLY_INTEGER);
    if (r) r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task) { return reply_new(task, RK_REPLY_NIL); }

#if HIREDIS_MAJOR >= 1
/* RESP3 doubles and booleans: refused (see the top of the file). Without
 * these, hiredis would hand back a bare type number as the object. */
static void *create_double(const redisReadTask *task, double value, char *str, size_t len)
{
    (void)value, (void)str, (void)len;
    return malformed(task);
}

static void *create_bool(const redisReadTask *task, int value)
{
    (void)value;
    return malformed(task);
}
#endif

static void free_object(void *obj) { rk_reply_free(obj); }

static redisReplyObjectFunctions reply_functions = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
#if HIREDIS_MAJOR >= 1
    .createDouble = create_double,
    .createBool = create_bool,
#endif
    .createNil = create_nil,
    .freeObject = free_object,
};

redisReader *rk__reader_new(void) { return redisReaderCreateWithFunctions(&reply_functions); }

void rk__reader_report_malformed(redisReader *reader, bool *flag)
{
    /* Not redisReaderSetPrivdata: hiredis 0.14's macro casts the pointer
     * to int. */
    reader->privdata = flag;
}

rk_status rk__reader_fail(const redisReader *reader, const char *peer)
{
    const bool *flag = reader->privdata;
    if (reader->err == REDIS_ERR_OOM && !(flag && *flag))
        return rk__fail(RK_ERR_NOMEM, "reading reply: out of memory");
    if (reader->err == REDIS_ERR_OOM)
        return rk__fail(RK_ERR_PROTOCOL, "reply from %s: malformed (a type RESP2 does not have, or more "
                                         "elements than its array announced)", peer);
    return rk__fail(RK_ERR_PROTOCOL, "reply from %s: %s", peer, reader->errstr);
}

const char *rk__printable_name(char buf[RK__NAME_SHOWN_MAX], const char *name, size_t len)
{
    size_t shown = len < RK__NAME_SHOWN_BYTES ? len : RK__NAME_SHOWN_BYTES;
    for (size_t i = 0; i < shown; i++) {
        unsigned char ch = (unsigned char)name[i];
        buf[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (len > shown) {
        memcpy(buf + shown, "...", 3);
        shown += 3;
    }
    buf[shown] = '\0';
    return buf;
}

void rk_reply_free(rk_reply *reply)
{
    if (!reply) return;
    if (reply->element) {
        for (size_t i = 0; i < reply->elements; i++) rk_reply_free(reply->element[i]);
        rk__free(reply->element);
    }
    rk__free(reply->str);
    rk__free(reply);
}

/* Is the error code of text (its first word) `code`? */
static bool has_code(const char *text, size_t len, const char *code)
{
    size_t n = 0, clen = strlen(code);
    while (n < len && text[n] != ' ' && text[n] != '\r' && text[n] != '\n') n++;
    return n == clen && memcmp(text, code, clen) == 0;
}

rk_status rk__reply_error_status(const char *text, size_t len)
{
    if (has_code(text, len, "NOAUTH") || has_code(text, len, "WRONGPASS")) return RK_ERR_AUTH;
    /* "Not now": the server is up but will not serve this command until
     * something on its side ends — loading its data set (LOADING), running
     * a script or function past its time limit (BUSY), a replica whose
     * master is down with replica-serve-stale-data off (MASTERDOWN), a
     * cluster slot being migrated (TRYAGAIN), a cluster that has lost
     * slots or its quorum (CLUSTERDOWN). For the caller that is Redis
     * being unavailable (a cache read degrades); the breaker does not count
     * it, since the connection answered (see docs/resilience.md). */
    if (has_code(text, len, "LOADING") || has_code(text, len, "BUSY") || has_code(text, len, "MASTERDOWN") ||
        has_code(text, len, "TRYAGAIN") || has_code(text, len, "CLUSTERDOWN"))
        return RK_ERR_UNAVAILABLE;
    return RK_ERR_SERVER;
}

bool rk__reply_refuses_writes(const rk_reply *r)
{
    if (!r || r->type != RK_REPLY_ERROR || !r->str) return false;
    return has_code(r->str, r->len, "OOM") || has_code(r->str, r->len, "READONLY") ||
           has_code(r->str, r->len, "NOREPLICAS");
}

rk_status rk__reply_fail(rk_reply *reply, const char *what)
{
    const char *text = reply->str ? reply->str : "";
    rk_status st = rk__reply_error_status(text, reply->str ? reply->len : 0);
    size_t len = reply->str ? reply->len : 0;
    rk__fail(st, "%s: %.*s", what, (int)(len < RK__ERROR_TEXT_MAX ? len : RK__ERROR_TEXT_MAX), text);
    rk_reply_free(reply);
    return st;
}

char *rk__reply_take_str(rk_reply *reply, size_t *len)
{
    char *s = reply->str;
    *len = reply->len;
    reply->str = NULL;
    rk_reply_free(reply);
    return s;
}
