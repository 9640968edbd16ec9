/*
 * names.c — the prefix and namespace rule (see names.h for why it lives
 * apart from keys.c). Pure: no allocation, no I/O.
 */
#include <redkit/keys.h>

#include "error.h"
#include "names.h"

bool rk__name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

/* Why a name is refused: 0 = it is not. Length first, so that an
 * over-long name is reported as such even when a bad character follows
 * the limit. */
enum { NAME_OK, NAME_EMPTY, NAME_LONG, NAME_CHAR };

static int check(const char *name)
{
    if (!name || !*name) return NAME_EMPTY;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        if (n >= RK_MAX_NAMESPACE_BYTES) return NAME_LONG;
        if (!rk__name_char(*p)) return NAME_CHAR;
    }
    return NAME_OK;
}

bool rk__name_valid(const char *name) { return check(name) == NAME_OK; }

rk_status rk__key_check_name(const char *what, const char *name)
{
    switch (check(name)) {
    case NAME_OK: return RK_OK;
    case NAME_EMPTY: return rk__fail(RK_ERR_INVALID, "%s is empty", what);
    case NAME_LONG: return rk__fail(RK_ERR_INVALID, "%s is longer than %d bytes", what, RK_MAX_NAMESPACE_BYTES);
    default: return rk__fail(RK_ERR_INVALID, "%s may only contain A-Z a-z 0-9 _ . - (':' is the separator)", what);
    }
}
