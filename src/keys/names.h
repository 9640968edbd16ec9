/*
 * names.h — the rule for the names that come from configuration: a key
 * prefix (from rk_client_options or a URL's ?prefix=) and a module
 * namespace. Both become the first parts of every key redkit writes, and
 * of SCAN patterns, so they are kept to characters that need no escaping
 * anywhere and without ':', the separator, so that "a" + "b:c" can never
 * pose as "a:b" + "c".
 *
 * This file depends on src/base only: the client (which checks its prefix)
 * and the URL parser (which checks ?prefix=) both use it, while keys.c,
 * which builds keys from a client's prefix, sits above the client. Keeping
 * the rule here is what keeps client and keys from needing each other.
 */
#ifndef RK_SRC_NAMES_H
#define RK_SRC_NAMES_H

#include <stdbool.h>

#include <redkit/status.h>

/* A character allowed in a prefix or namespace: A-Z a-z 0-9 _ . - */
bool rk__name_char(char c);

/* name is 1..RK_MAX_NAMESPACE_BYTES of rk__name_char() characters. No
 * message is set: for parsers that report their own. */
bool rk__name_valid(const char *name);

/* The same check with a message: RK_OK, or RK_ERR_INVALID with rk__fail()
 * naming `what` ("namespace", "key_prefix"). NULL is invalid (empty). */
rk_status rk__key_check_name(const char *what, const char *name);

#endif
