/*
 * value_fuzz.c — libFuzzer target for the cache's value format
 * (src/cache/value.c): the header decoder rk__value_decode, in typed and raw
 * mode, and the number text parsers rk__text_to_i64 / rk__text_to_double
 * with their printers.
 *
 * Every input goes through every check below; each is a function taking
 * the input bytes, so a new decoder gets a new check_... function and one
 * line in LLVMFuzzerTestOneInput (see docs/fuzzing.md). Violations
 * abort():
 *
 *  header   typed decode accepts exactly the headers value.h describes
 *           (0xFE, no flag, type 1..4), reports that type and offset 2,
 *           and re-encoding the type gives the same two bytes; raw decode
 *           accepts everything as bytes at offset 0. The payload of an
 *           int64 or double value is then parsed as the cache does.
 *  int64    rk__text_to_i64 accepts exactly "-?[0-9]+" of at most 20
 *           characters whose value fits (checked against an independent
 *           128-bit computation), with that value; print → parse gives the
 *           value back, and printing canonical text gives the same text.
 *  double   rk__text_to_double accepts only finite values, never text
 *           that starts with white space (strtod would skip it, the
 *           parser is strict); print → parse is bit-exact.
 *  printers the first 8 input bytes as an int64 and as a double (when
 *           finite): print → parse gives the same bits, within
 *           RK__NUMBER_TEXT_MAX characters.
 *  format 2 rk__value_parse accepts exactly 0xFE, type 1..4, flags within
 *           COMPRESSED|META, and a META block that fits with an expiry
 *           within 0..2^62 (the fetch decisions on it never overflow,
 *           whatever the clock); it agrees with
 *           rk__value_decode whenever no flag is set; the META fields read
 *           back through rk__value_encode_header byte for byte.
 *  zstd     rk__decompress of any bytes returns only OK, TYPE, TOO_LARGE
 *           or NOMEM, never more than its bound, NUL-terminated, with
 *           NULL/0 outputs on failure; rk__compress of the input
 *           decompresses back to it, and a too-small buffer gives 0 or a
 *           valid frame.
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "compress.h"
#include "fetch_decide.h"
#include "value.h"

/* Numbers are at most 32 bytes; longer inputs only test the length check
 * and the header decoder, which looks at two bytes. */
#define FUZZ_MAX_INPUT 4096

#define CHECK(cond)           \
    do {                      \
        if (!(cond)) abort(); \
    } while (0)

static bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* rk__text_to_i64 on p[0..n); checks the result against an independent
 * reading of the same text. */
static void check_i64_text(const char *p, size_t n)
{
    int64_t v = 0x5a5a5a5a;
    rk_status st = rk__text_to_i64(p, n, &v);
    CHECK(st == RK_OK || st == RK_ERR_TYPE);

    /* The reference: "-?[0-9]+", at most 20 characters, in range. */
    bool neg = n > 0 && p[0] == '-';
    size_t i = neg ? 1 : 0;
    bool ok = n > i && n <= 20;
    __int128 ref = 0;
    for (; ok && i < n; i++) {
        if (p[i] < '0' || p[i] > '9') ok = false;
        else ref = ref * 10 + (p[i] - '0'); /* 20 digits fit in 128 bits */
    }
    if (neg) ref = -ref;
    if (ok && (ref > INT64_MAX || ref < INT64_MIN)) ok = false;
    CHECK((st == RK_OK) == ok);
    if (st != RK_OK) return;
    CHECK(v == (int64_t)ref);

    /* Round trip, and canonical text prints as itself. */
    char buf[RK__NUMBER_TEXT_MAX + 1];
    size_t len = rk__i64_to_text(v, buf);
    CHECK(len >= 1 && len <= 20 && strlen(buf) == len);
    int64_t back = 0;
    CHECK(rk__text_to_i64(buf, len, &back) == RK_OK && back == v);
    size_t first = neg ? 1 : 0;
    bool canonical = !(n - first > 1 && p[first] == '0') && !(neg && ref == 0);
    if (canonical) CHECK(len == n && memcmp(buf, p, n) == 0);
}

