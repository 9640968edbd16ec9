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

