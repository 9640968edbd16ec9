/*
 * conn.c — a single Redis connection over a socket that redkit owns.
 *
 * hiredis is used for the protocol only (redisFormatCommandArgv to encode,
 * redisReader to decode). The socket is non-blocking and every wait goes
 * through poll() with the time left before the caller's deadline, so no
 * server or network behaviour can hold a caller longer than its timeout:
 * a blocking hiredis context cannot promise that for connect, and its
 * per-socket timeouts restart on every partial read.
 *
 * The request path of a plain (TCP or Unix) connection is send → recv, the
 * two system calls a blocking client makes: once connected, the socket is
 * switched to blocking mode, every send and every short wait is made
 * non-blocking per call (MSG_DONTWAIT, then poll()), and a read with time
 * to spare blocks in recv() under a receive timeout (SO_RCVTIMEO) that is
 * shorter than that time by more than the kernel's timer can overshoot
 * (see may_block). A read that ran out of slice just loops and looks at
 * the deadline again, so no read blocks past it; a poll() before every
 * read would cost one system call per request — a few per cent of a
 * loopback round trip — for nothing, since the reply is almost never
 * there yet when the command has just been sent. TLS keeps a non-blocking
 * socket under OpenSSL (tls.c). (A pooled connection that sat idle also
 * gets a zero-timeout poll first; see client.c.)
 *
 * A host name is resolved by glibc's getaddrinfo_a(), on glibc's threads,
 * and waited for only until the same deadline (see rk__resolve), because
 * plain getaddrinfo() blocks for as long as the resolver's own timeouts
 * and retries say, which is seconds and not ours to choose.
 *
 * TLS (tls.c) slots in under the same two places, "send these bytes" and
 * "read some bytes", with the same deadlines; everything above them — the
 * RESP reader, the handshake pipeline, marking a connection broken — is
 * the same for both transports, so reconnection, timeouts and the circuit
 * breaker cannot behave differently over TLS.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "alloc.h"
#include "conn.h"
#include "fdwait.h"
#include "error.h"
#include "reply.h"
#include "reply_guard.h"
#include "tls.h"

/* Keepalive: notice a dead peer (a crashed host, a NAT that dropped the
 * mapping) within about 15 + 3*5 = 30 s even on an idle connection. */
#define KEEPALIVE_IDLE_S 15
#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT 3

/* Bytes read per recv(); large values simply take several reads. */
#define READ_CHUNK 16384

#define MAX_WAKEUPS RK__MAX_WAKEUPS /* fdwait.h */

/* A receive timeout (SO_RCVTIMEO) becomes whole jiffies rounded up, and
 * the kernel's timer wheel may fire a timer up to an eighth of its length
 * late: a blocking read is allowed only when the time left covers the
 * slice, an eighth more, and this (two jiffies at HZ=100). */
#define SLICE_SLACK_NS (20 * 1000000LL)

/* The shortest time left for which a read blocks in recv(); below it the
 * read waits under poll(), to the millisecond. */
#define SLICE_MIN_LEFT_NS (50 * 1000000LL)

struct rk__conn {
    int fd;
    rk__tls *tls;   /* NULL for plain TCP and Unix sockets */
    bool blocking;  /* the socket is in blocking mode: plain, connected */
    int64_t slice_ns; /* its SO_RCVTIMEO; 0 none set yet */
    bool broken;
    bool malformed; /* the reply functions refused the stream (reply.h) */
    int64_t last_used_ns;
    int64_t opened_ns; /* when the handshake completed */
    redisReader *reader;
    rk__reply_guard guard; /* sees every byte before the reader does */
    const _Atomic size_t *max_reply; /* the client's bound (conn.h) */
    char peer[96]; /* "host:port" or the socket path, for messages */
};

/* Wait until fd is ready for `events` or the deadline passes. The timeout
 * is rounded up to whole milliseconds so a wait never ends early. */
static rk_status wait_fd(rk__conn *c, short events, int64_t deadline_ns, const char *doing)
{
    return rk__fd_wait(c->fd, events, deadline_ns, doing, c->peer);
}

static rk_status mark_broken(rk__conn *c, rk_status st)
{
    c->broken = true;
    return st;
}

static void set_socket_options(int fd, bool tcp)
{
    if (!tcp) return;
    int one = 1;
    /* Commands are small and latency-bound: never let Nagle hold them. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_COUNT;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#ifdef TCP_USER_TIMEOUT
    /* Data unacknowledged this long means the peer is gone, even while
     * keepalive is not yet due (it only probes idle connections). */
    unsigned user_timeout_ms = (KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT) * 1000;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
#endif
}

/* Non-blocking connect to one address, finished under poll(). On success
 * c->fd is the connected socket. */
