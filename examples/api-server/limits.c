/*
 * limits.c — the service's rate limits, on redkit's rk_limiter.
 *
 * Three kinds, each its own limiter (its own namespace and quota):
 *   - anonymous requests, per client IP (IPv6 by /56);
 *   - API-key requests, per key (its id), with the quota of the key's
 *     plan (one limiter per plan): the key is verified first (rk_apikeys,
 *     from memory or Redis for a busy key), which gives its plan; a
 *     request whose key is refused counts against its IP instead, so
 *     made-up keys cannot dodge the anonymous limit;
 *   - login attempts, per IP and per email: brute-force defence, checked
 *     in the login handler once the email is known.
 * Every limited response carries RateLimit-Policy and RateLimit; a refusal
 * is 429 with Retry-After. When Redis is down each limiter decides with an
 * in-process copy of its limits (RK_LIMIT_FAIL_LOCAL): per process rather
 * than global, but never unlimited and never a refusal of everyone.
 * The operations endpoints (/, /v1/status, /healthz, /metrics) are not
 * limited: a monitor must see the service most when it is under load.
 */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"
#include "limits.h"

static rk_status make(rk_client *client, const char *ns, const char *name, int per_min,
                      rk_limiter **out)
{
    rk_limit limit = { .name = name, .limit = per_min, .period_ms = 60000 };
    return rk_limiter_new(client,
                          &(rk_limiter_options){ .ns = ns, .limits = &limit, .nlimits = 1,
                                                 .failure_policy = RK_LIMIT_FAIL_LOCAL },
                          out);
}

rk_status limits_open(struct app *app)
{
    const struct config *c = &app->cfg;
    if (!c->rate_limit)
        return RK_OK;
    rk_status st = make(app->redis, "rl-anon", "ip", c->limit_anon_per_min, &app->rl_anon);
    for (int p = 0; p < PLAN_COUNT && st == RK_OK; p++) {
        char ns[32], name[32];
        snprintf(ns, sizeof ns, "rl-key-%s", plan_names[p]);
        snprintf(name, sizeof name, "key-%s", plan_names[p]);
        st = make(app->redis, ns, name, c->limit_key_per_min[p], &app->rl_key[p]);
    }
    if (st == RK_OK)
        st = make(app->redis, "rl-login-ip", "login-ip", c->limit_login_ip_per_min,
                  &app->rl_login_ip);
    if (st == RK_OK)
        st = make(app->redis, "rl-login-email", "login-email", c->limit_login_email_per_min,
                  &app->rl_login_email);
    return st;
}

void limits_close(struct app *app)
{
    rk_limiter_free(app->rl_anon);
    for (int p = 0; p < PLAN_COUNT; p++)
        rk_limiter_free(app->rl_key[p]);
    rk_limiter_free(app->rl_login_ip);
    rk_limiter_free(app->rl_login_email);
}

/* Copy the "Name: value\r\n" lines of rk_limit_headers into rs. */
static void add_headers(const rk_limiter *rl, const rk_limit_result *r, struct http_response *rs)
{
    char text[1024];
    if (rk_limit_headers(rl, r, RK_LIMIT_HEADERS_IETF | RK_LIMIT_HEADERS_RETRY_AFTER, text,
                         sizeof text, NULL) != RK_OK)
        return;
    for (char *line = text, *end; *line; line = end + 2) {
        end = strstr(line, "\r\n");
        if (!end)
            break;
        *end = '\0';
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            resp_header(rs, line, "%s", colon + 2);
        }
    }
}

bool limits_check(struct app *app, rk_limiter *rl, const char *key, struct http_response *rs)
{
    rk_limit_result r;
    if (!rl || rk_limiter_check(rl, key, 1, &r) != RK_OK)
        return true; /* no limiter, or a key it refuses to parse: nothing to count */
    add_headers(rl, &r, rs);
    if (r.allowed)
        return true;
    stats_rate_limited();
    resp_problem(rs, 429, "rate-limited", "Too many requests", "slow down; see Retry-After");
    (void)app;
    return false;
}

bool limits_request(struct app *app, const struct http_request *rq, enum route_id route,
                    struct http_response *rs)
{
    if (!app->cfg.rate_limit || route == R_INDEX || route == R_STATUS || route == R_HEALTHZ ||
        route == R_METRICS)
        return true;
    const struct apikey_info *apikey;
    char key[64];
    if (apikey_verify(app, rq, &apikey) == 0) {
        snprintf(key, sizeof key, "%lld", (long long)apikey->id);
        return limits_check(app, app->rl_key[apikey->plan], key, rs);
    }
    if (rk_limiter_ip_key(rq->client_ip, 0, key, sizeof key) != RK_OK)
        return true;
    return limits_check(app, app->rl_anon, key, rs);
}

/* The login limiters' keys: the client's IP, and the email (lower-cased,
 * so that case variants share one budget). */
static bool login_keys(const struct http_request *rq, const char *email, char *ip, size_t ipsize,
                       char *mail, size_t mailsize)
{
    if (rk_limiter_ip_key(rq->client_ip, 0, ip, ipsize) != RK_OK)
        return false;
    size_t i = 0;
    for (; email[i] && i + 1 < mailsize; i++)
        mail[i] = (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
    mail[i] = '\0';
    return i > 0;
}

/* Brute-force defence counts failures only: a login is refused while the
 * IP's or the email's failures are over their limit (a peek: it costs
 * nothing), and each failure is charged to both (a penalty). */
bool limits_login_allowed(struct app *app, const struct http_request *rq, const char *email,
                          struct http_response *rs)
{
    char ip[64], mail[256];
    rk_limit_result r;
    if (!app->cfg.rate_limit || !login_keys(rq, email, ip, sizeof ip, mail, sizeof mail))
        return true;
    rk_limiter *rl[2] = { app->rl_login_ip, app->rl_login_email };
    const char *key[2] = { ip, mail };
    for (int i = 0; i < 2; i++) {
        if (rk_limiter_peek(rl[i], key[i], &r) != RK_OK || r.allowed)
            continue;
        add_headers(rl[i], &r, rs);
        stats_rate_limited();
        resp_problem(rs, 429, "rate-limited", "Too many requests",
                     "too many failed logins; see Retry-After");
        return false;
    }
    return true;
}

void limits_login_failed(struct app *app, const struct http_request *rq, const char *email)
{
    char ip[64], mail[256];
    if (!app->cfg.rate_limit || !login_keys(rq, email, ip, sizeof ip, mail, sizeof mail))
        return;
    rk_limiter_penalty(app->rl_login_ip, ip, 1, NULL);
    rk_limiter_penalty(app->rl_login_email, mail, 1, NULL);
}
