/*
 * url.c — REDIS_URL parsing and redaction.
 *
 * A URL arrives from the environment, often written by hand, and it carries
 * a password, so the parser is strict and careful about what it repeats.
 * It works in two steps. split() finds where the parts lie without copying
 * anything: the scheme, the authority (everything up to the first '/' or
 * '?'), and inside the authority the LAST '@', so that an unescaped '@' in a
 * password still parses (as Python's urllib does); the user ends at the
 * FIRST ':' of the userinfo, so a password may hold ':' too. A '#' anywhere,
 * or an '@' after the authority, is refused: both mean that a '#', '/' or
 * '?' in a password was not percent-encoded, and refusing them guarantees
 * that no piece of a password is ever parsed, and so never echoed, as a
 * host, port, path or option. Then each part is checked and decoded into an
 * rk__url. Error messages name the part and what is wrong with it; the only
 * text of the URL they ever repeat is an unknown option's name. A repeated
 * option (including a db given both as /N and ?db=N) is an error rather
 * than "last wins": a URL assembled from templates that says two things
 * most likely has a mistake in it. rk_url_redact() reuses split(), so the
 * text it hides is exactly what the parser read as the password. For the
 * same reason the tls_ options are refused outside rediss:// rather than
 * ignored: a CA file in a redis:// URL says its author expected TLS, and
 * silently connecting in clear would betray that.
 *
 * Every copy of the password, and every other string decoded from the URL
 * — option values kept or refused, the host, the socket path (a password
 * pasted into the wrong part is still a password) — is wiped with
 * rk__free_secret() before it is freed; decode() allocates each at its
 * exact size, so no realloc ever leaves a stray copy behind.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <redkit/client.h>
#include <redkit/keys.h>
#include <redkit/url.h>


#include "alloc.h"
#include "error.h"
#include "url.h"

/* Longest option name repeated in an "unknown option" message. */
#define MAX_ECHOED_NAME 32

/* Where the parts of a URL lie, as pointers into the caller's text. */
typedef struct url_layout {
    bool tls;
    bool is_unix;
    const char *auth;     /* just after "://" */
    const char *auth_end; /* first '/' or '?' after auth, or the final NUL */
    const char *at;       /* last '@' in [auth, auth_end), or NULL */
} url_layout;

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

static int hex_value(char c)
{
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Compare the n bytes at s with the lowercase word, ignoring ASCII case. */
static bool equals_nocase(const char *s, size_t n, const char *word)
{
    if (strlen(word) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != word[i]) return false;
    }
    return true;
}

/* Parse n decimal digits (nothing else, not empty) into a value in
 * [min, max]. Overflow is caught before it happens. */
static bool parse_number(const char *s, size_t n, long min, long max, long *out)
{
    long v = 0;
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) return false;
        if (v > (max - (s[i] - '0')) / 10) return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min) return false;
    *out = v;
    return true;
}

/* Percent-decode the n bytes at s into a new string. Escapes are checked
 * before anything is allocated, so a bad password leaves no copy behind.
 * "%00" is refused: it would silently cut the string short. part names
 * the field in the error message; the text itself is never repeated. */
static rk_status decode(const char *s, size_t n, const char *part, char **out)
{
    size_t len = n;
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') continue;
        if (i + 2 >= n || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0)
            return rk__fail(RK_ERR_INVALID, "URL %s: bad percent escape (want %%XX)", part);
        if (s[i + 1] == '0' && s[i + 2] == '0')
            return rk__fail(RK_ERR_INVALID, "URL %s: %%00 is not allowed", part);
        i += 2;
        len -= 2;
    }
    char *d = rk__malloc(len + 1);
    if (!d) return rk__fail(RK_ERR_NOMEM, "URL %s: out of memory", part);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            d[j++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            d[j++] = s[i];
        }
    }
    d[j] = '\0';
    *out = d;
    return RK_OK;
}