static rk_status connect_addr(rk__conn *c, const struct sockaddr *addr, socklen_t addrlen,
                              int64_t deadline_ns)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rk__fail(errno == EAFNOSUPPORT ? RK_ERR_UNAVAILABLE : RK_ERR_SYSTEM, "socket for %s: %s",
                        c->peer, strerror(errno));
    c->fd = fd;
    if (connect(fd, addr, addrlen) != 0) {
        if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN) {
            int e = errno;
            close(fd);
            c->fd = -1;
            return rk__fail(RK_ERR_UNAVAILABLE, "connect to %s: %s", c->peer, strerror(e));
        }
        rk_status st = wait_fd(c, POLLOUT, deadline_ns, "connect to");
        int err = 0;
        socklen_t len = sizeof err;
        if (st == RK_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (st == RK_OK && err != 0)
            st = rk__fail(RK_ERR_UNAVAILABLE, "connect to %s: %s", c->peer, strerror(err));
        if (st != RK_OK) {
            close(fd);
            c->fd = -1;
            return st;
        }
    }
    set_socket_options(fd, addr->sa_family != AF_UNIX);
    return RK_OK;
}

static rk_status connect_unix(rk__conn *c, const char *path, int64_t deadline_ns)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof sa.sun_path)
        return rk__fail(RK_ERR_INVALID, "unix socket path longer than %zu bytes",
                        sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, len + 1);
    return connect_addr(c, (struct sockaddr *)&sa, sizeof sa, deadline_ns);
}

/* ---- Resolving a host name within the deadline ------------------------ */

/* One lookup handed to getaddrinfo_a(): the request and everything it
 * points to — hints, service, host — in one block, because glibc reads
 * and writes them from its own thread until the lookup is over, which may
 * be long after the caller has given up on it.
 *
 * The caller does not wait with gai_suspend(): its timed wait has a race
 * in glibc (up to 2.36 at least) — a lookup that finishes just as the wait
 * times out leaves the waiter's stack entry on the request's list, and
 * glibc writes through it after the waiter has returned, corrupting
 * whatever lives there by then. Instead glibc's completion notice
 * (SIGEV_THREAD: lookup_done, on a thread glibc starts for it) sets `done`
 * under the block's mutex and signals the caller, who waits on a
 * monotonic condition variable until its deadline.
 *
 * Exactly one side frees the block, decided under the mutex: the caller
 * when the lookup ended before it let go, or when gai_cancel() removed it
 * before it started (glibc then sends no notice); otherwise the caller
 * sets `abandoned` and the notice, when the lookup ends, frees the block
 * and its result. If glibc cannot deliver the notice at all (its own
 * malloc or thread creation failing) an abandoned block is never freed: a
 * leak of one small block under exhaustion, never a use after free.
 *
 * The block comes from libc, not redkit's allocator: it can outlive every
 * call and handle, and it is freed on a thread redkit does not run, when
 * the user's allocator may already have been replaced (docs/alloc.md). */
typedef struct lookup {
    struct gaicb cb; /* first: glibc's queue points at the block's start */
    struct addrinfo hints;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* on CLOCK_MONOTONIC, like every deadline */
    bool done;              /* the notice came; guarded by lock */
    bool abandoned;         /* the caller let go; guarded by lock */
    char service[8];
    char host[];
} lookup;

static atomic_long lookups_alive;

long rk__resolve_pending(void) { return atomic_load_explicit(&lookups_alive, memory_order_acquire); }

static void lookup_free(lookup *l)
{
    if (l->cb.ar_result) freeaddrinfo(l->cb.ar_result);
    pthread_cond_destroy(&l->changed);
    pthread_mutex_destroy(&l->lock);
    free(l);
    atomic_fetch_sub_explicit(&lookups_alive, 1, memory_order_release);
}

/* glibc's completion notice. It touches nothing but the block. */
static void lookup_done(union sigval v)
{
    lookup *l = v.sival_ptr;
    pthread_mutex_lock(&l->lock);
    l->done = true;
    bool mine = l->abandoned;
    if (!mine) pthread_cond_signal(&l->changed);
    pthread_mutex_unlock(&l->lock);
    if (mine) lookup_free(l);
}

/* The caller lets go of a lookup that has not ended for it. */
static void lookup_give_up(lookup *l)
{
    if (gai_cancel(&l->cb) == EAI_CANCELED) { /* never started: no notice */
        lookup_free(l);
        return;
    }
    pthread_mutex_lock(&l->lock);
    bool done = l->done;
    l->abandoned = !done;
    pthread_mutex_unlock(&l->lock);
    if (done) lookup_free(l);
}

/* ---- Loading what glibc's resolver threads need to exit --------------
 *
 * getaddrinfo_a() runs lookups on threads glibc starts, which end through
 * pthread_exit(). glibc unwinds an exiting thread with libgcc_s.so.1, and
 * loads that library (dlopen, so a file descriptor) the first time any
 * thread of the process exits that way; when the load fails it calls
 * __libc_fatal(), which aborts the process ("libgcc_s.so.1 must be
 * installed for pthread_exit to work"). A service that runs out of file
 * descriptors at the moment of its first lookup would be killed by its
 * Redis library. So once per process, before any lookup, one short thread
 * of our own exits through pthread_exit(): glibc loads the library then,
 * with descriptors to spare, and keeps it for good (glibc 2.34 and later
 * hold it in a global handle, older ones in their cancellation support).
 * If that thread cannot be started (threads exhausted) nothing is marked
 * done and the next client tries again. */
static atomic_bool unwinder_loaded;

static void *exit_at_once(void *arg)
{
    (void)arg;
    pthread_exit(NULL);
}

