/*
 * headers.c — what a limiter's result looks like on the wire: the HTTP
 * header fields of draft-ietf-httpapi-ratelimit-headers (-09/-10), the
 * legacy X-RateLimit-* trio and Retry-After; and keys for IP addresses.
 *
 * Both are pure functions — a result or an address in, bytes out, no
 * allocation, no clock — so they are tested byte for byte without a
 * server. Times in headers are delta-seconds rounded up: a client told
 * "t=1" for 300 ms waits a little long rather than coming back too early,
 * which is also why Retry-After is never below the t of the limit that
 * refused.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "ratelimit.h"

typedef struct out {
    char *buf;
    size_t size, len;
} out;

__attribute__((format(printf, 2, 3))) static void put(out *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    if (o->len + (size_t)n < o->size) memcpy(o->buf + o->len, tmp, (size_t)n);
    o->len += (size_t)n;
}

static int64_t secs(int64_t ms)
{
    return ms <= 0 ? 0 : (ms + 999) / 1000;
}

/* t of a limit: seconds until more quota is available. */
static int64_t t_of(bool allowed, int64_t reset_ms, int64_t retry_ms)
{
    return secs(!allowed && retry_ms >= 0 ? retry_ms : reset_ms);
}

rk_status rk_limit_headers(const rk_limiter *l, const rk_limit_result *r, unsigned which, char *buf,
                           size_t size, size_t *needed)
{
    if (needed) *needed = 0;
    if (!l || !r) return rk__fail(RK_ERR_INVALID, "rk_limit_headers: NULL limiter or result");
    if (!buf && size > 0) return rk__fail(RK_ERR_INVALID, "rk_limit_headers: buf is NULL");
    if (r->nlimits > l->n || r->decided_by >= l->n)
        return rk__fail(RK_ERR_INVALID, "rk_limit_headers: the result is not from this limiter");
    if (which == 0) which = RK_LIMIT_HEADERS_IETF | RK_LIMIT_HEADERS_LEGACY | RK_LIMIT_HEADERS_RETRY_AFTER;
    out o = {.buf = buf, .size = size};
    const bool has_state = r->nlimits > 0 || r->path == RK_LIMIT_PATH_BLOCK_CACHE;
    const rk__limit_cfg *dc = &l->cfg[r->decided_by];
    /* The deciding limit as seen by the client (refused only if the
     * result is a refusal: shadow mode answers as allowed). */
    const bool refused = !r->allowed;
    const int64_t dt = t_of(!refused, r->reset_ms, r->retry_after_ms);

    if (which & RK_LIMIT_HEADERS_IETF) {
        put(&o, "RateLimit-Policy: ");
        for (size_t i = 0; i < l->n; i++) {
            const rk__limit_cfg *c = &l->cfg[i];
            if (c->algo == RK_LIMIT_CONCURRENCY)
                put(&o, "%s\"%s\";q=%" PRId64 ";qu=\"concurrent-requests\"", i ? ", " : "", c->name, c->quota);
            else
                put(&o, "%s\"%s\";q=%" PRId64 ";w=%" PRId64, i ? ", " : "", c->name, c->quota,
                    secs(c->period_us / 1000));
        }
        put(&o, "\r\n");
        if (r->nlimits > 0) {
            put(&o, "RateLimit: ");
            for (size_t i = 0; i < r->nlimits; i++) {
                const rk_limit_state *s = &r->limits[i];
                put(&o, "%s\"%s\";r=%" PRId64 ";t=%" PRId64, i ? ", " : "", l->cfg[i].name, s->remaining,
                    t_of(s->allowed, s->reset_ms, s->retry_after_ms));
            }
            put(&o, "\r\n");
        } else if (has_state) {
            put(&o, "RateLimit: \"%s\";r=%" PRId64 ";t=%" PRId64 "\r\n", dc->name, r->remaining, dt);
        }
    }
    if ((which & RK_LIMIT_HEADERS_LEGACY) && has_state) {
        put(&o, "X-RateLimit-Limit: %" PRId64 "\r\n", r->limit);
        put(&o, "X-RateLimit-Remaining: %" PRId64 "\r\n", r->remaining);
        put(&o, "X-RateLimit-Reset: %" PRId64 "\r\n", secs(r->reset_ms));
    }
    if ((which & RK_LIMIT_HEADERS_RETRY_AFTER) && refused && r->retry_after_ms >= 0) {
        int64_t ra = secs(r->retry_after_ms);
        if (ra < dt) ra = dt;
        if (ra < 1) ra = 1;
        put(&o, "Retry-After: %" PRId64 "\r\n", ra);
    }
    if (needed) *needed = o.len;
    if (o.len >= size) {
        if (size) buf[0] = '\0';
        return rk__fail(RK_ERR_TOO_LARGE, "rate limit headers need %zu bytes, the buffer has %zu", o.len + 1,
                        size);
    }
    buf[o.len] = '\0';
    return RK_OK;
}

rk_status rk_limiter_ip_key(const char *ip, int bits, char *buf, size_t size)
{
    if (!ip || !buf) return rk__fail(RK_ERR_INVALID, "rk_limiter_ip_key: NULL argument");
    if (bits < 0 || bits > 128)
        return rk__fail(RK_ERR_INVALID, "rk_limiter_ip_key: IPv6 prefix of %d bits is outside 0..128", bits);
    if (bits == 0) bits = 56;
    char text[INET6_ADDRSTRLEN + 16];
    unsigned char a[16];
    int n;
    if (inet_pton(AF_INET, ip, a) == 1) {
        char s[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, a, s, sizeof s);
        n = snprintf(text, sizeof text, "ip4:%s", s);
    } else if (inet_pton(AF_INET6, ip, a) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, sizeof mapped) == 0) {
            char s[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, a + 12, s, sizeof s);
            n = snprintf(text, sizeof text, "ip4:%s", s);
        } else {
            for (int i = 0; i < 16; i++) {
                int keep = bits - 8 * i;
                if (keep <= 0) a[i] = 0;
                else if (keep < 8) a[i] &= (unsigned char)(0xff << (8 - keep));
            }
            char s[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, a, s, sizeof s);
            n = snprintf(text, sizeof text, "ip6:%s/%d", s, bits);
        }
    } else {
        /* The address is caller data, possibly hostile: not echoed. */
        return rk__fail(RK_ERR_INVALID, "rk_limiter_ip_key: not an IPv4 or IPv6 address");
    }
    if ((size_t)n >= size) {
        if (size) buf[0] = '\0';
        return rk__fail(RK_ERR_TOO_LARGE, "rk_limiter_ip_key: the key needs %d bytes", n + 1);
    }
    memcpy(buf, text, (size_t)n + 1);
    return RK_OK;
}
