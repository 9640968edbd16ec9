/*
 * reply_guard.h — refusing a reply by its announced size before the
 * client buffers or builds it.
 *
 * hiredis's reader (0.14) buffers a bulk string until all of it has
 * arrived and builds an array's elements as they come, whatever the header
 * announced: a server that announces "$1073741824" and starts sending, or
 * "*2147483647" and follows with elements, makes the client allocate until
 * the deadline stops it (hundreds of MiB in half a second on loopback;
 * reply objects cost several times their wire size). The reader has no
 * hook to say no, so the connection passes every byte through this guard
 * before it feeds the reader: a small RESP2 scanner that sees each header
 * as it arrives and keeps the announced cost of the reply being read.
 *
 * The cost of a reply, which max_reply_bytes bounds, is what building it
 * would take: the length of every bulk string, every byte of simple lines
 * (status, error, integer) and headers, and RK__REPLY_ELEMENT_COST for
 * every element an array announces (an element object and its slot in the
 * array: the smallest an element can cost, whatever its bytes on the
 * wire). A header that would take the reply over the bound is refused the
 * moment it is complete — before its payload is buffered — and so is a
 * line that grows past it. The bytes buffered per connection are thereby
 * bounded too: at most one reply's worth, plus one read.
 *
 * Pure: no I/O, no allocation; tests/transport/reply_guard_test.c.
 */
#ifndef RK_SRC_REPLY_GUARD_H
#define RK_SRC_REPLY_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/status.h>

/* What an array element costs at least, in bytes of client memory. */
#define RK__REPLY_ELEMENT_COST 64

/* Deepest nesting of arrays accepted; Redis's own replies nest a few
 * levels (hiredis 0.14 refuses more than 7). */
#define RK__REPLY_MAX_DEPTH 32

typedef struct rk__reply_guard {
    size_t cost;                          /* of the reply being read */
    uint64_t skip;                        /* bulk payload (and CRLF) still to pass */
    int64_t left[RK__REPLY_MAX_DEPTH];    /* elements still due, per open array */
    int depth;                            /* open arrays */
    char type;                            /* of the line being read; 0 = a type byte is next */
    char digits[24];                      /* a $ or * header's count, as read */
    unsigned n_digits;
    bool cr;                              /* the last byte of the line was CR */
    bool off;                             /* not RESP2: hiredis refuses it */
} rk__reply_guard;

/* A guard for a new connection's stream. */
void rk__reply_guard_init(rk__reply_guard *g);

/* Pass the next n bytes of the stream through the guard. RK_OK, or
 * RK_ERR_TOO_LARGE when a reply's cost exceeds limit ("reply from <peer>:
 * announces more than max_reply_bytes (<limit>): <what>"), or
 * RK_ERR_PROTOCOL for arrays nested deeper than RK__REPLY_MAX_DEPTH; then
 * the last error is set and the stream must be dropped. Bytes that are not
 * RESP2 are left to the reader to refuse. peer is used in messages only. */
rk_status rk__reply_guard_scan(rk__reply_guard *g, const char *buf, size_t n, size_t limit, const char *peer);

#endif