static void check_double_round_trip(double v)
{
    char buf[RK__NUMBER_TEXT_MAX + 1];
    size_t len = rk__double_to_text(v, buf);
    CHECK(len >= 1 && len <= RK__NUMBER_TEXT_MAX && strlen(buf) == len);
    double back = 0;
    CHECK(rk__text_to_double(buf, len, &back) == RK_OK);
    CHECK(memcmp(&back, &v, sizeof v) == 0);
}

/* rk__text_to_double on p[0..n). */
static void check_double_text(const char *p, size_t n)
{
    double v = 0.5;
    rk_status st = rk__text_to_double(p, n, &v);
    CHECK(st == RK_OK || st == RK_ERR_TYPE);
    if (st != RK_OK) return;
    CHECK(n >= 1 && n <= RK__NUMBER_TEXT_MAX);
    CHECK(memchr(p, '\0', n) == NULL);
    CHECK(!is_space((unsigned char)p[0]));
    CHECK(isfinite(v));
    check_double_round_trip(v);
}

/* The first 8 bytes as numbers: the printers' output must parse back. */
static void check_printers(const uint8_t *data, size_t size)
{
    if (size < 8) return;
    int64_t i;
    memcpy(&i, data, sizeof i);
    char buf[RK__NUMBER_TEXT_MAX + 1];
    size_t len = rk__i64_to_text(i, buf);
    CHECK(len >= 1 && len <= 20 && strlen(buf) == len);
    int64_t back = 0;
    CHECK(rk__text_to_i64(buf, len, &back) == RK_OK && back == i);

    double d;
    memcpy(&d, data, sizeof d);
    if (isfinite(d)) check_double_round_trip(d);
}

/* The value header, typed and raw, then the payload as the cache reads it. */
static void check_header(const uint8_t *data, size_t size)
{
    rk__vtype type = 0;
    size_t off = 12345;
    CHECK(rk__value_decode(data, size, true, &type, &off) == RK_OK);
    CHECK(type == RK__V_BYTES && off == 0);

    type = 0;
    off = 12345;
    rk_status st = rk__value_decode(data, size, false, &type, &off);
    CHECK(st == RK_OK || st == RK_ERR_TYPE);
    bool valid = size >= RK__VALUE_HEADER && data[0] == RK__VALUE_MAGIC && (data[1] >> 4) == 0 &&
                 (data[1] & 0x0F) >= RK__V_BYTES && (data[1] & 0x0F) <= RK__V_DOUBLE;
    CHECK((st == RK_OK) == valid);
    if (st != RK_OK) return;
    CHECK((unsigned)type == (data[1] & 0x0Fu) && off == RK__VALUE_HEADER && off <= size);
    CHECK(strcmp(rk__vtype_name(type), "unknown") != 0);
    unsigned char hdr[RK__VALUE_HEADER];
    rk__value_header(type, hdr);
    CHECK(memcmp(hdr, data, RK__VALUE_HEADER) == 0);

    const char *payload = (const char *)data + off;
    if (type == RK__V_INT64) check_i64_text(payload, size - off);
    if (type == RK__V_DOUBLE) check_double_text(payload, size - off);
}

