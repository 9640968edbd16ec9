/*
 * value.h — the typed value format of the cache, kept apart from any I/O
 * so it can be unit-tested and fuzzed on its own.
 *
 * A typed value is a 2-byte header followed by the payload:
 *   byte 0  0xFE, a byte that never starts UTF-8 text, so a value written
 *           by another client as text is never mistaken for ours;
 *   byte 1  low 4 bits: the type; high 4 bits: flags, all zero in format 1
 *           (a later version will use them for compression). A reader that
 *           meets a flag it does not know refuses the value (RK_ERR_TYPE)
 *           rather than misread it.
 *
 * Format 2 gives two of those flags a meaning:
 *   0x20 META        12 bytes follow the header: the value's logical
 *                    expiry (int64, Unix ms, little-endian; 0 = none) and
 *                    how long it took to compute (uint32 ms). Written by
 *                    rk_cache_fetch for early recomputation (XFetch) and
 *                    serve-stale; the Redis TTL then covers the stale
 *                    window too.
 *   0x10 COMPRESSED  the payload (after any META) is a compressed frame
 *                    (see compress.h) holding the real payload.
 * Flags 0x40 and 0x80 stay reserved: a value using them is refused.
 * int64 and double payloads are decimal text, so a value stays readable in
 * redis-cli; a double uses 17 significant digits and reads back bit-exact.
 */
#ifndef RK_SRC_VALUE_H
#define RK_SRC_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/status.h>

#include "number.h" /* the text forms of numbers */

#define RK__VALUE_MAGIC 0xFE
#define RK__VALUE_HEADER 2
typedef enum rk__vtype {
    RK__V_BYTES = 1,
    RK__V_STRING = 2,
    RK__V_INT64 = 3,
    RK__V_DOUBLE = 4
} rk__vtype;

#define RK__VF_COMPRESSED 0x10
#define RK__VF_META 0x20
#define RK__VALUE_META_LEN 12
#define RK__VALUE_HEADER_MAX (RK__VALUE_HEADER + RK__VALUE_META_LEN)

/* The largest logical expiry a value may carry: writers saturate at the
 * longest TTL (2^62 ms, see fetch_state.h), so anything larger — or
 * negative — is corrupt, and rk__value_parse() refuses it. */
#define RK__VALUE_EXPIRY_MAX ((int64_t)1 << 62)

/* The META block. */
typedef struct rk__value_meta {
    int64_t expires_at_ms;  /* logical expiry, Unix ms; 0 = none */
    uint32_t compute_ms;    /* how long the computation took */
} rk__value_meta;

/* A parsed header: what a stored value is and where its payload starts. */
typedef struct rk__value_view {
    rk__vtype type;
    unsigned flags;         /* RK__VF_* */
    rk__value_meta meta;    /* zero unless flags has RK__VF_META */
    size_t offset;          /* payload (maybe compressed) = data + offset */
} rk__value_view;

/* Write a format-2 header (flags: RK__VF_COMPRESSED and/or RK__VF_META;
 * meta is read only with RK__VF_META) into out; returns its length. */
size_t rk__value_encode_header(rk__vtype type, unsigned flags, const rk__value_meta *meta,
                               unsigned char out[RK__VALUE_HEADER_MAX]);

/* Parse a stored value's header (format 1 or 2). raw = the value has no
 * header: type RK__V_BYTES, no flags, offset 0. RK_ERR_TYPE for a value
 * that is not redkit's, has an unknown type or a reserved flag, is too
 * short for its META block, or whose expiry is negative or over
 * RK__VALUE_EXPIRY_MAX. Pure: no allocation. */
rk_status rk__value_parse(const void *data, size_t len, bool raw, rk__value_view *out);

/* Name of a type for messages ("bytes", "string", ...). */
const char *rk__vtype_name(rk__vtype type);

/* Write the header for type into out[0..1]. */
void rk__value_header(rk__vtype type, unsigned char out[RK__VALUE_HEADER]);

/* Format 1 only (no flags): check a stored value's header. On RK_OK, *type is its type and the
 * payload starts at data + *offset. raw = the value has no header: its
 * type is reported as RK__V_BYTES and offset 0. Returns RK_ERR_TYPE for a
 * value without a valid redkit header. */
rk_status rk__value_decode(const void *data, size_t len, bool raw, rk__vtype *type, size_t *offset);


#endif
