/*
 * routes.c — method + path to handler.
 *
 * A table, read top to bottom. A pattern ending in "{id}" matches one more
 * path segment, handed to the handler as arg. A path that matches with
 * another method is 405 with an Allow header; no match at all is 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"
#include "limits.h"

struct route {
    const char *method;
    const char *pattern;
    enum route_id id;
    handler_fn handler;
};

static const struct route routes[] = {
    { "GET", "/", R_INDEX, h_index },
    { "GET", "/v1/status", R_STATUS, h_status },
    { "GET", "/healthz", R_HEALTHZ, h_healthz },
    { "GET", "/metrics", R_METRICS, h_metrics },
    { "POST", "/v1/signup", R_SIGNUP, h_signup },
    { "POST", "/v1/login", R_LOGIN, h_login },
    { "POST", "/v1/logout", R_LOGOUT, h_logout },
    { "GET", "/v1/me", R_ME, h_me },
    { "GET", "/v1/sessions", R_SESSIONS, h_sessions_get },
    { "DELETE", "/v1/sessions", R_SESSIONS, h_sessions_delete },
    { "GET", "/v1/users/{id}", R_USER, h_user_get },
    { "PUT", "/v1/users/{id}", R_USER, h_user_put },
    { "GET", "/v1/products/{id}", R_PRODUCT, h_product_get },
    { "GET", "/v1/products", R_PRODUCTS, h_products_list },
    { "POST", "/v1/products", R_PRODUCTS, h_product_post },
    { "POST", "/v1/api-keys", R_APIKEYS, h_apikeys_post },
    { "GET", "/v1/api-keys", R_APIKEYS, h_apikeys_get },
    { "DELETE", "/v1/api-keys/{id}", R_APIKEY, h_apikey_delete },
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* Does path match pattern? *arg gets the {id} segment (in buf). */
static bool match(const char *pattern, const char *path, char *buf, size_t size,
                  const char **arg)
{
    const char *brace = strstr(pattern, "{id}");
    *arg = NULL;
    if (!brace)
        return strcmp(pattern, path) == 0;
    size_t prefix = (size_t)(brace - pattern);
    if (strncmp(pattern, path, prefix) != 0)
        return false;
    const char *seg = path + prefix;
    size_t n = strlen(seg);
    if (n == 0 || strchr(seg, '/') || n >= size)
        return false;
    memcpy(buf, seg, n + 1);
    *arg = buf;
    return true;
}

enum route_id routes_dispatch(struct app *app, struct http_request *rq, struct http_response *rs)
{
    struct apikey_memo memo = { 0 };
    char seg[64], allow[64] = "";
    const char *arg;
    enum route_id matched = R_UNMATCHED;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, rq->path, seg, sizeof seg, &arg))
            continue;
        if (strcmp(routes[i].method, rq->method) == 0) {
            rq->apikey = &memo;
            if (limits_request(app, rq, routes[i].id, rs))
                routes[i].handler(app, rq, rs, arg);
            rq->apikey = NULL;
            return routes[i].id;
        }
        matched = routes[i].id;
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "", routes[i].method);
    }
    if (matched != R_UNMATCHED) {
        resp_problem(rs, 405, "method-not-allowed", "Method not allowed",
                     "this resource does not support the method");
        resp_header(rs, "Allow", "%s", allow);
        return matched;
    }
    resp_problem(rs, 404, "not-found", "Not found", "no such resource");
    return R_UNMATCHED;
}

bool parse_id(const char *arg, int64_t *id, struct http_response *rs)
{
    size_t n = arg ? strlen(arg) : 0;
    bool ok = n > 0 && n <= 18 && strspn(arg, "0123456789") == n;
    if (ok) {
        *id = strtoll(arg, NULL, 10);
        ok = *id > 0;
    }
    if (!ok)
        resp_problem(rs, 400, "invalid-id", "Invalid id", "an id is a positive integer");
    return ok;
}

json_t *parse_body(const struct http_request *rq, struct http_response *rs)
{
    json_error_t err;
    json_t *body = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(body)) {
        json_decref(body);
        resp_problem(rs, 400, "malformed-json", "Malformed JSON",
                     "the body must be one JSON object");
        return NULL;
    }
    return body;
}

json_t *parse_credentials(const struct http_request *rq, struct http_response *rs,
                          const char **email, const char **password)
{
    json_t *body = parse_body(rq, rs);
    *email = json_string_value(json_object_get(body, "email"));
    *password = json_string_value(json_object_get(body, "password"));
    return body;
}