/* Find the parts of url (see the comment at the top of the file). */
static rk_status split(const char *url, url_layout *L)
{
    const char *p;

    memset(L, 0, sizeof *L);
    for (p = url; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            return rk__fail(RK_ERR_INVALID, "URL: contains a control character");
    }
    if (strchr(url, '#'))
        return rk__fail(RK_ERR_INVALID,
                        "URL fragment: '#' is not allowed (write %%23 in a password)");

    /* The scheme is the leading run of letters, followed by "://". */
    for (p = url; is_alpha(*p); p++) {}
    size_t scheme_len = (size_t)(p - url);
    if (strncmp(p, "://", 3) != 0)
        return rk__fail(RK_ERR_INVALID, "URL scheme: expected redis://, rediss:// or unix://");
    if (equals_nocase(url, scheme_len, "rediss")) {
        L->tls = true;
    } else if (equals_nocase(url, scheme_len, "unix")) {
        L->is_unix = true;
    } else if (!equals_nocase(url, scheme_len, "redis")) {
        return rk__fail(RK_ERR_INVALID, "URL scheme: expected redis://, rediss:// or unix://");
    }

    L->auth = p + 3;
    L->auth_end = L->auth + strcspn(L->auth, "/?");
    for (p = L->auth; p < L->auth_end; p++)
        if (*p == '@') L->at = p;
    if (strchr(L->auth_end, '@'))
        return rk__fail(RK_ERR_INVALID, "URL userinfo: '@' after the host "
                                        "(write %%2F, %%3F for '/', '?' in a password)");
    return RK_OK;
}

/* [user][:password] between s and e, percent-decoded; empty means absent. */
static rk_status parse_userinfo(rk__url *u, const char *s, const char *e)
{
    const char *colon = memchr(s, ':', (size_t)(e - s));
    const char *user_end = colon ? colon : e;
    rk_status st;

    if (user_end > s && (st = decode(s, (size_t)(user_end - s), "user", &u->username)))
        return st;
    if (colon && e > colon + 1 &&
        (st = decode(colon + 1, (size_t)(e - colon - 1), "password", &u->password)))
        return st;
    return RK_OK;
}

static bool is_host_char(char c) { return is_alnum(c) || c == '-' || c == '.' || c == '_'; }

/* host[:port] or [ipv6][:port] between s and e. An empty host is left NULL
 * (the default); an IPv6 literal is stored without its brackets. */
static rk_status parse_host_port(rk__url *u, const char *s, const char *e)
{
    const char *host = s, *host_end, *port = NULL;

    if (s < e && *s == '[') {
        const char *close = memchr(s, ']', (size_t)(e - s));
        char buf[INET6_ADDRSTRLEN];
        unsigned char addr[16];
        if (!close)
            return rk__fail(RK_ERR_INVALID, "URL host: unbalanced brackets ('[' without ']')");
        host = s + 1;
        host_end = close;
        if ((size_t)(host_end - host) >= sizeof buf)
            return rk__fail(RK_ERR_INVALID, "URL host: not a valid IPv6 address");
        memcpy(buf, host, (size_t)(host_end - host));
        buf[host_end - host] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return rk__fail(RK_ERR_INVALID, "URL host: not a valid IPv6 address");
        if (close + 1 < e) {
            if (close[1] != ':')
                return rk__fail(RK_ERR_INVALID, "URL host: unexpected text after ']'");
            port = close + 2;
        }
    } else {
        host_end = memchr(s, ':', (size_t)(e - s));
        if (host_end) {
            port = host_end + 1;
            if (memchr(port, ':', (size_t)(e - port)))
                return rk__fail(RK_ERR_INVALID,
                                "URL host: an IPv6 address must be in brackets ([::1])");
        } else {
            host_end = e;
        }
        for (const char *p = host; p < host_end; p++) {
            if (*p == '[' || *p == ']')
                return rk__fail(RK_ERR_INVALID, "URL host: unbalanced brackets");
            if (!is_host_char(*p))
                return rk__fail(RK_ERR_INVALID,
                                "URL host: invalid character (allowed: A-Z a-z 0-9 - . _)");
        }
    }

    if (port) {
        long v;
        if (!parse_number(port, (size_t)(e - port), 1, 65535, &v))
            return rk__fail(RK_ERR_INVALID, "URL port: not a number 1..65535");
        u->port = (int)v;
    }
    if (host_end > host) {
        u->host = rk__strndup(host, (size_t)(host_end - host));
        if (!u->host) return rk__fail(RK_ERR_NOMEM, "URL host: out of memory");
    }
    return RK_OK;
}

