/*
 * auth.h — who is calling: passwords, API keys, and the request's principal.
 *
 * Passwords are stored as Argon2id hashes (libargon2's encoded form, which
 * carries its own salt and parameters). API keys are redkit's (rk_apikeys):
 * made by its generator, shown to their owner once, stored in SQLite as
 * the library's SHA-256, verified through its process cache and Redis, so
 * a busy client costs no SQLite query per request.
 */
#ifndef API_SERVER_AUTH_H
#define API_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"

#define AUTH_HASH_MAX 128

/* Argon2id hash of password into out (encoded string). 0 on success. */
int auth_hash_password(const char *password, char *out, size_t size);
bool auth_verify_password(const char *encoded, const char *password);
/* Check email + password against the database: 0 (right; *id = the
 * user), 1 (wrong email or password, in the same time), -1 (database). */
int auth_check_password(struct app *app, const char *email, const char *password, int64_t *id);

/* ---- apikey.c: API keys on rk_apikeys ------------------------------------- */

/* Create app->keys: rk_apikeys with SQLite as its lookup. */
rk_status apikeys_open(struct app *app);

/* What a live key's owner record says. */
struct apikey_info {
    int64_t id, user_id;
    bool can_write; /* the key has the "write" scope */
    enum plan plan;
};

/* One request's verdict on its "Authorization: Bearer" key, worked out
 * once (the rate limit needs the key's plan before the handler runs, and
 * the handler needs its owner). routes.c gives each request one. */
struct apikey_memo {
    bool done;
    int rc; /* as apikey_verify() returns */
    struct apikey_info info;
};

struct http_request;
/* The request's Bearer key: 0 (live; *info points to its owner record),
 * 1 (no Bearer key), 2 (malformed, unknown, revoked or expired), -1
 * (neither Redis nor SQLite could answer). Memoised in rq->apikey, so
 * only the first call per request does any work. Never logs the key. */
int apikey_verify(struct app *app, const struct http_request *rq, const struct apikey_info **info);

/* A new key for user_id, stored in SQLite as its hash and display form:
 * DB_OK with key (RK_APIKEYS_KEY_BUF bytes: shown to its owner once),
 * display (RK_APIKEYS_DISPLAY_BUF) and *id, or DB_ERROR. */
int apikey_create(struct app *app, int64_t user_id, const char *name, const char *scopes,
                  enum plan plan, char *key, char *display, int64_t *id);

/* Revoke key id of user_id: in SQLite, then with rk_apikeys (a tombstone
 * every process sees at once). DB_OK, DB_NOT_FOUND (no such live key of
 * the user's) or DB_ERROR; *tombstone is false when Redis could not be
 * told (SQLite and this process still refuse the key at once). */
int apikey_revoke(struct app *app, int64_t user_id, int64_t id, bool *tombstone);

/* The caller of a request. */
struct principal {
    int64_t user_id;
    bool via_key;   /* authenticated by an API key ... */
    bool can_write; /* ... with the write scope (always true for a user) */
};

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
