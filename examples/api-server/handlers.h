/*
 * handlers.h — one function per route (see routes.c for the table).
 *
 * Every handler has the same shape: read the request, fill the response.
 * arg is the {id} segment of the path for routes that have one, else NULL.
 */
#ifndef API_SERVER_HANDLERS_H
#define API_SERVER_HANDLERS_H

#include "http.h"

#define H(name) void name(struct app *app, const struct http_request *rq, \
                          struct http_response *rs, const char *arg)
/* handlers_ops.c: the status page, its data, health, metrics */
H(h_index); H(h_status); H(h_healthz); H(h_metrics);
/* handlers_catalog.c: users and products, through the cache */
H(h_user_get); H(h_user_put); H(h_product_get); H(h_products_list); H(h_product_post);
/* handlers_account.c: signup, me, API keys */
H(h_signup); H(h_me);
/* handlers_session.c: login, logout, my sessions */
H(h_login); H(h_logout); H(h_sessions_get); H(h_sessions_delete);
H(h_apikeys_post); H(h_apikeys_get); H(h_apikey_delete);
#undef H

/* The session token of the request's cookie; false when it has none. */
bool session_token(const struct app *app, const struct http_request *rq,
                   char token[RK_SESSION_TOKEN_SIZE]);

/* Shared by the handlers: the id in arg as a positive integer, or a 400
 * problem in rs and false. */
bool parse_id(const char *arg, int64_t *id, struct http_response *rs);
/* The body as a JSON object, or a 400 problem in rs and NULL. */
json_t *parse_body(const struct http_request *rq, struct http_response *rs);
/* parse_body, and its "email" and "password" strings (NULL when absent or
 * not strings; they live as long as the body). */
json_t *parse_credentials(const struct http_request *rq, struct http_response *rs,
                          const char **email, const char **password);

#endif
