/*
 * handlers_session.c — login, logout and the session list, on redkit's
 * rk_sessions.
 *
 * A session lives only in Redis (that is the point of rk_sessions: any
 * instance of the service can read it). So while Redis is down a session
 * cookie cannot be checked, and requests that rely on one get 503
 * (/problems/session-store-unavailable); HTTP Basic and API keys, checked
 * against SQLite, keep working. Login issues a fresh token every time and
 * destroys the one the browser already had (no session fixation).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"

/* Behind TLS (COOKIE_SECURE=on) the cookie is "__Host-sid": Secure, for
 * this host only, every path. Over plain HTTP (development) a browser
 * would drop a Secure cookie, and the __Host- prefix requires Secure, so
 * it is "sid" scoped to the API's paths. HttpOnly and SameSite=Lax always. */
static const rk_session_cookie_options *cookie_opts(const struct app *app)
{
    static const rk_session_cookie_options secure = { .name = "__Host-sid" };
    static const rk_session_cookie_options plain = { .name = "sid", .path = "/v1",
                                                     .insecure = true };
    return app->cfg.cookie_secure ? &secure : &plain;
}

/* The session token in the request's Cookie header; false when none. */
bool session_token(const struct app *app, const struct http_request *rq,
                   char token[RK_SESSION_TOKEN_SIZE])
{
    const char *cookie = http_header(rq, "Cookie");
    return cookie && rk_sessions_cookie_token(cookie, cookie_opts(app)->name, token) == RK_OK;
}

static void clear_cookie(const struct app *app, struct http_response *rs)
{
    char cookie[200];
    if (rk_sessions_cookie_clear(cookie_opts(app), cookie, sizeof cookie) == RK_OK)
        resp_header(rs, "Set-Cookie", "%s", cookie);
}

void h_login(struct app *app, const struct http_request *rq, struct http_response *rs,
             const char *arg)
{
    (void)arg;
    const char *email, *password;
    json_t *body = parse_credentials(rq, rs, &email, &password);
    if (!body)
        return;
    if (!email || !password || strlen(email) > 254 || strlen(password) > 128) {
        json_decref(body);
        resp_problem(rs, 422, "invalid-field", "Invalid field", "needs email and password");
        return;
    }
    int64_t id = 0;
    int rc = auth_check_password(app, email, password, &id);
    if (rc != 0) {
        json_decref(body);
        resp_problem(rs, rc > 0 ? 401 : 500, rc > 0 ? "unauthorized" : "internal",
                     rc > 0 ? "Unauthorized" : "Internal error",
                     rc > 0 ? "wrong email or password" : "the database failed");
        return;
    }
    json_decref(body);
    char old[RK_SESSION_TOKEN_SIZE], token[RK_SESSION_TOKEN_SIZE], user[24], cookie[256];
    snprintf(user, sizeof user, "%lld", (long long)id);
    /* A session the browser already has gets a new token and the user
     * (the old token dies: no fixation); otherwise a new session. */
    rk_status st = RK_MISS;
    if (session_token(app, rq, old))
        st = rk_sessions_regenerate(app->sessions, old, user, token);
    if (st == RK_MISS || st == RK_ERR_INVALID)
        st = rk_sessions_create(app->sessions, &(rk_session_create_options){ .user = user },
                                token);
    if (st != RK_OK) {
        resp_problem(rs, 503, "session-store-unavailable", "Sessions unavailable",
                     "sessions live in Redis, which cannot be reached; use HTTP Basic or an API key");
        return;
    }
    if (rk_sessions_cookie_format(token, RK_SESSIONS_DEFAULT_IDLE_MS, cookie_opts(app), cookie, sizeof cookie) ==
        RK_OK)
        resp_header(rs, "Set-Cookie", "%s", cookie);
    memset(token, 0, sizeof token);
    json_t *me = NULL;
    if (db_user_get(app->db, id, &me) == DB_OK)
        resp_json(rs, 200, me);
    else
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
}

void h_logout(struct app *app, const struct http_request *rq, struct http_response *rs,
              const char *arg)
{
    char token[RK_SESSION_TOKEN_SIZE];
    (void)arg;
    if (session_token(app, rq, token)) {
        rk_status st = rk_sessions_destroy(app->sessions, token);
        if (st != RK_OK && st != RK_MISS) {
            resp_problem(rs, 503, "session-store-unavailable", "Sessions unavailable",
                         "the session could not be destroyed; try again");
            return;
        }
    }
    clear_cookie(app, rs);
    rs->status = 204;
}

/* The caller (by session, Basic or API key), or a problem in rs. */
static bool session_user(struct app *app, const struct http_request *rq, struct http_response *rs,
                         struct principal *who)
{
    int rc = auth_resolve(app, rq, who, rs);
    if (rc > 0)
        resp_problem(rs, 401, "unauthorized", "Unauthorized", "log in first");
    return rc == 0;
}

void h_sessions_get(struct app *app, const struct http_request *rq, struct http_response *rs,
                    const char *arg)
{
    struct principal who;
    rk_session_list *list = NULL;
    char user[24];
    (void)arg;
    if (!session_user(app, rq, rs, &who))
        return;
    snprintf(user, sizeof user, "%lld", (long long)who.user_id);
    if (rk_sessions_list(app->sessions, user, &list) != RK_OK) {
        resp_problem(rs, 503, "session-store-unavailable", "Sessions unavailable",
                     "sessions live in Redis, which cannot be reached");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; items && i < list->n; i++)
        json_array_append_new(items, json_pack("{s:s, s:I, s:I, s:I}", "id", list->sessions[i].id,
                                               "issued_ms", (json_int_t)list->sessions[i].issued_ms,
                                               "last_access_ms",
                                               (json_int_t)list->sessions[i].last_access_ms,
                                               "expires_ms",
                                               (json_int_t)list->sessions[i].expires_ms));
    rk_session_list_free(list);
    resp_json(rs, 200, items);
}

void h_sessions_delete(struct app *app, const struct http_request *rq, struct http_response *rs,
                       const char *arg)
{
    struct principal who;
    char user[24];
    size_t n = 0;
    (void)arg;
    if (!session_user(app, rq, rs, &who))
        return;
    snprintf(user, sizeof user, "%lld", (long long)who.user_id);
    if (rk_sessions_destroy_user(app->sessions, user, NULL, &n) != RK_OK) {
        resp_problem(rs, 503, "session-store-unavailable", "Sessions unavailable",
                     "sessions live in Redis, which cannot be reached");
        return;
    }
    clear_cookie(app, rs);
    resp_json(rs, 200, json_pack("{s:I}", "destroyed", (json_int_t)n));
}
