/*
 * pubsub.c — rk_pubsub: one dedicated subscriber connection and one
 * thread per handle (contract in include/redkit/pubsub.h), and
 * rk_client_publish.
 *
 * Why a thread that alone owns the connection. A subscribed connection is
 * written to by Redis at any time, and a connection (TLS above all) is
 * used by one thread at a time (conn.h). So callers never touch the
 * socket: subscribe and unsubscribe only record the wish in the handle's
 * table, under its lock, and write a byte to a wake-up pipe; the thread
 * waits in poll() on the socket and on that pipe together
 * (rk__conn_next_push_wake), so it sends at once, and it stops at once
 * when rk_pubsub_free() writes the same byte. Nothing it waits for can
 * hold it past a bound: the poll has a timeout, sends have a deadline,
 * and a server that stops answering is caught by a keep-alive PING.
 *
 * Confirmations by PING. After each batch of SUBSCRIBE/UNSUBSCRIBE
 * commands the thread sends "PING redkit-sync:<n>", n being how many
 * subscribe/unsubscribe calls the batch covers. Redis answers in order, so
 * the pong that carries n proves every earlier command was applied: that
 * is what rk_pubsub_sync() waits for, and the first such pong on a new
 * connection is the moment the handle is live again (the SUBSCRIBED or
 * RESUBSCRIBED event). No per-channel bookkeeping of confirmations.
 *
 * Every connection starts from the whole table: after a reconnect all
 * wanted names are SUBSCRIBEd again and the names given up while
 * disconnected are simply forgotten. Reconnects follow the client's
 * backoff schedule (rk__client_backoff_ms: exponential, full jitter,
 * bounded by reconnect_max_ms).
 *
 * fork(): handles are on a list; pthread_atfork handlers hold every
 * handle's lock across fork() so the child's copy of the table is
 * consistent. A handle made under another fork generation (forkgen.h)
 * than the current one is inert (pubsub.h says what the
 * child gets): the thread does not exist there and the socket is the
 * parent's, so the child only ever abandons it (rk__conn_abandon: no byte
 * sent).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <redkit/pubsub.h>

#include "alloc.h"
#include "client.h"
#include "clock.h"
#include "conn.h"
#include "error.h"
#include "forkgen.h"
#include "mux.h"
#include "pubsub_internal.h"
#include "rand.h"
#include "registry.h"
#include "reply.h"
#include "sink.h"

#define POLL_MS 100          /* longest wait on the socket between looks at the table */
#define PING_EVERY_MS 1000   /* a quiet connection is pinged this often */
#define PING_TIMEOUT_MS 3000 /* and given up when nothing came back */
#define SEND_TIMEOUT_MS 500  /* a write to a server that reads nothing */
#define MAX_ATTEMPT 30       /* backoff exponent cap (the delay is capped anyway) */
#define SYNC_TOKEN "redkit-sync:"

typedef struct sub {
    char *name;
    size_t len;
    bool pattern;
    bool want;  /* subscribed, or to be unsubscribed */
    bool dirty; /* Redis has not been told yet */
} sub;

struct rk_pubsub {
    rk_client *client;
    rk_pubsub_options opts;
    char *label;                 /* the ns label of the metrics */
    pthread_t thread;
    int wake[2];                 /* the pipe: [0] read by the thread, [1] written by callers */
    unsigned fork_gen;
    struct rk_pubsub *fork_next;
    _Atomic bool stop;
    rk__conn *_Atomic conn;      /* the connection now, for a child to abandon */
    _Atomic uint64_t messages, connects, lost;

    /* Below: under lock. */
    pthread_mutex_t lock;
    pthread_cond_t synced;       /* confirmed or live changed, or stop */
    sub *subs;
    size_t n_subs, cap_subs;
    bool dirty;                  /* some sub is dirty */
    uint64_t asked;              /* subscribe/unsubscribe calls so far */
    uint64_t confirmed;          /* calls Redis confirmed on this connection */
    bool live;                   /* connected, first confirmation received */
    uint64_t refused;            /* commands Redis refused so far */
    uint64_t refused_reported;   /* ... of which rk_pubsub_sync() told */
    char refusal[200];           /* Redis's text of the last refusal */
};

