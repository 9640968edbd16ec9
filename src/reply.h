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

/* A protocol reader that builds rk_reply objects. NULL on no memory. */
redisReader *rk__reader_new(void);

/* For a top-level error reply: set the thread's last error from the
 * server's text (prefixed by what), free the reply, and return the status
 * that fits (RK_ERR_AUTH for NOAUTH/WRONGPASS, RK_ERR_SERVER otherwise). */
rk_status rk__reply_fail(rk_reply *reply, const char *what);

/* Detach a STRING reply's buffer: returns reply->str (len bytes + NUL,
 * freed with rk__free) and frees the reply shell. */
char *rk__reply_take_str(rk_reply *reply, size_t *len);

#endif
