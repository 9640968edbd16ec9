/*
 * handlers_account.c — signup, the current user, sessions and API keys.
 *
 * A person authenticates with a session cookie (handlers_session.c) or
 * HTTP Basic (email:password, checked against the Argon2id hash), a
 * program with an API key (Bearer). API keys (apikey.c, rk_apikeys) are
 * shown once, at creation; SQLite keeps their hash and display form.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"

#define MIN_PASSWORD 10
#define MAX_PASSWORD 128

static bool valid_email(const char *e)
{
    size_t n = e ? strlen(e) : 0;
    const char *at = e ? strchr(e, '@') : NULL;
    if (n < 3 || n > 254 || !at || at == e || !at[1] || strchr(at + 1, '@'))
        return false;
    for (; *e; e++)
        if ((unsigned char)*e <= ' ' || *e == 0x7f || *e == ':')
            return false;
    return true;
}

void h_signup(struct app *app, const struct http_request *rq, struct http_response *rs,
              const char *arg)
{
    (void)arg;
    const char *email, *password;
    json_t *body = parse_credentials(rq, rs, &email, &password);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!valid_email(email) || !name || !*name || strlen(name) > 100 || !password) {
        json_decref(body);
        resp_problem(rs, 422, "invalid-field", "Invalid field",
                     "needs email, password and name (1-100 characters)");
        return;
    }
    if (strlen(password) < MIN_PASSWORD || strlen(password) > MAX_PASSWORD) {
        json_decref(body);
        resp_problem(rs, 422, "weak-password", "Weak password",
                     "a password has 10 to 128 characters");
        return;
    }
    char hash[AUTH_HASH_MAX];
    int64_t id = 0;
    int rc = auth_hash_password(password, hash, sizeof hash) == 0
                 ? db_user_insert(app->db, email, name, hash, &id)
                 : DB_ERROR;
    json_decref(body);
    if (rc == DB_CONFLICT) {
        resp_problem(rs, 409, "email-taken", "Email taken", "an account with this email exists");
        return;
    }
    if (rc != DB_OK) {
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
        return;
    }
    resp_header(rs, "Location", "/v1/users/%lld", (long long)id);
    resp_json(rs, 201, json_pack("{s:I}", "id", (json_int_t)id));
}

/* The authenticated caller, or a 401/500 problem in rs and false. */
static bool require_user(struct app *app, const struct http_request *rq,
                         struct http_response *rs, struct principal *who)
{
    int rc = auth_resolve(app, rq, who, rs);
    if (rc > 0) {
        resp_problem(rs, 401, "unauthorized", "Unauthorized", "log in or send an API key");
        resp_header(rs, "WWW-Authenticate", "Basic realm=\"api\"");
    }
    return rc == 0;
}

void h_me(struct app *app, const struct http_request *rq, struct http_response *rs,
          const char *arg)
{
    struct principal who;
    json_t *user = NULL;
    (void)arg;
    if (!require_user(app, rq, rs, &who))
        return;
    if (db_user_get(app->db, who.user_id, &user) == DB_OK)
        resp_json(rs, 200, user);
    else
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
}

/* scopes: an array of "read" / "write"; the canonical string in out. */
static bool parse_scopes(json_t *scopes, char *out, size_t size)
{
    bool read = false, write = false;
    size_t i;
    json_t *s;
    if (!scopes) {
        read = true;
    } else if (!json_is_array(scopes) || json_array_size(scopes) > 2) {
        return false;
    }
    json_array_foreach(scopes, i, s) {
        const char *v = json_string_value(s);
        if (v && strcmp(v, "read") == 0)
            read = true;
        else if (v && strcmp(v, "write") == 0)
            write = true;
        else
            return false;
    }
    snprintf(out, size, "%s%s%s", read ? "read" : "", read && write ? " " : "",
             write ? "write" : "");
    return read || write;
}

void h_apikeys_post(struct app *app, const struct http_request *rq, struct http_response *rs,
                    const char *arg)
{
    struct principal who;
    (void)arg;
    if (!require_user(app, rq, rs, &who))
        return;
    if (who.via_key) {
        resp_problem(rs, 403, "forbidden", "Forbidden", "an API key cannot create API keys");
        return;
    }
    json_t *body = parse_body(rq, rs);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    json_t *plan_json = json_object_get(body, "plan");
    const char *plan_name = plan_json ? json_string_value(plan_json) : plan_names[PLAN_FREE];
    int plan = 0;
    while (plan < PLAN_COUNT && (!plan_name || strcmp(plan_name, plan_names[plan]) != 0))
        plan++;
    char scopes[16];
    if (!name || !*name || strlen(name) > 64 || plan == PLAN_COUNT ||
        !parse_scopes(json_object_get(body, "scopes"), scopes, sizeof scopes)) {
        json_decref(body);
        resp_problem(rs, 422, "invalid-field", "Invalid field",
                     "needs name (1-64 characters), scopes ([\"read\"], [\"read\",\"write\"]) "
                     "and optionally plan (\"free\" or \"pro\")");
        return;
    }
    char key[RK_APIKEYS_KEY_BUF], display[RK_APIKEYS_DISPLAY_BUF];
    int64_t id = 0;
    int rc = apikey_create(app, who.user_id, name, scopes, (enum plan)plan, key, display, &id);
    if (rc != DB_OK) {
        json_decref(body);
        resp_problem(rs, 500, "internal", "Internal error", "could not create the key");
        return;
    }
    /* The only response that ever carries the key itself. */
    resp_header(rs, "Cache-Control", "no-store");
    resp_json(rs, 201, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)id, "key",
                                 key, "display", display, "name", name, "scopes", scopes, "plan",
                                 plan_names[plan]));
    json_decref(body);
    memset(key, 0, sizeof key);
}

void h_apikeys_get(struct app *app, const struct http_request *rq, struct http_response *rs,
                   const char *arg)
{
    struct principal who;
    json_t *keys = NULL;
    (void)arg;
    if (!require_user(app, rq, rs, &who))
        return;
    if (db_apikey_list(app->db, who.user_id, &keys) == DB_OK)
        resp_json(rs, 200, keys);
    else
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
}

void h_apikey_delete(struct app *app, const struct http_request *rq, struct http_response *rs,
                     const char *arg)
{
    struct principal who;
    int64_t id;
    bool tombstone = false;
    if (!parse_id(arg, &id, rs) || !require_user(app, rq, rs, &who))
        return;
    int rc = apikey_revoke(app, who.user_id, id, &tombstone);
    if (rc == DB_NOT_FOUND) {
        resp_problem(rs, 404, "not-found", "Not found", "no such live key of yours");
        return;
    }
    if (rc != DB_OK) {
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
        return;
    }
    /* Revoked in SQLite and in this process; Redis (the other processes'
     * view) may have missed it: say so, as a failed cache invalidation. */
    if (!tombstone)
        resp_header(rs, "X-Cache-Invalidation", "failed");
    rs->status = 204;
    rs->content_type = "application/json";
}
