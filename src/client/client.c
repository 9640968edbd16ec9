/*
 * client.c — rk_client: options, the connection pool, and running commands.
 *
 * The pool is a mutex, a condition variable and a LIFO stack of idle
 * connections. LIFO keeps the most recently used connection (warm in
 * every cache, its TCP window open) in use, and lets the others idle.
 * Connections are opened lazily, outside the lock, up to pool_size; a
 * caller that finds none free waits on the condition variable until its
 * own deadline. A connection that failed is closed instead of returned,
 * and its slot freed, so the next caller opens a fresh one.
 *
 * TLS is configured once per client: rk_client_new() builds one OpenSSL
 * context (trust store, client certificate, the name to verify) that every
 * connection shares, so bad certificate files are reported at creation and
 * a reconnect costs only the handshake.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redkit/client.h>

#include "alloc.h"
#include "client.h"
#include "commands.h"
#include "conn.h"
#include "error.h"
#include "health.h"
#include "histogram.h"
#include "mux.h"
#include "names.h"
#include "registry_private.h"
#include "reply.h"
#include "tls.h"
#include "url.h"

struct rk_client {
    rk__conn_config conn;          /* strings below are owned by the client */
    char *host, *unix_path, *username, *password, *client_name;
    char *prefix;                  /* "" when none */
    char *key_head;                /* "prefix:" or "" */
    size_t key_head_len;
    int connect_timeout_ms;
    int command_timeout_ms;
    int pool_size;
    int idle_ping_ms;              /* -1 = never */
    rk__tls_ctx *tls;              /* NULL = plain connections */
    bool tls_insecure;             /* certificate checks are off */
    rk_event_fn on_event;
    void *event_user;
    rk_log_fn log;
    void *log_user;
    rk_log_level log_level;
    rk__hist latency;              /* metrics: every request; lock-free */
    rk__lane *lanes;               /* the shared connections (mux.c) */
    int n_lanes;                   /* 0: every call leases a connection */
    _Atomic unsigned next_lane;
    _Atomic bool health_dirty;     /* failures counted, or the circuit not closed */
    _Atomic int64_t connect_after_ns; /* no new connection before this (reconnecting; 0: any time) */
    _Atomic uint64_t lane_requests;/* requests completed on lanes (stats.requests) */
    struct rk_client *fork_next;   /* the list of live clients, for fork() */
    _Atomic unsigned warned;       /* metrics: warnings given (warn_once) */
    rk__registry *registry;        /* module handles (registry.c, own lock) */
    _Atomic size_t max_reply_bytes;/* read by every connection (conn.h); only grows */

    /* Everything below is guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t freed;          /* a connection or a slot became free */
    rk__conn **idle;               /* stack of pool_size entries */
    int n_idle;
    int n_open;                    /* idle + borrowed + being opened */
    rk__health health;             /* reconnect schedule, circuit breaker */
    rk_client_stats stats;
};

static const char *pick(const char *explicit_value, const char *from_url)
{
    return explicit_value ? explicit_value : from_url;
}

static int pick_int(int explicit_value, int from_url, int fallback)
{
    return explicit_value ? explicit_value : from_url ? from_url : fallback;
}

/* Copy src (NULL stays NULL) into *dst; false when the copy failed. */
static bool copy_opt(char **dst, const char *src)
{
    *dst = rk__strdup(src);
    return !src || *dst;
}

static rk_status check_range(const char *name, int value, int lo, int hi)
{
    if (value < lo || value > hi)
        return rk__fail(RK_ERR_INVALID, "option %s: %d is outside %d..%d", name, value, lo, hi);
    return RK_OK;
}

/* Said up front, instead of failing every connection's CLIENT SETNAME. */
static rk_status check_client_name(const char *name)
{
    if (!name || rk__client_name_valid(name)) return RK_OK;
    return rk__fail(RK_ERR_INVALID, "option client_name: only printable ASCII without spaces is allowed");
}

/* The name of the first TLS field set in t, for a message; NULL if none. */
static const char *tls_field_set(const rk_tls_options *t)
{
    return t->ca_file ? "ca_file" : t->ca_dir ? "ca_dir" : t->cert_file ? "cert_file"
         : t->key_file ? "key_file" : t->server_name ? "server_name"
         : t->insecure_skip_verify ? "insecure_skip_verify" : NULL;
}

static rk_status check_path(const char *name, const char *value)
{
    if (value && !*value) return rk__fail(RK_ERR_INVALID, "option tls.%s: empty", name);
    return RK_OK;
}

/* The TLS part of configure(), once host and unix_path are settled: merge
 * the struct's TLS fields over the URL's, check that they make sense
 * together, and build the client's one TLS context, which reads the files
 * now. */
static rk_status configure_tls(rk_client *c, const rk_tls_options *t, const rk__url *u)
{
    const char *field = tls_field_set(t);
    if (!t->enabled && !u->tls) {
        if (field)
            return rk__fail(RK_ERR_INVALID, "option tls.%s: TLS is not enabled (set tls.enabled or use a "
                                            "rediss:// URL)", field);
        return RK_OK;
    }
    if (c->unix_path)
        return rk__fail(RK_ERR_INVALID, "option tls: TLS over a Unix socket is not supported "
                                        "(Redis serves TLS on TCP only)");
    /* A false field cannot override the URL's tls_insecure=1, so a URL
     * from the environment could switch verification off under code that
     * asked for it (a CA, a name to check). That is refused: the two
     * sides disagree about security, and neither may win silently. */
    const char *verifying = t->ca_file ? "tls.ca_file" : t->ca_dir ? "tls.ca_dir"
                          : t->server_name ? "tls.server_name" : NULL;
    if (u->tls_insecure && !t->insecure_skip_verify && verifying)
        return rk__fail(RK_ERR_INVALID, "option %s: the URL's tls_insecure=1 would skip the verification it "
                                        "is for (remove tls_insecure from the URL, or set "
                                        "tls.insecure_skip_verify in code)", verifying);
    rk__tls_config cfg = {
        .ca_file = pick(t->ca_file, u->tls_ca_file),
        .ca_dir = pick(t->ca_dir, u->tls_ca_dir),
        .cert_file = pick(t->cert_file, u->tls_cert_file),
        .key_file = pick(t->key_file, u->tls_key_file),
        .skip_verify = t->insecure_skip_verify || u->tls_insecure,
    };
    const char *name = pick(t->server_name, u->tls_server_name);
    rk_status st;
    if ((st = check_path("ca_file", cfg.ca_file)) || (st = check_path("ca_dir", cfg.ca_dir)) ||
        (st = check_path("cert_file", cfg.cert_file)) || (st = check_path("key_file", cfg.key_file)))
        return st;
    if (cfg.key_file && !cfg.cert_file)
        return rk__fail(RK_ERR_INVALID, "option tls.key_file: needs tls.cert_file (the certificate it belongs to)");
    if (name && !rk__server_name_valid(name))
        return rk__fail(RK_ERR_INVALID, "option tls.server_name: not a host name (A-Z a-z 0-9 - . _, no "
                                        "empty label) or an IP address");
    /* Without a server_name the host is the name checked: held to the
     * same rules, since a leading '.' would make OpenSSL accept any
     * subdomain of it. */
    if (!name && !cfg.skip_verify && !rk__server_name_valid(c->host))
        return rk__fail(RK_ERR_INVALID, "option host: not a name a TLS certificate can be checked against (A-Z "
                                        "a-z 0-9 - . _, no empty label, or an IP address); set tls.server_name");
    cfg.verify_name = name ? name : c->host;
    c->tls_insecure = cfg.skip_verify;
    return rk__tls_ctx_new(&cfg, &c->tls);
}

