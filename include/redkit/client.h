/*
 * redkit/client.h — the connection to Redis that a program shares between
 * its threads.
 *
 * An rk_client owns a bounded pool of connections. Every call borrows one
 * connection for the duration of one request (or one pipeline), so calls
 * from many threads run in parallel up to the pool size and queue, within
 * their own deadline, beyond it. A connection whose request failed in a way
 * that leaves its state unknown (timeout, reset, protocol error) is closed,
 * never returned to the pool: a late reply can never be read as the answer
 * to somebody else's command. A new connection is opened on demand.
 *
 * Thread safety: every function here may be called from any thread at any
 * time on the same rk_client, except rk_client_free(), which must be the
 * last call on it and must not run while other calls are in progress.
 */
#ifndef REDKIT_CLIENT_H
#define REDKIT_CLIENT_H

#include "common.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_client rk_client;

/* ---- Events and logging ------------------------------------------------ */

/* What happened to the client's connections or its circuit breaker. */
typedef enum rk_event_type {
    RK_EVENT_CONNECTED = 1,          /* a connection was opened (attempt > 0:
                                        after failures, i.e. a reconnect) */
    RK_EVENT_DISCONNECTED = 2,       /* a connection failed and was closed;
                                        status says why */
    RK_EVENT_RECONNECT_SCHEDULED = 3,/* a connect attempt failed; the next
                                        one waits delay_ms (attempt = number
                                        of consecutive failed attempts) */
    RK_EVENT_CIRCUIT_OPEN = 4,       /* calls now fail fast */
    RK_EVENT_CIRCUIT_HALF_OPEN = 5,  /* one probe call is let through */
    RK_EVENT_CIRCUIT_CLOSED = 6      /* the probe succeeded: back to normal */
} rk_event_type;

typedef struct rk_event {
    rk_event_type type;
    rk_status status;     /* the failure behind DISCONNECTED, RECONNECT_SCHEDULED
                             and CIRCUIT_OPEN; RK_OK otherwise */
    int attempt;          /* consecutive failed connect attempts so far */
    int delay_ms;         /* RECONNECT_SCHEDULED and CIRCUIT_OPEN: time until
                             the next attempt */
    const char *message;  /* detail, never a secret; valid during the call */
} rk_event;

/* Called on the thread whose call caused the event, with no redkit lock
 * held: it may call redkit functions (but not free the client). Keep it
 * short: the caller's call waits for it. */
typedef void (*rk_event_fn)(const rk_event *event, void *user);

typedef enum rk_log_level {
    RK_LOG_DEBUG = 1,
    RK_LOG_INFO = 2,
    RK_LOG_WARN = 3,
    RK_LOG_ERROR = 4
} rk_log_level;

/* A log line (no trailing newline, never a secret), on the calling thread,
 * with no redkit lock held. */
typedef void (*rk_log_fn)(rk_log_level level, const char *message, void *user);

/* The circuit breaker's state. */
typedef enum rk_circuit_state {
    RK_CIRCUIT_CLOSED = 0,    /* normal */
    RK_CIRCUIT_OPEN = 1,      /* failing fast until the next probe time */
    RK_CIRCUIT_HALF_OPEN = 2  /* one probe in flight; other calls fail fast */
} rk_circuit_state;

/* Defaults for a zeroed field of rk_client_options. */
#define RK_DEFAULT_HOST "127.0.0.1"
#define RK_DEFAULT_PORT 6379
#define RK_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define RK_DEFAULT_COMMAND_TIMEOUT_MS 500
#define RK_DEFAULT_POOL_SIZE 4
#define RK_DEFAULT_SHARED_CONNECTIONS 2
#define RK_DEFAULT_RECONNECT_BASE_MS 50
#define RK_DEFAULT_RECONNECT_MAX_MS 5000
#define RK_DEFAULT_BREAKER_THRESHOLD 5
#define RK_DEFAULT_IDLE_PING_MS 30000
/* Upper bounds accepted for the numeric options. */
#define RK_DEFAULT_MAX_REPLY_BYTES ((size_t)64 << 20) /* 64 MiB */
#define RK_MIN_MAX_REPLY_BYTES ((size_t)4096)
#define RK_MAX_MAX_REPLY_BYTES ((size_t)1 << 40)      /* 1 TiB */
#define RK_MAX_POOL_SIZE 1024
#define RK_MAX_TIMEOUT_MS 3600000