/* ---- fork() ------------------------------------------------------------------ */

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static rk_pubsub *handles;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&handles_lock);
    for (rk_pubsub *p = handles; p; p = p->fork_next) pthread_mutex_lock(&p->lock);
}

static void fork_parent(void)
{
    for (rk_pubsub *p = handles; p; p = p->fork_next) pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&handles_lock);
}

static void fork_child(void)
{
    /* This thread took every lock in fork_prepare: released, then made
     * anew (the parent's threads may have left the condition waited on). */
    for (rk_pubsub *p = handles; p; p = p->fork_next) {
        pthread_mutex_unlock(&p->lock);
        rk__lock_init(&p->lock, &p->synced);
    }
    pthread_mutex_unlock(&handles_lock);
}

static void register_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static bool inert(const rk_pubsub *ps) { return ps->fork_gen != rk__fork_generation(); }

static rk_status refuse_inert(const char *fn)
{
    return rk__fail(RK_ERR_INVALID, "%s: the handle was created before fork() in the parent process; create a new "
                                    "one in the child", fn);
}

static void track(rk_pubsub *ps)
{
    pthread_mutex_lock(&handles_lock);
    ps->fork_next = handles;
    handles = ps;
    pthread_mutex_unlock(&handles_lock);
}

static void untrack(rk_pubsub *ps)
{
    pthread_mutex_lock(&handles_lock);
    for (rk_pubsub **at = &handles; *at; at = &(*at)->fork_next)
        if (*at == ps) {
            *at = ps->fork_next;
            break;
        }
    pthread_mutex_unlock(&handles_lock);
}

/* ---- the thread ------------------------------------------------------------- */

static bool stopping(rk_pubsub *ps) { return atomic_load_explicit(&ps->stop, memory_order_acquire); }

static void wake(rk_pubsub *ps)
{
    char b = 1;
    /* A full pipe already holds a wake-up: EAGAIN is fine. */
    ssize_t n = write(ps->wake[1], &b, 1);
    (void)n;
}

static void drain_wake(rk_pubsub *ps)
{
    char buf[64];
    for (int i = 0; i < 64 && read(ps->wake[0], buf, sizeof buf) == (ssize_t)sizeof buf; i++) {}
}

/* Sleep ms, or less when woken to stop; true when stopping. */
static bool nap(rk_pubsub *ps, int ms)
{
    int64_t until = rk__now_ns() + (int64_t)ms * 1000000;
    for (int i = 0; i < 1000 && !stopping(ps); i++) {
        int64_t left = (until - rk__now_ns()) / 1000000;
        if (left <= 0) break;
        struct pollfd p = {.fd = ps->wake[0], .events = POLLIN};
        if (poll(&p, 1, (int)(left < POLL_MS ? left : POLL_MS)) > 0) drain_wake(ps);
    }
    return stopping(ps);
}

static void emit_event(rk_pubsub *ps, rk_pubsub_event ev)
{
    if (ps->opts.on_event) ps->opts.on_event(ev, ps->opts.user);
}

static rk_status send_cmd(rk__conn *conn, int argc, const char **argv, const size_t *lens)
{
    return rk__conn_command(conn, argc, argv, lens, 0, NULL, rk__now_ns() + (int64_t)SEND_TIMEOUT_MS * 1000000);
}

/* The names collected in argv[1..n] (argv[0] is the verb's slot).
 * Subscriptions go one name per command: Redis refuses a whole SUBSCRIBE
 * when its ACL denies one of the channels, and one refused name must not
 * take the others down with it. Unsubscribing is never refused: one
 * command for all. */
