/*
 * http.c — libmicrohttpd behind the small interface of http.h.
 *
 * MHD runs a pool of cfg.threads threads, each with its own epoll loop
 * (MHD_USE_EPOLL_INTERNAL_THREAD + MHD_OPTION_THREAD_POOL_SIZE). Handlers
 * run on those threads and block on Redis or SQLite, so the pool is sized
 * for the blocking concurrency we want, not for the cores. MHD calls the
 * access handler several times per request: once when the headers are in,
 * once per piece of body, once at the end; we collect the body (refusing
 * more than HTTP_BODY_LIMIT with 413, before reading it when
 * Content-Length already says so) and run the handler on the last call.
 *
 * Defences that live here: an idle connection is closed after
 * connection_timeout_s (a slowloris client trickling nothing); headers
 * over HEADER_LIMIT get a 431 problem from us. Headers that do not fit in
 * the connection's memory (CONNECTION_MEMORY_LIMIT) are refused by MHD
 * itself, before any callback of ours runs: libmicrohttpd 0.9.75 has no
 * hook for that answer, which is a 431 with a small HTML body and no
 * Content-Type (docs/api-server.md, "Bad input");
 * and the access log prints the method, the path without its query
 * string and the status — never a header, a cookie or a body, which may
 * carry passwords, session tokens or API keys.
 */
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

/* Request line + headers + read buffer of one connection (MHD's default
 * is 32 KiB). Twice that, so that requests over our HEADER_LIMIT, up to
 * about 60 KiB of headers, reach us and get our 431 problem; only bigger
 * ones get MHD's bare 431. Pages of it are touched only as used. */
#define CONNECTION_MEMORY_LIMIT (64 * 1024)
/* Our own limit on the request line and headers together. */
#define HEADER_LIMIT (16 * 1024)

struct http_server {
    struct MHD_Daemon *daemon;
    struct app *app;
};

