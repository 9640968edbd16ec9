/*
 * cookie.c — the session cookie: formatting Set-Cookie and finding the
 * token in a Cookie header (contract in include/redkit/sessions.h).
 *
 * Defaults follow OWASP's session cheat sheet: the "__Host-" name prefix
 * (the browser then insists on Secure, Path=/ and no Domain, so no
 * subdomain can plant or read the cookie), Secure, HttpOnly (no script
 * reads the token), SameSite=Lax, and Max-Age from the session's own time
 * left, so the browser forgets the cookie when Redis forgets the session.
 * Pure functions: no allocation, no I/O.
 */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "sessions.h"

#define DEFAULT_NAME "__Host-session"

/* A cookie name is an RFC 6265 token: visible ASCII but separators. */
static bool name_ok(const char *n)
{
    if (!n || !*n || strlen(n) > 128) return false;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p <= 32 || *p >= 127 || strchr("()<>@,;:\\\"/[]?={}", *p)) return false;
    return true;
}

/* An attribute value (Domain, Path): visible ASCII but ';'. */
static bool attr_ok(const char *v)
{
    if (!v || !*v || strlen(v) > 256) return false;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 33 || *p >= 127 || *p == ';') return false;
    return true;
}

static rk_status format(const char *value, int64_t max_age_s, const rk_session_cookie_options *o, char *buf,
                        size_t size)
{
    static const rk_session_cookie_options defaults = {0};
    if (!o) o = &defaults;
    if (!buf) return rk__fail(RK_ERR_INVALID, "cookie: buf is NULL");
    const char *name = o->name ? o->name : DEFAULT_NAME;
    const char *path = o->path ? o->path : "/";
    const char *same = o->same_site ? o->same_site : "Lax";
    if (!name_ok(name)) return rk__fail(RK_ERR_INVALID, "cookie: bad cookie name");
    if (!attr_ok(path) || (o->domain && !attr_ok(o->domain)))
        return rk__fail(RK_ERR_INVALID, "cookie: bad Path or Domain");
    if (strcmp(same, "Lax") && strcmp(same, "Strict") && strcmp(same, "None"))
        return rk__fail(RK_ERR_INVALID, "cookie: same_site must be Lax, Strict or None");
    if (strncmp(name, "__Host-", 7) == 0 && (o->domain || strcmp(path, "/") || o->insecure))
        return rk__fail(RK_ERR_INVALID, "cookie: a __Host- cookie needs Secure, Path=/ and no Domain");
    if (strncmp(name, "__Secure-", 9) == 0 && o->insecure)
        return rk__fail(RK_ERR_INVALID, "cookie: a __Secure- cookie needs Secure");
    if (!strcmp(same, "None") && o->insecure)
        return rk__fail(RK_ERR_INVALID, "cookie: SameSite=None needs Secure");
    int n = snprintf(buf, size, "%s=%s; Path=%s%s%s; Max-Age=%lld%s; HttpOnly; SameSite=%s", name, value, path,
                     o->domain ? "; Domain=" : "", o->domain ? o->domain : "", (long long)max_age_s,
                     o->insecure ? "" : "; Secure", same);
    if (n < 0 || (size_t)n >= size) {
        if (size) buf[0] = '\0';
        return rk__fail(RK_ERR_TOO_LARGE, "cookie: buffer of %zu bytes is too small (%d needed)", size, n + 1);
    }
    return RK_OK;
}

rk_status rk_sessions_cookie_format(const char *token, int64_t max_age_ms, const rk_session_cookie_options *opts,
                                    char *buf, size_t size)
{
    if (!rk__session_token_ok(token)) return rk__fail(RK_ERR_INVALID, "cookie: malformed session token");
    if (max_age_ms < 0) return rk__fail(RK_ERR_INVALID, "cookie: max_age_ms is negative");
    return format(token, max_age_ms / 1000, opts, buf, size);
}

rk_status rk_sessions_cookie_clear(const rk_session_cookie_options *opts, char *buf, size_t size)
{
    return format("", 0, opts, buf, size);
}

rk_status rk_sessions_cookie_token(const char *header, const char *name, char token[RK_SESSION_TOKEN_SIZE])
{
    if (!header || !token) return rk__fail(RK_ERR_INVALID, "cookie: NULL argument");
    if (!name) name = DEFAULT_NAME;
    if (!name_ok(name)) return rk__fail(RK_ERR_INVALID, "cookie: bad cookie name");
    size_t nlen = strlen(name);
    /* "a=1; b=2": pairs split by ';', optional spaces around them. The
     * first pair with the name wins (the browser sends the most specific
     * path first); a value that is not a token is a miss, not a guess. */
    const char *p = header;
    for (int pairs = 0; *p && pairs < 4096; pairs++) {
        while (*p == ' ' || *p == '\t' || *p == ';') p++;
        const char *end = strchr(p, ';');
        if (!end) end = p + strlen(p);
        if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = (size_t)(end - v);
            while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            char cand[RK_SESSION_TOKEN_SIZE];
            if (vlen != RK_SESSION_TOKEN_LEN) break;
            memcpy(cand, v, vlen);
            cand[vlen] = '\0';
            if (!rk__session_token_ok(cand)) break;
            memcpy(token, cand, sizeof cand);
            return RK_OK;
        }
        p = end;
    }
    return rk__fail(RK_MISS, "cookie: no session cookie");
}
