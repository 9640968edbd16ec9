/*
 * auth.c — password hashing and the request's principal.
 *
 * Argon2id with OWASP's minimum (19 MiB, 2 passes, 1 lane): slow enough
 * to make a stolen database expensive to brute-force, fast enough
 * (tens of milliseconds) for a login. Credentials are compared by
 * libargon2 in constant time; a wrong email costs the same hash as a
 * wrong password, so response time does not reveal which emails exist.
 */
#include "auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <argon2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "handlers.h"
#include "http.h"

#define ARGON_T 2
#define ARGON_M_KIB 19456
#define ARGON_P 1

int auth_hash_password(const char *password, char *out, size_t size)
{
    unsigned char salt[16];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return -1;
    return argon2id_hash_encoded(ARGON_T, ARGON_M_KIB, ARGON_P, password, strlen(password), salt,
                                 sizeof salt, 32, out, size) == ARGON2_OK
               ? 0
               : -1;
}

bool auth_verify_password(const char *encoded, const char *password)
{
    return argon2id_verify(encoded, password, strlen(password)) == ARGON2_OK;
}

/* A well-formed hash of a random password, verified when the email is
 * unknown so that both failures take the same time. */
static char dummy[AUTH_HASH_MAX];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy(void)
{
    if (auth_hash_password("no such user", dummy, sizeof dummy) != 0)
        dummy[0] = '\0'; /* argon2id_verify then fails at once */
}

static const char *dummy_hash(void)
{
    pthread_once(&dummy_once, make_dummy);
    return dummy;
}

int auth_check_password(struct app *app, const char *email, const char *password, int64_t *id)
{
    char *hash = NULL;
    int rc = db_user_credentials(app->db, email, id, &hash);
    if (rc == DB_ERROR)
        return -1;
    /* An unknown email costs the same verification as a wrong password. */
    bool ok = auth_verify_password(rc == DB_OK ? hash : dummy_hash(), password) && rc == DB_OK;
    free(hash);
    return ok ? 0 : 1;
}

static int basic_auth(struct app *app, const char *b64, struct principal *who)
{
    unsigned char decoded[384];
    size_t n = strlen(b64);
    if (n == 0 || n > 4 * (sizeof decoded / 3) - 4 || n % 4 != 0)
        return 1;
    int len = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return 1;
    while (len > 0 && b64[n - 1] == '=') { /* EVP_DecodeBlock counts padding */
        len--;
        n--;
    }
    decoded[len] = '\0';
    char *colon = strchr((char *)decoded, ':');
    if (!colon || strlen((char *)decoded) != (size_t)len)
        return 1;
    *colon = '\0';
    int64_t id = 0;
    int rc = auth_check_password(app, (char *)decoded, colon + 1, &id);
    OPENSSL_cleanse(decoded, sizeof decoded);
    if (rc != 0)
        return rc;
    who->user_id = id;
    who->via_key = false;
    who->can_write = true;
    return 0;
}

/* The session cookie's user. Sessions live only in Redis: while it cannot
 * be asked, a cookie can be neither trusted nor refused, so the answer is
 * 503 (Basic and API keys, checked against SQLite, still work). */
static int session_auth(struct app *app, const struct http_request *rq, struct principal *who,
                        struct http_response *rs)
{
    char token[RK_SESSION_TOKEN_SIZE];
    rk_session *session = NULL;
    if (!session_token(app, rq, token))
        return 1;
    rk_status st = rk_sessions_get(app->sessions, token, NULL, 0, &session);
    OPENSSL_cleanse(token, sizeof token);
    if (st == RK_OK && session->user) {
        who->user_id = strtoll(session->user, NULL, 10);
        who->via_key = false;
        who->can_write = true;
        rk_session_free(session);
        return 0;
    }
    rk_session_free(session);
    if (st == RK_OK || st == RK_MISS) {
        resp_problem(rs, 401, "unauthorized", "Unauthorized", "the session is unknown or expired");
        return -1;
    }
    resp_problem(rs, 503, "session-store-unavailable", "Sessions unavailable",
                 "sessions live in Redis, which cannot be reached; use HTTP Basic or an API key");
    return -1;
}

int auth_resolve(struct app *app, const struct http_request *rq, struct principal *who,
                 struct http_response *rs)
{
    const char *authz = http_header(rq, "Authorization");
    if (!authz)
        return session_auth(app, rq, who, rs);
    int rc = 1;
    if (strncasecmp(authz, "Bearer ", 7) == 0) {
        const struct apikey_info *key;
        rc = apikey_verify(app, rq, &key);
        if (rc == 0) {
            who->user_id = key->user_id;
            who->via_key = true;
            who->can_write = key->can_write;
        }
    } else if (strncasecmp(authz, "Basic ", 6) == 0) {
        rc = basic_auth(app, authz + 6, who);
    }
    if (rc < 0) {
        resp_problem(rs, 500, "internal", "Internal error",
                     "the credentials could not be checked (database)");
        return -1;
    }
    if (rc > 0) {
        resp_problem(rs, 401, "unauthorized", "Unauthorized",
                     "the credentials are unknown, malformed or revoked");
        resp_header(rs, "WWW-Authenticate", "Bearer realm=\"api\"");
        return -1;
    }
    return 0;
}