/* What we keep about one request between MHD's calls. */
struct request_ctx {
    struct buf body;
    bool too_large;
    bool answered;     /* a response was queued at the first call */
    uint64_t start_us;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- buffers and responses ----------------------------------------------- */

void buf_append(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        buf_append(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_append(b, big, (size_t)n);
    free(big);
}

void buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void resp_header(struct http_response *rs, const char *name, const char *fmt, ...)
{
    if (rs->nheaders == HTTP_MAX_HEADERS)
        return;
    snprintf(rs->headers[rs->nheaders].name, sizeof rs->headers[0].name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->headers[rs->nheaders].value, sizeof rs->headers[0].value, fmt, ap);
    va_end(ap);
    rs->nheaders++;
}

void resp_json_text(struct http_response *rs, unsigned status, const char *json, size_t len)
{
    rs->status = status;
    rs->content_type = "application/json";
    rs->body.len = 0;
    buf_append(&rs->body, json, len);
}

void resp_json(struct http_response *rs, unsigned status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (!text) {
        resp_problem(rs, 500, "internal", "Internal error", "out of memory");
        return;
    }
    resp_json_text(rs, status, text, strlen(text));
    free(text);
}

void resp_problem(struct http_response *rs, unsigned status, const char *slug,
                  const char *title, const char *detail)
{
    json_t *p = json_pack("{s:s+, s:s, s:i, s:s}", "type", "/problems/", slug, "title", title,
                          "status", (int)status, "detail", detail ? detail : title);
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    rs->status = status;
    rs->content_type = "application/problem+json";
    rs->body.len = 0;
    if (text)
        buf_append(&rs->body, text, strlen(text));
    free(text);
}

/* ---- requests -------------------------------------------------------------- */

const char *http_header(const struct http_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const struct http_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

static void client_ip(struct MHD_Connection *conn, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, size, "unknown");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)size);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)size);
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct http_response *rs)
{
    /* MHD frees the body with free() once it is sent. */
    size_t len = rs->body.failed ? 0 : rs->body.len;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, rs->body.data,
                                                             MHD_RESPMEM_MUST_FREE);
    if (!r) {
        buf_free(&rs->body);
        return MHD_NO;
    }
    rs->body.data = NULL;
    MHD_add_response_header(r, "Content-Type", rs->content_type ? rs->content_type
                                                                : "application/json");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    for (int i = 0; i < rs->nheaders; i++)
        MHD_add_response_header(r, rs->headers[i].name, rs->headers[i].value);
    enum MHD_Result ret = MHD_queue_response(conn, rs->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void finish(struct app *app, struct request_ctx *ctx, const char *method,
                   const char *path, const char *ip, enum route_id route, unsigned status)
{
    uint64_t elapsed = now_us() - ctx->start_us;
    stats_request(route, status, elapsed);
    log_msg(LOG_INFO, "%s %s %u %.1fms %s", method, path, status, (double)elapsed / 1000.0, ip);
    (void)app;
}

/* A problem answered at the first call, before the body is read. */
static enum MHD_Result refuse_early(struct app *app, struct request_ctx *ctx,
                                    struct MHD_Connection *conn, const char *method,
                                    const char *url, unsigned status, const char *slug,
                                    const char *title, const char *detail)
{
    struct http_response rs = { 0 };
    char ip[64];
    resp_problem(&rs, status, slug, title, detail);
    client_ip(conn, ip, sizeof ip);
    ctx->answered = true;
    finish(app, ctx, method, url, ip, R_UNMATCHED, status);
    return send_response(conn, &rs);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct app *app = cls;
    struct request_ctx *ctx = *con_cls;
    (void)version;

    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        ctx->start_us = now_us();
        *con_cls = ctx;
        atomic_fetch_add(&app->in_flight, 1);
        /* Answer before reading the body: MHD then closes the connection. */
        const union MHD_ConnectionInfo *hs =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        if (hs && hs->header_size > HEADER_LIMIT)
            return refuse_early(app, ctx, conn, method, url, 431, "headers-too-large",
                                "Request headers too large",
                                "the request line and headers may take 16384 bytes");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > HTTP_BODY_LIMIT)
            return refuse_early(app, ctx, conn, method, url, 413, "body-too-large",
                                "Request body too large", "the body limit is 16384 bytes");
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!ctx->answered && !ctx->too_large) {
            if (ctx->body.len + *upload_data_size > HTTP_BODY_LIMIT) {
                ctx->too_large = true;
                buf_free(&ctx->body);
            } else {
                buf_append(&ctx->body, upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ctx->answered)
        return MHD_YES;

    struct http_request rq = {
        .method = method,
        .path = url,
        .body = ctx->body.data ? ctx->body.data : "",
        .body_len = ctx->body.len,
        .conn = conn,
    };
    client_ip(conn, rq.client_ip, sizeof rq.client_ip);
    struct http_response rs = { .status = 500 };
    enum route_id route = R_UNMATCHED;
    if (ctx->too_large)
        resp_problem(&rs, 413, "body-too-large", "Request body too large",
                     "the body limit is 16384 bytes");
    else if (ctx->body.failed)
        resp_problem(&rs, 500, "internal", "Internal error", "out of memory");
    else
        route = routes_dispatch(app, &rq, &rs);
    ctx->answered = true;
    finish(app, ctx, method, url, rq.client_ip, route, rs.status);
    return send_response(conn, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct app *app = cls;
    struct request_ctx *ctx = *con_cls;
    (void)conn;
    (void)toe;
    if (!ctx)
        return;
    buf_free(&ctx->body);
    free(ctx);
    *con_cls = NULL;
    atomic_fetch_sub(&app->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_msg(LOG_DEBUG, "http: %s", line);
}

int http_start(struct app *app, struct http_server **out)
{
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons((uint16_t)app->cfg.listen_port) };
    if (inet_pton(AF_INET, app->cfg.listen_host, &addr.sin_addr) != 1) {
        log_msg(LOG_ERROR, "LISTEN: %s is not an IPv4 address", app->cfg.listen_host);
        return -1;
    }
    struct http_server *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->app = app;
    s->daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, app,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first, to catch every message */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)app->cfg.threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg.connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY_LIMIT,
        MHD_OPTION_CONNECTION_LIMIT, 1024u,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, app,
        MHD_OPTION_END);
    if (!s->daemon) {
        log_msg(LOG_ERROR, "cannot listen on %s:%d: %s", app->cfg.listen_host,
                app->cfg.listen_port, strerror(errno));
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void http_stop(struct http_server *s, int drain_ms)
{
    if (!s)
        return;
    /* Stop accepting; requests already being handled finish and are sent.
     * The listening socket is ours to close once MHD has let go of it. */
    MHD_socket listener = MHD_quiesce_daemon(s->daemon);
    for (int waited = 0; waited < drain_ms && atomic_load(&s->app->in_flight) > 0; waited += 10)
        usleep(10 * 1000);
    MHD_stop_daemon(s->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    free(s);
}