static rk_status send_names(rk__conn *conn, const char *verb, bool one_by_one, const char **argv, size_t *lens,
                            size_t n)
{
    if (!n) return RK_OK;
    if (!one_by_one) {
        argv[0] = verb;
        lens[0] = strlen(verb);
        return send_cmd(conn, (int)n + 1, argv, lens);
    }
    rk_status st = RK_OK;
    for (size_t i = 1; i <= n && st == RK_OK; i++) {
        const char *one[2] = {verb, argv[i]};
        size_t one_len[2] = {strlen(verb), lens[i]};
        st = send_cmd(conn, 2, one, one_len);
    }
    return st;
}

/* Tell Redis what changed in the table since the last call (everything,
 * on a fresh connection), then the PING whose pong confirms it. Names
 * given up are removed from the table here, on the thread: only the
 * thread removes entries, so the names it sends stay allocated. */
static rk_status flush_changes(rk_pubsub *ps, rk__conn *conn)
{
    pthread_mutex_lock(&ps->lock);
    if (!ps->dirty) {
        pthread_mutex_unlock(&ps->lock);
        return RK_OK;
    }
    size_t n = ps->n_subs;
    /* Four lists (sub/unsub x channel/pattern), each with a verb slot. */
    const char **argv = rk__malloc((n + 1) * 4 * sizeof *argv);
    size_t *lens = rk__malloc((n + 1) * 4 * sizeof *lens);
    char **gone = rk__malloc((n + 1) * sizeof *gone);
    if (!argv || !lens || !gone) {
        pthread_mutex_unlock(&ps->lock);
        rk__free(argv);
        rk__free(lens);
        rk__free(gone);
        return rk__fail(RK_ERR_NOMEM, "pubsub: out of memory");
    }
    size_t count[4] = {0}, n_gone = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        sub *s = &ps->subs[i];
        if (s->dirty) {
            size_t list = (s->want ? 0 : 2) + (s->pattern ? 1 : 0);
            size_t at = list * (n + 1) + 1 + count[list]++;
            argv[at] = s->name;
            lens[at] = s->len;
            s->dirty = false;
        }
        if (s->want)
            ps->subs[kept++] = *s;
        else
            gone[n_gone++] = s->name;
    }
    ps->n_subs = kept;
    ps->dirty = false;
    uint64_t seq = ps->asked;
    pthread_mutex_unlock(&ps->lock);

    static const char *const verbs[4] = {"SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE"};
    rk_status st = RK_OK;
    for (size_t l = 0; l < 4 && st == RK_OK; l++)
        st = send_names(conn, verbs[l], l < 2, argv + l * (n + 1), lens + l * (n + 1), count[l]);
    if (st == RK_OK) {
        char token[48];
        int tl = snprintf(token, sizeof token, SYNC_TOKEN "%" PRIu64, seq);
        const char *ping[] = {"PING", token};
        size_t ping_len[] = {4, (size_t)tl};
        st = send_cmd(conn, 2, ping, ping_len);
    }
    for (size_t i = 0; i < n_gone; i++) rk__free(gone[i]);
    rk__free(gone);
    rk__free(argv);
    rk__free(lens);
    return st;
}

/* A pong (or, outside subscribed mode, PING's echo) carrying our token:
 * everything asked up to its number is confirmed. True when this is the
 * first confirmation on this connection: the caller then tells on_event
 * and only after that makes the handle live (go_live), so that a
 * rk_pubsub_sync() that returns has seen the event delivered. */
static bool confirm(rk_pubsub *ps, const char *s, size_t len)
{
    size_t tl = strlen(SYNC_TOKEN);
    if (len <= tl || len > tl + 20 || memcmp(s, SYNC_TOKEN, tl) != 0) return false;
    char digits[24];
    memcpy(digits, s + tl, len - tl);
    digits[len - tl] = '\0';
    uint64_t seq = strtoull(digits, NULL, 10);
    pthread_mutex_lock(&ps->lock);
    if (seq > ps->confirmed) ps->confirmed = seq;
    bool went_live = !ps->live;
    if (!went_live) pthread_cond_broadcast(&ps->synced);
    pthread_mutex_unlock(&ps->lock);
    return went_live;
}

static void set_live(rk_pubsub *ps, bool live)
{
    pthread_mutex_lock(&ps->lock);
    ps->live = live;
    pthread_cond_broadcast(&ps->synced);
    pthread_mutex_unlock(&ps->lock);
}

