/*
 * url_fuzz.c — libFuzzer target for REDIS_URL parsing and redaction
 * (rk__url_parse, rk__url_clear, rk_url_redact in src/transport/url.c).
 *
 * The input, cut at its first NUL, is a URL. Besides the sanitizers
 * (memory errors, undefined behaviour, leaks after rk__url_clear), the
 * target checks, and abort()s on a violation of:
 *
 *  1. Agreement: rk_url_redact() accepts exactly the URLs rk__url_parse()
 *     accepts; a refused URL gets RK_ERR_INVALID, a message, and an empty
 *     rk__url (every field zero, whatever it held before).
 *  2. Field rules: an accepted URL's fields respect what url.h and
 *     docs/url.md promise (ranges, allowed characters, unix:// has a path
 *     and no host, tls_ options only with rediss://, ...).
 *  3. Where the password is: found here from the documented syntax, not
 *     with url.c's own code — after "scheme://", the authority runs to the
 *     first '/' or '?'; the userinfo ends at its LAST '@'; the password is
 *     what follows the FIRST ':' of the userinfo. The parsed password must
 *     be exactly that text, percent-decoded (absent when empty).
 *  4. Redaction: rk_url_redact() returns the URL with exactly that text
 *     replaced by "***", or the URL unchanged when there is no password.
 *  5. The password influences nothing else: the URL with its password
 *     replaced by "***" (which is the redacted URL) parses to the same
 *     fields, or fails with the same status and the same message. So no
 *     piece of the password can reach the host, a path, an option or an
 *     error message. Redacting a redacted URL changes nothing. A password
 *     that does not percent-decode is replaced by the shortest one with
 *     the same first problem ("%" or "%00") instead: the message about a
 *     bad password must not depend on the password either.
 *
 * Why not simply "the redacted text never contains the password"? Because
 * it is false for honest reasons: a password "*" is inside "***", a
 * password "*@" straddles the mask and the '@' that follows it, and a
 * password may also be the user name or the host. Invariant 5 says what is
 * really meant — the output does not depend on the password — without
 * those false alarms.
 *
 * No global state changes from one input to the next (rk_last_error() is
 * thread-local and only read right after the call that set it).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <redkit/client.h>
#include <redkit/keys.h>
#include <redkit/url.h>

#include "alloc.h"
#include "url.h"

/* Longer inputs only make each run slower: the parser is linear. */
#define MAX_URL 8192
#define MASK "***"

#define CHECK(cond)        \
    do {                   \
        if (!(cond)) abort(); \
    } while (0)

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex(char c)
{
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* How percent-decoding a part ends: the parser reports the first problem. */
typedef enum { DECODED, BAD_ESCAPE, NUL_ESCAPE } decoding;

/* Percent-decode s[0..n) into out (room for n + 1); the parser must refuse
 * a part that does not decode. */
static decoding decode(const char *s, size_t n, char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        if (i + 2 >= n || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0) return BAD_ESCAPE;
        int v = hex(s[i + 1]) * 16 + hex(s[i + 2]);
        if (v == 0) return NUL_ESCAPE;
        out[j++] = (char)v;
        i += 2;
    }
    out[j] = '\0';
    return DECODED;
}

static bool same_nocase(const char *s, size_t n, const char *word)
{
    if (strlen(word) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != word[i]) return false;
    }
    return true;
}

/* The URL's layout per the documented syntax (invariant 3). */
typedef struct layout {
    bool has_scheme;   /* letters followed by "://" */
    size_t scheme_len;
    bool has_password; /* userinfo with a ':' before its last '@' */
    size_t pw_start;   /* password text = url[pw_start .. pw_end) */
    size_t pw_end;
} layout;

