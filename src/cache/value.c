/*
 * value.c — encoding and decoding of cache values (format in value.h).
 * Pure functions: no allocation, no I/O.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "value.h"

const char *rk__vtype_name(rk__vtype type)
{
    switch (type) {
    case RK__V_BYTES: return "bytes";
    case RK__V_STRING: return "string";
    case RK__V_INT64: return "int64";
    case RK__V_DOUBLE: return "double";
    }
    return "unknown";
}

void rk__value_header(rk__vtype type, unsigned char out[RK__VALUE_HEADER])
{
    out[0] = RK__VALUE_MAGIC;
    out[1] = (unsigned char)type;
}

rk_status rk__value_decode(const void *data, size_t len, bool raw, rk__vtype *type, size_t *offset)
{
    if (raw) {
        *type = RK__V_BYTES;
        *offset = 0;
        return RK_OK;
    }
    const unsigned char *p = data;
    if (len < RK__VALUE_HEADER || p[0] != RK__VALUE_MAGIC)
        return rk__fail(RK_ERR_TYPE, "value was not written by a typed redkit cache "
                                     "(use a raw cache to read foreign values)");
    if (p[1] >> 4)
        return rk__fail(RK_ERR_TYPE, "value uses a format flag (0x%02x) this redkit version does not know",
                        p[1] & 0xF0);
    unsigned t = p[1] & 0x0F;
    if (t < RK__V_BYTES || t > RK__V_DOUBLE)
        return rk__fail(RK_ERR_TYPE, "value has an unknown type tag %u", t);
    *type = (rk__vtype)t;
    *offset = RK__VALUE_HEADER;
    return RK_OK;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

size_t rk__value_encode_header(rk__vtype type, unsigned flags, const rk__value_meta *meta,
                               unsigned char out[RK__VALUE_HEADER_MAX])
{
    flags &= RK__VF_COMPRESSED | RK__VF_META;
    out[0] = RK__VALUE_MAGIC;
    out[1] = (unsigned char)((unsigned)type | flags);
    if (!(flags & RK__VF_META)) return RK__VALUE_HEADER;
    put_le(out + 2, (uint64_t)meta->expires_at_ms, 8);
    put_le(out + 10, meta->compute_ms, 4);
    return RK__VALUE_HEADER_MAX;
}

rk_status rk__value_parse(const void *data, size_t len, bool raw, rk__value_view *out)
{
    memset(out, 0, sizeof *out);
    if (raw) {
        out->type = RK__V_BYTES;
        return RK_OK;
    }
    const unsigned char *p = data;
    if (len < RK__VALUE_HEADER || p[0] != RK__VALUE_MAGIC)
        return rk__fail(RK_ERR_TYPE, "value was not written by a typed redkit cache "
                                     "(use a raw cache to read foreign values)");
    unsigned flags = p[1] & 0xF0u;
    if (flags & ~(unsigned)(RK__VF_COMPRESSED | RK__VF_META))
        return rk__fail(RK_ERR_TYPE, "value uses a format flag (0x%02x) this redkit version does not know",
                        flags);
    unsigned t = p[1] & 0x0F;
    if (t < RK__V_BYTES || t > RK__V_DOUBLE)
        return rk__fail(RK_ERR_TYPE, "value has an unknown type tag %u", t);
    out->type = (rk__vtype)t;
    out->flags = flags;
    out->offset = RK__VALUE_HEADER;
    if (flags & RK__VF_META) {
        if (len < RK__VALUE_HEADER_MAX) return rk__fail(RK_ERR_TYPE, "value is too short for its metadata");
        uint64_t exp = get_le(p + 2, 8);
        /* Bytes from the network: an expiry no writer can produce (negative,
         * or past now + the longest TTL) would overflow the arithmetic of
         * whoever reads it. */
        if (exp > (uint64_t)RK__VALUE_EXPIRY_MAX)
            return rk__fail(RK_ERR_TYPE, "value has a corrupt expiry in its metadata");
        out->meta.expires_at_ms = (int64_t)exp;
        out->meta.compute_ms = (uint32_t)get_le(p + 10, 4);
        out->offset = RK__VALUE_HEADER_MAX;
    }
    return RK_OK;
}

size_t rk__i64_to_text(int64_t v, char *buf)
{
    return (size_t)snprintf(buf, RK__NUMBER_TEXT_MAX + 1, "%lld", (long long)v);
}

/* Numbers are stored as text other processes read, so their text must not
 * depend on the locale a host program chose with setlocale(): "0,5" under
 * de_DE would be RK_ERR_TYPE to everyone else. The "C" locale, made once;
 * NULL only if newlocale() failed (then the current locale is used). */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

static locale_t numeric_c_locale(void)
{
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale;
}

double rk__strtod_c(const char *s, char **end)
{
    locale_t c = numeric_c_locale();
    return c ? strtod_l(s, end, c) : strtod(s, end);
}

size_t rk__double_to_text(double v, char *buf)
{
    locale_t c = numeric_c_locale();
    locale_t old = c ? uselocale(c) : (locale_t)0;
    int n = snprintf(buf, RK__NUMBER_TEXT_MAX + 1, "%.17g", v);
    if (c) uselocale(old);
    return (size_t)n;
}

rk_status rk__text_to_i64(const char *p, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = n > 0 && p[0] == '-';
    if (neg) i = 1;
    if (i == n || n > 20) return rk__fail(RK_ERR_TYPE, "value is not an int64");
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return rk__fail(RK_ERR_TYPE, "value is not an int64");
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (limit - d) / 10) return rk__fail(RK_ERR_TYPE, "value is out of int64 range");
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return RK_OK;
}

rk_status rk__text_to_double(const char *p, size_t n, double *out)
{
    char buf[RK__NUMBER_TEXT_MAX + 1];
    /* strtod needs a NUL and skips leading white space — all of isspace(),
     * \v \f \r included, and more in some locales; a stored number has
     * neither, so copy, insist that the text starts as a number does, and
     * that all of it is consumed. (inf and nan are refused below.) */
    char c0 = n > 0 ? p[0] : '\0';
    bool starts_number = (c0 >= '0' && c0 <= '9') || c0 == '-' || c0 == '+' || c0 == '.';
    if (n == 0 || n > RK__NUMBER_TEXT_MAX || !starts_number)
        return rk__fail(RK_ERR_TYPE, "value is not a double");
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    double v = rk__strtod_c(buf, &end);
    /* glibc reports ERANGE for subnormals too; those read back exactly,
     * so only overflow, and underflow all the way to zero, are refused. */
    if (end != buf + n || !isfinite(v) || (errno == ERANGE && v == 0))
        return rk__fail(RK_ERR_TYPE, "value is not a double");
    *out = v;
    return RK_OK;
}
