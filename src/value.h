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
 * int64 and double payloads are decimal text, so a value stays readable in
 * redis-cli; a double uses 17 significant digits and reads back bit-exact.
 */
#ifndef RK_SRC_VALUE_H
#define RK_SRC_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/status.h>

#define RK__VALUE_MAGIC 0xFE
#define RK__VALUE_HEADER 2
/* Longest int64 or double text, without a NUL. */
#define RK__NUMBER_TEXT_MAX 32

typedef enum rk__vtype {
    RK__V_BYTES = 1,
    RK__V_STRING = 2,
    RK__V_INT64 = 3,
    RK__V_DOUBLE = 4
} rk__vtype;

/* Name of a type for messages ("bytes", "string", ...). */
const char *rk__vtype_name(rk__vtype type);

/* Write the header for type into out[0..1]. */
void rk__value_header(rk__vtype type, unsigned char out[RK__VALUE_HEADER]);

/* Check a stored value's header. On RK_OK, *type is its type and the
 * payload starts at data + *offset. raw = the value has no header: its
 * type is reported as RK__V_BYTES and offset 0. Returns RK_ERR_TYPE for a
 * value without a valid redkit header. */
rk_status rk__value_decode(const void *data, size_t len, bool raw, rk__vtype *type, size_t *offset);

/* Text forms of numbers; return the length written (no NUL counted;
 * buf has room for RK__NUMBER_TEXT_MAX + 1). */
size_t rk__i64_to_text(int64_t v, char *buf);
size_t rk__double_to_text(double v, char *buf);

/* Strict parsers: the whole of p[0..n-1] must be the number. */
rk_status rk__text_to_i64(const char *p, size_t n, int64_t *out);
rk_status rk__text_to_double(const char *p, size_t n, double *out);

#endif
