/*
 * token.c — session tokens and the ids Redis knows them by.
 *
 * A token is 256 bits from getrandom, written as base64url so it travels
 * in a cookie unescaped. Redis never sees it: the session is stored under
 * a digest of the token, so whoever reads Redis (a dump, MONITOR, a
 * replica, an operator's redis-cli) learns nothing that opens a session.
 * The digest is SHA-256, cut to 128 bits: a token has 256 bits of
 * entropy, so a preimage is as hard as guessing a token, and 128 bits keep
 * ids from colliding among any number of sessions a store will ever hold,
 * while keeping the key short enough for Redis's smallest key allocation
 * (docs/sessions.md, "Memory").
 *
 * The format check is strict — length, alphabet, canonical last character
 * — so that a malformed cookie costs a few comparisons and no round trip.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "error.h"
#include "rand.h"
#include "sessions.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t rk__base64url(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

/* The 6-bit value of a base64url character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

rk_status rk__session_token_new(char tok[RK_SESSION_TOKEN_SIZE])
{
    unsigned char raw[RK__SESSION_TOKEN_BYTES];
    if (!rk__fill_random(raw, sizeof raw)) return rk__fail(RK_ERR_SYSTEM, "sessions: the OS CSPRNG failed");
    rk__base64url(raw, sizeof raw, tok);
    memset(raw, 0, sizeof raw);
    return RK_OK;
}

bool rk__session_token_ok(const char *t)
{
    if (!t) return false;
    for (size_t i = 0; i < RK_SESSION_TOKEN_LEN; i++) {
        int v = b64_value((unsigned char)t[i]); /* a NUL stops here: -1 */
        if (v < 0) return false;
        /* 32 bytes = 42 full characters and 4 bits: the last character's
         * two low bits are padding and must be zero, so that exactly one
         * spelling exists for each token. */
        if (i == RK_SESSION_TOKEN_LEN - 1 && (v & 3)) return false;
    }
    return t[RK_SESSION_TOKEN_LEN] == '\0';
}

/* SHA-256 fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm
 * up on every digest, which costs more than the digest itself (measured:
 * 1.1 us against 0.33 us for a 43-byte token). Never freed: one per
 * process, like OpenSSL's own tables. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

rk_status rk__session_id(const char *tok, char id[RK_SESSION_ID_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    pthread_once(&sha256_once, fetch_sha256);
    const EVP_MD *type = sha256_md ? sha256_md : EVP_sha256();
    if (!EVP_Digest(tok, RK_SESSION_TOKEN_LEN, md, &mdlen, type, NULL) || mdlen < RK__SESSION_ID_BYTES)
        return rk__fail(RK_ERR_SYSTEM, "sessions: SHA-256 unavailable");
    rk__base64url(md, RK__SESSION_ID_BYTES, id);
    return RK_OK;
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

bool rk__session_parse_head(const char *v, size_t len, rk__session_head *h)
{
    const unsigned char *p = (const unsigned char *)v;
    if (!v || len == 0) return false;
    if (p[0] == RK__SESSION_VERSION) {
        /* The header, then at least the two MessagePack values. */
        if (len < RK__SESSION_HEADER + 2) return false;
        h->issued_ms = (int64_t)be(p + 1, 6);
        h->deadline_ms = h->issued_ms + (int64_t)be(p + 7, 4);
        h->last_access_ms = h->issued_ms + (int64_t)be(p + 11, 4);
        return true;
    }
    /* Format 2 starts with the user id's MessagePack string header. */
    if (!((p[0] >= 0xa0 && p[0] <= 0xbf) || (p[0] >= 0xd9 && p[0] <= 0xdb)) || len < RK__SESSION_TRAILER + 1)
        return false;
    h->deadline_ms = (int64_t)be(p + len - RK__SESSION_TRAILER, 6);
    h->issued_ms = h->deadline_ms - (int64_t)be(p + len - 4, 4);
    h->last_access_ms = -1;
    return true;
}