static bool is(const rk_reply *r, const char *word)
{
    size_t n = strlen(word);
    return r->type == RK_REPLY_STRING && r->len == n && memcmp(r->str, word, n) == 0;
}

/* One thing Redis sent. Returns false when the stream cannot be trusted
 * (a shape no subscribed connection produces). *went_live: the handle is
 * now live on this connection. */
static bool handle(rk_pubsub *ps, rk_reply *m, bool *went_live)
{
    if (m->type == RK_REPLY_STRING) { /* PING's echo outside subscribed mode */
        if (confirm(ps, m->str, m->len)) *went_live = true;
        return true;
    }
    if (m->type == RK_REPLY_STATUS) return true; /* a bare PONG */
    if (m->type == RK_REPLY_ERROR) {
        /* A refused subscription (an ACL without the channel): logged,
         * kept for the next rk_pubsub_sync(), not fatal to the connection;
         * the server's text names no secret of ours. */
        int shown = (int)(m->len < 199 ? m->len : 199);
        char line[300];
        snprintf(line, sizeof line, "pubsub: Redis refused a command: %.*s", shown, m->str);
        rk__client_log(ps->client, RK_LOG_WARN, line);
        pthread_mutex_lock(&ps->lock);
        ps->refused++;
        snprintf(ps->refusal, sizeof ps->refusal, "%.*s", shown, m->str);
        pthread_mutex_unlock(&ps->lock);
        return true;
    }
    if (m->type != RK_REPLY_ARRAY || m->elements < 2 || m->element[0]->type != RK_REPLY_STRING) return false;
    const rk_reply *kind = m->element[0];
    if (is(kind, "message") && m->elements == 3 && m->element[1]->type == RK_REPLY_STRING &&
        m->element[2]->type == RK_REPLY_STRING) {
        atomic_fetch_add_explicit(&ps->messages, 1, memory_order_relaxed);
        ps->opts.on_message(m->element[1]->str, NULL, m->element[2]->str, m->element[2]->len, ps->opts.user);
        return true;
    }
    if (is(kind, "pmessage") && m->elements == 4 && m->element[1]->type == RK_REPLY_STRING &&
        m->element[2]->type == RK_REPLY_STRING && m->element[3]->type == RK_REPLY_STRING) {
        atomic_fetch_add_explicit(&ps->messages, 1, memory_order_relaxed);
        ps->opts.on_message(m->element[2]->str, m->element[1]->str, m->element[3]->str, m->element[3]->len,
                            ps->opts.user);
        return true;
    }
    if (is(kind, "pong")) {
        if (m->element[1]->type == RK_REPLY_STRING && confirm(ps, m->element[1]->str, m->element[1]->len))
            *went_live = true;
        return true;
    }
    return is(kind, "subscribe") || is(kind, "psubscribe") || is(kind, "unsubscribe") || is(kind, "punsubscribe");
}

/* Everything wanted is to be sent again on a new connection; what was
 * given up is forgotten (this connection never had it). */
static void start_over(rk_pubsub *ps)
{
    pthread_mutex_lock(&ps->lock);
    size_t kept = 0;
    for (size_t i = 0; i < ps->n_subs; i++) {
        sub *s = &ps->subs[i];
        if (!s->want) {
            rk__free(s->name);
            continue;
        }
        s->dirty = true;
        ps->subs[kept++] = *s;
    }
    ps->n_subs = kept;
    ps->dirty = true; /* even with nothing to subscribe: the PING makes the handle live */
    ps->confirmed = 0;
    pthread_mutex_unlock(&ps->lock);
}

/* Serve one connection until it fails or the handle stops. Returns
 * whether it went live. */