/* Format 2: flags and the META block. */
static void check_parse(const uint8_t *data, size_t size)
{
    rk__value_view v;
    CHECK(rk__value_parse(data, size, true, &v) == RK_OK);
    CHECK(v.type == RK__V_BYTES && v.flags == 0 && v.offset == 0);

    rk_status st = rk__value_parse(data, size, false, &v);
    CHECK(st == RK_OK || st == RK_ERR_TYPE);
    unsigned flags = size >= 2 ? data[1] & 0xF0u : 0;
    bool meta = flags & RK__VF_META;
    bool valid = size >= RK__VALUE_HEADER && data[0] == RK__VALUE_MAGIC &&
                 !(flags & ~(unsigned)(RK__VF_COMPRESSED | RK__VF_META)) && (data[1] & 0x0F) >= RK__V_BYTES &&
                 (data[1] & 0x0F) <= RK__V_DOUBLE && (!meta || size >= RK__VALUE_HEADER_MAX);
    /* The expiry is bounded: 0..2^62 (bytes 2..9, little-endian). */
    if (valid && meta) {
        uint64_t exp = 0;
        for (int i = 0; i < 8; i++) exp |= (uint64_t)data[2 + i] << (8 * i);
        valid = exp <= (uint64_t)RK__VALUE_EXPIRY_MAX;
    }
    CHECK((st == RK_OK) == valid);
    if (st != RK_OK) return;
    CHECK(v.meta.expires_at_ms >= 0 && v.meta.expires_at_ms <= RK__VALUE_EXPIRY_MAX);
    /* Whatever expiry a value carries, the fetch decisions on it cannot
     * overflow at any "now" (UBSan checks the arithmetic). */
    const int64_t nows[] = {INT64_MIN, -1, 0, 1700000000000LL, INT64_MAX};
    const rk__fetch_policy policies[] = {{0, -1}, {INT64_MAX, 0}, {1, 1e300}};
    for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
        for (size_t j = 0; j < sizeof policies / sizeof policies[0]; j++) {
            rk__fetch_vstate s = rk__fetch_classify(&v.meta, meta, nows[i], &policies[j], 1e-300);
            CHECK(s >= RK__FETCH_FRESH && s <= RK__FETCH_EXPIRED);
            (void)rk__fetch_within_stale(v.meta.expires_at_ms, nows[i], policies[j].stale_ms);
        }
    }
    CHECK(v.flags == flags && (unsigned)v.type == (data[1] & 0x0Fu));
    CHECK(v.offset == (meta ? RK__VALUE_HEADER_MAX : RK__VALUE_HEADER) && v.offset <= size);
    if (!flags) {
        rk__vtype t;
        size_t off;
        CHECK(rk__value_decode(data, size, false, &t, &off) == RK_OK && t == v.type && off == v.offset);
    }
    unsigned char hdr[RK__VALUE_HEADER_MAX];
    size_t hlen = rk__value_encode_header(v.type, v.flags, &v.meta, hdr);
    CHECK(hlen == v.offset && memcmp(hdr, data, hlen) == 0);
}

#define FUZZ_DECOMPRESS_MAX (1u << 20)

static void check_decompress(const uint8_t *data, size_t size)
{
    char *out = (char *)"untouched";
    size_t len = 77;
    rk_status st = rk__decompress(NULL, data, size, FUZZ_DECOMPRESS_MAX, &out, &len);
    CHECK(st == RK_OK || st == RK_ERR_TYPE || st == RK_ERR_TOO_LARGE || st == RK_ERR_NOMEM);
    if (st != RK_OK) {
        CHECK(out == NULL && len == 0);
        return;
    }
    CHECK(len <= FUZZ_DECOMPRESS_MAX && out[len] == '\0');
    rk__free(out);
}

static void check_compress_round_trip(const uint8_t *data, size_t size)
{
    size_t cap = size + 256;
    unsigned char *z = malloc(cap);
    CHECK(z != NULL);
    size_t zn = 0;
    CHECK(rk__compress(NULL, 0, data, size, z, cap, &zn) == RK_OK);
    CHECK(zn > 0 && zn <= cap);
    char *out = NULL;
    size_t len = 0;
    CHECK(rk__decompress(NULL, z, zn, size, &out, &len) == RK_OK);
    CHECK(len == size && (size == 0 || memcmp(out, data, size) == 0) && out[len] == '\0');
    rk__free(out);
    if (size > 0) {
        /* No room for the whole frame: 0 ("does not pay"), or a frame that
         * still decompresses to the input. */
        CHECK(rk__compress(NULL, 0, data, size, z, size - 1, &zn) == RK_OK);
        if (zn) {
            CHECK(zn <= size - 1);
            CHECK(rk__decompress(NULL, z, zn, size, &out, &len) == RK_OK);
            CHECK(len == size && memcmp(out, data, size) == 0);
            rk__free(out);
        }
    }
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) return 0;
    check_header(data, size);
    check_parse(data, size);
    check_decompress(data, size);
    check_compress_round_trip(data, size);
    /* A raw cache reads any stored text as a number. */
    check_i64_text((const char *)data, size);
    check_double_text((const char *)data, size);
    check_printers(data, size);
    return 0;
}
