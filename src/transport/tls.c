/*
 * tls.c — TLS through OpenSSL 3 over a socket that conn.c owns (see tls.h).
 *
 * The socket stays non-blocking and every wait goes through the same
 * poll()-with-a-deadline as plain TCP: OpenSSL is only ever asked to make
 * progress, and when it answers WANT_READ or WANT_WRITE we poll for that
 * until the caller's deadline. A blocking SSL_connect() could not promise
 * a deadline any more than a blocking connect() could.
 *
 * OpenSSL reaches the socket through a small BIO of our own rather than
 * its socket BIO, because its socket BIO writes with write(), and a write
 * to a connection the peer has reset raises SIGPIPE, which kills a process
 * that has not ignored it. A library must not change a process's signal
 * dispositions, so our BIO uses send(MSG_NOSIGNAL), exactly as the plain
 * TCP path does. The BIO method table is made per context (per client)
 * and freed with it, so redkit keeps no process-wide OpenSSL state.
 *
 * Everything that does not change between connections — trust store,
 * client certificate, protocol floor, the name the server certificate must
 * carry — is configured once on the client's SSL_CTX; a connection only
 * adds its SNI and its socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "fdwait.h"
#include "error.h"
#include "tls.h"

/* Rounds of a TLS loop that may pass without progress, each one a poll()
 * wait: a bound on the iteration count besides the deadline. A handshake
 * needs a handful; a 16 KB record trickling in byte by byte needs 16384. */
#define MAX_IDLE_ROUNDS 1000000

/* recv()/send() interrupted by signals this many times in a row hand the
 * decision back to poll(). */
#define MAX_EINTR 100

struct rk__tls_ctx {
    SSL_CTX *ssl_ctx;
    BIO_METHOD *bio_method;
    char *name;      /* SNI, unless name_is_ip; also the verified name */
    bool name_is_ip;
    bool verify;
};

struct rk__tls {
    SSL *ssl;
    int fd;
    bool eof;         /* recv() returned 0: the peer closed its side */
    bool failed;      /* a fatal error or a cut handshake: no close_notify */
    bool established; /* the first round trip succeeded */
    bool verify;
    const char *peer;
};

/* ---- The BIO: OpenSSL's view of our socket ----------------------------- */