static bool session(rk_pubsub *ps, rk__conn *conn, bool *ever_live)
{
    start_over(ps);
    bool live = false;
    int64_t heard = rk__now_ns(), pinged = 0;
    for (;;) {
        if (stopping(ps)) return live;
        if (flush_changes(ps, conn) != RK_OK) return live;
        rk_reply *m;
        rk_status st = rk__conn_next_push_wake(conn, ps->wake[0], &m, rk__now_ns() + (int64_t)POLL_MS * 1000000);
        int64_t now = rk__now_ns();
        if (st == RK_OK) {
            bool went_live = false;
            bool ok = handle(ps, m, &went_live);
            rk_reply_free(m);
            if (!ok) {
                rk__fail(RK_ERR_PROTOCOL, "pubsub: unexpected message from %s", rk__conn_peer(conn));
                return live;
            }
            if (went_live) {
                live = true;
                emit_event(ps, *ever_live ? RK_PUBSUB_RESUBSCRIBED : RK_PUBSUB_SUBSCRIBED);
                *ever_live = true;
                set_live(ps, true);
            }
            heard = now;
            pinged = 0;
            continue;
        }
        if (st != RK_MISS) return live;
        /* Woken (or timed out): empty the pipe before the next look at
         * the table, so that a wish recorded after that look still wakes
         * the next wait. Only here, not per message: a burst of messages
         * costs no read() of the pipe. */
        drain_wake(ps);
        if (pinged && now - pinged > (int64_t)PING_TIMEOUT_MS * 1000000) return live; /* the server went silent */
        if (!pinged && now - heard > (int64_t)PING_EVERY_MS * 1000000) {
            const char *ping[] = {"PING", "redkit-keepalive"};
            if (send_cmd(conn, 2, ping, NULL) != RK_OK) return live;
            pinged = now;
        }
    }
}

static void *run(void *arg)
{
    rk_pubsub *ps = arg;
    uint64_t rng = (uint64_t)rk__now_ns() ^ (uint64_t)(uintptr_t)ps;
    int attempt = 0;
    bool ever_live = false;
    while (!stopping(ps)) {
        rk__conn *conn = NULL;
        if (rk__client_open_conn(ps->client, &conn) != RK_OK) {
            if (attempt < MAX_ATTEMPT) attempt++;
            if (nap(ps, rk__client_backoff_ms(ps->client, attempt, rk__splitmix64(&rng)))) break;
            continue;
        }
        attempt = 0;
        atomic_store_explicit(&ps->conn, conn, memory_order_release);
        atomic_fetch_add_explicit(&ps->connects, 1, memory_order_relaxed);
        bool was_live = session(ps, conn, &ever_live);
        set_live(ps, false);
        atomic_store_explicit(&ps->conn, NULL, memory_order_release);
        rk__conn_close(conn);
        if (was_live && !stopping(ps)) {
            atomic_fetch_add_explicit(&ps->lost, 1, memory_order_relaxed);
            emit_event(ps, RK_PUBSUB_LOST);
        }
        /* The first reconnect is immediate; failures then back off. A
         * connection that never went live counts as a failure, so a server
         * that accepts and drops at once is not hammered. */
        if (!was_live) {
            if (attempt < MAX_ATTEMPT) attempt++;
            if (nap(ps, rk__client_backoff_ms(ps->client, attempt, rk__splitmix64(&rng)))) break;
        }
    }
    return NULL;
}

/* ---- the handle ----------------------------------------------------------- */

extern const rk__module_ops rk__pubsub_ops;

static rk_status open_pipe(int fds[2])
{
    if (pipe(fds) != 0) return rk__fail(RK_ERR_SYSTEM, "pubsub: pipe: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
            close(fds[0]);
            close(fds[1]);
            return rk__fail(RK_ERR_SYSTEM, "pubsub: fcntl: %s", strerror(errno));
        }
    }
    return RK_OK;
}

