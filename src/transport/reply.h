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

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/read.h>
#include <redkit/client.h>

/* A protocol reader that builds rk_reply objects. NULL on no memory. It
 * allocates an array's slots as its elements arrive, so memory follows the
 * bytes received, never a count the server announced, and it refuses
 * (as out of memory: the reader has no other way to fail from a reply
 * function) the RESP3 types hiredis 1.x would otherwise pass through, and
 * an array given more elements than it announced. Free it with
 * redisReaderFree(). Fuzzed by tests/fuzz/reply_fuzz.c. */
redisReader *rk__reader_new(void);

/* Have the reader's reply functions set *flag (caller-owned; it must
 * outlive the reader's use, and start false) when they refuse a reply
 * because the stream is malformed rather than because memory ran out.
 * Uses the reader's privdata. */
void rk__reader_report_malformed(redisReader *reader, bool *flag);

/* For a reader whose redisReaderGetReply() failed: set the thread's last
 * error and return the status — RK_ERR_NOMEM for a genuine allocation
 * failure; RK_ERR_PROTOCOL for a malformed stream, whether hiredis found
 * it ("reply from <peer>: <hiredis's reason>") or the reply functions did
 * (an out-of-memory report with the flag of rk__reader_report_malformed
 * set). peer ("host:port") is only used in the message. */
rk_status rk__reader_fail(const redisReader *reader, const char *peer);

/* How much of a command name a message shows: RK__NAME_SHOWN_BYTES bytes,
 * then "..." when there was more, and the NUL. */
#define RK__NAME_SHOWN_BYTES 64
#define RK__NAME_SHOWN_MAX (RK__NAME_SHOWN_BYTES + 4)

/* A name for a message (a command name, which rk_client_command takes
 * binary-safe: not NUL-terminated, any bytes): the first len bytes of
 * name, at most RK__NAME_SHOWN_BYTES of them, each byte outside printable
 * ASCII replaced by '?', "..." appended when cut. Never reads past len.
 * Writes buf and returns it. */
const char *rk__printable_name(char buf[RK__NAME_SHOWN_MAX], const char *name, size_t len);

/* The status for an error reply's text (len bytes): RK_ERR_AUTH when its
 * error code — the first word, up to a space or newline, as RESP defines
 * it — is NOAUTH or WRONGPASS; RK_ERR_UNAVAILABLE when it is one of the
 * server's "not now" states, LOADING, BUSY, MASTERDOWN or TRYAGAIN;
 * RK_ERR_SERVER otherwise. Pure. */
rk_status rk__reply_error_status(const char *text, size_t len);

/* Is r an error reply by which the server refuses writes for now but
 * still serves reads: OOM (maxmemory reached under noeviction) or
 * READONLY (a replica)? Pure. */
bool rk__reply_refuses_writes(const rk_reply *r);

/* How much of a server's error text a message repeats. */
#define RK__ERROR_TEXT_MAX 300

/* For a top-level error reply: set the thread's last error from the
 * server's text (prefixed by what, a NUL-terminated string — see
 * rk__printable_name for a command name given with a length — and at most
 * RK__ERROR_TEXT_MAX bytes of the text), free the reply, and return
 * rk__reply_error_status() of the text. */
rk_status rk__reply_fail(rk_reply *reply, const char *what);

/* Detach a STRING reply's buffer: returns reply->str (len bytes + NUL,
 * freed with rk__free) and frees the reply shell. */
char *rk__reply_take_str(rk_reply *reply, size_t *len);

#endif