/*
 * TLS settings, rk_client_options.tls. All zero = TLS off (unless the URL
 * is rediss://). rk_client_new() copies the server name and reads every
 * file during the call — the CA bundle, the client certificate and its
 * key — so none of the strings need outlive it, and a file that changes
 * afterwards (a rotated certificate) is seen only by a new client. Files
 * that do not load make rk_client_new() fail with RK_ERR_TLS.
 *
 * With TLS on, the server's certificate must chain to a trusted CA and
 * name the host connected to (DNS or IP subjectAltName); TLS 1.2 is the
 * oldest version accepted. The same fields exist as rediss:// query
 * options (tls_ca_file=, ...; see redkit/url.h); a field set here
 * overrides the URL's.
 */
typedef struct rk_tls_options {
    bool enabled;              /* TLS on; a rediss:// URL turns it on too.
                                  Setting any field below without TLS on is
                                  RK_ERR_INVALID (a forgotten switch would
                                  otherwise mean plaintext). TCP only: TLS
                                  with a Unix socket is RK_ERR_INVALID. */
    const char *ca_file;       /* PEM file of trusted CA certificates */
    const char *ca_dir;        /* directory of CA certificates named by
                                  hash (`openssl rehash`); with ca_file NULL
                                  too: the system's default store */
    const char *cert_file;     /* client certificate (PEM, chain allowed)
                                  for mutual TLS; NULL = none */
    const char *key_file;      /* its private key (PEM, not encrypted);
                                  NULL = in cert_file. Needs cert_file. */
    const char *server_name;   /* the name the server certificate must
                                  carry in a subjectAltName (its subject
                                  CN is never used), sent as SNI unless an
                                  IP literal; NULL = the host. Lets a
                                  client reach "10.0.0.5" and check
                                  "cache.internal". A name with an empty
                                  label (".example.com", "example.com.",
                                  "a..b") is RK_ERR_INVALID, and so is
                                  such a host when it is the name. */
    bool insecure_skip_verify; /* accept any server certificate: encrypted
                                  but NOT authenticated, open to a
                                  man-in-the-middle. For tests only; logs
                                  one warning (RK_LOG_WARN) per client at
                                  rk_client_new() through `log`. A URL's
                                  tls_insecure=1 together with ca_file,
                                  ca_dir or server_name set here (code
                                  that asks for verification) is
                                  RK_ERR_INVALID, unless this is set too. */
} rk_tls_options;

/*
 * How to reach Redis. Use designated initialisers; every zeroed field means
 * the default named beside it. rk_client_new() copies the struct and every
 * string in it, so none of it needs to outlive the call.
 *
 * If `url` is set it is parsed first (see redkit/url.h for the syntax);
 * then every field that is set here (non-NULL, non-zero) overrides what the
 * URL said. So `{ .url = getenv("REDIS_URL"), .pool_size = 16 }` takes the
 * address and credentials from the environment and the pool size from code.
 */
