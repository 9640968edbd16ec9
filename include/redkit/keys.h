/*
 * redkit/keys.h — how redkit names the keys it writes.
 *
 * Every key is "<prefix>:<namespace>:<user key>", for example
 * "shop:cache:user:123": the prefix belongs to the client (one per
 * application or tenant), the namespace to a module handle ("cache",
 * "sess", ...) and the user key to the caller. Without a prefix the key is
 * "<namespace>:<user key>". Two handles with different namespaces can never
 * see each other's keys, whatever user keys they are given.
 *
 * Rules, checked by every function that takes a key:
 *   - a user key is a non-empty C string of at most the handle's maximum
 *     (RK_DEFAULT_MAX_KEY_BYTES unless configured), any bytes but NUL;
 *   - a namespace is 1..RK_MAX_NAMESPACE_BYTES of [A-Za-z0-9_.-] — no ':',
 *     which is the separator, so the split is never ambiguous;
 *   - a prefix follows the namespace rules, or is empty.
 */
#ifndef REDKIT_KEYS_H
#define REDKIT_KEYS_H

#include "common.h"
#include "status.h"
#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RK_DEFAULT_MAX_KEY_BYTES 1024
/* The largest max_key_bytes a handle accepts (64 MiB); larger, or a
 * negative number cast to size_t, is RK_ERR_INVALID when the handle is
 * created. */
#define RK_MAX_KEY_BYTES ((size_t)64 << 20)
#define RK_MAX_NAMESPACE_BYTES 64

/*
 * rk_key_build — write the full Redis key for (client's prefix, ns, key)
 * into buf, NUL-terminated, and its length (without the NUL) into *len.
 *
 * Use it to reach redkit's keys from your own commands
 * (rk_client_command) or from another client.
 *
 * buf may be NULL with buf_size 0 to ask only for the length. If buf is too
 * small the call returns RK_ERR_TOO_LARGE and *len still receives the
 * length needed. An empty or NULL key, or an invalid ns, give
 * RK_ERR_INVALID; a key longer than RK_DEFAULT_MAX_KEY_BYTES gives
 * RK_ERR_TOO_LARGE.
 *
 * Key length: rk_key_build() knows no handle, so it applies the default
 * limit, RK_DEFAULT_MAX_KEY_BYTES, whatever max_key_bytes a module handle
 * was given. To build a key under a handle's own limit (and namespace),
 * use the module's function: rk_cache_key_build() for a cache.
 *
 * Thread safety: safe from any thread; no I/O.
 */
RK_EXPORT rk_status rk_key_build(const rk_client *client, const char *ns,
                                 const char *key, char *buf, size_t buf_size,
                                 size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_KEYS_H */
