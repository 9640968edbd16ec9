/*
 * keyformat.c — the shape of an API key, and what can be computed from a
 * key alone: its checksum, its SHA-256, its display form.
 *
 * "<prefix>_<43 base62 random><6 base62 checksum>". The random part is
 * drawn character by character from getrandom(2) bytes by rejection (a
 * byte below 248 = 4 * 62 gives byte % 62, others are discarded), so the
 * 43 characters are uniform: 43 * log2(62) = 256.03 bits, as many as 32
 * random bytes. The checksum is CRC-32 of everything before it, written
 * as 6 base62 digits (62^6 > 2^32): it catches every mistyped character
 * and lets verify refuse garbage before any lookup; it is not a MAC and
 * protects nothing against someone who builds keys on purpose (those are
 * refused by the lookup, and cached as "not found").
 *
 * CRC-32 is the IEEE polynomial in its reflected form (0xEDB88320), the
 * one zlib's crc32() computes, from tables built once. OpenSSL has no CRC
 * and zlib is not otherwise a dependency; the thirty lines below are
 * written from the polynomial's definition.
 *
 * SHA-256 goes through OpenSSL EVP with the digest fetched once and one
 * context per thread, reused (an implicit fetch, or a new context, per
 * call would cost more than the hash of a short key).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include <redkit/apikeys.h>

#include "apikeys.h"
#include "error.h"
#include "rand.h"

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* ---- CRC-32 ---------------------------------------------------------------- */

/* crc_table[0] is the classic byte-at-a-time table; crc_table[k][b] is the
 * CRC of byte b followed by k zero bytes, which lets the loop below fold 8
 * input bytes per step with 8 independent lookups ("slicing by 8")
 * instead of a chain of 8 dependent ones: a key's checksum is on the hot
 * path of every verify. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++)
            crc_table[t][i] = crc_table[0][crc_table[t - 1][i] & 0xFF] ^ (crc_table[t - 1][i] >> 8);
}

uint32_t rk__crc32(const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (; len >= 8; len -= 8, p += 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
            crc_table[0][p[7]];
    }
    for (; len; len--, p++) c = crc_table[0][(c ^ *p) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void checksum_text(const char *key, size_t len, char out[RK_APIKEYS_CHECKSUM_CHARS])
{
    uint32_t c = rk__crc32(key, len);
    for (int i = RK_APIKEYS_CHECKSUM_CHARS - 1; i >= 0; i--) {
        out[i] = b62[c % 62];
        c /= 62;
    }
}

/* ---- shape ----------------------------------------------------------------- */

static bool is_b62(char ch)
{
    unsigned char u = (unsigned char)ch;
    return (unsigned char)(u - '0') < 10 || (unsigned char)((u | 0x20) - 'a') < 26;
}

/* The value of a base62 digit (is_b62 is true for ch). */
static unsigned b62_value(char ch)
{
    unsigned char u = (unsigned char)ch;
    return u <= '9' ? u - '0' : u <= 'Z' ? u - 'A' + 10 : u - 'a' + 36;
}

static bool prefix_ok(const char *p, size_t n)
{
    if (n == 0 || n > RK_APIKEYS_MAX_PREFIX_BYTES || p[n - 1] == '_') return false;
    for (size_t i = 0; i < n; i++)
        if (!is_b62(p[i]) && p[i] != '_') return false;
    return true;
}

/* Why key is not well formed, or NULL when it is. */
static const char *shape_problem(const char *key, size_t *len)
{
    if (!key) return "key is NULL";
    size_t n = strnlen(key, RK_APIKEYS_MAX_KEY_BYTES + 1);
    if (n == 0) return "key is empty";
    if (n > RK_APIKEYS_MAX_KEY_BYTES) return "key is too long to be an API key";
    const size_t tail = RK_APIKEYS_BODY_CHARS + RK_APIKEYS_CHECKSUM_CHARS;
    if (n < tail + 2 || key[n - tail - 1] != '_') return "key does not have the shape <prefix>_<body>";
    if (!prefix_ok(key, n - tail - 1)) return "key has a bad prefix";
    for (size_t i = n - tail; i < n; i++)
        if (!is_b62(key[i])) return "key has a character outside base62";
    /* The checksum's digits as a number, compared with the CRC: cheaper
     * than writing the CRC out as text. */
    uint64_t sum = 0;
    for (size_t i = n - RK_APIKEYS_CHECKSUM_CHARS; i < n; i++) sum = sum * 62 + b62_value(key[i]);
    if (sum != rk__crc32(key, n - RK_APIKEYS_CHECKSUM_CHARS)) return "key checksum does not match";
    *len = n;
    return NULL;
}

bool rk__apikey_well_formed(const char *key, size_t *len) { return shape_problem(key, len) == NULL; }

rk_status rk_apikeys_check(const char *key)
{
    size_t len;
    const char *why = shape_problem(key, &len);
    return why ? rk__fail(RK_ERR_INVALID, "rk_apikeys_check: %s", why) : RK_OK;
}

/* ---- hashing ---------------------------------------------------------------- */

static EVP_MD *sha256_md;
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;
static pthread_key_t sha_ctx_key;
static bool sha_ctx_key_ok;

static void sha_ctx_free(void *ctx) { EVP_MD_CTX_free(ctx); }

static void sha_init(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha_ctx_key_ok = pthread_key_create(&sha_ctx_key, sha_ctx_free) == 0;
}