static int bio_write(BIO *b, const char *data, size_t len, size_t *written)
{
    rk__tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *written = 0;
    for (int i = 0; i < MAX_EINTR; i++) {
        ssize_t n = send(t->fd, data, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *written = (size_t)n;
            return 1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
        return 0;
    }
    BIO_set_retry_write(b);
    return 0;
}

static int bio_read(BIO *b, char *data, size_t len, size_t *got)
{
    rk__tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *got = 0;
    for (int i = 0; i < MAX_EINTR; i++) {
        ssize_t n = recv(t->fd, data, len, 0);
        if (n > 0) {
            *got = (size_t)n;
            return 1;
        }
        if (n == 0) {
            t->eof = true;
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
        return 0;
    }
    BIO_set_retry_read(b);
    return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    rk__tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* send() keeps nothing back */
    case BIO_CTRL_EOF: return t && t->eof;
    case BIO_C_GET_FD:
        if (ptr && t) *(int *)ptr = t->fd;
        return t ? t->fd : -1;
    default: return 0; /* no kTLS, no datagrams, nothing else */
    }
}

/* ---- Errors ------------------------------------------------------------ */

/* Set the last error for a failed SSL call and return its status.
 * ssl_err is SSL_get_error()'s verdict, sys_errno errno right after the
 * call, io what was being done ("read from", "write to", "TLS handshake
 * with"). OpenSSL's error queue is thread-local; it is emptied here so a
 * stale entry can never be blamed on a later call. */
static rk_status tls_fail(rk__tls *t, int ssl_err, int sys_errno, const char *io)
{
    unsigned long e = ERR_peek_error();
    rk_status st;
    t->failed = true;
    /* OpenSSL 3 reports a TCP close without close_notify as an SSL error
     * ("unexpected eof"). For Redis it means what it means over TCP: the
     * server went away. A reply cut short by it is caught by the RESP
     * reader, so nothing is lost by not calling it an attack. */
    bool closed = ssl_err == SSL_ERROR_ZERO_RETURN ||
                  (ssl_err == SSL_ERROR_SYSCALL && e == 0 && (t->eof || sys_errno == 0)) ||
                  (ssl_err == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
                   ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
    if (!t->established) io = "TLS handshake with";
    if (closed) {
        st = rk__fail(RK_ERR_UNAVAILABLE, "%s %s: connection closed by server", io, t->peer);
    } else if (ssl_err == SSL_ERROR_SYSCALL && e == 0) {
        st = rk__fail(RK_ERR_UNAVAILABLE, "%s %s: %s", io, t->peer,
                      strerror(sys_errno ? sys_errno : ECONNRESET));
    } else {
        /* A refused handshake is the server's (or our trust store's)
         * answer; after the first round trip a record that does not decrypt
         * is garbage on the wire, as over TCP. */
        char reason[256];
        if (e) ERR_error_string_n(e, reason, sizeof reason);
        else snprintf(reason, sizeof reason, "SSL error %d", ssl_err);
        long verdict = t->verify ? SSL_get_verify_result(t->ssl) : X509_V_OK;
        if (t->established)
            st = rk__fail(RK_ERR_PROTOCOL, "%s %s: TLS: %s", io, t->peer, reason);
        else if (verdict != X509_V_OK)
            st = rk__fail(RK_ERR_TLS, "%s %s: %s (server certificate: %s)", io, t->peer, reason,
                          X509_verify_cert_error_string(verdict));
        else
            st = rk__fail(RK_ERR_TLS, "%s %s: %s", io, t->peer, reason);
    }
    ERR_clear_error();
    return st;
}

/* The first OpenSSL error of a failed set-up call, as text. */
static rk_status ctx_fail(const char *what, const char *file)
{
    char reason[256];
    unsigned long e = ERR_peek_error();
    if (e) ERR_error_string_n(e, reason, sizeof reason);
    else snprintf(reason, sizeof reason, "unknown OpenSSL error");
    ERR_clear_error();
    if (file) return rk__fail(RK_ERR_TLS, "TLS %s %s: %s", what, file, reason);
    return rk__fail(RK_ERR_TLS, "TLS %s: %s", what, reason);
}

/* ---- The context ------------------------------------------------------- */

/* An encrypted private key would make OpenSSL's default callback prompt on
 * the terminal, blocking the caller with no deadline: refuse instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *user)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)user;
    return -1;
}

static bool is_ip_literal(const char *s)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

static rk_status load_trust(SSL_CTX *ctx, const rk__tls_config *cfg)
{
    if (cfg->ca_dir) {
        /* OpenSSL looks into the directory only when it needs an issuer,
         * so a typo would surface as a verification failure on every
         * connect; say it now. */
        struct stat sb;
        if (stat(cfg->ca_dir, &sb) != 0)
            return rk__fail(RK_ERR_TLS, "TLS ca_dir %s: %s", cfg->ca_dir, strerror(errno));
        if (!S_ISDIR(sb.st_mode)) return rk__fail(RK_ERR_TLS, "TLS ca_dir %s: not a directory", cfg->ca_dir);
    }
    if (cfg->ca_file || cfg->ca_dir) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, cfg->ca_dir) != 1)
            return ctx_fail(cfg->ca_file ? "ca_file" : "ca_dir", cfg->ca_file ? cfg->ca_file : cfg->ca_dir);
        return RK_OK;
    }
    if (cfg->skip_verify) return RK_OK;
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) return ctx_fail("default CA store", NULL);
    return RK_OK;
}