typedef struct rk_client_options {
    const char *url;            /* redis://, rediss:// or unix:// URL; NULL = none */
    const char *host;           /* host name or IP literal; default "127.0.0.1" */
    int port;                   /* TCP port; default 6379 */
    const char *unix_path;      /* Unix socket path; when set, host/port are unused */
    const char *username;       /* ACL user for AUTH; NULL = the default user */
    const char *password;       /* AUTH password; NULL = no AUTH. Wiped from
                                   redkit's memory when the client is freed. */
    int db;                     /* database number for SELECT; default 0 */
    const char *client_name;    /* CLIENT SETNAME on every connection: printable
                                   ASCII without spaces; NULL = none */
    const char *key_prefix;     /* first part of every key redkit writes
                                   ("shop" gives "shop:cache:user:123");
                                   NULL or "" = no prefix */
    int connect_timeout_ms;     /* host-name lookup + TCP connect + TLS and
                                   Redis handshakes; default 1000 */
    int command_timeout_ms;     /* one call, waiting for a pooled connection
                                   included; default 500 */
    int pool_size;              /* maximum open connections; default 4 */
    int shared_connections;     /* how many of them every thread shares,
                                   with the commands of concurrent calls
                                   combined into one write (see
                                   docs/client.md "Shared connections");
                                   default 2, at most pool_size / 2 (at
                                   least 1); the rest serve blocking
                                   commands and transactions. -1 = none:
                                   every call borrows a connection of its
                                   own for its request, as in 0.1. */
    rk_tls_options tls;         /* TLS; zeroed = off (see rk_tls_options) */

    /* Reconnection: after a failed connect attempt the next one waits a
     * random time in [0, min(max, base * 2^(attempt-1))] ("full jitter"),
     * so that many clients restarting with a server do not hammer it in
     * step. A success resets the schedule. */
    int reconnect_base_ms;      /* default 50 */
    int reconnect_max_ms;       /* default 5000 */
    /* Circuit breaker: after this many consecutive failures (connects that
     * failed, requests that timed out or lost their connection) calls fail
     * fast with RK_ERR_UNAVAILABLE, in microseconds, until the reconnect
     * schedule allows a probe; the probe's success closes the circuit.
     * Default 5; -1 disables the breaker. */
    int breaker_threshold;
    /* A pooled connection idle for longer than this is checked with PING
     * before it is reused (catches peers that vanished silently, e.g.
     * behind a NAT). Default 30000; -1 disables. A connection idle for a
     * millisecond or more whose peer closed it is noticed without a round
     * trip either way. */
    int idle_ping_ms;

    rk_event_fn on_event;       /* NULL = none */
    void *event_user;           /* passed to on_event */
    rk_log_fn log;              /* NULL = no logging */
    void *log_user;             /* passed to log */
    rk_log_level log_level;     /* lowest level passed to log; default WARN */

    /* The most client memory one reply may take: the lengths of its bulk
     * strings, the bytes of its simple lines, and 64 bytes per array
     * element announced. A reply whose header announces more (a server
     * sending "$1073741824", "*2147483647", or nested arrays adding up to
     * more) is refused before its bytes are buffered: the call — and every
     * other call waiting on that connection — fails with RK_ERR_TOO_LARGE
     * and the connection is closed; the circuit breaker does not count it.
     * Default 64 MiB (RK_DEFAULT_MAX_REPLY_BYTES), at least 4096, at most
     * 1 TiB. A cache raises its client's bound to 4 x its max_value_bytes
     * when that is more (see docs/client.md). */
    size_t max_reply_bytes;
} rk_client_options;

/*
 * rk_client_new — create a client.
 *
 * opts may be NULL (all defaults: 127.0.0.1:6379, no auth). No connection
 * is opened here: the first call that needs Redis opens one, so a service
 * can start while Redis is still down. Use rk_client_ping() to check the
 * server at start-up.
 *
 * On RK_OK *out receives the client, to be released with rk_client_free().
 * On error *out is set to NULL and rk_last_error() says which option or
 * which part of the URL is wrong (never repeating the password).
 * Returns RK_OK, RK_ERR_INVALID, RK_ERR_TLS (a TLS file that does not
 * load, or a key that does not match its certificate; the message names
 * the file and gives OpenSSL's reason), RK_ERR_NOMEM or RK_ERR_SYSTEM.
 *
 * Over TLS, connection attempts can also fail with RK_ERR_TLS (the
 * handshake or the certificate check failed; rk_last_error() gives
 * OpenSSL's reason and, for a certificate, the verification result). Like
 * a refused AUTH, that is the server's answer: it moves the reconnect
 * schedule and the circuit breaker as any failed connect does. A TLS
 * handshake that does not finish in time is RK_ERR_TIMEOUT. A refused
 * AUTH is RK_ERR_AUTH whatever the server's error, and rk_last_error()
 * keeps only its error code and the peer ("AUTH refused by
 * 10.0.0.5:6379: WRONGPASS"), never the server's text, which a server
 * with AUTH renamed away fills with the password.
 */
RK_EXPORT rk_status rk_client_new(const rk_client_options *opts, rk_client **out);