rk_status rk__pubsub_new_labelled(rk_client *client, const rk_pubsub_options *opts, const char *label,
                                  rk_pubsub **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_pubsub_new: out is NULL");
    *out = NULL;
    if (!client || !opts) return rk__fail(RK_ERR_INVALID, "rk_pubsub_new: NULL client or options");
    if (!opts->on_message) return rk__fail(RK_ERR_INVALID, "rk_pubsub_new: on_message is NULL");
    pthread_once(&fork_once, register_atfork);
    rk__fork_watch();
    rk_pubsub *ps = rk__calloc(1, sizeof *ps);
    if (!ps) return rk__fail(RK_ERR_NOMEM, "pubsub: out of memory");
    ps->opts = *opts;
    ps->fork_gen = rk__fork_generation();
    ps->wake[0] = ps->wake[1] = -1;
    if (!(ps->label = rk__strdup(label))) {
        rk__free(ps);
        return rk__fail(RK_ERR_NOMEM, "pubsub: out of memory");
    }
    rk_status st = rk__lock_init(&ps->lock, &ps->synced);
    if (st == RK_OK && (st = open_pipe(ps->wake)) != RK_OK) {
        pthread_mutex_destroy(&ps->lock);
        pthread_cond_destroy(&ps->synced);
    }
    if (st == RK_OK && (st = rk__registry_add(client, ps, &rk__pubsub_ops)) != RK_OK) {
        close(ps->wake[0]);
        close(ps->wake[1]);
        pthread_mutex_destroy(&ps->lock);
        pthread_cond_destroy(&ps->synced);
    }
    if (st != RK_OK) {
        rk__free(ps->label);
        rk__free(ps);
        return st;
    }
    ps->client = client;
    int e = pthread_create(&ps->thread, NULL, run, ps);
    if (e != 0) {
        rk__registry_remove(client, ps);
        close(ps->wake[0]);
        close(ps->wake[1]);
        pthread_mutex_destroy(&ps->lock);
        pthread_cond_destroy(&ps->synced);
        rk__free(ps->label);
        rk__free(ps);
        return rk__fail(RK_ERR_SYSTEM, "pubsub: cannot start its thread (%s)", strerror(e));
    }
    track(ps);
    *out = ps;
    return RK_OK;
}

rk_status rk_pubsub_new(rk_client *client, const rk_pubsub_options *opts, rk_pubsub **out)
{
    return rk__pubsub_new_labelled(client, opts, "pubsub", out);
}

static void free_subs(rk_pubsub *ps)
{
    for (size_t i = 0; i < ps->n_subs; i++) rk__free(ps->subs[i].name);
    rk__free(ps->subs);
}

void rk_pubsub_free(rk_pubsub *ps)
{
    if (!ps) return;
    untrack(ps);
    if (inert(ps)) {
        /* The child of a fork(): no thread here, and the socket is the
         * parent's. The locks were made fresh by fork_child. */
        rk__conn *conn = atomic_load_explicit(&ps->conn, memory_order_acquire);
        if (conn) rk__conn_abandon(conn);
    } else {
        atomic_store_explicit(&ps->stop, true, memory_order_release);
        wake(ps);
        pthread_join(ps->thread, NULL);
    }
    rk__registry_remove(ps->client, ps);
    close(ps->wake[0]);
    close(ps->wake[1]);
    pthread_mutex_destroy(&ps->lock);
    pthread_cond_destroy(&ps->synced);
    free_subs(ps);
    rk__free(ps->label);
    rk__free(ps);
}

static rk_status check_name(const char *fn, const char *name)
{
    if (!name) return rk__fail(RK_ERR_INVALID, "%s: NULL name", fn);
    size_t n = strnlen(name, RK_PUBSUB_MAX_NAME_BYTES + 1);
    if (n == 0) return rk__fail(RK_ERR_INVALID, "%s: empty name", fn);
    if (n > RK_PUBSUB_MAX_NAME_BYTES)
        return rk__fail(RK_ERR_INVALID, "%s: name longer than %d bytes", fn, RK_PUBSUB_MAX_NAME_BYTES);
    return RK_OK;
}

/* Record a wish for name (want: subscribe; else unsubscribe) and wake the
 * thread. */
