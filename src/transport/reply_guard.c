/*
 * reply_guard.c — the announced-size check of reply_guard.h.
 *
 * A byte-at-a-time state machine over the RESP2 stream: a type byte; a
 * line up to its CRLF, as hiredis reads it (a lone LF is part of the
 * line), with a $ or * header's digits kept and every line byte counted;
 * a bulk string's payload skipped by count, not byte by byte; and a stack
 * of the elements each open array still expects, so that it knows when a
 * top-level reply ends and its cost starts again from zero — pipelined
 * replies are judged one by one. It never allocates and never looks back:
 * a reply is refused on the byte that takes it over the bound.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "reply_guard.h"

void rk__reply_guard_init(rk__reply_guard *g) { memset(g, 0, sizeof *g); }

static rk_status too_large(size_t limit, const char *peer, const char *what)
{
    return rk__fail(RK_ERR_TOO_LARGE, "reply from %s: announces more than max_reply_bytes (%zu): %s; connection closed",
                    peer, limit, what);
}

/* Charge bytes to the reply being read. */
static bool charge(rk__reply_guard *g, uint64_t bytes, size_t limit)
{
    if (bytes > limit - g->cost) return false;
    g->cost += (size_t)bytes;
    return true;
}

/* An element (of an array, or a whole reply) is complete. */
static void element_done(rk__reply_guard *g)
{
    for (;;) {
        if (g->depth == 0) {
            g->cost = 0; /* a top-level reply ended: the next one starts afresh */
            return;
        }
        if (--g->left[g->depth - 1] > 0) return;
        g->depth--; /* that array is complete: an element of its parent */
    }
}

/* The count of a $ or * header, or false when it is not a number (the
 * reader will refuse the stream). */
static bool header_count(rk__reply_guard *g, long long *out)
{
    unsigned n = g->n_digits;
    if (n > 0 && g->digits[n - 1] == '\r') n--;
    if (n == 0 || n >= sizeof g->digits) return false;
    g->digits[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(g->digits, &end, 10);
    if (errno != 0 || *end != '\0' || g->digits[0] == '+' || g->digits[0] == ' ') return false;
    *out = v;
    return true;
}

/* A line ended (the LF of its CRLF just read). */
static rk_status line_done(rk__reply_guard *g, size_t limit, const char *peer)
{
    char type = g->type;
    g->type = 0;
    if (type != '$' && type != '*') {
        element_done(g);
        return RK_OK;
    }
    long long count;
    if (!header_count(g, &count)) {
        g->off = true;
        return RK_OK;
    }
    if (type == '$') {
        if (count < 0) { /* nil */
            element_done(g);
            return RK_OK;
        }
        if (!charge(g, (uint64_t)count, limit)) return too_large(limit, peer, "a bulk string");
        g->skip = (uint64_t)count + 2;
        return RK_OK;
    }
    if (count <= 0) { /* empty or nil array */
        element_done(g);
        return RK_OK;
    }
    if ((uint64_t)count > (limit - g->cost) / RK__REPLY_ELEMENT_COST) return too_large(limit, peer, "an array");
    g->cost += (size_t)count * RK__REPLY_ELEMENT_COST;
    if (g->depth == RK__REPLY_MAX_DEPTH)
        return rk__fail(RK_ERR_PROTOCOL, "reply from %s: arrays nested deeper than %d", peer, RK__REPLY_MAX_DEPTH);
    g->left[g->depth++] = count;
    return RK_OK;
}

rk_status rk__reply_guard_scan(rk__reply_guard *g, const char *buf, size_t n, size_t limit, const char *peer)
{
    size_t i = 0;
    while (i < n && !g->off) {
        if (g->skip > 0) {
            size_t take = g->skip < n - i ? (size_t)g->skip : n - i;
            g->skip -= take;
            i += take;
            if (g->skip == 0) element_done(g);
            continue;
        }
        char ch = buf[i++];
        if (g->type == 0) {
            if (ch != '+' && ch != '-' && ch != ':' && ch != '$' && ch != '*') {
                g->off = true;
                break;
            }
            g->type = ch;
            g->n_digits = 0;
            g->cr = false;
            if (!charge(g, 1, limit)) return too_large(limit, peer, "a reply");
            continue;
        }
        /* Every byte of a line is memory the reader holds (and, for simple
         * lines, the string it builds): an endless line is refused too. */
        if (!charge(g, 1, limit)) return too_large(limit, peer, "a line without end");
        bool ends = ch == '\n' && g->cr;
        g->cr = ch == '\r';
        if (ends) {
            rk_status st = line_done(g, limit, peer);
            if (st != RK_OK) return st;
        } else if ((g->type == '$' || g->type == '*') && g->n_digits < sizeof g->digits) {
            g->digits[g->n_digits++] = ch;
        }
    }
    return RK_OK;
}
