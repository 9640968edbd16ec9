/*
 * reply.c — the reply-object functions given to hiredis's reader (see
 * reply.h for why), and rk_reply_free().
 *
 * The reader calls these as it parses; each new object is linked into its
 * parent array at task->idx. If any function returns NULL the reader fails
 * with an out-of-memory error and frees the partial tree through
 * freeObject, so no half-built reply escapes.
 */
#include <string.h>

#include <hiredis/hiredis.h>

#include "alloc.h"
#include "error.h"
#include "reply.h"

static rk_reply *reply_new(const redisReadTask *task, rk_reply_type type)
{
    rk_reply *r = rk__calloc(1, sizeof *r);
    if (!r) return NULL;
    r->type = type;
    if (task->parent) {
        rk_reply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
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

#if HIREDIS_MAJOR >= 1
static void *create_array(const redisReadTask *task, size_t n)
#else
static void *create_array(const redisReadTask *task, int n)
#endif
{
    rk_reply **elements = NULL;
    if (n > 0) {
        elements = rk__calloc((size_t)n, sizeof *elements);
        if (!elements) return NULL;
    }
    rk_reply *r = reply_new(task, RK_REPLY_ARRAY);
    if (!r) {
        rk__free(elements);
        return NULL;
    }
    r->element = elements;
    r->elements = (size_t)n;
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    rk_reply *r = reply_new(task, RK_REPLY_INTEGER);
    if (r) r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task) { return reply_new(task, RK_REPLY_NIL); }

static void free_object(void *obj) { rk_reply_free(obj); }

static redisReplyObjectFunctions reply_functions = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = free_object,
};

redisReader *rk__reader_new(void) { return redisReaderCreateWithFunctions(&reply_functions); }

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

rk_status rk__reply_fail(rk_reply *reply, const char *what)
{
    rk_status st = RK_ERR_SERVER;
    const char *text = reply->str ? reply->str : "";
    if (strncmp(text, "NOAUTH", 6) == 0 || strncmp(text, "WRONGPASS", 9) == 0) st = RK_ERR_AUTH;
    rk__fail(st, "%s: %.*s", what, (int)(reply->len < 300 ? reply->len : 300), text);
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