static layout locate(const char *u, size_t n)
{
    layout L = {0};
    size_t i = 0;
    while (i < n && is_alpha(u[i])) i++;
    if (n - i < 3 || memcmp(u + i, "://", 3) != 0) return L;
    L.has_scheme = true;
    L.scheme_len = i;
    size_t auth = i + 3, auth_end = auth;
    while (auth_end < n && u[auth_end] != '/' && u[auth_end] != '?') auth_end++;
    size_t at = auth_end; /* none */
    for (size_t j = auth; j < auth_end; j++)
        if (u[j] == '@') at = j;
    if (at == auth_end) return L;
    size_t colon = auth;
    while (colon < at && u[colon] != ':') colon++;
    if (colon == at) return L;
    L.has_password = true;
    L.pw_start = colon + 1;
    L.pw_end = at;
    return L;
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* Invariant 1: a refused URL leaves the struct empty. */
static void check_empty(const rk__url *u)
{
    CHECK(!u->tls && !u->host && u->port == 0 && !u->unix_path && !u->username && !u->password);
    CHECK(!u->has_db && u->db == 0 && u->connect_timeout_ms == 0 && u->command_timeout_ms == 0);
    CHECK(u->pool_size == 0 && !u->client_name && !u->key_prefix);
    CHECK(!u->tls_ca_file && !u->tls_ca_dir && !u->tls_cert_file && !u->tls_key_file);
    CHECK(!u->tls_server_name && !u->tls_insecure);
}

/* Invariant 2: the documented rules for each field of an accepted URL. */
static void check_fields(const rk__url *u, const char *url, size_t n, const layout *L)
{
    CHECK(L->has_scheme);
    bool is_unix = same_nocase(url, L->scheme_len, "unix");
    CHECK(u->tls == same_nocase(url, L->scheme_len, "rediss"));
    if (is_unix) {
        CHECK(u->unix_path && !u->host && u->port == 0);
        CHECK(u->unix_path[0] == '/' && strlen(u->unix_path) >= 2);
        CHECK(strlen(u->unix_path) < sizeof(((struct sockaddr_un *)0)->sun_path));
    } else {
        CHECK(!u->unix_path);
    }
    if (u->host) {
        CHECK(u->host[0] != '\0');
        if (strchr(u->host, ':')) {
            unsigned char addr[16];
            CHECK(inet_pton(AF_INET6, u->host, addr) == 1);
        } else {
            for (const char *p = u->host; *p; p++)
                CHECK(is_alpha(*p) || is_digit(*p) || *p == '-' || *p == '.' || *p == '_');
        }
    }
    CHECK(u->port >= 0 && u->port <= 65535);
    CHECK(u->db >= 0 && (u->has_db || u->db == 0));
    CHECK(u->connect_timeout_ms >= 0 && u->connect_timeout_ms <= RK_MAX_TIMEOUT_MS);
    CHECK(u->command_timeout_ms >= 0 && u->command_timeout_ms <= RK_MAX_TIMEOUT_MS);
    CHECK(u->pool_size >= 0 && u->pool_size <= RK_MAX_POOL_SIZE);
    if (u->client_name) {
        CHECK(u->client_name[0] != '\0');
        for (const char *p = u->client_name; *p; p++) CHECK(*p > ' ' && *p <= '~');
        CHECK(rk__client_name_valid(u->client_name));
    }
    if (u->key_prefix) {
        size_t len = strlen(u->key_prefix);
        CHECK(len >= 1 && len <= RK_MAX_NAMESPACE_BYTES);
        for (const char *p = u->key_prefix; *p; p++) {
            CHECK(is_alpha(*p) || is_digit(*p) || *p == '_' || *p == '.' || *p == '-');
            CHECK(rk__name_char(*p));
        }
    }
    /* TLS options only in rediss:// URLs; a server name is an IPv6 or IPv4
     * literal or a host name, 1..253 bytes. */
    if (!u->tls) {
        CHECK(!u->tls_ca_file && !u->tls_ca_dir && !u->tls_cert_file && !u->tls_key_file);
        CHECK(!u->tls_server_name && !u->tls_insecure);
    }
    if (u->tls_server_name) {
        size_t len = strlen(u->tls_server_name);
        unsigned char addr[16];
        CHECK(len >= 1 && len <= 253);
        if (inet_pton(AF_INET6, u->tls_server_name, addr) != 1)
            for (const char *p = u->tls_server_name; *p; p++)
                CHECK(is_alpha(*p) || is_digit(*p) || *p == '-' || *p == '.' || *p == '_');
        CHECK(rk__server_name_valid(u->tls_server_name));
    }
    /* Empty user or password means "not given". Decoding only shrinks. */
    CHECK(!u->username || (u->username[0] && strlen(u->username) <= n));
    CHECK(!u->password || (u->password[0] && strlen(u->password) <= n));
}

/* Invariant 5: everything but the password is the same. */
static void check_same_but_password(const rk__url *a, const rk__url *b)
{
    CHECK(a->tls == b->tls && str_eq(a->host, b->host) && a->port == b->port);
    CHECK(str_eq(a->unix_path, b->unix_path) && str_eq(a->username, b->username));
    CHECK(a->has_db == b->has_db && a->db == b->db);
    CHECK(a->connect_timeout_ms == b->connect_timeout_ms);
    CHECK(a->command_timeout_ms == b->command_timeout_ms && a->pool_size == b->pool_size);
    CHECK(str_eq(a->client_name, b->client_name) && str_eq(a->key_prefix, b->key_prefix));
    CHECK(str_eq(a->tls_ca_file, b->tls_ca_file) && str_eq(a->tls_ca_dir, b->tls_ca_dir));
    CHECK(str_eq(a->tls_cert_file, b->tls_cert_file) && str_eq(a->tls_key_file, b->tls_key_file));
    CHECK(str_eq(a->tls_server_name, b->tls_server_name) && a->tls_insecure == b->tls_insecure);
}

/* Parse url; returns the status and copies the message on failure. */
static rk_status parse(const char *url, rk__url *u, char *msg, size_t cap)
{
    memset(u, 0x5a, sizeof *u); /* rk__url_parse must zero it */
    rk_status st = rk__url_parse(url, u);
    msg[0] = '\0';
    if (st != RK_OK) {
        CHECK(st == RK_ERR_INVALID);
        check_empty(u);
        const char *m = rk_last_error();
        CHECK(m && m[0] != '\0');
        size_t len = strlen(m);
        CHECK(len < cap);
        memcpy(msg, m, len + 1);
    }
    return st;
}

static char *redact(const char *url, rk_status want)
{
    char *out = (char *)"untouched";
    rk_status st = rk_url_redact(url, &out);
    CHECK(st == want);
    if (st != RK_OK) {
        CHECK(out == NULL);
        return NULL;
    }
    CHECK(out != NULL);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_URL) return 0;
    char *url = malloc(size + 1);
    if (!url) return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    size_t n = strlen(url);

    layout L = locate(url, n);
    rk__url u;
    char msg[1024];
    rk_status st = parse(url, &u, msg, sizeof msg);
    char *red = redact(url, st);

    /* The password text, decoded: what the parser must have found. */
    size_t pw_len = L.has_password ? L.pw_end - L.pw_start : 0;
    char *want_pw = malloc(pw_len + 1);
    CHECK(want_pw != NULL);
    decoding pw_decoding = decode(url + L.pw_start, pw_len, want_pw);

    if (st == RK_OK) {
        check_fields(&u, url, n, &L);
        /* Invariant 3. */
        if (pw_len > 0) {
            CHECK(pw_decoding == DECODED);
            CHECK(u.password && strcmp(u.password, want_pw) == 0);
        } else {
            CHECK(u.password == NULL);
        }
        /* Invariant 4. */
        if (pw_len > 0) {
            size_t tail = n - L.pw_end;
            CHECK(strlen(red) == L.pw_start + strlen(MASK) + tail);
            CHECK(memcmp(red, url, L.pw_start) == 0);
            CHECK(memcmp(red + L.pw_start, MASK, strlen(MASK)) == 0);
            CHECK(memcmp(red + L.pw_start + strlen(MASK), url + L.pw_end, tail + 1) == 0);
        } else {
            CHECK(strcmp(red, url) == 0);
        }
    }

    /* Invariant 5, for any URL with a password but no control character
     * or '#' in it (those are refused before the password is looked at,
     * and rightly change the outcome). */
    bool clean = pw_len > 0;
    for (size_t i = L.pw_start; clean && i < L.pw_end; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c < 0x20 || c == 0x7f || c == '#') clean = false;
    }
    if (clean) {
        const char *stand_in = pw_decoding == DECODED ? MASK : pw_decoding == BAD_ESCAPE ? "%" : "%00";
        size_t tail = n - L.pw_end, slen = strlen(stand_in);
        char *other = malloc(L.pw_start + slen + tail + 1);
        CHECK(other != NULL);
        memcpy(other, url, L.pw_start);
        memcpy(other + L.pw_start, stand_in, slen);
        memcpy(other + L.pw_start + slen, url + L.pw_end, tail + 1);

        rk__url m;
        char mmsg[1024];
        rk_status mst = parse(other, &m, mmsg, sizeof mmsg);
        CHECK(mst == st);
        if (st == RK_OK) {
            check_same_but_password(&u, &m);
            CHECK(m.password && strcmp(m.password, MASK) == 0);
            CHECK(strcmp(red, other) == 0);
            /* Redacting a redacted URL changes nothing. */
            char *again = redact(other, RK_OK);
            CHECK(strcmp(again, other) == 0);
            rk__free(again);
        } else {
            CHECK(strcmp(msg, mmsg) == 0);
        }
        rk__url_clear(&m);
        free(other);
    }

    /* Clearing twice is harmless and leaves the struct empty. */
    rk__url_clear(&u);
    check_empty(&u);
    rk__url_clear(&u);
    rk__free(red);
    free(want_pw);
    free(url);
    return 0;
}
