/*
 * limits.h — the service's rate limits (limits.c), on rk_limiter.
 */
#ifndef API_SERVER_LIMITS_H
#define API_SERVER_LIMITS_H

#include "http.h"

/* Create / free the limiters (none when RATE_LIMIT=off). */
rk_status limits_open(struct app *app);
void limits_close(struct app *app);
/* Check one request of route against its limiter (per API key, else per
 * IP; the operations routes are exempt). Adds the RateLimit headers to
 * rs; on a refusal fills rs with 429 + Retry-After and returns false. */
bool limits_request(struct app *app, const struct http_request *rq, enum route_id route,
                    struct http_response *rs);
/* Login: false (and a 429 in rs) while the IP or the email has failed too
 * often; limits_login_failed() counts one failure against both. */
bool limits_login_allowed(struct app *app, const struct http_request *rq, const char *email,
                          struct http_response *rs);
void limits_login_failed(struct app *app, const struct http_request *rq, const char *email);

#endif