static rk_status load_identity(SSL_CTX *ctx, const rk__tls_config *cfg)
{
    if (!cfg->cert_file) return RK_OK;
    const char *key = cfg->key_file ? cfg->key_file : cfg->cert_file;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) return ctx_fail("cert_file", cfg->cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(cfg->key_file ? "key_file" : "key in cert_file", key);
    if (SSL_CTX_check_private_key(ctx) != 1) return ctx_fail("key_file does not match cert_file", key);
    return RK_OK;
}

static rk_status build(rk__tls_ctx *x, const rk__tls_config *cfg)
{
    x->verify = !cfg->skip_verify;
    x->name = rk__strdup(cfg->verify_name);
    if (!x->name) return rk__fail(RK_ERR_NOMEM, "TLS: out of memory");
    x->name_is_ip = is_ip_literal(x->name);

    x->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!x->ssl_ctx) return ctx_fail("context", NULL);
    SSL_CTX *ctx = x->ssl_ctx;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return ctx_fail("minimum version", NULL);
    /* CLEANSE_PLAINTEXT: replies can carry sessions and API keys; OpenSSL
     * wipes its copy of decrypted data once we have taken it, as redkit
     * does with its own secrets. NO_RENEGOTIATION: Redis never needs it,
     * and refusing it keeps the session's state simple. */
    SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_RENEGOTIATION);
    /* Partial writes: SSL_write returns after each record, like send(),
     * so the write loop is the same as over TCP. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read-ahead: take whatever the socket has in one recv() instead of a
     * header read and a body read per record. Records it buffers are
     * invisible to poll(), which rk__tls_read() accounts for. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_verify(ctx, x->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);

    rk_status st;
    if ((st = load_trust(ctx, cfg)) != RK_OK || (st = load_identity(ctx, cfg)) != RK_OK) return st;

    if (x->verify) {
        /* Every connection inherits this: the certificate must name the
         * host we meant to reach, not merely chain to a trusted CA. */
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        int ok;
        if (x->name_is_ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(param, x->name);
        } else {
            /* OpenSSL reads a leading '.' as "any subdomain of": a name
             * with an empty label is refused here too, whatever path it
             * came by (client.c and url.c refuse it first). */
            size_t n = strlen(x->name);
            if (n == 0 || x->name[0] == '.' || x->name[n - 1] == '.' || strstr(x->name, ".."))
                return rk__fail(RK_ERR_INVALID, "TLS server name %s: an empty label cannot be checked "
                                                "against a certificate", x->name);
            /* NEVER_CHECK_SUBJECT: only subjectAltNames name a host. By
             * default OpenSSL falls back to the subject's CN when there
             * is no DNS name among them, which RFC 6125 deprecates and
             * docs/tls.md promises not to do. NO_PARTIAL_WILDCARDS: a
             * wildcard only as a whole left-most label. */
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                       X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
            ok = X509_VERIFY_PARAM_set1_host(param, x->name, 0);
        }
        if (ok != 1) return ctx_fail("server name", x->name);
    }

    x->bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "redkit socket");
    if (!x->bio_method || BIO_meth_set_write_ex(x->bio_method, bio_write) != 1 ||
        BIO_meth_set_read_ex(x->bio_method, bio_read) != 1 || BIO_meth_set_ctrl(x->bio_method, bio_ctrl) != 1)
        return ctx_fail("socket BIO", NULL);
    return RK_OK;
}

rk_status rk__tls_ctx_new(const rk__tls_config *cfg, rk__tls_ctx **out)
{
    *out = NULL;
    rk__tls_ctx *x = rk__calloc(1, sizeof *x);
    if (!x) return rk__fail(RK_ERR_NOMEM, "TLS: out of memory");
    ERR_clear_error();
    rk_status st = build(x, cfg);
    if (st != RK_OK) {
        rk__tls_ctx_free(x);
        return st;
    }
    *out = x;
    return RK_OK;
}

