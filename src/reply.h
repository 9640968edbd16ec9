/*
 * reply.h — building rk_reply trees straight from hiredis's protocol
 * reader, and the helpers that interpret them.
 *
 * hiredis's redisReader lets the user supply the functions that create
 * reply objects. redkit hands it its own, so the reader produces rk_reply
 * values directly: no hiredis type crosses the public API and no reply is
 * copied after parsing.
 */
#ifndef RK_SRC_REPLY_H
#define RK_SRC_REPLY_H

#include <hiredis/read.h>
#include <redkit/client.h>

/* A protocol reader that builds rk_reply objects. NULL on no memory. It
 * allocates an array's slots as its elements arrive, so memory follows the
 * bytes received, never a count the server announced, and it refuses
 * (as out of memory: the reader has no other way to fail from a reply
 * function) the RESP3 types hiredis 1.x would otherwise pass through.
 * Fuzzed by tests/fuzz/reply_fuzz.c. */
redisReader *rk__reader_new(void);

/* The status for an error reply's text (len bytes): RK_ERR_AUTH when its
 * error code — the first word, up to a space or newline, as RESP defines
 * it — is NOAUTH or WRONGPASS; RK_ERR_SERVER otherwise. Pure. */
rk_status rk__reply_error_status(const char *text, size_t len);

/* For a top-level error reply: set the thread's last error from the
 * server's text (prefixed by what, at most 300 bytes of it), free the
 * reply, and return rk__reply_error_status() of the text. */
rk_status rk__reply_fail(rk_reply *reply, const char *what);

/* Detach a STRING reply's buffer: returns reply->str (len bytes + NUL,
 * freed with rk__free) and frees the reply shell. */
char *rk__reply_take_str(rk_reply *reply, size_t *len);

#endif