void rk__resolver_prepare(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (!host || inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) return;
    if (atomic_load_explicit(&unwinder_loaded, memory_order_acquire)) return;
    pthread_t t;
    if (pthread_create(&t, NULL, exit_at_once, NULL) != 0) return;
    if (pthread_join(t, NULL) == 0) atomic_store_explicit(&unwinder_loaded, true, memory_order_release);
}

static lookup *lookup_new(const char *host, int port)
{
    size_t hlen = strlen(host);
    lookup *l = calloc(1, sizeof *l + hlen + 1);
    if (!l) return NULL;
    pthread_condattr_t attr;
    bool ok = pthread_condattr_init(&attr) == 0;
    if (ok) {
        ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&l->changed, &attr) == 0;
        pthread_condattr_destroy(&attr);
    }
    if (!ok || pthread_mutex_init(&l->lock, NULL) != 0) {
        if (ok) pthread_cond_destroy(&l->changed);
        free(l);
        return NULL;
    }
    memcpy(l->host, host, hlen + 1);
    snprintf(l->service, sizeof l->service, "%d", port);
    l->hints = (struct addrinfo){.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    l->cb.ar_name = l->host;
    l->cb.ar_service = l->service;
    l->cb.ar_request = &l->hints;
    atomic_fetch_add_explicit(&lookups_alive, 1, memory_order_relaxed);
    return l;
}

/* Is this process short of descriptors (or of the memory for one) right
 * now? One socket opened and closed: asked only after a lookup failed. */
static int descriptor_shortage(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    return errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS ? errno : 0;
}

/* A lookup that ended in failure. Only an answer about the name (it does
 * not exist, the DNS server failed or did not answer) says something about
 * where Redis is; this machine failing the resolver — out of descriptors
 * (it opens /etc/hosts, its NSS modules and sockets), threads or memory —
 * is reported as RK_ERR_SYSTEM (RK_ERR_NOMEM for EAI_MEMORY), so that the
 * reconnect schedule and the breaker, which count only failures of the
 * server or the network, do not blame Redis for it (docs/resilience.md).
 * glibc does not always say so: with no descriptor left it cannot load
 * the module that reads /etc/hosts and answers "Name or service not
 * known". So every failure first checks whether the process can still
 * open a descriptor. The errno of EAI_SYSTEM was glibc's thread's and is
 * lost. */
static rk_status resolve_failed(const char *host, int gai)
{
    int short_of = descriptor_shortage();
    if (short_of)
        return rk__fail(RK_ERR_SYSTEM, "resolve %s: this process is short of file descriptors (%s)", host,
                        strerror(short_of));
    if (gai == EAI_MEMORY) return rk__fail(RK_ERR_NOMEM, "resolve %s: the resolver ran out of memory", host);
    if (gai == EAI_SYSTEM)
        return rk__fail(RK_ERR_SYSTEM, "resolve %s: the resolver failed locally (out of file descriptors, "
                                       "threads or memory?)", host);
    return rk__fail(RK_ERR_UNAVAILABLE, "resolve %s: %s", host, gai_strerror(gai));
}

rk_status rk__resolve(const char *host, int port, int64_t deadline_ns, struct addrinfo **out)
{
    *out = NULL;
    if (rk__now_ns() >= deadline_ns) return rk__fail(RK_ERR_TIMEOUT, "resolving %s: timed out", host);
    lookup *l = lookup_new(host, port);
    if (!l) return rk__fail(RK_ERR_NOMEM, "resolving %s: out of memory", host);

    struct sigevent notice = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = lookup_done};
    notice.sigev_value.sival_ptr = l;
    struct gaicb *list[1] = {&l->cb};
    int gai = getaddrinfo_a(GAI_NOWAIT, list, 1, &notice);
    if (gai != 0) {
        /* Not queued (glibc still sends the notice then), or queued
         * without one: either way the give-up path sorts out who frees. */
        int e = errno;
        lookup_give_up(l);
        return rk__fail(RK_ERR_SYSTEM, "resolving %s: %s", host, gai == EAI_SYSTEM ? strerror(e) : gai_strerror(gai));
    }

    pthread_mutex_lock(&l->lock);
    struct timespec until = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    /* Bounded in count as well as time: spurious wake-ups are retried. */
    for (int i = 0; i < MAX_WAKEUPS && !l->done && rk__now_ns() < deadline_ns; i++)
        pthread_cond_timedwait(&l->changed, &l->lock, &until);
    bool done = l->done;
    pthread_mutex_unlock(&l->lock);
    if (!done) {
        lookup_give_up(l);
        return rk__fail(RK_ERR_TIMEOUT, "resolving %s: timed out", host);
    }

    /* The notice has come and gone: the block is the caller's alone. */
    gai = gai_error(&l->cb);
    if (gai != 0) {
        rk_status st = resolve_failed(host, gai);
        lookup_free(l);
        return st;
    }
    *out = l->cb.ar_result;
    l->cb.ar_result = NULL;
    lookup_free(l);
    if (!*out) return rk__fail(RK_ERR_UNAVAILABLE, "resolve %s: no address", host);
    return RK_OK;
}