/* Merge URL and explicit options into c (strings copied). */
static rk_status configure(rk_client *c, const rk_client_options *o, const rk__url *u)
{
    const char *unix_path = o->unix_path ? o->unix_path : o->host ? NULL : u->unix_path;
    const char *prefix = pick(o->key_prefix, u->key_prefix);
    const char *host = pick(o->host, u->host);
    const char *client_name = pick(o->client_name, u->client_name);
    int db = o->db ? o->db : u->has_db ? u->db : 0;
    int port = pick_int(o->port, u->port, RK_DEFAULT_PORT);

    c->connect_timeout_ms = pick_int(o->connect_timeout_ms, u->connect_timeout_ms,
                                     RK_DEFAULT_CONNECT_TIMEOUT_MS);
    c->command_timeout_ms = pick_int(o->command_timeout_ms, u->command_timeout_ms,
                                     RK_DEFAULT_COMMAND_TIMEOUT_MS);
    c->pool_size = pick_int(o->pool_size, u->pool_size, RK_DEFAULT_POOL_SIZE);

    rk_status st;
    if ((st = check_range("port", port, 1, 65535)) ||
        (st = check_range("db", db, 0, 2147483647)) ||
        (st = check_range("connect_timeout_ms", c->connect_timeout_ms, 1, RK_MAX_TIMEOUT_MS)) ||
        (st = check_range("command_timeout_ms", c->command_timeout_ms, 1, RK_MAX_TIMEOUT_MS)) ||
        (st = check_range("pool_size", c->pool_size, 1, RK_MAX_POOL_SIZE)) ||
        (st = check_range("shared_connections", o->shared_connections, -1, RK_MAX_POOL_SIZE)) ||
        (st = check_client_name(client_name)))
        return st;
    if (prefix && *prefix && (st = rk__key_check_name("key_prefix", prefix)) != RK_OK) return st;

    /* These have no URL form; a zeroed field means the default, -1 "off"
     * where that is allowed. */
    int lanes = o->shared_connections < 0 ? 0 : pick_int(o->shared_connections, 0, RK_DEFAULT_SHARED_CONNECTIONS);
    int lanes_max = c->pool_size / 2 > 1 ? c->pool_size / 2 : 1;
    c->n_lanes = lanes < lanes_max ? lanes : lanes_max;
    int base = pick_int(o->reconnect_base_ms, 0, RK_DEFAULT_RECONNECT_BASE_MS);
    int max = pick_int(o->reconnect_max_ms, 0, RK_DEFAULT_RECONNECT_MAX_MS);
    int threshold = pick_int(o->breaker_threshold, 0, RK_DEFAULT_BREAKER_THRESHOLD);
    c->idle_ping_ms = pick_int(o->idle_ping_ms, 0, RK_DEFAULT_IDLE_PING_MS);
    c->log_level = o->log_level ? o->log_level : RK_LOG_WARN;
    if ((st = check_range("reconnect_base_ms", base, 1, RK_MAX_TIMEOUT_MS)) ||
        (st = check_range("reconnect_max_ms", max, base, RK_MAX_TIMEOUT_MS)) ||
        (st = check_range("breaker_threshold", threshold, -1, 1000000)) ||
        (st = check_range("idle_ping_ms", c->idle_ping_ms, -1, RK_MAX_TIMEOUT_MS)) ||
        (st = check_range("log_level", (int)c->log_level, RK_LOG_DEBUG, RK_LOG_ERROR)))
        return st;
    size_t max_reply = o->max_reply_bytes ? o->max_reply_bytes : RK_DEFAULT_MAX_REPLY_BYTES;
    if (max_reply < RK_MIN_MAX_REPLY_BYTES || max_reply > RK_MAX_MAX_REPLY_BYTES)
        return rk__fail(RK_ERR_INVALID, "option max_reply_bytes: %zu is outside %zu..%zu", max_reply,
                        RK_MIN_MAX_REPLY_BYTES, RK_MAX_MAX_REPLY_BYTES);
    atomic_store(&c->max_reply_bytes, max_reply);
    c->on_event = o->on_event;
    c->event_user = o->event_user;
    c->log = o->log;
    c->log_user = o->log_user;
    /* Each client gets its own jitter sequence: clients started together
     * must not retry together. */
    uint64_t seed = (uint64_t)rk__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    rk__health_init(&c->health, base, max, threshold, seed);

    size_t plen = prefix ? strlen(prefix) : 0;
    if (!copy_opt(&c->host, host ? host : RK_DEFAULT_HOST) || !copy_opt(&c->unix_path, unix_path) ||
        !copy_opt(&c->username, pick(o->username, u->username)) ||
        !copy_opt(&c->password, pick(o->password, u->password)) || !copy_opt(&c->client_name, client_name) ||
        !copy_opt(&c->prefix, prefix ? prefix : "") || !(c->key_head = rk__malloc(plen + 2)))
        return rk__fail(RK_ERR_NOMEM, "client: out of memory");
    if (plen) {
        memcpy(c->key_head, prefix, plen);
        c->key_head[plen++] = ':';
    }
    c->key_head[plen] = '\0';
    c->key_head_len = plen;

    if ((st = configure_tls(c, &o->tls, u)) != RK_OK) return st;

    c->conn = (rk__conn_config){.host = c->host, .port = port, .unix_path = c->unix_path,
                                .username = c->username, .password = c->password, .db = db,
                                .client_name = c->client_name, .tls = c->tls,
                                .max_reply_bytes = &c->max_reply_bytes};
    return RK_OK;
}