void rk__tls_ctx_free(rk__tls_ctx *x)
{
    if (!x) return;
    SSL_CTX_free(x->ssl_ctx);
    BIO_meth_free(x->bio_method);
    rk__free(x->name);
    rk__free(x);
}

/* ---- A session --------------------------------------------------------- */

static rk_status handshake(rk__tls *t, int64_t deadline_ns)
{
    for (int round = 0; round < MAX_IDLE_ROUNDS; round++) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(t->ssl);
        if (r == 1) return RK_OK;
        int sys_errno = errno;
        int e = SSL_get_error(t->ssl, r);
        short wait = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!wait) return tls_fail(t, e, sys_errno, "TLS handshake with");
        rk_status st = rk__fd_wait(t->fd, wait, deadline_ns, "TLS handshake with", t->peer);
        if (st != RK_OK) {
            t->failed = true;
            ERR_clear_error();
            return st;
        }
    }
    t->failed = true;
    return rk__fail(RK_ERR_TLS, "TLS handshake with %s: no progress after %d rounds", t->peer, MAX_IDLE_ROUNDS);
}

rk_status rk__tls_connect(rk__tls_ctx *x, int fd, const char *peer, int64_t deadline_ns, rk__tls **out)
{
    *out = NULL;
    rk__tls *t = rk__calloc(1, sizeof *t);
    if (!t) return rk__fail(RK_ERR_NOMEM, "TLS: out of memory");
    t->fd = fd;
    t->peer = peer;
    t->verify = x->verify;
    t->failed = true; /* until the handshake is done: nothing to close_notify */
    ERR_clear_error();
    /* On a set-up failure the message is built before the session is
     * freed: rk__tls_free() empties OpenSSL's error queue, and the reason
     * would be lost. */
    t->ssl = SSL_new(x->ssl_ctx);
    BIO *bio = t->ssl ? BIO_new(x->bio_method) : NULL;
    if (!bio) {
        rk_status st = ctx_fail("session", NULL);
        rk__tls_free(t);
        return st;
    }
    BIO_set_data(bio, t);
    BIO_set_init(bio, 1);
    SSL_set_bio(t->ssl, bio, bio); /* the session owns the BIO now */
    /* SNI names a host; RFC 6066 forbids IP literals in it. */
    if (!x->name_is_ip && SSL_set_tlsext_host_name(t->ssl, x->name) != 1) {
        rk_status st = ctx_fail("server name indication", x->name);
        rk__tls_free(t);
        return st;
    }
    SSL_set_connect_state(t->ssl);
    rk_status st = handshake(t, deadline_ns);
    if (st != RK_OK) {
        rk__tls_free(t);
        return st;
    }
    t->failed = false;
    *out = t;
    return RK_OK;
}

void rk__tls_established(rk__tls *t) { t->established = true; }

/* A TLS 1.3 server that refuses our certificate (or our lack of one) does
 * so after our half of the handshake: it sends an alert and closes, and
 * because our Finished record is still unread on its side, the close is a
 * reset — which usually reaches us before our first write, so the write
 * fails with "connection reset" while the alert, the actual answer, sits
 * unread in our receive queue (the kernel hands out queued data before it
 * reports the reset). Read it without waiting: true, with the last error
 * set to the alert as RK_ERR_TLS, if there was one. */
static bool alert_before_reset(rk__tls *t)
{
    char scratch[256];
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(t->ssl, scratch, sizeof scratch, &n) == 1) {
        OPENSSL_cleanse(scratch, n); /* application data cannot come before our request; never kept */
        return false;
    }
    int e = SSL_get_error(t->ssl, 0);
    unsigned long err = ERR_peek_error();
    if (e != SSL_ERROR_SSL ||
        (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        ERR_clear_error();
        return false;
    }
    tls_fail(t, e, 0, "TLS handshake with");
    return true;
}