static rk_status connect_tcp(rk__conn *c, const char *host, int port, int64_t deadline_ns)
{
    /* IP literals skip the resolver entirely; only names pay for it. */
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &v4.sin_addr) == 1)
        return connect_addr(c, (struct sockaddr *)&v4, sizeof v4, deadline_ns);
    if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1)
        return connect_addr(c, (struct sockaddr *)&v6, sizeof v6, deadline_ns);

    struct addrinfo *res = NULL;
    rk_status st = rk__resolve(host, port, deadline_ns, &res);
    if (st != RK_OK) return st;
    st = RK_ERR_UNAVAILABLE;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        st = connect_addr(c, ai->ai_addr, ai->ai_addrlen, deadline_ns);
        if (st == RK_OK || st == RK_ERR_TIMEOUT) break;
    }
    freeaddrinfo(res);
    return st;
}

/* Bytes a plain connection writes between two looks at the deadline: a
 * socket that keeps taking data would otherwise hold one send() for
 * tens of milliseconds on a large buffer. */
#define SEND_CHUNK (256 * 1024)

/* Write len bytes on a plain connection by deadline_ns; *sent says how
 * many went. RK_ERR_TIMEOUT leaves the connection unmarked, the stream
 * intact up to *sent (the caller decides); any other failure marks it
 * broken. The deadline is looked at between pieces of SEND_CHUNK bytes
 * too, so a large write that the socket keeps taking ends by then. */
static rk_status send_plain(rk__conn *c, const char *buf, size_t len, int64_t deadline_ns, size_t *sent)
{
    *sent = 0;
    while (*sent < len) {
        size_t chunk = len - *sent < SEND_CHUNK ? len - *sent : SEND_CHUNK;
        ssize_t n = send(c->fd, buf + *sent, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            *sent += (size_t)n;
            if (*sent < len && rk__now_ns() >= deadline_ns)
                return rk__fail(RK_ERR_TIMEOUT, "write to %s: timed out", c->peer);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rk_status st = wait_fd(c, POLLOUT, deadline_ns, "write to");
            if (st == RK_ERR_TIMEOUT) return st;
            if (st != RK_OK) return mark_broken(c, st);
            continue;
        }
        return mark_broken(c, rk__fail(RK_ERR_UNAVAILABLE, "write to %s: %s", c->peer,
                                       n < 0 ? strerror(errno) : "nothing written"));
    }
    return RK_OK;
}

/* Write all len bytes by deadline_ns, or mark the connection broken: a
 * write stopped half-way leaves the stream unusable. */
static rk_status send_all(rk__conn *c, const char *buf, size_t len, int64_t deadline_ns)
{
    if (c->tls) {
        rk_status st = rk__tls_write(c->tls, buf, len, deadline_ns);
        return st == RK_OK ? st : mark_broken(c, st);
    }
    size_t sent;
    rk_status st = send_plain(c, buf, len, deadline_ns, &sent);
    return st == RK_ERR_TIMEOUT ? mark_broken(c, st) : st;
}

/* May a read with `left` ns to go block in recv()? Only on a blocking
 * socket, and only if its receive timeout, overshoot included, ends
 * before the deadline. The timeout is set on the first read with enough
 * time, to three quarters of what that read may wait (so later calls,
 * which have spent a little of their budget, still fit), and lowered the
 * same way for a read that has less time but still enough; it is never
 * raised, so calls with mixed timeouts cost at most one setsockopt() each
 * time a shorter one comes. Below SLICE_MIN_LEFT_NS, poll(). */
static bool may_block(rk__conn *c, int64_t left)
{
    if (!c->blocking) return false;
    if (c->slice_ns > 0 && left >= c->slice_ns + c->slice_ns / 8 + SLICE_SLACK_NS) return true;
    if (left < SLICE_MIN_LEFT_NS) return false;
    int64_t slice = (left - SLICE_SLACK_NS) / 4 * 3 / 1000000 * 1000000; /* whole ms */
    struct timeval tv = {.tv_sec = (time_t)(slice / 1000000000), .tv_usec = (suseconds_t)(slice % 1000000000 / 1000)};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
        c->blocking = false; /* the socket stays blocking: every read goes through MSG_DONTWAIT */
        return false;
    }
    c->slice_ns = slice;
    return true;
}

/* Wait for data and read some of it into buf: at least one byte on RK_OK.
 * A read that comes back empty (a receive timeout that ran out, a signal,
 * a spurious wake-up) is tried again, within the same deadline. */
static rk_status recv_some(rk__conn *c, char *buf, size_t cap, size_t *got, int64_t deadline_ns)
{
    if (c->tls) return rk__tls_read(c->tls, buf, cap, got, deadline_ns);
    for (int i = 0; i < MAX_WAKEUPS; i++) {
        int flags = MSG_DONTWAIT;
        if (!c->blocking || !may_block(c, deadline_ns - rk__now_ns())) {
            rk_status st = wait_fd(c, POLLIN, deadline_ns, "read from");
            if (st != RK_OK) return st;
        } else {
            flags = 0;
        }
        ssize_t n = recv(c->fd, buf, cap, flags);
        if (n > 0) {
            *got = (size_t)n;
            return RK_OK;
        }
        if (n == 0)
            return rk__fail(RK_ERR_UNAVAILABLE, "read from %s: connection closed by server", c->peer);
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return rk__fail(RK_ERR_UNAVAILABLE, "read from %s: %s", c->peer, strerror(errno));
    }
    return rk__fail(RK_ERR_TIMEOUT, "read from %s: timed out (%d empty wake-ups)", c->peer, MAX_WAKEUPS);
}

