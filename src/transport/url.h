/*
 * url.h — parsing REDIS_URL into its parts (the syntax is documented in
 * include/redkit/url.h). Pure: no I/O, no global state; fuzzed.
 */
#ifndef RK_SRC_URL_H
#define RK_SRC_URL_H

#include <stdbool.h>
#include <redkit/status.h>

#include "names.h" /* the key prefix rule */

/* What a URL said. Strings are owned (rk__malloc'd) and NULL when the URL
 * did not give them; numeric fields are 0 / false when absent. */
typedef struct rk__url {
    bool tls;                /* rediss:// */
    char *host;              /* decoded; IPv6 without brackets ("::1") */
    int port;                /* 0 = not given */
    char *unix_path;         /* unix:// */
    char *username;          /* percent-decoded */
    char *password;          /* percent-decoded; wiped by rk__url_clear */
    bool has_db;
    int db;
    int connect_timeout_ms;  /* 0 = not given */
    int command_timeout_ms;
    int pool_size;
    char *client_name;
    char *key_prefix;
    /* TLS query options, accepted only in rediss:// URLs. */
    char *tls_ca_file;
    char *tls_ca_dir;
    char *tls_cert_file;
    char *tls_key_file;
    char *tls_server_name;
    bool tls_insecure;       /* tls_insecure=1 */
} rk__url;

/* Parse url into *out (zeroed first). On error returns RK_ERR_INVALID (or
 * RK_ERR_NOMEM) with rk_last_error() naming the bad part, never the
 * password, and leaves *out empty. */
rk_status rk__url_parse(const char *url, rk__url *out);

/* Wipe and free every string of u (not only the password: see url.c) and
 * zero it. */
void rk__url_clear(rk__url *u);

/* The rule for a key prefix, from a URL or from code, is the namespace
 * rule: rk__name_char() and rk__name_valid() in src/keys/names.h. */

/* A client name Redis accepts for CLIENT SETNAME: printable ASCII without
 * spaces. */
bool rk__client_name_valid(const char *name);

/* A TLS server name: an IP literal, or a host name of A-Z a-z 0-9 - . _
 * (the characters a URL host may have), 1..253 bytes, with no empty label
 * (no leading or trailing '.', no ".."). */
bool rk__server_name_valid(const char *name);

#endif