rk_status rk__tls_write(rk__tls *t, const char *buf, size_t len, int64_t deadline_ns)
{
    int idle = 0;
    while (len > 0) {
        ERR_clear_error();
        errno = 0;
        size_t n = 0;
        if (SSL_write_ex(t->ssl, buf, len, &n) == 1) {
            buf += n;
            len -= n;
            idle = 0;
            continue;
        }
        int sys_errno = errno;
        int e = SSL_get_error(t->ssl, 0);
        short wait = e == SSL_ERROR_WANT_WRITE ? POLLOUT : e == SSL_ERROR_WANT_READ ? POLLIN : 0;
        if (!wait && e == SSL_ERROR_SYSCALL && !t->established && alert_before_reset(t)) return RK_ERR_TLS;
        if (!wait) return tls_fail(t, e, sys_errno, "write to");
        if (++idle > MAX_IDLE_ROUNDS) {
            t->failed = true;
            return rk__fail(RK_ERR_PROTOCOL, "write to %s: TLS: no progress", t->peer);
        }
        /* Retried with the same buffer and length, as OpenSSL requires. */
        rk_status st = rk__fd_wait(t->fd, wait, deadline_ns, "write to", t->peer);
        if (st != RK_OK) return st;
    }
    return RK_OK;
}

rk_status rk__tls_read(rk__tls *t, char *buf, size_t cap, size_t *got, int64_t deadline_ns)
{
    *got = 0;
    /* Records that read-ahead already took off the socket would never wake
     * poll(): decrypt those first, poll only when OpenSSL holds nothing. */
    short wait = SSL_has_pending(t->ssl) ? 0 : POLLIN;
    for (int round = 0; round < MAX_IDLE_ROUNDS; round++) {
        if (wait) {
            rk_status st = rk__fd_wait(t->fd, wait, deadline_ns, "read from", t->peer);
            if (st != RK_OK) return st;
        }
        ERR_clear_error();
        errno = 0;
        if (SSL_read_ex(t->ssl, buf, cap, got) == 1) return RK_OK;
        int sys_errno = errno;
        int e = SSL_get_error(t->ssl, 0);
        /* WANT_READ also follows a record with no application data in it
         * (a session ticket): simply wait for more. */
        wait = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!wait) return tls_fail(t, e, sys_errno, "read from");
    }
    t->failed = true;
    return rk__fail(RK_ERR_PROTOCOL, "read from %s: TLS: no application data after %d rounds", t->peer,
                    MAX_IDLE_ROUNDS);
}

bool rk__tls_pending(const rk__tls *t)
{
    return SSL_pending(t->ssl) > 0;
}

bool rk__tls_peer_gone(rk__tls *t)
{
    /* Decrypted application data that nobody asked for: a RESP2 server
     * never sends any, so the stream is out of step. */
    if (SSL_pending(t->ssl) > 0) return true;
    if (!SSL_has_pending(t->ssl)) {
        struct pollfd p = {.fd = t->fd, .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) == 0) return false;
    }
    /* Something arrived. After a TLS 1.3 handshake that is normally the
     * server's session tickets, which carry no application data: SSL_peek
     * processes them and then answers WANT_READ, leaving any application
     * data where it is. An EOF, a reset or an alert ends the session. */
    ERR_clear_error();
    errno = 0;
    char byte;
    size_t n = 0;
    if (SSL_peek_ex(t->ssl, &byte, 1, &n) == 1) return true;
    int e = SSL_get_error(t->ssl, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return false;
    t->failed = true;
    return true;
}

void rk__tls_forget(rk__tls *t)
{
    if (!t) return;
    t->failed = true; /* rk__tls_free() then sends no close_notify */
    rk__tls_free(t);
}

void rk__tls_free(rk__tls *t)
{
    if (!t) return;
    if (t->ssl) {
        if (!t->failed) {
            /* One non-blocking attempt to say goodbye; never waited for. */
            ERR_clear_error();
            SSL_shutdown(t->ssl);
        }
        SSL_free(t->ssl); /* frees the BIO as well */
        ERR_clear_error();
    }
    rk__free(t);
}