/* How long a pushed message may take to arrive whole once its first
 * bytes are there (rk__conn_next_push). */
#define PUSH_READ_NS (1000 * 1000000LL)

/* Hand n bytes that arrived to the reader, once the guard has seen them:
 * a reply announcing more than the bound is refused here, before its
 * bytes are buffered or its objects built (reply_guard.h). */
static rk_status feed(rk__conn *c, const char *buf, size_t n)
{
    size_t limit = c->max_reply ? atomic_load_explicit(c->max_reply, memory_order_relaxed) : 0;
    if (limit == 0) limit = RK_DEFAULT_MAX_REPLY_BYTES;
    rk_status st = rk__reply_guard_scan(&c->guard, buf, n, limit, c->peer);
    if (st != RK_OK) return mark_broken(c, st);
    if (redisReaderFeed(c->reader, buf, n) != REDIS_OK)
        return mark_broken(c, rk__fail(RK_ERR_NOMEM, "reading reply: out of memory"));
    return RK_OK;
}

/* Read until the reader yields one complete reply. */
static rk_status read_reply(rk__conn *c, rk_reply **out, int64_t deadline_ns)
{
    for (;;) {
        void *obj = NULL;
        /* A malformed stream is RK_ERR_PROTOCOL even when hiredis calls
         * it "out of memory" (see reply.h). */
        if (redisReaderGetReply(c->reader, &obj) != REDIS_OK)
            return mark_broken(c, rk__reader_fail(c->reader, c->peer));
        if (obj) {
            *out = obj;
            return RK_OK;
        }
        char buf[READ_CHUNK];
        size_t n = 0;
        rk_status st = recv_some(c, buf, sizeof buf, &n, deadline_ns);
        if (st != RK_OK) return mark_broken(c, st);
        if ((st = feed(c, buf, n)) != RK_OK) return st;
    }
}

rk_status rk__conn_request(rk__conn *c, const char *cmd, size_t len, size_t n, rk_reply **replies,
                           int64_t deadline_ns)
{
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (c->broken) return rk__fail(RK_ERR_UNAVAILABLE, "connection to %s is closed", c->peer);
    rk_status st = send_all(c, cmd, len, deadline_ns);
    for (size_t i = 0; st == RK_OK && i < n; i++) st = read_reply(c, &replies[i], deadline_ns);
    if (st != RK_OK) {
        for (size_t i = 0; i < n; i++) {
            rk_reply_free(replies[i]);
            replies[i] = NULL;
        }
        return st;
    }
    c->last_used_ns = rk__now_ns();
    return RK_OK;
}

rk_status rk__conn_send(rk__conn *c, const char *buf, size_t len, int64_t deadline_ns)
{
    if (c->broken) return rk__fail(RK_ERR_UNAVAILABLE, "connection to %s is closed", c->peer);
    return send_all(c, buf, len, deadline_ns);
}

rk_status rk__conn_send_some(rk__conn *c, const char *buf, size_t len, int64_t deadline_ns, int64_t tls_deadline_ns,
                             size_t *sent)
{
    *sent = 0;
    if (c->broken) return rk__fail(RK_ERR_UNAVAILABLE, "connection to %s is closed", c->peer);
    if (!c->tls) return send_plain(c, buf, len, deadline_ns, sent);
    /* A TLS record begun must be finished with the same bytes: no
     * stopping half-way; the connection's own bound instead. */
    rk_status st = send_all(c, buf, len, tls_deadline_ns);
    if (st == RK_OK) *sent = len;
    return st;
}

rk_status rk__conn_read_reply(rk__conn *c, rk_reply **out, int64_t deadline_ns)
{
    *out = NULL;
    if (c->broken) return rk__fail(RK_ERR_UNAVAILABLE, "connection to %s is closed", c->peer);
    for (;;) {
        void *obj = NULL;
        if (redisReaderGetReply(c->reader, &obj) != REDIS_OK)
            return mark_broken(c, rk__reader_fail(c->reader, c->peer));
        if (obj) {
            *out = obj;
            c->last_used_ns = rk__now_ns();
            return RK_OK;
        }
        char buf[READ_CHUNK];
        size_t n = 0;
        rk_status st = recv_some(c, buf, sizeof buf, &n, deadline_ns);
        /* A wait that ran out leaves the stream intact: whatever part of a
         * reply arrived stays in the reader for the next call. */
        if (st == RK_ERR_TIMEOUT) return st;
        if (st != RK_OK) return mark_broken(c, st);
        if ((st = feed(c, buf, n)) != RK_OK) return st;
    }
}

rk_status rk__conn_buffered_reply(rk__conn *c, rk_reply **out)
{
    *out = NULL;
    void *obj = NULL;
    if (redisReaderGetReply(c->reader, &obj) != REDIS_OK)
        return mark_broken(c, rk__reader_fail(c->reader, c->peer));
    *out = obj;
    return RK_OK;
}

void rk__conn_set_broken(rk__conn *c) { c->broken = true; }