static rk_status change(rk_pubsub *ps, const char *fn, const char *name, bool pattern, bool want)
{
    if (!ps) return rk__fail(RK_ERR_INVALID, "%s: NULL handle", fn);
    rk_status st = check_name(fn, name);
    if (st != RK_OK) return st;
    if (inert(ps)) return refuse_inert(fn);
    size_t len = strlen(name);
    pthread_mutex_lock(&ps->lock);
    sub *s = NULL;
    for (size_t i = 0; i < ps->n_subs; i++)
        if (ps->subs[i].pattern == pattern && ps->subs[i].len == len && memcmp(ps->subs[i].name, name, len) == 0) {
            s = &ps->subs[i];
            break;
        }
    if (!s && want) {
        if (ps->n_subs == ps->cap_subs) {
            size_t cap = ps->cap_subs ? ps->cap_subs * 2 : 8;
            sub *grown = rk__realloc(ps->subs, cap * sizeof *grown);
            if (!grown) st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
            else {
                ps->subs = grown;
                ps->cap_subs = cap;
            }
        }
        char *copy = st == RK_OK ? rk__strdup(name) : NULL;
        if (st == RK_OK && !copy) st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", fn);
        if (st == RK_OK) {
            s = &ps->subs[ps->n_subs++];
            *s = (sub){.name = copy, .len = len, .pattern = pattern};
        }
    }
    if (s && s->want != want) {
        s->want = want;
        s->dirty = true;
        ps->dirty = true;
    }
    if (st == RK_OK) {
        ps->asked++;
        ps->dirty = true; /* even a call that changed nothing gets a confirmation to wait for */
    }
    pthread_mutex_unlock(&ps->lock);
    if (st == RK_OK) wake(ps);
    return st;
}

rk_status rk_pubsub_subscribe(rk_pubsub *ps, const char *channel)
{
    return change(ps, "rk_pubsub_subscribe", channel, false, true);
}

rk_status rk_pubsub_psubscribe(rk_pubsub *ps, const char *pattern)
{
    return change(ps, "rk_pubsub_psubscribe", pattern, true, true);
}

rk_status rk_pubsub_unsubscribe(rk_pubsub *ps, const char *channel)
{
    return change(ps, "rk_pubsub_unsubscribe", channel, false, false);
}

rk_status rk_pubsub_punsubscribe(rk_pubsub *ps, const char *pattern)
{
    return change(ps, "rk_pubsub_punsubscribe", pattern, true, false);
}

rk_status rk_pubsub_sync(rk_pubsub *ps, int timeout_ms)
{
    if (!ps) return rk__fail(RK_ERR_INVALID, "rk_pubsub_sync: NULL handle");
    if (timeout_ms < 0 || timeout_ms > RK_MAX_TIMEOUT_MS)
        return rk__fail(RK_ERR_INVALID, "rk_pubsub_sync: timeout_ms %d is outside 0..%d", timeout_ms,
                        RK_MAX_TIMEOUT_MS);
    if (inert(ps)) return refuse_inert("rk_pubsub_sync");
    if (pthread_equal(pthread_self(), ps->thread))
        return rk__fail(RK_ERR_INVALID, "rk_pubsub_sync: called from the handle's own callback");
    int64_t deadline = timeout_ms ? rk__now_ns() + (int64_t)timeout_ms * 1000000 : rk__client_deadline(ps->client);
    struct timespec until = {.tv_sec = (time_t)(deadline / 1000000000), .tv_nsec = (long)(deadline % 1000000000)};
    pthread_mutex_lock(&ps->lock);
    uint64_t target = ps->asked;
    int e = 0;
    for (int i = 0; i < RK__MAX_WAKEUPS && e == 0 && !(ps->live && ps->confirmed >= target); i++)
        e = pthread_cond_timedwait(&ps->synced, &ps->lock, &until);
    bool ok = ps->live && ps->confirmed >= target;
    bool refused = ok && ps->refused != ps->refused_reported;
    char refusal[sizeof ps->refusal];
    if (refused) {
        ps->refused_reported = ps->refused;
        memcpy(refusal, ps->refusal, sizeof refusal);
    }
    pthread_mutex_unlock(&ps->lock);
    if (refused)
        return rk__fail(RK_ERR_SERVER, "rk_pubsub_sync: Redis refused a subscription (the others stand): %s",
                        refusal);
    if (ok) return RK_OK;
    return rk__fail(RK_ERR_TIMEOUT, "rk_pubsub_sync: subscriptions not confirmed within the timeout%s",
                    atomic_load_explicit(&ps->conn, memory_order_acquire) ? "" : " (not connected to Redis)");
}