/*
 * rk_client_new_url — shorthand for rk_client_new() with only .url set.
 * url NULL or "" means the defaults (127.0.0.1:6379).
 */
RK_EXPORT rk_status rk_client_new_url(const char *url, rk_client **out);

/*
 * rk_client_free — drop the caller's reference to the client. Each
 * module handle made from it (rk_cache, ...) holds a reference too, so the
 * client — its connections closed, its stored credentials wiped — is
 * released by whichever comes last: this call, or the _free of its last
 * handle. Freeing the client first is therefore safe: its handles keep
 * working until they are freed. rk_client_free(NULL) does nothing. Call it
 * once per client, after every other call on the client itself.
 */
RK_EXPORT void rk_client_free(rk_client *client);

/*
 * rk_client_ping — send PING and wait for PONG, within the command
 * timeout (plus the connect timeout if a connection has to be opened).
 * Returns RK_OK, or the status of whatever failed (RK_ERR_UNAVAILABLE,
 * RK_ERR_TIMEOUT, RK_ERR_AUTH, ...).
 */
RK_EXPORT rk_status rk_client_ping(rk_client *client);

/* Reply types; the numbers are those of the RESP2 protocol types. */
typedef enum rk_reply_type {
    RK_REPLY_STRING = 1,  /* bulk string: str/len (binary-safe) */
    RK_REPLY_ARRAY = 2,   /* element[0 .. elements-1] */
    RK_REPLY_INTEGER = 3, /* integer */
    RK_REPLY_NIL = 4,     /* null bulk string or null array */
    RK_REPLY_STATUS = 5,  /* simple string such as "OK": str/len */
    RK_REPLY_ERROR = 6    /* error text: str/len (only inside arrays; a
                             top-level error becomes RK_ERR_SERVER) */
} rk_reply_type;

/*
 * A reply from Redis, as returned by rk_client_command(). For STRING,
 * STATUS and ERROR, str holds len bytes followed by a terminating NUL (so
 * text can be printed directly; binary data may contain NULs too).
 * The whole tree is owned by the caller and freed with rk_reply_free().
 */
typedef struct rk_reply {
    rk_reply_type type;
    long long integer;
    size_t len;
    char *str;
    size_t elements;
    struct rk_reply **element;
} rk_reply;

/*
 * rk_client_command — send one command of your own, such as
 * { "HSET", "h", "f", "v" }, and wait for its reply. This is the escape
 * hatch for everything the modules do not cover. Keys you pass here are
 * sent as they are: no prefix or namespace is added.
 *
 * argc      number of arguments (1 .. 1048576), the command name included.
 * argv      the arguments; none may be NULL.
 * argvlen   the length of each argument in bytes (binary-safe), or NULL to
 *           use strlen() of each argv[i].
 * reply     receives the reply on RK_OK, to be freed with rk_reply_free().
 *
 * When Redis answers with an error reply the call returns RK_ERR_SERVER
 * (RK_ERR_AUTH for NOAUTH and WRONGPASS), *reply is NULL and
 * rk_last_error() holds the server's text — which for some errors quotes
 * the command's arguments, so don't send secrets you would not log —
 * prefixed by the command name: argv[0] as argvlen gives it (never read
 * past), at most 64 bytes, bytes outside printable ASCII shown as '?'. On
 * every other failure *reply is NULL too.
 *
 * Ordinary commands share the client's shared connections (see
 * rk_client_options.shared_connections). Commands that would change the
 * state of a shared connection are refused with RK_ERR_INVALID, and
 * rk_last_error() names the API to use instead: SUBSCRIBE, PSUBSCRIBE,
 * SSUBSCRIBE and their UNSUBSCRIBEs (pub/sub needs a connection of its
 * own: redkit/pubsub.h), MULTI, EXEC,
 * DISCARD, WATCH, UNWATCH (redkit/pipeline.h), SELECT, AUTH, HELLO (the
 * client's options), MONITOR, RESET, QUIT, READONLY, READWRITE, SYNC,
 * PSYNC, CLIENT REPLY, CLIENT TRACKING, CLIENT CACHING, CLIENT SETNAME.
 * Blocking commands (BLPOP, BRPOP, BRPOPLPUSH, BLMOVE, BLMPOP, BZPOPMIN,
 * BZPOPMAX, BZMPOP, WAIT, WAITAOF, XREAD and XREADGROUP with BLOCK) run on
 * a pooled connection of their own, so that they hold up no other call;
 * give them a timeout with rk_client_command_opts().
 *
 * To keep many commands in flight from one thread, send them ahead and
 * wait for them later: rk_client_send() (redkit/async.h).
 *
 * The command is never retried: whether a command that failed with
 * RK_ERR_TIMEOUT or RK_ERR_UNAVAILABLE was applied is unknown. (redkit's
 * own reads — GET, EXISTS, PTTL — are retried once on a fresh connection
 * when a pooled connection turns out to be dead; see docs/client.md.)
 */