static void release_strings(rk_client *c)
{
    rk__tls_ctx_free(c->tls);
    c->tls = NULL;
    rk__free(c->host);
    rk__free(c->unix_path);
    rk__free_secret(c->username);
    rk__free_secret(c->password);
    rk__free(c->client_name);
    rk__free(c->prefix);
    rk__free(c->key_head);
}

static rk_status init_sync(rk_client *c)
{
    return rk__lock_init(&c->lock, &c->freed);
}

static rk_status init_lanes(rk_client *c)
{
    c->lanes = rk__calloc((size_t)c->n_lanes, sizeof *c->lanes);
    if (!c->lanes) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->freed);
        return rk__fail(RK_ERR_NOMEM, "client: out of memory");
    }
    for (int i = 0; i < c->n_lanes; i++) {
        rk_status st = rk__lane_init(&c->lanes[i], (int64_t)c->command_timeout_ms * 1000000);
        if (st != RK_OK) {
            while (i-- > 0) rk__lane_destroy(&c->lanes[i]);
            rk__free(c->lanes);
            c->lanes = NULL;
            pthread_mutex_destroy(&c->lock);
            pthread_cond_destroy(&c->freed);
            return st;
        }
    }
    return RK_OK;
}

/* ---- fork() ------------------------------------------------------------
 *
 * Every live client is on a list. pthread_atfork handlers take every
 * client's locks before fork() (so that no client is copied half-way
 * through a change), release them in the parent, and in the child drop
 * every connection the child inherited: its copy of the descriptor is
 * closed without a byte sent (no QUIT, no TLS close_notify), since the
 * parent still uses the connection, and the child opens its own on its
 * first call. The parent's connections are untouched. Connections that
 * other threads had borrowed at the moment of fork() are forgotten in the
 * child (those threads do not exist there), descriptors included. */

static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;
static rk_client *clients;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&clients_lock);
    for (rk_client *c = clients; c; c = c->fork_next) {
        for (int i = 0; i < c->n_lanes; i++) pthread_mutex_lock(&c->lanes[i].lock);
        pthread_mutex_lock(&c->lock);
    }
}

static void fork_parent(void)
{
    for (rk_client *c = clients; c; c = c->fork_next) {
        pthread_mutex_unlock(&c->lock);
        for (int i = c->n_lanes; i-- > 0;) pthread_mutex_unlock(&c->lanes[i].lock);
    }
    pthread_mutex_unlock(&clients_lock);
}

/* The child's one thread is the one that took every lock in
 * fork_prepare: it releases them before they are made anew (a lock is
 * never destroyed held, which ThreadSanitizer rightly reports). */
static void fork_child(void)
{
    for (rk_client *c = clients; c; c = c->fork_next) {
        pthread_mutex_unlock(&c->lock);
        for (int i = 0; i < c->n_lanes; i++) pthread_mutex_unlock(&c->lanes[i].lock);
        for (int i = 0; i < c->n_lanes; i++) rk__lane_after_fork(&c->lanes[i]);
        for (int i = 0; i < c->n_idle; i++) rk__conn_abandon(c->idle[i]);
        c->n_idle = 0;
        c->n_open = 0;
        c->health.probing = false;
        rk__lock_init(&c->lock, &c->freed);
    }
    pthread_mutex_unlock(&clients_lock);
}

static void register_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static void track(rk_client *c)
{
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&clients_lock);
    c->fork_next = clients;
    clients = c;
    pthread_mutex_unlock(&clients_lock);
}

static void untrack(rk_client *c)
{
    pthread_mutex_lock(&clients_lock);
    for (rk_client **at = &clients; *at; at = &(*at)->fork_next)
        if (*at == c) {
            *at = c->fork_next;
            break;
        }
    pthread_mutex_unlock(&clients_lock);
}

rk_status rk_client_new(const rk_client_options *opts, rk_client **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_client_new: out is NULL");
    *out = NULL;
    static const rk_client_options defaults = {0};
    if (!opts) opts = &defaults;

    rk__url url = {0};
    rk_status st = RK_OK;
    if (opts->url && *opts->url && (st = rk__url_parse(opts->url, &url)) != RK_OK) return st;

    rk_client *c = rk__calloc(1, sizeof *c);
    if (!c) {
        rk__url_clear(&url);
        return rk__fail(RK_ERR_NOMEM, "client: out of memory");
    }
    st = configure(c, opts, &url);
    rk__url_clear(&url);
    if (st == RK_OK) {
        c->idle = rk__calloc((size_t)c->pool_size, sizeof *c->idle);
        if (!c->idle) st = rk__fail(RK_ERR_NOMEM, "client: out of memory");
    }
    if (st == RK_OK && !(c->registry = rk__registry_new())) st = rk__fail(RK_ERR_NOMEM, "client: out of memory");
    if (st == RK_OK) st = init_sync(c);
    if (st == RK_OK && c->n_lanes > 0) st = init_lanes(c);
    if (st == RK_OK && !c->unix_path) rk__resolver_prepare(c->host);
    if (st != RK_OK) {
        rk__registry_free(c->registry);
        rk__free(c->idle);
        release_strings(c);
        rk__free(c);
        return st;
    }
    /* Once per client, here rather than per connection: a warning on every
     * reconnect would drown the log, and one at start-up is where an
     * operator looks. */
    if (c->tls_insecure && c->log && c->log_level <= RK_LOG_WARN)
        c->log(RK_LOG_WARN,
               "TLS certificate verification is disabled (insecure_skip_verify): connections are "
               "encrypted but the server is not authenticated",
               c->log_user);
    track(c);
    *out = c;
    return RK_OK;
}

void rk__client_raise_max_reply(rk_client *c, size_t bytes)
{
    size_t now = atomic_load(&c->max_reply_bytes);
    if (bytes > RK_MAX_MAX_REPLY_BYTES) bytes = RK_MAX_MAX_REPLY_BYTES;
    /* Only ever up: two modules raising it at once both get what they need. */
    while (now < bytes && !atomic_compare_exchange_weak(&c->max_reply_bytes, &now, bytes)) {
    }
}

size_t rk__client_max_reply(rk_client *c) { return atomic_load(&c->max_reply_bytes); }

rk_status rk_client_new_url(const char *url, rk_client **out)
{
    return rk_client_new(&(rk_client_options){.url = url}, out);
}

/* Module handles hold a reference to their client (registry.h): the
 * client goes with the last of rk_client_free() and the handles' frees. */
void rk_client_free(rk_client *c)
{
    if (!c) return;
    if (rk__registry_client_released(c->registry)) rk__client_destroy(c);
}

