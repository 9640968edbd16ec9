/*
 * auth.h — who is calling: passwords, API keys, and the request's principal.
 *
 * Passwords are stored as Argon2id hashes (libargon2's encoded form, which
 * carries its own salt and parameters). API keys are random, shown to
 * their owner once, and stored as SHA-256 hashes; their validation goes
 * through the cache (apikey_validate), so a busy client costs one Redis
 * round trip per request instead of one SQLite query.
 */
#ifndef API_SERVER_AUTH_H
#define API_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"

#define AUTH_HASH_MAX 128
#define APIKEY_CHARS 46     /* "rk_" + 43 base64url characters (32 bytes) */
#define APIKEY_HASH_HEX 64  /* SHA-256 in hex */

/* Argon2id hash of password into out (encoded string). 0 on success. */
int auth_hash_password(const char *password, char *out, size_t size);
bool auth_verify_password(const char *encoded, const char *password);
/* Check email + password against the database: 0 (right; *id = the
 * user), 1 (wrong email or password, in the same time), -1 (database). */
int auth_check_password(struct app *app, const char *email, const char *password, int64_t *id);

/* A new API key (key: APIKEY_CHARS + NUL), its hash and its display form
 * ("rk_AbCd…"). 0 on success. */
int apikey_generate(char *key, char *hash_hex, char *display, size_t display_size);
/* SHA-256 of key in hex (APIKEY_HASH_HEX + NUL). */
void apikey_hash(const char *key, char *hash_hex);

struct apikey_info {
    int64_t id, user_id;
    bool can_write; /* the key has the "write" scope */
};
/* 0: key is live (info filled); 1: unknown, malformed or revoked;
 * -1: the database failed. Never logs the key. */
int apikey_validate(struct app *app, const char *key, struct apikey_info *info);
/* Drop the cached validation of a revoked key. 0, or -1 when Redis could
 * not be told (the entry then lives until its TTL, APIKEY_CACHE_TTL_S). */
int apikey_forget(struct app *app, const char *hash_hex);
#define APIKEY_CACHE_TTL_S 30

/* The caller of a request. */
struct principal {
    int64_t user_id;
    bool via_key;   /* authenticated by an API key ... */
    bool can_write; /* ... with the write scope (always true for a user) */
};

struct http_request;
struct http_response;
/*
 * Resolve the caller from "Authorization: Bearer <api key>", "Basic
 * <email:password>" or the session cookie. Returns 0 (authenticated), 1
 * (no credentials given), or -1 with a problem already in rs (bad
 * credentials: 401; database: 500; session store unreachable: 503).
 */
int auth_resolve(struct app *app, const struct http_request *rq, struct principal *who,
                 struct http_response *rs);

#endif