RK_EXPORT rk_status rk_client_command(rk_client *client, int argc,
                                      const char *const *argv,
                                      const size_t *argvlen, rk_reply **reply);

/* Options of one raw command call; zeroed = the client's settings. */
typedef struct rk_command_options {
    int timeout_ms; /* this call's deadline, waiting for a connection
                       included (plus the connect timeout if one has to
                       be opened); 0 = command_timeout_ms; at most
                       RK_MAX_TIMEOUT_MS. For a blocking command make it
                       longer than the time the command may block
                       (BLPOP's timeout, XREAD's BLOCK, WAIT's timeout). */
} rk_command_options;

/*
 * rk_client_command_opts — rk_client_command() with options for this call
 * only (opts NULL = defaults), such as a timeout of its own for BLPOP,
 * XREAD BLOCK, WAIT or a slow script. Same arguments, returns, ownership
 * and thread safety as rk_client_command(); a negative or too large
 * timeout_ms is RK_ERR_INVALID.
 */
RK_EXPORT rk_status rk_client_command_opts(rk_client *client, const rk_command_options *opts, int argc,
                                           const char *const *argv, const size_t *argvlen, rk_reply **reply);

/*
 * rk_reply_free — release a reply and everything in it.
 * rk_reply_free(NULL) does nothing.
 */
RK_EXPORT void rk_reply_free(rk_reply *reply);

/* Counters since the client was created, and its current state. */
typedef struct rk_client_stats {
    uint64_t requests;          /* requests that got their replies */
    uint64_t connects;          /* connections opened */
    uint64_t reconnects;        /* times Redis was reached again after
                                   failures (a connect after failed attempts,
                                   or a probe that closed the circuit) */
    uint64_t connect_failures;  /* connect attempts that failed */
    uint64_t disconnects;       /* connections closed because they failed */
    uint64_t timeouts;          /* calls that ended with RK_ERR_TIMEOUT */
    uint64_t unavailable;       /* calls that ended with RK_ERR_UNAVAILABLE,
                                   fast-failed ones included */
    uint64_t fast_failed;       /* calls refused without touching the network
                                   (circuit open, or waiting for backoff
                                   would overrun their deadline) */
    uint64_t read_retries;      /* reads retried on a fresh connection */
    uint64_t circuit_opened;    /* transitions to OPEN (a failed half-open
                                   probe re-opens it and counts again) */
    uint64_t circuit_closed;    /* transitions back to CLOSED */
    rk_circuit_state circuit;   /* state now */
    int open_connections;       /* connections open now (idle + in use) */
    int idle_connections;
} rk_client_stats;

/*
 * rk_client_stats_get — copy the client's counters into *out. A snapshot:
 * consistent with itself, not with calls still in flight. Returns
 * RK_ERR_INVALID for NULL arguments, RK_OK otherwise.
 */
RK_EXPORT rk_status rk_client_stats_get(rk_client *client, rk_client_stats *out);

/* rk_client_circuit — the circuit breaker's current state (CLOSED for a
 * NULL client). */
RK_EXPORT rk_circuit_state rk_client_circuit(rk_client *client);

/*
 * rk_client_key_prefix — the key prefix this client was created with
 * ("" when none). The string belongs to the client and lives as long as it.
 */
RK_EXPORT const char *rk_client_key_prefix(const rk_client *client);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_CLIENT_H */