rk_status rk__conn_command(rk__conn *c, int argc, const char **argv, const size_t *argvlen, size_t n,
                           rk_reply **replies, int64_t deadline_ns)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) return rk__fail(RK_ERR_NOMEM, "formatting a command: out of memory");
    rk_status st = rk__conn_request(c, cmd, (size_t)len, n, replies, deadline_ns);
    redisFreeCommand(cmd);
    return st;
}

rk_status rk__conn_next_push(rk__conn *c, rk_reply **out, int64_t deadline_ns)
{
    return rk__conn_next_push_wake(c, -1, out, deadline_ns);
}

rk_status rk__conn_next_push_wake(rk__conn *c, int wake_fd, rk_reply **out, int64_t deadline_ns)
{
    *out = NULL;
    if (c->broken) return rk__fail(RK_ERR_UNAVAILABLE, "connection to %s is closed", c->peer);
    void *obj = NULL;
    if (redisReaderGetReply(c->reader, &obj) != REDIS_OK) return mark_broken(c, rk__reader_fail(c->reader, c->peer));
    if (obj) {
        *out = obj;
        return RK_OK;
    }
    /* Nothing half read, nothing inside OpenSSL: wait for the socket, and
     * a quiet wait is no failure. Once bytes come, the message they begin
     * must arrive whole within the deadline like any reply. */
    bool partial = c->reader->pos < c->reader->len;
    if (!partial && !(c->tls && rk__tls_pending(c->tls))) {
        /* A negative wake_fd is ignored by poll(). */
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
        int64_t left_ms = (deadline_ns - rk__now_ns()) / 1000000;
        int r = poll(p, 2, left_ms > 0 ? (int)(left_ms < 60000 ? left_ms : 60000) : 0);
        if (r == 0 || (r < 0 && errno == EINTR) || (r > 0 && !p[0].revents)) return RK_MISS;
        if (r < 0) return mark_broken(c, rk__fail(RK_ERR_SYSTEM, "wait on %s: %s", c->peer, strerror(errno)));
        deadline_ns = rk__now_ns() + PUSH_READ_NS;
    }
    return read_reply(c, out, deadline_ns);
}

bool rk__conn_broken(const rk__conn *c) { return c->broken; }

int64_t rk__conn_last_used(const rk__conn *c) { return c->last_used_ns; }

int64_t rk__conn_opened(const rk__conn *c) { return c->opened_ns; }

const char *rk__conn_peer(const rk__conn *c) { return c->peer; }

bool rk__conn_peer_gone(rk__conn *c)
{
    if (c->tls) {
        if (!rk__tls_peer_gone(c->tls)) return false;
        c->broken = true;
        return true;
    }
    struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) == 0) return false;
    c->broken = true;
    return true;
}

void rk__conn_abandon(rk__conn *c)
{
    if (!c) return;
    /* No TLS shutdown, no write of any kind: the other process's copy of
     * this connection is still in use. The TLS state is freed as memory
     * only (its socket is detached first, so nothing can be sent). */
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    rk__tls_forget(c->tls);
    if (c->reader) redisReaderFree(c->reader);
    rk__free(c);
}

void (*rk__conn_close_test_hook)(const rk__conn *conn);

void rk__conn_close(rk__conn *c)
{
    if (!c) return;
    if (rk__conn_close_test_hook) rk__conn_close_test_hook(c);
    rk__tls_free(c->tls); /* before the socket it may still write to */
    if (c->fd >= 0) close(c->fd);
    if (c->reader) redisReaderFree(c->reader);
    rk__free(c);
}

/* Most commands a handshake sends: AUTH, SELECT, CLIENT SETNAME (or the
 * PING that stands in for them over TLS). */
#define HANDSHAKE_MAX 3

/* Longest error code (the first word of an error reply) repeated from a
 * refused AUTH. */
#define AUTH_CODE_MAX 32

/* A run of at least this many bytes of the password (all of it, if it is
 * shorter) is masked wherever it appears in a handshake message; a shorter
 * run only where the message ends, cut short. */
#define SCRUB_MIN_RUN 8

