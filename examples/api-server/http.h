/*
 * http.h — the service's view of HTTP: a request, a response, and a server.
 *
 * http.c keeps libmicrohttpd behind this small interface so that handlers
 * read like ordinary functions (request in, response out) and never touch
 * MHD's callback protocol. The request body is collected in full before a
 * handler runs, up to HTTP_BODY_LIMIT (413 beyond it).
 */
#ifndef API_SERVER_HTTP_H
#define API_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "app.h"

#define HTTP_BODY_LIMIT (16 * 1024) /* bytes of a request body */
#define HTTP_MAX_HEADERS 8          /* response headers a handler may add */

/* A growing byte buffer (response bodies, the metrics text). */
struct buf {
    char *data;
    size_t len, cap;
    bool failed; /* an allocation failed: the content is incomplete */
};
void buf_append(struct buf *b, const char *s, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);

struct http_request {
    const char *method;
    const char *path;            /* without the query string */
    const char *body;            /* NUL-terminated; "" when none */
    size_t body_len;
    char client_ip[64];
    void *conn;                  /* the MHD connection, for http_header/http_query */
    struct apikey_memo *apikey;  /* the Bearer key's verdict, worked out once
                                    (auth.h; routes_dispatch provides it) */
};

/* A request header or query argument; NULL when absent. Valid while the
 * handler runs. */
const char *http_header(const struct http_request *rq, const char *name);
const char *http_query(const struct http_request *rq, const char *name);

struct http_response {
    unsigned status;
    const char *content_type;    /* static string */
    struct buf body;
    struct { char name[40]; char value[200]; } headers[HTTP_MAX_HEADERS];
    int nheaders;
};

void resp_header(struct http_response *rs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Body = json (dumped compactly; the reference is stolen). */
void resp_json(struct http_response *rs, unsigned status, json_t *json);
/* Body = text already in JSON form. */
void resp_json_text(struct http_response *rs, unsigned status, const char *json, size_t len);
/*
 * An RFC 9457 problem: {"type": "/problems/<slug>", "title", "status",
 * "detail"} as application/problem+json. slug is the stable machine name
 * clients switch on; detail is for people and never echoes a secret.
 */
void resp_problem(struct http_response *rs, unsigned status, const char *slug,
                  const char *title, const char *detail);

/* ---- routes.c ------------------------------------------------------------ */

typedef void (*handler_fn)(struct app *app, const struct http_request *rq,
                           struct http_response *rs, const char *arg);

/* Route rq: fills rs (404/405 when nothing matches) and returns the route
 * id for the metrics. Sets rq->apikey for the length of the call. */
enum route_id routes_dispatch(struct app *app, struct http_request *rq, struct http_response *rs);

/* ---- http.c --------------------------------------------------------------- */

struct http_server;
/* Listen on cfg's host:port with a pool of cfg->threads epoll threads. */
int http_start(struct app *app, struct http_server **out);
/* Stop accepting, let requests in flight finish (at most drain_ms), stop. */
void http_stop(struct http_server *server, int drain_ms);

#endif
