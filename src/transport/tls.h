/*
 * tls.h — TLS under a connection: one OpenSSL context per client, one TLS
 * session per connection, driven over the connection's non-blocking socket
 * with the same poll() deadlines as plain TCP.
 *
 * conn.c owns the socket and calls these functions when the client's
 * configuration asks for TLS; nothing above conn.c sees OpenSSL. Every
 * function that waits takes the caller's deadline and returns
 * RK_ERR_TIMEOUT when it passes, the handshake included.
 *
 * How failures are reported:
 *   - the handshake, certificate verification, and a refusal the server
 *     sends during the connection's first round trip (a TLS 1.3 server
 *     rejects a client certificate only after the client has finished its
 *     half of the handshake): RK_ERR_TLS, with OpenSSL's reason and, for a
 *     certificate, the verification result in rk_last_error();
 *   - after that (rk__tls_established), a TLS record that does not decrypt
 *     or an alert is the same thing as garbage on a TCP stream:
 *     RK_ERR_PROTOCOL, with OpenSSL's reason;
 *   - the peer closing or resetting the connection, with or without a
 *     close_notify: RK_ERR_UNAVAILABLE, exactly as over TCP.
 * No message ever contains key material or a password.
 */
#ifndef RK_SRC_TLS_H
#define RK_SRC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/status.h>

/* What rk__tls_ctx_new() needs. The strings are read during the call only
 * (files are loaded, the name is copied). */
typedef struct rk__tls_config {
    const char *ca_file;     /* PEM bundle of trusted CAs, or NULL */
    const char *ca_dir;      /* hashed CA directory, or NULL; with ca_file
                                also NULL: the system's default store */
    const char *cert_file;   /* client certificate chain (PEM), or NULL */
    const char *key_file;    /* its private key (PEM, unencrypted); NULL =
                                in cert_file */
    const char *verify_name; /* the name the server certificate must carry
                                (server_name, else the host): an IP literal
                                is matched against IP SANs, anything else
                                against DNS names and sent as SNI */
    bool skip_verify;        /* accept any server certificate */
} rk__tls_config;

/* Shared by every connection of one client; read-only once built, so its
 * use from several threads needs no lock (OpenSSL's SSL_CTX is safe to
 * share once configured). */
typedef struct rk__tls_ctx rk__tls_ctx;

/* One TLS session over one socket; used by one thread at a time. */
typedef struct rk__tls rk__tls;

/* Build the context: trust store, client certificate, protocol floor
 * (TLS 1.2), and the name every server certificate must carry — in a
 * subjectAltName only (never the subject's CN), a wildcard only as a whole
 * left-most label. Returns RK_OK, RK_ERR_TLS (a file that does not load,
 * a key that does not match its certificate; the message names the option
 * and the file), RK_ERR_INVALID (a verify_name with an empty label, which
 * OpenSSL would read as a subdomain wildcard), RK_ERR_NOMEM. On error
 * *out is NULL. */
rk_status rk__tls_ctx_new(const rk__tls_config *cfg, rk__tls_ctx **out);

/* Free the context. Every session made from it must be freed first. NULL
 * is a no-op. */
void rk__tls_ctx_free(rk__tls_ctx *ctx);

/* Run the client handshake over fd (connected, non-blocking; still owned
 * by the caller) until deadline_ns. peer ("host:port") is used in messages
 * and must outlive the session. Returns RK_OK with *out set, or
 * RK_ERR_TLS, RK_ERR_TIMEOUT, RK_ERR_UNAVAILABLE, RK_ERR_NOMEM,
 * RK_ERR_SYSTEM with *out NULL. */
rk_status rk__tls_connect(rk__tls_ctx *ctx, int fd, const char *peer, int64_t deadline_ns, rk__tls **out);

/* The connection's first round trip succeeded: the server has accepted the
 * session. From now on TLS errors are reported as RK_ERR_PROTOCOL. */
void rk__tls_established(rk__tls *t);

/* Send all len bytes before deadline_ns. */
rk_status rk__tls_write(rk__tls *t, const char *buf, size_t len, int64_t deadline_ns);

/* Read between 1 and cap bytes of application data into buf, waiting for
 * them until deadline_ns. *got is the count on RK_OK. */
rk_status rk__tls_read(rk__tls *t, char *buf, size_t cap, size_t *got, int64_t deadline_ns);

/* Without blocking: has the peer closed or reset the session, or sent
 * application data nobody asked for? TLS records that carry no
 * application data — TLS 1.3 session tickets, which arrive after the
 * handshake and sit unread until the next read — are consumed here and do
 * not count. Never consumes application data. */
bool rk__tls_peer_gone(rk__tls *t);

/* Free t without sending anything (no close_notify): for a connection
 * whose socket another process still uses (after fork()). */
void rk__tls_forget(rk__tls *t);

/* True when OpenSSL holds decrypted bytes not read yet (a poll() of the
 * socket would not see them). */
bool rk__tls_pending(const rk__tls *t);

/* Send a close_notify if the session is healthy (best effort, never
 * waits), and free it. The socket is left to the caller. NULL is a no-op. */
void rk__tls_free(rk__tls *t);

#endif
