/*
 * number.h — numbers as text in the "C" locale (src/base/number.c), for
 * the cache's stored numbers and for parsing INFO.
 */
#ifndef RK_SRC_BASE_NUMBER_H
#define RK_SRC_BASE_NUMBER_H

#include <stddef.h>
#include <stdint.h>

#include <redkit/status.h>

/* Longest int64 or double text, without a NUL. */
#define RK__NUMBER_TEXT_MAX 32

/* Text forms of numbers, in the "C" locale; return the length written (no
 * NUL counted; buf has room for RK__NUMBER_TEXT_MAX + 1). */
size_t rk__i64_to_text(int64_t v, char *buf);
size_t rk__double_to_text(double v, char *buf);

/* strtod in the "C" locale, whatever setlocale() the host program made. */
double rk__strtod_c(const char *s, char **end);

/* Strict parsers: the whole of p[0..n-1] must be the number. */
rk_status rk__text_to_i64(const char *p, size_t n, int64_t *out);
rk_status rk__text_to_double(const char *p, size_t n, double *out);

#endif
