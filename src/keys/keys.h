/*
 * keys.h — building "<prefix>:<ns>:<key>" names on the hot path.
 *
 * A module computes its "head" ("<prefix>:<ns>:") once, when the handle
 * is created; each call then only appends the user key. Short keys are
 * built in a buffer on the caller's stack, long ones on the heap.
 */
#ifndef RK_SRC_KEYS_H
#define RK_SRC_KEYS_H

#include <stddef.h>

#include <redkit/client.h>

#include "names.h"

typedef struct rk__key {
    char *str;        /* the full key; points into stack or the heap */
    size_t len;
    char stack[256];
} rk__key;

/* rk__key_check_name() — the prefix/namespace rule — is in names.h. */

/* Build "<client head><ns>:" into a new string (rk__free it). */
rk_status rk__key_head(const rk_client *client, const char *ns, char **head, size_t *head_len);

/* Check key (non-NULL, non-empty, at most max_key bytes) and build
 * head + key into k. Release with rk__key_release(). */
rk_status rk__key_make(rk__key *k, const char *head, size_t head_len, const char *key,
                       size_t max_key);

void rk__key_release(rk__key *k);

/*
 * rk__key_glob_escape — escape len bytes of s so that a Redis glob pattern
 * (SCAN ... MATCH, KEYS) made of them matches exactly those bytes: each of
 * '*', '?', '[', ']' and '\\' gets a '\\' before it; every other byte,
 * NUL included, is copied as it is. Append an unescaped '*' to the result
 * to match "everything that starts with s".
 *
 * Writes the escaped bytes to buf, at most buf_size - 1 of them, followed
 * by a NUL (when buf_size > 0), and returns the full escaped length
 * without the NUL, as snprintf() does: a result >= buf_size means buf was
 * too small. buf may be NULL with buf_size 0 to ask only for the length,
 * which is at most 2 * len. Never allocates, never fails. The pattern may
 * contain NUL bytes: send it with an explicit length (argvlen).
 *
 * Owned by the keys layer (src/keys/keys.c); tests in tests/keys/keys_test.c (unit)
 * and tests/keys/hostile_keys_test.c (against a real server).
 */
size_t rk__key_glob_escape(const char *s, size_t len, char *buf, size_t buf_size);

#endif