/* The socket path of a unix:// URL: absolute, non-empty, and short enough
 * for sockaddr_un, so the mistake shows here rather than at connect time. */
static rk_status parse_unix_path(rk__url *u, const char *s, const char *e)
{
    rk_status st;

    if (e - s < 2 || *s != '/')
        return rk__fail(RK_ERR_INVALID, "URL path: unix:// needs an absolute socket path "
                                        "(unix:///path/to/redis.sock)");
    if ((st = decode(s, (size_t)(e - s), "path", &u->unix_path))) return st;
    if (strlen(u->unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return rk__fail(RK_ERR_INVALID, "URL path: longer than %zu bytes",
                        sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    return RK_OK;
}

static const char *const option_names[] = {
    "connect_timeout", "command_timeout", "pool_size", "name", "prefix", "db",
    "tls_ca_file", "tls_ca_dir", "tls_cert_file", "tls_key_file", "tls_server_name", "tls_insecure",
};
enum { OPT_CONNECT_TIMEOUT, OPT_COMMAND_TIMEOUT, OPT_POOL_SIZE, OPT_NAME, OPT_PREFIX, OPT_DB,
       OPT_TLS_CA_FILE, OPT_TLS_CA_DIR, OPT_TLS_CERT_FILE, OPT_TLS_KEY_FILE, OPT_TLS_SERVER_NAME,
       OPT_TLS_INSECURE, OPT_COUNT, OPT_FIRST_TLS = OPT_TLS_CA_FILE };

/* The value of a numeric option, already decoded, into *out. */
static rk_status option_number(const char *name, const char *v, long min, long max,
                               const char *unit, int *out)
{
    long n;
    if (!parse_number(v, strlen(v), min, max, &n))
        return rk__fail(RK_ERR_INVALID, "URL option %s: not a number %ld..%ld%s", name, min, max,
                        unit);
    *out = (int)n;
    return RK_OK;
}

/* Redis refuses CLIENT SETNAME with spaces, newlines or anything outside
 * printable ASCII; better to say so before connecting. */
bool rk__client_name_valid(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || (unsigned char)*v > '~') return false;
    return true;
}

/* No empty label: OpenSSL reads a leading '.' as "any subdomain of"
 * (".example.com" would accept cache.example.com), and a trailing '.' or
 * ".." names nothing a certificate carries. */
bool rk__server_name_valid(const char *v)
{
    unsigned char addr[16];
    size_t n = strlen(v);
    if (n == 0 || n > 253) return false;
    if (inet_pton(AF_INET6, v, addr) == 1) return true;
    if (v[0] == '.' || v[n - 1] == '.' || strstr(v, "..")) return false;
    for (; *v; v++)
        if (!is_host_char(*v)) return false;
    return true;
}

/* A key prefix follows the namespace rule (src/keys/names.h), or is empty. */
static bool valid_prefix(const char *v) { return !*v || rk__name_valid(v); }

/* One name=value pair of the query. seen has a bit per option already
 * given, so that a repeated option is refused. */
static rk_status parse_option(rk__url *u, const char *s, const char *e, unsigned *seen)
{
    const char *eq = memchr(s, '=', (size_t)(e - s));
    const char *name_end = eq ? eq : e;
    size_t nlen = (size_t)(name_end - s);
    int opt;

    for (opt = 0; opt < OPT_COUNT; opt++)
        if (strlen(option_names[opt]) == nlen && memcmp(s, option_names[opt], nlen) == 0) break;
    if (opt == OPT_COUNT) {
        /* Safe to repeat: split() made sure no password text reaches the
         * query. The length cap keeps a garbage query out of the logs. */
        return rk__fail(RK_ERR_INVALID,
                        "URL option %.*s%s: unknown (expected connect_timeout, "
                        "command_timeout, pool_size, name, prefix, db, tls_ca_file, tls_ca_dir, "
                        "tls_cert_file, tls_key_file, tls_server_name or tls_insecure)",
                        (int)(nlen > MAX_ECHOED_NAME ? MAX_ECHOED_NAME : nlen), s,
                        nlen > MAX_ECHOED_NAME ? "..." : "");
    }
    const char *name = option_names[opt];
    if (*seen & (1u << opt))
        return rk__fail(RK_ERR_INVALID, "URL option %s: given more than once", name);
    *seen |= 1u << opt;
    if (!eq || eq + 1 == e)
        return rk__fail(RK_ERR_INVALID, "URL option %s: missing value", name);
    if (opt >= OPT_FIRST_TLS && !u->tls)
        return rk__fail(RK_ERR_INVALID, "URL option %s: only for rediss:// URLs", name);

    char part[40], *v;
    rk_status st;
    snprintf(part, sizeof part, "option %s", name);
    if ((st = decode(eq + 1, (size_t)(e - eq - 1), part, &v))) return st;

    switch (opt) {
    case OPT_CONNECT_TIMEOUT:
        st = option_number(name, v, 1, RK_MAX_TIMEOUT_MS, " (milliseconds)",
                           &u->connect_timeout_ms);
        break;
    case OPT_COMMAND_TIMEOUT:
        st = option_number(name, v, 1, RK_MAX_TIMEOUT_MS, " (milliseconds)",
                           &u->command_timeout_ms);
        break;
    case OPT_POOL_SIZE:
        st = option_number(name, v, 1, RK_MAX_POOL_SIZE, "", &u->pool_size);
        break;
    case OPT_DB:
        st = option_number(name, v, 0, INT_MAX, "", &u->db);
        u->has_db = st == RK_OK;
        break;
    case OPT_NAME:
        if (!rk__client_name_valid(v)) {
            st = rk__fail(RK_ERR_INVALID,
                          "URL option name: only printable ASCII without spaces is allowed");
            break;
        }
        u->client_name = v;
        return RK_OK;
    case OPT_PREFIX:
        if (!valid_prefix(v)) {
            st = rk__fail(RK_ERR_INVALID,
                          "URL option prefix: at most %d bytes of A-Z a-z 0-9 _ . -",
                          RK_MAX_NAMESPACE_BYTES);
            break;
        }
        u->key_prefix = v;
        return RK_OK;
    case OPT_TLS_CA_FILE: u->tls_ca_file = v; return RK_OK;
    case OPT_TLS_CA_DIR: u->tls_ca_dir = v; return RK_OK;
    case OPT_TLS_CERT_FILE: u->tls_cert_file = v; return RK_OK;
    case OPT_TLS_KEY_FILE: u->tls_key_file = v; return RK_OK;
    case OPT_TLS_SERVER_NAME:
        if (!rk__server_name_valid(v)) {
            st = rk__fail(RK_ERR_INVALID, "URL option tls_server_name: not a host name "
                                          "(A-Z a-z 0-9 - . _, no empty label) or an IP address");
            break;
        }
        u->tls_server_name = v;
        return RK_OK;
    case OPT_TLS_INSECURE:
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
            st = rk__fail(RK_ERR_INVALID, "URL option tls_insecure: must be 1 (or 0)");
            break;
        }
        u->tls_insecure = v[0] == '1';
        break;
    }
    /* Wiped too: a password pasted into the wrong option is still one. */
    rk__free_secret(v);
    return st;
}

/* The query between s and e: pairs separated by '&'. Empty pairs ("?",
 * "a=1&&b=2", a trailing '&') are skipped. */
static rk_status parse_query(rk__url *u, const char *s, const char *e, unsigned *seen)
{
    while (s < e) {
        const char *amp = memchr(s, '&', (size_t)(e - s));
        const char *end = amp ? amp : e;
        rk_status st;
        if (end > s && (st = parse_option(u, s, end, seen))) return st;
        s = amp ? amp + 1 : e;
    }
    return RK_OK;
}

static rk_status parse_parts(const char *url, rk__url *u)
{
    url_layout L;
    rk_status st;
    unsigned seen = 0;

    if ((st = split(url, &L))) return st;
    u->tls = L.tls;

    const char *host = L.auth;
    if (L.at) {
        if ((st = parse_userinfo(u, L.auth, L.at))) return st;
        host = L.at + 1;
    }

    const char *query = strchr(L.auth_end, '?');
    const char *path_end = query ? query : L.auth_end + strlen(L.auth_end);

    if (L.is_unix) {
        if (host != L.auth_end)
            return rk__fail(RK_ERR_INVALID, "URL host: unix:// takes no host "
                                            "(unix:///path/to/redis.sock)");
        if ((st = parse_unix_path(u, L.auth_end, path_end))) return st;
    } else {
        if ((st = parse_host_port(u, host, L.auth_end))) return st;
        /* "" or "/" say nothing; "/N" selects database N. */
        if (path_end - L.auth_end > 1) {
            long db;
            if (!parse_number(L.auth_end + 1, (size_t)(path_end - L.auth_end - 1), 0, INT_MAX,
                              &db))
                return rk__fail(RK_ERR_INVALID, "URL db: path must be /N, N a number "
                                                "0..2147483647");
            u->has_db = true;
            u->db = (int)db;
            seen |= 1u << OPT_DB;
        }
    }
    if (query) return parse_query(u, query + 1, query + strlen(query), &seen);
    return RK_OK;
}

rk_status rk__url_parse(const char *url, rk__url *out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "URL: output argument is NULL");
    memset(out, 0, sizeof *out);
    if (!url) return rk__fail(RK_ERR_INVALID, "URL: NULL");
    rk_status st = parse_parts(url, out);
    if (st != RK_OK) rk__url_clear(out);
    return st;
}