void rk__client_destroy(rk_client *c)
{
    untrack(c);
    for (int i = 0; i < c->n_lanes; i++) rk__lane_destroy(&c->lanes[i]);
    rk__free(c->lanes);
    for (int i = 0; i < c->n_idle; i++) rk__conn_close(c->idle[i]);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->freed);
    rk__free(c->idle);
    rk__registry_free(c->registry);
    release_strings(c);
    rk__free(c);
}

rk__registry *rk__client_registry(rk_client *c) { return c->registry; }

const char *rk_client_key_prefix(const rk_client *c)
{
    return c ? c->prefix : "";
}

const char *rk__client_key_head(const rk_client *c, size_t *len)
{
    *len = c->key_head_len;
    return c->key_head;
}

static struct timespec to_timespec(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

/* ---- Events ------------------------------------------------------------ */

static rk_log_level event_level(const rk_event *e)
{
    switch (e->type) {
    case RK_EVENT_DISCONNECTED:
    case RK_EVENT_CIRCUIT_OPEN: return RK_LOG_WARN;
    case RK_EVENT_CONNECTED: return e->attempt ? RK_LOG_INFO : RK_LOG_DEBUG;
    default: return RK_LOG_INFO;
    }
}

/* Deliver queued events with no lock held. The callbacks may call redkit,
 * which would overwrite this thread's last error: it is saved and put
 * back, so the caller still reads the message of its own call. */
static void deliver(rk_client *c, rk__events *ev)
{
    if (ev->n == 0 || (!c->on_event && !c->log)) return;
    char saved[RK__ERRMSG_MAX];
    snprintf(saved, sizeof saved, "%s", rk_last_error());
    for (int i = 0; i < ev->n; i++) {
        if (c->on_event) c->on_event(&ev->ev[i], c->event_user);
        rk_log_level level = event_level(&ev->ev[i]);
        if (c->log && level >= c->log_level) c->log(level, ev->ev[i].message, c->log_user);
    }
    rk__fail_str(RK_OK, saved);
    ev->n = 0;
}

/* ---- The pool ---------------------------------------------------------- */

/* Condemn every idle connection (lock held). Used when the server has
 * gone: the idle ones are most likely dead too, and a read retried on one
 * of them would fail again. They are only marked broken here: closing
 * (TLS teardown, close()) can take a while and must not happen under the
 * pool lock, so the next caller to pop one closes it after releasing the
 * lock (rk__pool_acquire). */
static void drain_idle(rk_client *c)
{
    for (int i = 0; i < c->n_idle; i++) rk__conn_set_broken(c->idle[i]);
}

/* Count how a call ended (lock held). */
static void count(rk_client *c, rk_status st)
{
    if (st == RK_ERR_TIMEOUT) c->stats.timeouts++;
    else if (st == RK_ERR_UNAVAILABLE) c->stats.unavailable++;
}

static rk_status fast_fail(rk_client *c)
{
    c->stats.fast_failed++;
    c->stats.unavailable++;
    return RK_ERR_UNAVAILABLE; /* rk_last_error() was set by the health gate */
}

/* Keep health_dirty in step with the breaker (lock held): calls on lanes
 * read it without the lock to skip the gate while all is well. */
static void mirror_health(rk_client *c)
{
    atomic_store_explicit(&c->health_dirty, c->health.failures > 0 || c->health.circuit != RK_CIRCUIT_CLOSED,
                          memory_order_relaxed);
    const rk__health *h = &c->health;
    atomic_store_explicit(&c->connect_after_ns, h->attempt == 0 ? 0 : h->probing ? INT64_MAX : h->retry_at_ns,
                          memory_order_relaxed);
}

static const char ping_cmd[] = "*1\r\n$4\r\nPING\r\n";

/* Below this much idle time a connection is used without a check: it
 * answered a moment ago, and under load that is every call, so the check
 * would cost the hot path a system call (about 1% of a loopback GET) to
 * close a window no wider than the one in which a server can die during
 * the call itself. */
#define PEER_CHECK_AFTER_NS RK__PEER_CHECK_AFTER_NS

/* Is an idle connection still good? Called without the lock. A peer that
 * closed or reset it is seen with one poll(); one that vanished silently
 * only by a PING, which is sent after idle_ping_ms of silence. */
static bool still_alive(rk_client *c, rk__conn *conn, int64_t deadline_ns)
{
    int64_t idle_ns = rk__now_ns() - rk__conn_last_used(conn);
    if (idle_ns < PEER_CHECK_AFTER_NS) return true;
    if (rk__conn_peer_gone(conn)) return false;
    if (c->idle_ping_ms < 0 || idle_ns < (int64_t)c->idle_ping_ms * 1000000) return true;
    rk_reply *r;
    if (rk__conn_request(conn, ping_cmd, sizeof ping_cmd - 1, 1, &r, deadline_ns) != RK_OK) return false;
    rk_reply_free(r);
    return true;
}

bool rk__pool_check(rk_client *c, rk__conn *conn, int64_t deadline_ns)
{
    if (!rk__conn_broken(conn) && still_alive(c, conn, deadline_ns)) return true;
    rk__events ev = {0};
    rk__events_add(&ev, RK_EVENT_DISCONNECTED, RK_ERR_UNAVAILABLE, 0, 0,
                   "connection closed: idle connection to %s found dead", rk__conn_peer(conn));
    pthread_mutex_lock(&c->lock);
    c->n_open--;
    c->stats.disconnects++;
    pthread_cond_signal(&c->freed);
    pthread_mutex_unlock(&c->lock);
    rk__conn_close(conn);
    deliver(c, &ev);
    return false;
}

/* An exclusive lease found the pool exhausted: the connection of an idle
 * lane, if there is one (lock held; dropped while looking). */
static rk__conn *take_from_lanes(rk_client *c)
{
    if (c->n_lanes == 0) return NULL;
    pthread_mutex_unlock(&c->lock);
    rk__conn *conn = NULL;
    for (int i = 0; i < c->n_lanes && !conn; i++) conn = rk__lane_take_idle(&c->lanes[i]);
    pthread_mutex_lock(&c->lock);
    return conn;
}

/* How often an exclusive lease waiting for the pool looks for an idle lane. */
#define LANE_LOOK_NS 5000000

/* Open a connection in a free slot (the caller reserved it in n_open).
 * Called and returns with the lock held; drops it while connecting. */
static rk_status open_slot(rk_client *c, rk__call *k, bool conn_probe, rk__conn **out)
{
    pthread_mutex_unlock(&c->lock);
    int64_t started = rk__now_ns();
    rk_status st = rk__conn_open(&c->conn, started + (int64_t)c->connect_timeout_ms * 1000000, out);
    int64_t connected = rk__now_ns();
    pthread_mutex_lock(&c->lock);
    bool probe = k->probe || conn_probe;
    if (st != RK_OK) {
        c->n_open--;
        c->stats.connect_failures++;
        count(c, st);
        /* Attempts made at the same time (a pool filling up at start, a
         * server refusing all of them) are one event for the breaker, as
         * connections dropped together are (give_back): one started
         * before the last counted failure is not counted again. */
        int64_t now = rk__now_ns();
        if (probe || !rk__transport_failure(st) || rk__health_new_failure(&c->health, now, started))
            rk__health_connect_failed(&c->health, now, st, probe, &k->ev);
        if (c->health.circuit == RK_CIRCUIT_OPEN) drain_idle(c);
    } else {
        c->stats.connects++;
        if (c->health.attempt > 0 && !(probe && c->health.circuit == RK_CIRCUIT_HALF_OPEN))
            c->stats.reconnects++; /* a half-open probe counts when its request closes the circuit */
        rk__health_connected(&c->health, probe, &k->ev);
        /* Time spent connecting is the connect timeout's, not the
         * command's: the command keeps its whole budget. */
        k->deadline_ns += connected - started;
        k->dead_ns += connected - started;
    }
    mirror_health(c); /* the attempt is over: lanes may try again when due */
    pthread_cond_broadcast(&c->freed); /* waiters for the one attempt */
    return st;
}

/* Borrow a connection: an idle one that is still alive, a new one if the
 * pool has room and the reconnect schedule allows, or wait for one until
 * the deadline. Opening a connection has its own connect timeout and
 * extends the caller's deadline by the time it took, so that a call's
 * total is bounded by connect_timeout_ms + command_timeout_ms. */
rk_status rk__pool_acquire(rk_client *c, rk__call *k, rk__conn **out)
{
    rk_status st = RK_OK;
    pthread_mutex_lock(&c->lock);
    rk__gate gate = RK__GO;
    if (!k->gated) {
        gate = rk__health_enter(&c->health, rk__now_ns(), &k->ev);
        if (gate == RK__FAIL) st = fast_fail(c);
        k->probe = gate == RK__PROBE;
    }
    while (st == RK_OK) {
        int64_t now = rk__now_ns();
        if (c->n_idle > 0) {
            rk__conn *conn = c->idle[--c->n_idle];
            mirror_health(c); /* reads the breaker: under the lock */
            pthread_mutex_unlock(&c->lock);
            if (!rk__conn_broken(conn) && still_alive(c, conn, k->deadline_ns)) {
                k->reused = true;
                *out = conn;
                deliver(c, &k->ev);
                return RK_OK;
            }
            rk__events_add(&k->ev, RK_EVENT_DISCONNECTED, RK_ERR_UNAVAILABLE, 0, 0,
                           "connection closed: idle connection to %s found dead", rk__conn_peer(conn));
            rk__conn_close(conn);
            pthread_mutex_lock(&c->lock);
            c->n_open--;
            c->stats.disconnects++;
            continue;
        }
        if (now >= k->deadline_ns) {
            st = rk__fail(RK_ERR_TIMEOUT, "no free connection in the pool of %d within %d ms", c->pool_size,
                          c->command_timeout_ms);
            count(c, st);
            break;
        }
        int64_t until = k->deadline_ns;
        /* An exclusive lease that may not open a connection now, while
         * others are open (borrowed by other calls, or a lane's), waits
         * for one of them until its deadline rather than failing: a
         * working connection that frees up in time beats a new one the
         * reconnect schedule holds back. (A lane's call never gets a
         * lane's connection back through the pool: it tries another lane,
         * mux.c.) */
        bool wait_for_open = false;
        if (c->n_open < c->pool_size) {
            gate = rk__health_may_connect(&c->health, now, k->deadline_ns, k->probe, &until);
            if (gate == RK__FAIL) {
                if (!k->exclusive || c->n_open == 0) {
                    st = fast_fail(c);
                    break;
                }
                wait_for_open = true;
                until = k->deadline_ns;
            } else if (gate != RK__WAIT) {
                c->n_open++;
                mirror_health(c); /* lanes see the attempt in flight */
                st = open_slot(c, k, gate == RK__PROBE, out);
                if (st == RK_OK) {
                    mirror_health(c);
                    pthread_mutex_unlock(&c->lock);
                    deliver(c, &k->ev);
                    return RK_OK;
                }
                if (!k->exclusive || k->probe || c->n_open == 0) break;
                st = RK_OK; /* wait for one of the open ones instead */
                continue;
            }
        }
        if ((c->n_open >= c->pool_size || wait_for_open) && k->exclusive) {
            rk__conn *conn = take_from_lanes(c);
            if (conn) {
                pthread_mutex_unlock(&c->lock);
                if (still_alive(c, conn, k->deadline_ns)) {
                    k->reused = true;
                    *out = conn;
                    deliver(c, &k->ev);
                    return RK_OK;
                }
                rk__conn_close(conn);
                pthread_mutex_lock(&c->lock);
                c->n_open--;
                c->stats.disconnects++;
                continue;
            }
            /* Lanes do not signal when they go idle: look again soon. */
            if (until > now + LANE_LOOK_NS) until = now + LANE_LOOK_NS;
        }
        struct timespec ts = to_timespec(until);
        pthread_cond_timedwait(&c->freed, &c->lock, &ts);
    }
    rk__health_cancel_probe(&c->health, k->probe);
    mirror_health(c);
    pthread_mutex_unlock(&c->lock);
    deliver(c, &k->ev);
    return st;
}

/* Give a connection back (lock held): idle again, or, when broken,
 * counted closed and returned for the caller to close once the lock is
 * released (closing can take a while: never under the shared lock). Tells
 * the breaker about a transport failure of the connection. */
static rk__conn *give_back(rk_client *c, rk__conn *conn, rk_status st, bool probe, rk__events *ev,
                           const char *detail)
{
    if (!rk__conn_broken(conn)) {
        c->idle[c->n_idle++] = conn;
        pthread_cond_signal(&c->freed);
        return NULL;
    }
    bool failed = rk__transport_failure(st);
    c->n_open--;
    c->stats.disconnects++;
    rk__events_add(ev, RK_EVENT_DISCONNECTED, st, c->health.attempt, 0, "connection closed: %s", detail);
    uint64_t closed = c->health.closed;
    int64_t now = rk__now_ns();
    /* The breaker counts events, not calls or connections: every
     * connection open when a counted failure happened fails with it (a
     * server-side kill, a restart) and is not counted again. */
    bool counted = failed && (probe || rk__health_new_failure(&c->health, now, rk__conn_opened(conn)));
    if (counted || probe) rk__health_request_done(&c->health, now, st, counted, probe, ev);
    if (c->health.closed != closed) c->stats.reconnects++;
    if ((failed && st == RK_ERR_UNAVAILABLE) || c->health.circuit == RK_CIRCUIT_OPEN) drain_idle(c);
    pthread_cond_signal(&c->freed);
    return conn;
}

void rk__pool_release(rk_client *c, rk__call *k, rk__conn *conn, rk_status st)
{
    bool broken = rk__conn_broken(conn);
    char detail[RK__ERRMSG_MAX];
    if (broken) snprintf(detail, sizeof detail, "%s", rk_last_error());

    pthread_mutex_lock(&c->lock);
    rk__conn *dead = give_back(c, conn, st, k->probe, &k->ev, detail);
    if (!broken) {
        c->stats.requests++;
        uint64_t closed = c->health.closed;
        rk__health_request_done(&c->health, rk__now_ns(), st, false, k->probe, &k->ev);
        if (c->health.closed != closed) c->stats.reconnects++;
    }
    count(c, st);
    mirror_health(c);
    pthread_mutex_unlock(&c->lock);
    rk__conn_close(dead);
    deliver(c, &k->ev);
}

void rk__pool_probe_cancel(rk_client *c, bool probe)
{
    if (!probe) return;
    pthread_mutex_lock(&c->lock);
    rk__health_cancel_probe(&c->health, true);
    mirror_health(c);
    pthread_mutex_unlock(&c->lock);
}

void rk__pool_lane_end(rk_client *c, bool probe, rk_status call_st, rk__conn *conn, rk_status conn_st)
{
    if (call_st == RK_OK) atomic_fetch_add_explicit(&c->lane_requests, 1, memory_order_relaxed);
    bool learn = probe || (call_st == RK_OK && atomic_load_explicit(&c->health_dirty, memory_order_relaxed));
    if (!conn && !learn && call_st == RK_OK) return;
    char detail[RK__ERRMSG_MAX];
    detail[0] = '\0';
    if (conn && rk__conn_broken(conn)) snprintf(detail, sizeof detail, "%s", rk_last_error());
    rk__events ev = {0};
    pthread_mutex_lock(&c->lock);
    rk__conn *dead = conn ? give_back(c, conn, conn_st, false, &ev, detail) : NULL;
    if (learn) {
        uint64_t closed = c->health.closed;
        rk__health_request_done(&c->health, rk__now_ns(), call_st, probe && rk__transport_failure(call_st), probe,
                                &ev);
        if (c->health.closed != closed) c->stats.reconnects++;
    }
    count(c, call_st);
    mirror_health(c);
    pthread_mutex_unlock(&c->lock);
    rk__conn_close(dead);
    deliver(c, &ev);
}

/* The circuit breaker's gate for a call that goes to a lane (which may
 * already hold a connection, so acquire's gate would not be asked). */
static rk_status gate(rk_client *c, rk__call *k)
{
    rk_status st = RK_OK;
    pthread_mutex_lock(&c->lock);
    rk__gate g = rk__health_enter(&c->health, rk__now_ns(), &k->ev);
    if (g == RK__FAIL) st = fast_fail(c);
    k->probe = g == RK__PROBE;
    k->gated = true;
    pthread_mutex_unlock(&c->lock);
    deliver(c, &k->ev);
    return st;
}

/* The lane for a call: the least loaded, the first on a tie, so that a
 * lone caller always finds the same (warm) connection. With up_only, only
 * a lane that has a connection (NULL if none has). */
static rk__lane *pick_lane(rk_client *c, bool up_only)
{
    rk__lane *best = NULL;
    int load = INT_MAX;
    for (int i = 0; i < c->n_lanes && load > 0; i++) {
        if (up_only && !rk__lane_up(&c->lanes[i])) continue;
        int l = atomic_load_explicit(&c->lanes[i].load, memory_order_relaxed);
        if (l < load) {
            best = &c->lanes[i];
            load = l;
        }
    }
    return best;
}

/* Run the call on lane l: to its end, or, with a slot to keep its place
 * (ahead), only queued (rk__lane_send). */
static rk_status on_lane(rk_client *c, rk__lane *l, rk__call *k, const char *cmd, size_t len, size_t n,
                         rk_reply **replies, rk__slot *ahead)
{
    return ahead ? rk__lane_send(c, l, k, cmd, len, n, replies, ahead) : rk__lane_call(c, l, k, cmd, len, n, replies);
}

/* A call on a lane (*used: the lane it ran or was queued on). While the
 * reconnect schedule holds new connections back, a lane without one
 * could only fail the call fast (or make it wait for an attempt that is
 * likely to fail too): lanes that have a working connection are
 * preferred, and a call that could not get a connection on its lane,
 * before anything was sent, tries once more on a working one within its
 * deadline. */
static rk_status lane_request(rk_client *c, rk__call *k, const char *cmd, size_t len, size_t n, rk_reply **replies,
                              rk__slot *ahead, rk__lane **used)
{
    bool held_back = k->start_ns < atomic_load_explicit(&c->connect_after_ns, memory_order_relaxed);
    rk__lane *lane = held_back ? pick_lane(c, true) : NULL;
    if (!lane) lane = pick_lane(c, false);
    k->unsent = false;
    *used = lane;
    rk_status st = on_lane(c, lane, k, cmd, len, n, replies, ahead);
    if (st == RK_OK || !k->unsent || k->probe || rk__now_ns() >= k->deadline_ns) return st;
    rk__lane *other = pick_lane(c, true);
    if (!other || other == lane) return st;
    k->unsent = false;
    *used = other;
    return on_lane(c, other, k, cmd, len, n, replies, ahead);
}

rk_status rk__client_send(rk_client *c, rk__call *k, const char *cmd, size_t len, size_t n, rk_reply **replies,
                          rk__slot *s, rk__lane **lane)
{
    *lane = NULL;
    k->probe = k->gated = k->exclusive = false;
    k->reused = false;
    rk_status st;
    if (atomic_load_explicit(&c->health_dirty, memory_order_relaxed) && (st = gate(c, k)) != RK_OK) return st;
    rk__lane *used;
    st = lane_request(c, k, cmd, len, n, replies, s, &used);
    if (st == RK_OK) *lane = used;
    return st;
}

bool rk__client_has_lanes(const rk_client *c) { return c->n_lanes > 0; }

rk__call rk__client_call(const rk_client *c, int64_t now, int64_t deadline_ns)
{
    if (!deadline_ns) deadline_ns = now + (int64_t)c->command_timeout_ms * 1000000;
    int64_t dead = now + (int64_t)c->command_timeout_ms * 1000000;
    return (rk__call){.deadline_ns = deadline_ns, .start_ns = now, .dead_ns = dead > deadline_ns ? dead : deadline_ns};
}

void rk__client_record_latency(rk_client *c, int64_t ns) { rk__hist_record(&c->latency, ns); }

/* Run already-encoded commands: on a shared connection (a lane), or, when
 * exclusive or the client has no lanes, on a pooled connection of its own. */
static rk_status request(rk_client *c, rk__call *k, const char *cmd, size_t len, size_t n, rk_reply **replies,
                         bool exclusive)
{
    k->reused = false;
    k->probe = false;
    k->gated = false;
    k->exclusive = exclusive || c->n_lanes == 0;
    /* Metrics: timed from the caller's own clock read; a retry reads the
     * clock for itself. */
    int64_t started = k->start_ns ? k->start_ns : rk__now_ns();
    k->start_ns = started;
    rk_status st;
    if (!exclusive && c->n_lanes > 0) {
        if (atomic_load_explicit(&c->health_dirty, memory_order_relaxed) && (st = gate(c, k)) != RK_OK) return st;
        rk__lane *used;
        st = lane_request(c, k, cmd, len, n, replies, NULL, &used);
        rk__hist_record(&c->latency, rk__now_ns() - started);
    } else {
        rk__conn *conn;
        if ((st = rk__pool_acquire(c, k, &conn)) != RK_OK) return st;
        st = rk__conn_request(conn, cmd, len, n, replies, k->deadline_ns);
        rk__hist_record(&c->latency, (st == RK_OK ? rk__conn_last_used(conn) : rk__now_ns()) - started);
        rk__pool_release(c, k, conn, st);
    }
    k->start_ns = 0;
    return st;
}

/* This thread's deadline cap (rk__deadline_cap_swap): 0 = none. */
static _Thread_local int64_t deadline_cap;

int64_t rk__deadline_cap_swap(int64_t cap)
{
    int64_t prev = deadline_cap;
    deadline_cap = cap;
    return prev;
}

/* A call of n encoded commands under deadline_ns (set from `now`), on a
 * lane or an exclusive connection. A pooled connection can turn out dead
 * only when used (the server restarted, say). A read is safe to repeat, so
 * it gets one more try on a fresh connection within the same deadline; a
 * write never does: it may have been applied. A deadline cap set on this
 * thread (client.h) shortens the deadline, or refuses the call unsent
 * once it has passed. */
static rk_status run_encoded(rk_client *c, const char *buf, size_t len, size_t n, rk_reply **replies, bool is_read,
                             bool exclusive, int64_t now, int64_t deadline_ns)
{
    if (deadline_cap && deadline_cap < deadline_ns) {
        if (deadline_cap <= now)
            return rk__fail(RK_ERR_TIMEOUT, "redis: not sent: the time of this call is spent (its earlier "
                                            "round trips used it up)");
        deadline_ns = deadline_cap;
    }
    rk__call k = rk__client_call(c, now, deadline_ns);
    rk_status st = request(c, &k, buf, len, n, replies, exclusive);
    if (is_read && st == RK_ERR_UNAVAILABLE && k.reused && rk__now_ns() < k.deadline_ns) {
        pthread_mutex_lock(&c->lock);
        c->stats.read_retries++;
        pthread_mutex_unlock(&c->lock);
        st = request(c, &k, buf, len, n, replies, exclusive);
    }
    return st;
}

rk_status rk__client_encoded(rk_client *c, const char *buf, size_t len, size_t n, rk_reply **replies,
                             int64_t deadline_ns, bool exclusive)
{
    return run_encoded(c, buf, len, n, replies, false, exclusive, rk__now_ns(), deadline_ns);
}

/* rk__client_run with a timeout of its own (0: the client's) and the
 * choice of an exclusive connection. */
static rk_status run(rk_client *c, int argc, const char **argv, const size_t *argvlen, bool is_read, rk_reply **reply,
                     int timeout_ms, bool exclusive)
{
    *reply = NULL;
    /* argv[0] is binary-safe (argvlen), so never printed with %s. */
    char name[RK__NAME_SHOWN_MAX];
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return rk__fail(RK_ERR_NOMEM, "%s: out of memory encoding the command",
                        rk__printable_name(name, argv[0], argvlen[0]));
    int64_t now = rk__now_ns();
    int64_t deadline = now + (int64_t)(timeout_ms ? timeout_ms : c->command_timeout_ms) * 1000000;
    rk_status st = run_encoded(c, cmd, (size_t)len, 1, reply, is_read, exclusive, now, deadline);
    redisFreeCommand(cmd);
    if (st == RK_OK && (*reply)->type == RK_REPLY_ERROR) {
        st = rk__reply_fail(*reply, rk__printable_name(name, argv[0], argvlen[0]));
        *reply = NULL;
    }
    return st;
}

rk_status rk__client_run(rk_client *c, int argc, const char **argv, const size_t *argvlen, bool is_read,
                         rk_reply **reply)
{
    return run(c, argc, argv, argvlen, is_read, reply, 0, false);
}

int64_t rk__client_deadline(const rk_client *c)
{
    return rk__now_ns() + (int64_t)c->command_timeout_ms * 1000000;
}

/* The pipeline under deadline_ns, or, when it is 0, one command timeout
 * from the clock read that also starts the latency measurement (so the
 * common case reads the clock once, as rk__client_run does). */
static rk_status pipeline(rk_client *c, size_t n, const rk__cmd *cmds, bool is_read, rk_reply **replies,
                          int64_t deadline_ns, bool exclusive)
{
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (n == 0) return RK_OK;
    /* Encode every command, then send them as one buffer: one write, one
     * round trip, n replies read in order. */
    size_t total = 0;
    char **parts = rk__calloc(n, sizeof *parts);
    int *plens = rk__calloc(n, sizeof *plens);
    char *buf = NULL;
    rk_status st = RK_OK;
    if (!parts || !plens) {
        st = rk__fail(RK_ERR_NOMEM, "pipeline: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        plens[i] = redisFormatCommandArgv(&parts[i], cmds[i].argc, cmds[i].argv, cmds[i].argvlen);
        if (plens[i] < 0) {
            parts[i] = NULL;
            char name[RK__NAME_SHOWN_MAX];
            const char *a0 = cmds[i].argv[0];
            st = rk__fail(RK_ERR_NOMEM, "pipeline: out of memory encoding %s",
                          rk__printable_name(name, a0, cmds[i].argvlen ? cmds[i].argvlen[0] : strlen(a0)));
            goto done;
        }
        total += (size_t)plens[i];
    }
    buf = rk__malloc(total ? total : 1);
    if (!buf) {
        st = rk__fail(RK_ERR_NOMEM, "pipeline: out of memory");
        goto done;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + at, parts[i], (size_t)plens[i]);
        at += (size_t)plens[i];
    }
    int64_t now = rk__now_ns();
    if (deadline_ns && now >= deadline_ns) {
        /* Nothing sent: the caller knows no write of this batch happened. */
        char name[RK__NAME_SHOWN_MAX];
        st = rk__fail(RK_ERR_TIMEOUT, "%s: the call's deadline passed before it was sent",
                      rk__printable_name(name, cmds[0].argv[0],
                                         cmds[0].argvlen ? cmds[0].argvlen[0] : strlen(cmds[0].argv[0])));
        pthread_mutex_lock(&c->lock);
        count(c, st);
        pthread_mutex_unlock(&c->lock);
        goto done;
    }
    st = run_encoded(c, buf, total, n, replies, is_read, exclusive, now,
                     deadline_ns ? deadline_ns : now + (int64_t)c->command_timeout_ms * 1000000);
done:
    if (parts)
        for (size_t i = 0; i < n; i++)
            if (parts[i]) redisFreeCommand(parts[i]);
    rk__free(parts);
    rk__free(plens);
    rk__free(buf);
    return st;
}

rk_status rk__client_pipeline(rk_client *c, size_t n, const rk__cmd *cmds, bool is_read, rk_reply **replies)
{
    return pipeline(c, n, cmds, is_read, replies, 0, false);
}

rk_status rk__client_pipeline_until(rk_client *c, size_t n, const rk__cmd *cmds, bool is_read, rk_reply **replies,
                                    int64_t deadline_ns)
{
    /* 0 is pipeline()'s "from now"; as an absolute time it is long past. */
    return pipeline(c, n, cmds, is_read, replies, deadline_ns ? deadline_ns : 1, false);
}

static rk_status command(const char *fn, rk_client *c, const rk_command_options *o, int argc,
                         const char *const *argv, const size_t *argvlen, rk_reply **reply)
{
    if (reply) *reply = NULL;
    size_t small[RK__SMALL_ARGS], *lens;
    rk__cmd_kind kind;
    int timeout_ms;
    rk_status st = rk__command_begin(fn, c && reply, o, argc, argv, argvlen, small, &lens, &kind, &timeout_ms);
    if (st != RK_OK) return st;
    st = run(c, argc, (const char **)argv, lens, false, reply, timeout_ms, kind == RK__CMD_BLOCKING);
    rk__command_lens_free(lens, argvlen, small);
    return st;
}

rk_status rk_client_command(rk_client *c, int argc, const char *const *argv, const size_t *argvlen,
                            rk_reply **reply)
{
    return command("rk_client_command", c, NULL, argc, argv, argvlen, reply);
}

rk_status rk_client_command_opts(rk_client *c, const rk_command_options *opts, int argc, const char *const *argv,
                                 const size_t *argvlen, rk_reply **reply)
{
    return command("rk_client_command_opts", c, opts, argc, argv, argvlen, reply);
}

rk_status rk_client_ping(rk_client *c)
{
    if (!c) return rk__fail(RK_ERR_INVALID, "rk_client_ping: client is NULL");
    static const char *argv[] = {"PING"};
    static const size_t lens[] = {4};
    rk_reply *r;
    rk_status st = rk__client_run(c, 1, argv, lens, true, &r);
    if (st != RK_OK) return st;
    bool pong = r->type == RK_REPLY_STATUS && r->len == 4 && memcmp(r->str, "PONG", 4) == 0;
    rk_reply_free(r);
    if (pong) return RK_OK;
    rk__client_protocol_error(c);
    return rk__fail(RK_ERR_PROTOCOL, "PING: unexpected reply");
}

void rk__client_protocol_error(rk_client *c)
{
    /* Which connection answered is not known here: every shared one is
     * closed once its queue drains, and the idle ones now. RK_ERR_PROTOCOL
     * always costs the connection it happened on (status.h). */
    for (int i = 0; i < c->n_lanes; i++) rk__lane_poison(&c->lanes[i]);
    pthread_mutex_lock(&c->lock);
    rk__conn *idle[RK_MAX_POOL_SIZE];
    int n = c->n_idle;
    memcpy(idle, c->idle, (size_t)n * sizeof *idle);
    c->n_open -= n;
    c->stats.disconnects += (uint64_t)n;
    c->n_idle = 0;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++) rk__conn_close(idle[i]);
}

