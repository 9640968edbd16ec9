/*
 * keys.c — namespaced key names (see include/redkit/keys.h).
 *
 * Namespaces and prefixes are restricted to a plain alphabet without ':'
 * so that a key's first two parts are always unambiguous — namespace "a"
 * with key "b:c" can never meet namespace "a:b" with key "c" — and contain
 * no glob characters; the user key that follows is arbitrary bytes. Messages
 * never quote a user key: keys can carry personal data.
 *
 * Because the user key is arbitrary, anything that turns keys into a glob
 * pattern (SCAN MATCH) must escape it first: rk__key_glob_escape() does,
 * so that a user key "*" matches the key "*" and nothing else.
 *
 * The prefix/namespace rule itself is in names.c, below the client, which
 * checks its prefix with it while this file reads the client's prefix.
 */
#include <stdint.h>
#include <string.h>

#include <redkit/keys.h>

#include "alloc.h"
#include "client.h"
#include "error.h"
#include "keys.h"
#include "names.h"

rk_status rk__key_head(const rk_client *client, const char *ns, char **head, size_t *head_len)
{
    rk_status st = rk__key_check_name("namespace", ns);
    if (st != RK_OK) return st;
    size_t plen, nlen = strlen(ns);
    const char *prefix = rk__client_key_head(client, &plen);
    char *h = rk__malloc(plen + nlen + 2);
    if (!h) return rk__fail(RK_ERR_NOMEM, "key: out of memory");
    memcpy(h, prefix, plen);
    memcpy(h + plen, ns, nlen);
    h[plen + nlen] = ':';
    h[plen + nlen + 1] = '\0';
    *head = h;
    *head_len = plen + nlen + 1;
    return RK_OK;
}

static rk_status check_key(const char *key, size_t max_key, size_t *len)
{
    if (!key) return rk__fail(RK_ERR_INVALID, "key is NULL");
    if (!*key) return rk__fail(RK_ERR_INVALID, "key is empty");
    /* max_key + 1 would wrap to 0 at SIZE_MAX and make every key "empty"
     * and so the same key: handles refuse such limits (RK_MAX_KEY_BYTES),
     * and this saturates anyway. */
    size_t n = strnlen(key, max_key < SIZE_MAX ? max_key + 1 : SIZE_MAX);
    if (n > max_key) return rk__fail(RK_ERR_TOO_LARGE, "key is longer than %zu bytes", max_key);
    *len = n;
    return RK_OK;
}

rk_status rk__key_make(rk__key *k, const char *head, size_t head_len, const char *key, size_t max_key)
{
    size_t n = 0;
    k->str = NULL;
    k->len = 0;
    rk_status st = check_key(key, max_key, &n);
    if (st != RK_OK) return st;
    size_t total = head_len + n;
    char *p = total < sizeof k->stack ? k->stack : rk__malloc(total + 1);
    if (!p) return rk__fail(RK_ERR_NOMEM, "key: out of memory");
    memcpy(p, head, head_len);
    memcpy(p + head_len, key, n);
    p[total] = '\0';
    k->str = p;
    k->len = total;
    return RK_OK;
}

void rk__key_release(rk__key *k)
{
    if (k->str && k->str != k->stack) rk__free(k->str);
    k->str = NULL;
}

/* The bytes Redis's glob matcher (stringmatchlen) treats specially outside
 * a class: '*', '?', '[' and the escape itself. ']' is special only inside
 * a class, but escaping it too costs nothing and keeps the rule simple. */
static bool glob_special(char ch)
{
    return ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\';
}

size_t rk__key_glob_escape(const char *s, size_t len, char *buf, size_t buf_size)
{
    /* The count is at most 2 * len: it fits in size_t for any s that
     * fits in half the address space, and keys are far shorter. */
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        if (glob_special(s[i])) {
            if (out + 1 < buf_size) buf[out] = '\\';
            out++;
        }
        if (out + 1 < buf_size) buf[out] = s[i];
        out++;
    }
    if (buf_size > 0) buf[out < buf_size ? out : buf_size - 1] = '\0';
    return out;
}

rk_status rk_key_build(const rk_client *client, const char *ns, const char *key, char *buf,
                       size_t buf_size, size_t *len)
{
    if (!client || !len || (!buf && buf_size))
        return rk__fail(RK_ERR_INVALID, "rk_key_build: NULL argument");
    char *head;
    size_t head_len, n = 0;
    rk_status st = rk__key_head(client, ns, &head, &head_len);
    if (st != RK_OK) return st;
    if ((st = check_key(key, RK_DEFAULT_MAX_KEY_BYTES, &n)) != RK_OK) {
        rk__free(head);
        return st;
    }
    *len = head_len + n;
    if (buf_size < *len + 1) {
        rk__free(head);
        return rk__fail(RK_ERR_TOO_LARGE, "rk_key_build: buffer of %zu bytes, %zu needed", buf_size,
                        *len + 1);
    }
    memcpy(buf, head, head_len);
    memcpy(buf + head_len, key, n + 1);
    rk__free(head);
    return RK_OK;
}
