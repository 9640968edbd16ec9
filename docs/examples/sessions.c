/*
 * sessions.c — a login flow with rk_sessions, as in docs/sessions.md: an
 * anonymous session, a login that regenerates it (fixation defence) and
 * tags it with the user, the cookie a response would carry, a request
 * that reads it back from a Cookie header, "log out my other devices",
 * and logout.
 *
 * Run: REDIS_URL=redis://localhost:6379 ./sessions
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redkit/redkit.h>

/* Stop on an unexpected status, with the library's message (which never
 * holds a token). */
#define CHECK(call)                                                                               \
    do {                                                                                          \
        rk_status st_ = (call);                                                                   \
        if (st_ != RK_OK) {                                                                       \
            fprintf(stderr, "%s: %s: %s\n", #call, rk_strerror(st_), rk_last_error());           \
            goto out;                                                                             \
        }                                                                                         \
    } while (0)

int main(void)
{
    rk_client *client = NULL;
    rk_sessions *sessions = NULL;
    rk_session *s = NULL;
    rk_session_list *list = NULL;
    int rc = 1;

    CHECK(rk_client_new_url(getenv("REDIS_URL"), &client));
    /* Idle 30 min, absolute 12 h (the defaults), namespace "sess". */
    CHECK(rk_sessions_new(client, &(rk_sessions_options){ .idle_ms = 30 * 60 * 1000 }, &sessions));

    /* A visitor arrives: an anonymous session with a cart. */
    char token[RK_SESSION_TOKEN_SIZE];
    rk_session_attr cart = { "cart", "[17,42]", 7 };
    CHECK(rk_sessions_create(sessions, &(rk_session_create_options){ .attrs = &cart, .nattrs = 1 }, token));

    /* Login: a new token for the session (fixation defence), now tagged
     * with its user; the cart stays, the anonymous token dies at once. */
    char logged_in[RK_SESSION_TOKEN_SIZE];
    CHECK(rk_sessions_regenerate(sessions, token, "ada", logged_in));
    CHECK(rk_sessions_set_str(sessions, logged_in, "role", "customer"));

    /* Later, a privilege change: rotate the token again, keep everything. */
    char rotated[RK_SESSION_TOKEN_SIZE];
    CHECK(rk_sessions_regenerate(sessions, logged_in, NULL, rotated));

    /* The response's cookie: __Host-session=...; Secure; HttpOnly; SameSite=Lax. */
    char set_cookie[256];
    CHECK(rk_sessions_cookie_format(rotated, 30 * 60 * 1000, NULL, set_cookie, sizeof set_cookie));
    printf("Set-Cookie: %.*s...\n", 15, set_cookie); /* (a real server sends it all) */

    /* The next request: token from the Cookie header, then the session. */
    char header[256], from_cookie[RK_SESSION_TOKEN_SIZE];
    snprintf(header, sizeof header, "theme=dark; __Host-session=%s", rotated);
    CHECK(rk_sessions_cookie_token(header, NULL, from_cookie));
    CHECK(rk_sessions_set_str(sessions, from_cookie, "last_page", "/checkout"));
    CHECK(rk_sessions_get(sessions, from_cookie, NULL, 0, &s));
    printf("user %s, %zu attributes, idle expiry in %lld s\n", s->user, s->nattrs,
           (long long)((s->expires_ms - s->last_access_ms) / 1000));

    /* Another device logs in; then "log out my other devices". */
    char phone[RK_SESSION_TOKEN_SIZE];
    CHECK(rk_sessions_create(sessions, &(rk_session_create_options){ .user = "ada" }, phone));
    CHECK(rk_sessions_list(sessions, "ada", &list));
    printf("ada has %zu sessions\n", list->n);
    size_t destroyed = 0;
    CHECK(rk_sessions_destroy_user(sessions, "ada", from_cookie, &destroyed));
    printf("logged out %zu other device(s)\n", destroyed);

    /* Logout: destroy the session and clear the cookie. */
    CHECK(rk_sessions_destroy(sessions, from_cookie));
    CHECK(rk_sessions_cookie_clear(NULL, set_cookie, sizeof set_cookie));
    printf("Set-Cookie: %s\n", set_cookie);
    rc = rk_sessions_get(sessions, from_cookie, NULL, 0, &(rk_session *){ NULL }) == RK_MISS ? 0 : 1;
out:
    rk_session_free(s);
    rk_session_list_free(list);
    rk_sessions_free(sessions);
    rk_client_free(client);
    return rc;
}