/* One digest context per thread, kept for the thread's life (freed when
 * it exits): creating one per call costs more than hashing a key. */
static EVP_MD_CTX *thread_ctx(void)
{
    if (!sha_ctx_key_ok) return NULL;
    EVP_MD_CTX *ctx = pthread_getspecific(sha_ctx_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        if (ctx && pthread_setspecific(sha_ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            ctx = NULL;
        }
    }
    return ctx;
}

bool rk__sha256(const void *data, size_t len, unsigned char out[RK__SHA256_BYTES])
{
    pthread_once(&sha_once, sha_init);
    unsigned int n = 0;
    const EVP_MD *md = sha256_md ? sha256_md : EVP_sha256();
    EVP_MD_CTX *ctx = thread_ctx();
    if (ctx)
        return EVP_DigestInit_ex2(ctx, md, NULL) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
               EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == RK__SHA256_BYTES;
    return EVP_Digest(data, len, out, &n, md, NULL) == 1 && n == RK__SHA256_BYTES;
}

void rk__hex32(const unsigned char d[RK__SHA256_BYTES], char out[RK_APIKEYS_HASH_BUF])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < RK__SHA256_BYTES; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[RK_APIKEYS_HASH_HEX] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool rk__unhex32(const char *hex, unsigned char d[RK__SHA256_BYTES])
{
    if (!hex || strnlen(hex, RK_APIKEYS_HASH_HEX + 1) != RK_APIKEYS_HASH_HEX) return false;
    for (int i = 0; i < RK__SHA256_BYTES; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        d[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

rk_status rk_apikeys_hash(const char *key, char *hash_hex)
{
    if (!key || !hash_hex) return rk__fail(RK_ERR_INVALID, "rk_apikeys_hash: NULL argument");
    size_t n = strnlen(key, RK_APIKEYS_MAX_KEY_BYTES + 1);
    if (n == 0) return rk__fail(RK_ERR_INVALID, "rk_apikeys_hash: key is empty");
    if (n > RK_APIKEYS_MAX_KEY_BYTES)
        return rk__fail(RK_ERR_TOO_LARGE, "rk_apikeys_hash: key is longer than %d bytes", RK_APIKEYS_MAX_KEY_BYTES);
    unsigned char d[RK__SHA256_BYTES];
    if (!rk__sha256(key, n, d)) return rk__fail(RK_ERR_SYSTEM, "rk_apikeys_hash: SHA-256 unavailable");
    rk__hex32(d, hash_hex);
    return RK_OK;
}

rk_status rk_apikeys_display(const char *key, char *out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_apikeys_display: out is NULL");
    out[0] = '\0';
    size_t n;
    const char *why = shape_problem(key, &n);
    if (why) return rk__fail(RK_ERR_INVALID, "rk_apikeys_display: %s", why);
    size_t body = n - RK_APIKEYS_BODY_CHARS - RK_APIKEYS_CHECKSUM_CHARS; /* "<prefix>_" */
    memcpy(out, key, body);
    memcpy(out + body, key + body, 4);
    memcpy(out + body + 4, "...", 3);
    memcpy(out + body + 7, key + n - 4, 4);
    out[body + 11] = '\0';
    return RK_OK;
}

/* ---- generation ------------------------------------------------------------- */

/* The random part, by rejection sampling (see the top of the file). The
 * loop is bounded: 16 refills of 64 bytes are 1024 draws, and the chance
 * that fewer than 43 of them pass (each passes with p = 248/256) is far
 * below anything measurable. */
static bool random_body(char out[RK_APIKEYS_BODY_CHARS])
{
    size_t have = 0;
    unsigned char buf[64];
    for (int refill = 0; refill < 16 && have < RK_APIKEYS_BODY_CHARS; refill++) {
        if (!rk__fill_random(buf, sizeof buf)) return false;
        for (size_t i = 0; i < sizeof buf && have < RK_APIKEYS_BODY_CHARS; i++)
            if (buf[i] < 248) out[have++] = b62[buf[i] % 62];
    }
    memset(buf, 0, sizeof buf);
    return have == RK_APIKEYS_BODY_CHARS;
}

rk_status rk_apikeys_generate(rk_apikeys *ak, char *key, char *hash_hex)
{
    if (!ak || !key) return rk__fail(RK_ERR_INVALID, "rk_apikeys_generate: NULL argument");
    size_t plen = strlen(ak->key_prefix);
    memcpy(key, ak->key_prefix, plen);
    key[plen] = '_';
    if (!random_body(key + plen + 1)) {
        key[0] = '\0';
        return rk__fail(RK_ERR_SYSTEM, "rk_apikeys_generate: getrandom failed: %s", strerror(errno));
    }
    size_t n = plen + 1 + RK_APIKEYS_BODY_CHARS;
    checksum_text(key, n, key + n);
    key[n + RK_APIKEYS_CHECKSUM_CHARS] = '\0';
    if (hash_hex) {
        rk_status st = rk_apikeys_hash(key, hash_hex);
        if (st != RK_OK) {
            memset(key, 0, RK_APIKEYS_KEY_BUF);
            return st;
        }
    }
    return RK_OK;
}

bool rk__apikey_prefix_ok(const char *p) { return p && prefix_ok(p, strnlen(p, RK_APIKEYS_MAX_PREFIX_BYTES + 1)); }