static bool is_code_char(char ch) { return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'; }

/* A refused AUTH: RK_ERR_AUTH whatever the code (NOAUTH, WRONGPASS, or
 * the ERR of a server that does not know AUTH: none of them authenticated
 * the connection), and a message that keeps the error code — an upper-case
 * word, as Redis's codes are — and the peer, never the server's text. */
static rk_status auth_refused(const rk__conn *c, const rk_reply *r)
{
    const char *text = r->str ? r->str : "";
    size_t len = r->str ? r->len : 0, n = 0;
    while (n < len && n <= AUTH_CODE_MAX && is_code_char(text[n])) n++;
    if (n == 0 || n > AUTH_CODE_MAX || (n < len && text[n] != ' '))
        return rk__fail(RK_ERR_AUTH, "AUTH refused by %s: an error reply without a code", c->peer);
    return rk__fail(RK_ERR_AUTH, "AUTH refused by %s: %.*s", c->peer, (int)n, text);
}

/* SELECT or CLIENT SETNAME refused: the server's text, as for any command
 * (rk__reply_fail), but the reply is left to the caller to wipe. */
static rk_status handshake_refused(const rk_reply *r, const char *what)
{
    const char *text = r->str ? r->str : "";
    size_t len = r->str ? r->len : 0;
    return rk__fail(rk__reply_error_status(text, len), "%s: %.*s", what,
                    (int)(len < RK__ERROR_TEXT_MAX ? len : RK__ERROR_TEXT_MAX), text);
}

/* Does this error reply refuse the connection itself, whatever command it
 * answers? Redis writes "-ERR max number of clients reached" on accept and
 * closes; in protected mode it writes "-DENIED ..." and closes. Either is
 * the server saying "not now" (RK_ERR_UNAVAILABLE, a failed connect),
 * not a bad password, even when it arrives as AUTH's reply. */
static bool connection_refused(const rk_reply *r)
{
    static const char maxclients[] = "ERR max number of clients reached";
    const char *text = r->str ? r->str : "";
    size_t len = r->str ? r->len : 0;
    return (len >= sizeof maxclients - 1 && memcmp(text, maxclients, sizeof maxclients - 1) == 0) ||
           (len >= 6 && memcmp(text, "DENIED", 6) == 0 && (len == 6 || text[6] == ' '));
}

static rk_status refused(const rk__conn *c, const rk_reply *r)
{
    const char *text = r->str ? r->str : "";
    size_t len = r->str ? r->len : 0;
    return rk__fail(RK_ERR_UNAVAILABLE, "%s refused the connection: %.*s", c->peer,
                    (int)(len < RK__ERROR_TEXT_MAX ? len : RK__ERROR_TEXT_MAX), text);
}

/* Redis writes a newline of a quoted argument as a space. */
static bool same_byte(char shown, char secret)
{
    return shown == secret || ((secret == '\r' || secret == '\n') && shown == ' ');
}

/* Replace every trace of the password in the thread's last error with
 * "***": a run of SCRUB_MIN_RUN bytes or more of it (Redis quotes at most
 * 128 bytes of arguments, so a long password may appear cut), or any
 * beginning of it where the message itself is cut. The thread's buffer is
 * overwritten whole first, so no tail of the old message survives behind
 * the shorter new one, and the copy made here is wiped. */
static void scrub_password(rk_status st, const char *password)
{
    size_t plen = strlen(password);
    size_t min_run = plen < SCRUB_MIN_RUN ? plen : SCRUB_MIN_RUN;
    const char *msg = rk_last_error();
    size_t mlen = strlen(msg), o = 0;
    char out[RK__ERRMSG_MAX];
    bool found = false;
    if (plen == 0) return;
    for (size_t i = 0; i < mlen && o + 4 < sizeof out;) {
        size_t k = 0;
        while (i + k < mlen && k < plen && same_byte(msg[i + k], password[k])) k++;
        if (k > 0 && (k >= min_run || i + k == mlen)) {
            memcpy(out + o, "***", 3);
            o += 3;
            i += k;
            found = true;
        } else {
            out[o++] = msg[i++];
        }
    }
    out[o] = '\0';
    if (found) {
        rk__fail(st, "%*s", RK__ERRMSG_MAX - 1, "");
        rk__fail_str(st, out);
    }
    OPENSSL_cleanse(out, sizeof out);
}

/* AUTH, SELECT and CLIENT SETNAME go out as one pipeline: one round trip
 * however many are needed. Replies are checked in order, so a refused AUTH
 * is reported as such rather than as the NOAUTH that follows it.
 *
 * The AUTH command holds the password, so each encoded command is copied
 * into a buffer allocated once at its final size — a buffer grown with
 * realloc could leave a copy behind in the block it moved from — and every
 * copy (hiredis's and ours) is wiped with OPENSSL_cleanse before it is
 * freed.
 *
 * The replies can hold it too. Redis itself never repeats AUTH's
 * arguments, but a server with AUTH renamed away answers "ERR unknown
 * command 'AUTH', with args beginning with: '<the password>'", and so may
 * a proxy or a fork. So: of a refused AUTH only the error code is kept
 * (auth_refused); every handshake message is scrubbed of the password
 * (scrub_password), in case SELECT's or CLIENT SETNAME's refusal quotes
 * it; and every error reply of the handshake is wiped before it is
 * freed. */
static rk_status handshake(rk__conn *c, const rk__conn_config *cfg, int64_t deadline_ns)
{
    char *cmd[HANDSHAKE_MAX] = {NULL, NULL, NULL};
    int cmdlen[HANDSHAKE_MAX] = {0, 0, 0};
    const char *what[HANDSHAKE_MAX]; /* NULL: any reply will do */
    size_t n = 0;
    char dbtext[16];

    /* A user name without a password (redis://limited@host) still
     * authenticates, as that user, with an empty password: a nopass user
     * accepts it, any other refuses it (RK_ERR_AUTH). Skipping AUTH would
     * run every command as "default" — another identity than asked for. */
    if (cfg->password || cfg->username) {
        const char *password = cfg->password ? cfg->password : "";
        const char *auth_user[] = {"AUTH", cfg->username, password};
        const char *auth[] = {"AUTH", password};
        cmdlen[n] = cfg->username ? redisFormatCommandArgv(&cmd[n], 3, auth_user, NULL)
                                  : redisFormatCommandArgv(&cmd[n], 2, auth, NULL);
        what[n++] = "AUTH";
    }
    if (cfg->db != 0) {
        snprintf(dbtext, sizeof dbtext, "%d", cfg->db);
        const char *select[] = {"SELECT", dbtext};
        cmdlen[n] = redisFormatCommandArgv(&cmd[n], 2, select, NULL);
        what[n++] = "SELECT";
    }
    if (cfg->client_name) {
        const char *setname[] = {"CLIENT", "SETNAME", cfg->client_name};
        cmdlen[n] = redisFormatCommandArgv(&cmd[n], 3, setname, NULL);
        what[n++] = "CLIENT SETNAME";
    }
    if (n == 0) {
        /* Always one round trip before the connection is handed out. A
         * server at maxclients (or in protected mode) accepts, writes its
         * refusal and closes: that must arrive here, as a failed connect
         * the backoff and the breaker see, not as the first command's
         * reply. Over TLS any answer, even NOAUTH, also proves the server
         * accepted the session; what it thinks of the command is for later
         * calls to find out. */
        const char *ping[] = {"PING"};
        cmdlen[n] = redisFormatCommandArgv(&cmd[n], 1, ping, NULL);
        what[n++] = NULL;
    }

    rk_status st = RK_OK;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (cmdlen[i] < 0 || !cmd[i]) st = rk__fail(RK_ERR_NOMEM, "encoding handshake: out of memory");
        else len += (size_t)cmdlen[i];
    }
    char *buf = st == RK_OK && n > 0 ? rk__malloc(len) : NULL;
    if (st == RK_OK && n > 0 && !buf) st = rk__fail(RK_ERR_NOMEM, "encoding handshake: out of memory");
    for (size_t i = 0, at = 0; i < n; i++) {
        if (!cmd[i] || cmdlen[i] <= 0) continue;
        if (buf) {
            memcpy(buf + at, cmd[i], (size_t)cmdlen[i]);
            at += (size_t)cmdlen[i];
        }
        OPENSSL_cleanse(cmd[i], (size_t)cmdlen[i]);
        redisFreeCommand(cmd[i]);
    }
    if (st != RK_OK || n == 0) return st;

    rk_reply *replies[HANDSHAKE_MAX] = {NULL, NULL, NULL};
    st = rk__conn_send(c, buf, len, deadline_ns);
    OPENSSL_cleanse(buf, len);
    rk__free(buf);
    /* One reply at a time, each looked at as it comes: a refusing server
     * answers the first command and closes, and its refusal, not the
     * closed connection, is what to report. */
    for (size_t i = 0; st == RK_OK && i < n; i++) {
        st = rk__conn_read_reply(c, &replies[i], deadline_ns);
        rk_reply *r = replies[i];
        if (st != RK_OK || r->type != RK_REPLY_ERROR) continue;
        if (connection_refused(r)) st = refused(c, r);
        else if (what[i]) st = i == 0 && cfg->password ? auth_refused(c, r) : handshake_refused(r, what[i]);
    }
    for (size_t i = 0; i < n; i++) {
        rk_reply *r = replies[i];
        if (r && r->type == RK_REPLY_ERROR && r->str) OPENSSL_cleanse(r->str, r->len);
        rk_reply_free(r);
    }
    if (st != RK_OK && cfg->password) scrub_password(st, cfg->password);
    if (st != RK_OK) c->broken = true;
    else if (c->tls) rk__tls_established(c->tls);
    return st;
}