rk_status rk_pubsub_stats_get(rk_pubsub *ps, rk_pubsub_stats *out)
{
    if (!ps || !out) return rk__fail(RK_ERR_INVALID, "rk_pubsub_stats_get: NULL argument");
    *out = (rk_pubsub_stats){
        .messages = atomic_load_explicit(&ps->messages, memory_order_relaxed),
        .connects = atomic_load_explicit(&ps->connects, memory_order_relaxed),
        .lost = atomic_load_explicit(&ps->lost, memory_order_relaxed),
    };
    if (inert(ps)) return RK_OK;
    pthread_mutex_lock(&ps->lock);
    for (size_t i = 0; i < ps->n_subs; i++) out->subscriptions += ps->subs[i].want;
    out->live = ps->live;
    pthread_mutex_unlock(&ps->lock);
    return RK_OK;
}

/* ---- metrics ------------------------------------------------------------------ */

typedef struct family {
    const char *name, *help;
    size_t offset;
} family;

static const family families[] = {
    {"redkit_pubsub_messages_total", "Pub/Sub messages delivered to callbacks.", offsetof(rk_pubsub, messages)},
    {"redkit_pubsub_connects_total", "Pub/Sub connections made (first and reconnects).",
     offsetof(rk_pubsub, connects)},
    {"redkit_pubsub_lost_total", "Pub/Sub connections lost while subscribed (messages may have been missed).",
     offsetof(rk_pubsub, lost)},
};

static uint64_t counter(const rk_pubsub *ps, size_t offset)
{
    return atomic_load_explicit((_Atomic uint64_t *)((char *)ps + offset), memory_order_relaxed);
}

/* One sample per label: handles with the same label are summed. */
static void emit(void *const *hs, size_t n, rk__sink *sink)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        rk__sink_family(sink, families[f].name, "counter", families[f].help);
        for (size_t i = 0; i < n; i++) {
            const rk_pubsub *a = hs[i];
            bool first = true;
            for (size_t j = 0; j < i && first; j++) first = strcmp(((const rk_pubsub *)hs[j])->label, a->label) != 0;
            if (!first) continue;
            uint64_t sum = 0;
            for (size_t j = i; j < n; j++)
                if (strcmp(((const rk_pubsub *)hs[j])->label, a->label) == 0) sum += counter(hs[j], families[f].offset);
            rk__sink_u64(sink, families[f].name, a->label, NULL, NULL, sum);
        }
    }
}

const rk__module_ops rk__pubsub_ops = {.kind = "pubsub", .emit = emit};

/* ---- publish -------------------------------------------------------------------- */

rk_status rk_client_publish(rk_client *client, const char *channel, const void *payload, size_t len,
                            long long *receivers)
{
    if (receivers) *receivers = 0;
    if (!client) return rk__fail(RK_ERR_INVALID, "rk_client_publish: NULL client");
    rk_status st = check_name("rk_client_publish", channel);
    if (st != RK_OK) return st;
    if (!payload && len) return rk__fail(RK_ERR_INVALID, "rk_client_publish: NULL payload with a length");
    const char *argv[] = {"PUBLISH", channel, payload ? payload : ""};
    size_t lens[] = {7, strlen(channel), len};
    rk_reply *r = NULL;
    st = rk__client_run(client, 3, argv, lens, false, &r);
    if (st != RK_OK) return st;
    if (r->type != RK_REPLY_INTEGER) {
        rk_reply_free(r);
        rk__client_protocol_error(client);
        return rk__fail(RK_ERR_PROTOCOL, "PUBLISH: unexpected reply");
    }
    if (receivers) *receivers = r->integer;
    rk_reply_free(r);
    return RK_OK;
}
