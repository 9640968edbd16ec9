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

typedef struct rk__key {
    char *str;        /* the full key; points into stack or the heap */
    size_t len;
    char stack[256];
} rk__key;

/* Check a namespace or prefix: 1..RK_MAX_NAMESPACE_BYTES of
 * [A-Za-z0-9_.-]. `what` names it in the error message. */
rk_status rk__key_check_name(const char *what, const char *name);

/* Build "<client head><ns>:" into a new string (rk__free it). */
rk_status rk__key_head(const rk_client *client, const char *ns, char **head, size_t *head_len);

/* Check key (non-NULL, non-empty, at most max_key bytes) and build
 * head + key into k. Release with rk__key_release(). */
rk_status rk__key_make(rk__key *k, const char *head, size_t head_len, const char *key,
                       size_t max_key);

void rk__key_release(rk__key *k);

#endif