rk_status rk__conn_open(const rk__conn_config *cfg, int64_t deadline_ns, rk__conn **out)
{
    *out = NULL;
    rk__conn *c = rk__calloc(1, sizeof *c);
    if (!c) return rk__fail(RK_ERR_NOMEM, "connection: out of memory");
    c->fd = -1;
    c->reader = rk__reader_new();
    if (!c->reader) {
        rk__free(c);
        return rk__fail(RK_ERR_NOMEM, "connection: out of memory");
    }
    rk__reader_report_malformed(c->reader, &c->malformed);
    rk__reply_guard_init(&c->guard);
    c->max_reply = cfg->max_reply_bytes;
    rk_status st;
    if (cfg->unix_path) {
        snprintf(c->peer, sizeof c->peer, "%s", cfg->unix_path);
        st = connect_unix(c, cfg->unix_path, deadline_ns);
    } else {
        bool v6 = strchr(cfg->host, ':') != NULL;
        snprintf(c->peer, sizeof c->peer, v6 ? "[%s]:%d" : "%s:%d", cfg->host, cfg->port);
        st = connect_tcp(c, cfg->host, cfg->port, deadline_ns);
        /* The TLS handshake shares the connect deadline with the TCP
         * connect and the Redis handshake. */
        if (st == RK_OK && cfg->tls) st = rk__tls_connect(cfg->tls, c->fd, c->peer, deadline_ns, &c->tls);
    }
    /* A plain socket reads in blocking mode under a receive timeout (see
     * the top of this file); if the switch fails it simply stays
     * non-blocking and every read polls first. */
    if (st == RK_OK && !c->tls) c->blocking = ioctl(c->fd, FIONBIO, &(int){0}) == 0;
    if (st == RK_OK) st = handshake(c, cfg, deadline_ns);
    if (st != RK_OK) {
        rk__conn_close(c);
        return st;
    }
    c->opened_ns = c->last_used_ns = rk__now_ns();
    *out = c;
    return RK_OK;
}
