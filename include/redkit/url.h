/*
 * redkit/url.h — REDIS_URL syntax and the safe way to print one.
 *
 * Accepted forms (parsed by rk_client_new() through rk_client_options.url):
 *
 *   redis://[[user][:password]@]host[:port][/db][?option=value&...]
 *   rediss://...                       the same, over TLS
 *   unix://[[user][:password]@]/path/to/redis.sock[?db=N&option=value&...]
 *
 *   host      a name, an IPv4 literal, or an IPv6 literal in brackets
 *             ("[::1]"); default 127.0.0.1. Port default 6379.
 *   user, password
 *             percent-decoded ("p%40ss" is "p@ss"). AUTH is sent only when
 *             there is a password: "redis://:secret@h" sends AUTH secret;
 *             with a user, AUTH user secret (Redis 6 ACL). A user without a
 *             password is ignored.
 *   /db       database number 0..2147483647 (also ?db=N).
 *   options   connect_timeout=MS, command_timeout=MS, pool_size=N,
 *             name=CLIENT_NAME, prefix=KEY_PREFIX, db=N. Giving an
 *             option twice (or the db both as /N and ?db=N) is an error.
 *   TLS options (rediss:// only; elsewhere they are an error), the fields
 *             of rk_tls_options in redkit/client.h: tls_ca_file=PATH,
 *             tls_ca_dir=PATH, tls_cert_file=PATH, tls_key_file=PATH,
 *             tls_server_name=NAME, tls_insecure=1. Paths are
 *             percent-decoded.
 *   A '#', and an unescaped '/', '?' or '#' in a password, are refused:
 *   percent-encode them (%2F, %3F, %23).
 *
 * A malformed URL makes rk_client_new() fail with RK_ERR_INVALID and a
 * message naming the part that is wrong ("URL port: not a number 1..65535")
 * — never echoing the password.
 */
#ifndef REDKIT_URL_H
#define REDKIT_URL_H

#include "common.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * rk_url_redact — a printable copy of url with the password (if any)
 * replaced by "***": "redis://app:s3cret@db:6379/2" gives
 * "redis://app:***@db:6379/2". Everything else is kept as written.
 *
 * On RK_OK *out receives a NUL-terminated string, freed with rk_free().
 * A URL that does not parse gives RK_ERR_INVALID and *out = NULL: a
 * malformed URL is never echoed, because where its password ends is not
 * known. Returns RK_OK, RK_ERR_INVALID or RK_ERR_NOMEM.
 */
RK_EXPORT rk_status rk_url_redact(const char *url, char **out);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_URL_H */