void rk__url_clear(rk__url *u)
{
    if (!u) return;
    /* Every string, not only the password: a password pasted into the
     * wrong part of a URL is still a password (see the top of the file). */
    rk__free_secret(u->host);
    rk__free_secret(u->unix_path);
    rk__free_secret(u->username);
    rk__free_secret(u->password);
    rk__free_secret(u->client_name);
    rk__free_secret(u->key_prefix);
    rk__free_secret(u->tls_ca_file);
    rk__free_secret(u->tls_ca_dir);
    rk__free_secret(u->tls_cert_file);
    rk__free_secret(u->tls_key_file);
    rk__free_secret(u->tls_server_name);
    memset(u, 0, sizeof *u);
}

rk_status rk_url_redact(const char *url, char **out)
{
    rk__url parsed;
    url_layout L;
    rk_status st;

    if (!out) return rk__fail(RK_ERR_INVALID, "URL: output argument is NULL");
    *out = NULL;
    /* Only a URL that parses is echoed: in a malformed one, where the
     * password ends is not known. */
    if ((st = rk__url_parse(url, &parsed))) return st;
    rk__url_clear(&parsed);
    split(url, &L); /* cannot fail: the same text just parsed */

    size_t len = strlen(url), keep = len, skip = 0;
    const char *colon = L.at ? memchr(L.auth, ':', (size_t)(L.at - L.auth)) : NULL;
    if (colon && L.at > colon + 1) {
        keep = (size_t)(colon + 1 - url);
        skip = (size_t)(L.at - colon - 1);
    }
    const char *mask = skip ? "***" : "";
    size_t mlen = strlen(mask);
    char *s = rk__malloc(len - skip + mlen + 1);
    if (!s) return rk__fail(RK_ERR_NOMEM, "URL: out of memory");
    memcpy(s, url, keep);
    memcpy(s + keep, mask, mlen);
    memcpy(s + keep + mlen, url + keep + skip, len - keep - skip + 1);
    *out = s;
    return RK_OK;
}