rk_status rk_client_stats_get(rk_client *c, rk_client_stats *out)
{
    if (!c || !out) return rk__fail(RK_ERR_INVALID, "rk_client_stats_get: NULL argument");
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    out->circuit = c->health.circuit;
    out->circuit_opened = c->health.opened;
    out->circuit_closed = c->health.closed;
    out->requests += atomic_load_explicit(&c->lane_requests, memory_order_relaxed);
    out->open_connections = c->n_open;
    out->idle_connections = c->n_idle;
    pthread_mutex_unlock(&c->lock);
    return RK_OK;
}

rk_circuit_state rk_client_circuit(rk_client *c)
{
    if (!c) return RK_CIRCUIT_CLOSED;
    pthread_mutex_lock(&c->lock);
    rk_circuit_state s = c->health.circuit;
    pthread_mutex_unlock(&c->lock);
    return s;
}

/* ---- Dedicated connections ------------------------------------------------- */

rk_status rk__client_open_conn(rk_client *c, rk__conn **out)
{
    return rk__conn_open(&c->conn, rk__now_ns() + (int64_t)c->connect_timeout_ms * 1000000, out);
}

int rk__client_backoff_ms(const rk_client *c, int attempt, uint64_t rand)
{
    /* base_ms and max_ms are set at creation and never change. */
    return rk__backoff_ms(c->health.base_ms, c->health.max_ms, attempt, rand);
}

/* ---- What metrics.c reads ---------------------------------------------- */

const struct rk__hist *rk__client_latency(const rk_client *c) { return &c->latency; }

int rk__client_db(const rk_client *c) { return c->conn.db; }

bool rk__client_warn_once(rk_client *c, unsigned bit)
{
    return !(atomic_fetch_or_explicit(&c->warned, bit, memory_order_relaxed) & bit);
}

void rk__client_log(rk_client *c, rk_log_level level, const char *message)
{
    if (!c->log || level < c->log_level) return;
    char saved[RK__ERRMSG_MAX];
    snprintf(saved, sizeof saved, "%s", rk_last_error());
    c->log(level, message, c->log_user);
    rk__fail_str(RK_OK, saved);
}
