/*
 * number.c — numbers as text, in the "C" locale whatever setlocale() the
 * host program made: the cache stores numbers as text other processes
 * read, and INFO replies are parsed with the same rules (contract in
 * number.h).
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "number.h"

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
