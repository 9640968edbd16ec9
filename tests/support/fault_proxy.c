/*
 * fault_proxy.c — the fault-injection TCP proxy used by the fault tests (see
 * fault_proxy.h for the contract of each mode).
 *
 * One background thread runs a poll() loop over the listening socket, a
 * self-pipe and two non-blocking sockets per proxied connection (client side
 * and upstream side). Bytes are never written straight through: every read
 * becomes a chunk in a per-direction queue, stamped with the time it may be
 * forwarded. That single mechanism gives partial-write handling (a chunk
 * remembers how much of it went out; POLLOUT resumes it), latency (the stamp
 * is in the future) with order kept (a queue is FIFO), a blackhole (queues
 * are simply not drained), and backpressure (a side is no longer read once
 * its queue holds FP_QUEUE_CAP bytes, so a stalled peer cannot make the
 * proxy grow without bound).
 *
 * The test thread only touches the mode, under a mutex, and wakes the loop
 * through the self-pipe; rk_fault_proxy_set() then waits on a condition
 * variable until the loop has applied the new mode, so a test never races
 * the proxy ("set RESET, then PING" always sees the reset). Everything else
 * — connections, queues, poll set — belongs to the loop thread alone.
 *
 * Every loop is bounded: a loop iteration accepts at most FP_ACCEPT_BURST
 * connections, reads once per ready socket and writes at most FP_WRITE_BURST
 * times per queue; poll() never sleeps longer than FP_IDLE_MS; the thread
 * checks its stop flag on every iteration; rk_fault_proxy_set() waits at
 * most FP_SET_WAIT_MS.
 */
#include "clock.h"
#include "fault_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FP_READ_SIZE 16384          /* bytes asked of one read() */
#define FP_QUEUE_CAP (256 * 1024)   /* a side is not read while its queue holds this much */
#define FP_ACCEPT_BURST 32          /* accept() calls per loop iteration */
#define FP_WRITE_BURST 64           /* send() calls per queue per loop iteration */
#define FP_SLICE_RUN 16             /* SLICE: 1-byte writes between two pauses */
#define FP_SLICE_PAUSE_MS 1         /* SLICE: length of a pause */
#define FP_IDLE_MS 500              /* longest poll() sleep; set and stop wake it anyway */
#define FP_SET_WAIT_MS 2000         /* how long rk_fault_proxy_set() waits to be applied */
#define FP_WAKE_DRAIN 16            /* reads that empty the self-pipe */

/* Bytes read from one side, waiting to be written to the other. */
typedef struct fp_chunk {
    struct fp_chunk *next;
    int64_t due_ms;  /* not forwarded before this time (LATENCY) */
    size_t len;      /* bytes in data */
    size_t off;      /* bytes of data already written */
    char data[];
} fp_chunk;

/* A FIFO of chunks: one per direction of a connection. */
typedef struct fp_queue {
    fp_chunk *head, *tail;
    size_t bytes;    /* bytes not yet written */
} fp_queue;

/*
 * One proxied connection. A direction is "done" once its end has been passed
 * on (the FIN forwarded with shutdown()) or once it can no longer be
 * delivered (the receiving side is gone); the pair is closed when both
 * directions are done and the client has been read to its end, so that
 * closing never turns into a reset that would destroy bytes the client has
 * not read yet.
 */
typedef struct fp_conn {
    int cfd;                 /* client side */
    int ufd;                 /* upstream side; -1 once closed (CLOSE_AFTER) */
    bool connecting;         /* upstream connect() still in progress */
    bool c_eof, u_eof;       /* no more bytes will come from client / upstream */
    bool c_gone, u_gone;     /* that socket is dead both ways: stop polling it */
    bool c2s_done, s2c_done; /* direction finished (see above) */
    bool dead;               /* closed; freed at the end of the iteration */
    long long budget;        /* CLOSE_AFTER: bytes still allowed server->client; -1 = no limit */
    int slice_run;           /* SLICE: 1-byte writes since the last pause */
    int64_t slice_next_ms;   /* SLICE: no write to the client before this */
    fp_queue c2s, s2c;
} fp_conn;

struct rk_fault_proxy {
    int port;            /* where clients connect */
    int upstream_port;
    int lfd;             /* listening socket */
    int wake[2];         /* self-pipe: the loop polls [0], set/stop write [1] */
    pthread_t thread;
    atomic_int accepted; /* client connections accepted, in total */

    /* Shared with the test thread, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t applied_cv; /* signalled when applied_gen moves */
    rk_fault_mode mode;
    int arg;
    unsigned gen;              /* bumped by every rk_fault_proxy_set() */
    unsigned applied_gen;      /* the last gen the loop has applied */
    bool stop;

    /* The loop thread's own state. */
    rk_fault_mode cur_mode;
    int cur_arg;
    fp_conn **conns;
    size_t nconns, cap;
    struct pollfd *pfds;       /* room for 2 + 2 * cap entries */
};

/* ------------------------------------------------------------------ utils */

static bool would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* Small replies must leave at once, not wait for Nagle: tests time them. */
static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Close so that the peer gets a RST (ECONNRESET) rather than a FIN. */
static void close_reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* ------------------------------------------------------------------ queues */

static bool queue_push(fp_queue *q, const char *data, size_t len, int64_t due_ms)
{
    fp_chunk *c = malloc(sizeof *c + len);
    if (!c) return false;
    c->next = NULL;
    c->due_ms = due_ms;
    c->len = len;
    c->off = 0;
    memcpy(c->data, data, len);
    if (q->tail) q->tail->next = c;
    else q->head = c;
    q->tail = c;
    q->bytes += len;
    return true;
}

static void queue_clear(fp_queue *q)
{
    fp_chunk *c = q->head;
    while (c) {
        fp_chunk *next = c->next;
        free(c);
        c = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}

/* ------------------------------------------------------------- connections */

static void conn_close(fp_conn *c, bool reset)
{
    if (c->dead) return;
    if (c->cfd >= 0) { if (reset) close_reset(c->cfd); else close(c->cfd); }
    if (c->ufd >= 0) { if (reset) close_reset(c->ufd); else close(c->ufd); }
    c->cfd = c->ufd = -1;
    queue_clear(&c->c2s);
    queue_clear(&c->s2c);
    c->dead = true;
}

/*
 * A socket error on either side: reset both, so that whoever is still there
 * sees the connection break the way it would without the proxy.
 */
static void conn_fail(fp_conn *c)
{
    conn_close(c, true);
}

/*
 * Open the upstream side. On loopback a non-blocking connect() usually
 * completes (or is refused) at once; EINPROGRESS is handled by the loop.
 * Returns the socket, or -1 if the upstream refused or we ran out of fds.
 */
static int connect_upstream(int port, bool *connecting)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    set_nodelay(fd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        *connecting = false;
        return fd;
    }
    if (errno == EINPROGRESS) {
        *connecting = true;
        return fd;
    }
    close(fd);
    return -1;
}

/* Make room for one more connection in conns and in the poll set. */
static bool reserve_conn(rk_fault_proxy *p)
{
    if (p->nconns < p->cap) return true;
    size_t cap = p->cap ? p->cap * 2 : 8;
    fp_conn **conns = realloc(p->conns, cap * sizeof *conns);
    if (!conns) return false;
    p->conns = conns;
    struct pollfd *pfds = realloc(p->pfds, (2 + 2 * cap) * sizeof *pfds);
    if (!pfds) return false; /* conns is merely larger than needed */
    p->pfds = pfds;
    p->cap = cap;
    return true;
}

/* Accept what is pending on the listening socket (at most a burst). */
static void accept_some(rk_fault_proxy *p)
{
    for (int k = 0; k < FP_ACCEPT_BURST; k++) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (would_block(errno) || errno == ECONNABORTED) return;
            /* EMFILE and the like: the connection stays pending and poll()
             * would report it again at once; back off instead of spinning. */
            fprintf(stderr, "fault_proxy: accept: %s\n", strerror(errno));
            rk_test_sleep_ms(10);
            return;
        }
        atomic_fetch_add(&p->accepted, 1);
        if (p->cur_mode == RK_FAULT_RESET) {
            close_reset(fd);
            continue;
        }
        set_nodelay(fd);

        bool connecting = false;
        int ufd = connect_upstream(p->upstream_port, &connecting);
        fp_conn *c = NULL;
        if (ufd < 0 || !reserve_conn(p) || !(c = calloc(1, sizeof *c))) {
            /* Upstream down (or out of resources): the client is closed
             * straight away, as if nothing listened behind the proxy. */
            if (ufd >= 0) close(ufd);
            close(fd);
            continue;
        }
        c->cfd = fd;
        c->ufd = ufd;
        c->connecting = connecting;
        c->budget = p->cur_mode == RK_FAULT_CLOSE_AFTER ? p->cur_arg : -1;
        p->conns[p->nconns++] = c;
    }
}

/* ------------------------------------------------------------------- I/O */

/* One read from one side into the queue towards the other. */
static void conn_read(rk_fault_proxy *p, fp_conn *c, bool from_client, int64_t now)
{
    char buf[FP_READ_SIZE];
    int fd = from_client ? c->cfd : c->ufd;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
        if (!would_block(errno)) conn_fail(c);
        return;
    }
    if (n == 0) {
        if (from_client) c->c_eof = true;
        else c->u_eof = true;
        return;
    }
    /* Bytes for a direction that is already finished (its receiver is gone)
     * are read only so that the sender is not left blocked; drop them. */
    if (from_client ? c->c2s_done : c->s2c_done) return;
    int64_t due = now + (p->cur_mode == RK_FAULT_LATENCY ? p->cur_arg : 0);
    if (!queue_push(from_client ? &c->c2s : &c->s2c, buf, (size_t)n, due)) conn_fail(c);
}

/*
 * Write what is due from q to fd, until the socket would block. Towards the
 * client this is where CLOSE_AFTER's budget and SLICE's 1-byte writes apply.
 */
static void conn_flush(rk_fault_proxy *p, fp_conn *c, bool to_client, int64_t now)
{
    fp_queue *q = to_client ? &c->s2c : &c->c2s;
    int fd = to_client ? c->cfd : c->ufd;
    if (fd < 0 || p->cur_mode == RK_FAULT_BLACKHOLE) return;
    if (!to_client && c->connecting) return;
    if (to_client && c->c_gone) return;
    if (!to_client && c->u_gone) return;
    bool slice = to_client && p->cur_mode == RK_FAULT_SLICE;

    for (int k = 0; k < FP_WRITE_BURST && q->head; k++) {
        fp_chunk *ch = q->head;
        if (ch->due_ms > now) return;
        size_t want = ch->len - ch->off;
        if (to_client && c->budget >= 0 && want > (unsigned long long)c->budget)
            want = (size_t)c->budget;
        if (want == 0) return; /* budget spent: conn_finish() cuts the connection */
        if (slice) {
            if (now < c->slice_next_ms) return;
            want = 1;
        }
        ssize_t w = send(fd, ch->data + ch->off, want, MSG_NOSIGNAL);
        if (w < 0) {
            if (!would_block(errno)) conn_fail(c);
            return;
        }
        ch->off += (size_t)w;
        q->bytes -= (size_t)w;
        if (to_client && c->budget >= 0) c->budget -= w;
        if (ch->off == ch->len) {
            q->head = ch->next;
            if (!q->head) q->tail = NULL;
            free(ch);
        }
        if (slice && ++c->slice_run >= FP_SLICE_RUN) {
            c->slice_run = 0;
            c->slice_next_ms = rk_test_now_ms() + FP_SLICE_PAUSE_MS;
            return;
        }
    }
}

/*
 * Pass on ends of stream, apply CLOSE_AFTER's cut, and close the pair once
 * nothing is left to do. Runs for every connection on every iteration.
 */
static void conn_finish(rk_fault_proxy *p, fp_conn *c)
{
    if (c->dead) return;

    if (c->budget == 0 && !c->s2c_done) {
        /* CLOSE_AFTER: FIN to the client, which reads the bytes it was sent
         * and then EOF; the upstream side goes at once. The client side is
         * still read (and discarded) until the client closes, because
         * closing a socket with unread input would send a RST instead. */
        shutdown(c->cfd, SHUT_WR);
        queue_clear(&c->s2c);
        c->s2c_done = true;
        if (c->ufd >= 0) close(c->ufd);
        c->ufd = -1;
        c->connecting = false;
        c->u_eof = c->u_gone = true;
        queue_clear(&c->c2s);
        c->c2s_done = true;
    }

    /* A blackhole forwards nothing, not even the end of a stream. */
    if (p->cur_mode != RK_FAULT_BLACKHOLE) {
        if (!c->c2s_done && c->c_eof && c->c2s.bytes == 0 && !c->connecting) {
            shutdown(c->ufd, SHUT_WR);
            c->c2s_done = true;
        }
        if (!c->s2c_done && c->u_eof && c->s2c.bytes == 0) {
            shutdown(c->cfd, SHUT_WR);
            c->s2c_done = true;
        }
    }
    if (c->c_gone && !c->s2c_done) {
        queue_clear(&c->s2c);
        c->s2c_done = true;
    }
    if (c->u_gone && !c->c2s_done) {
        queue_clear(&c->c2s);
        c->c2s_done = true;
    }
    if (c->c2s_done && c->s2c_done && c->c_eof) conn_close(c, false);
}

/*
 * A side reported POLLHUP without being read (its input is over or our
 * queue is full): the socket is dead both ways, so it leaves the poll set —
 * poll() would otherwise report it again and again.
 */
static void side_gone(fp_conn *c, bool client)
{
    if (client) c->c_eof = c->c_gone = true;
    else c->u_eof = c->u_gone = true;
}

/* Handle one connection's poll results, then flush what is due. */
static void conn_service(rk_fault_proxy *p, fp_conn *c, short crev, short urev, int64_t now)
{
    if (c->connecting && urev) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            conn_close(c, false); /* upstream down: close the client at once */
            return;
        }
        if (urev & (POLLOUT | POLLIN)) c->connecting = false;
        urev = 0;
    }
    if ((crev | urev) & (POLLERR | POLLNVAL)) {
        conn_fail(c);
        return;
    }

    bool c_reading = !c->c_eof && c->c2s.bytes < FP_QUEUE_CAP;
    if (crev & (POLLIN | POLLHUP)) {
        if (c_reading) conn_read(p, c, true, now);
        else if (crev & POLLHUP) side_gone(c, true);
    }
    if (c->dead) return;
    bool u_reading = !c->connecting && !c->u_eof && c->s2c.bytes < FP_QUEUE_CAP;
    if (urev & (POLLIN | POLLHUP)) {
        if (u_reading) conn_read(p, c, false, now);
        else if (urev & POLLHUP) side_gone(c, false);
    }
    if (c->dead) return;

    /* Writes are tried whether or not POLLOUT was reported: most of the
     * time the socket has room, and this saves a trip through poll(). */
    conn_flush(p, c, false, now);
    if (!c->dead) conn_flush(p, c, true, now);
}

/*
 * What to poll for on one connection, and how long poll() may sleep before
 * a queued chunk (LATENCY) or the end of a SLICE pause falls due.
 */
static void conn_events(const rk_fault_proxy *p, const fp_conn *c, int64_t now,
                        struct pollfd *pc, struct pollfd *pu, int *timeout)
{
    pc->fd = c->c_gone ? -1 : c->cfd;
    pu->fd = c->u_gone ? -1 : c->ufd;
    pc->events = pu->events = 0;
    pc->revents = pu->revents = 0;

    if (!c->c_eof && c->c2s.bytes < FP_QUEUE_CAP) pc->events |= POLLIN;
    if (c->connecting) {
        pu->events |= POLLOUT;
        return;
    }
    if (!c->u_eof && c->s2c.bytes < FP_QUEUE_CAP) pu->events |= POLLIN;
    if (p->cur_mode == RK_FAULT_BLACKHOLE) return;

    int64_t due[2] = {INT64_MAX, INT64_MAX}; /* towards the client, the upstream */
    if (c->s2c.head) {
        due[0] = c->s2c.head->due_ms;
        if (p->cur_mode == RK_FAULT_SLICE && c->slice_next_ms > due[0]) due[0] = c->slice_next_ms;
    }
    if (c->c2s.head) due[1] = c->c2s.head->due_ms;
    struct pollfd *pf[2] = {pc, pu};
    for (int i = 0; i < 2; i++) {
        if (due[i] == INT64_MAX) continue;
        if (due[i] <= now) pf[i]->events |= POLLOUT;
        else if (due[i] - now < *timeout) *timeout = (int)(due[i] - now);
    }
}

/* ------------------------------------------------------------------ loop */

static void apply_mode(rk_fault_proxy *p, rk_fault_mode mode, int arg)
{
    p->cur_mode = mode;
    p->cur_arg = arg < 0 ? 0 : arg;
    for (size_t i = 0; i < p->nconns; i++) {
        fp_conn *c = p->conns[i];
        if (c->dead) continue;
        if (mode == RK_FAULT_RESET) {
            conn_close(c, true);
            continue;
        }
        /* CLOSE_AFTER counts from now; any other mode lifts the limit. */
        c->budget = mode == RK_FAULT_CLOSE_AFTER ? p->cur_arg : -1;
        c->slice_run = 0;
        c->slice_next_ms = 0;
    }
}

/* Free the connections closed during this iteration. */
static void reap(rk_fault_proxy *p)
{
    size_t j = 0;
    for (size_t i = 0; i < p->nconns; i++) {
        if (p->conns[i]->dead) free(p->conns[i]);
        else p->conns[j++] = p->conns[i];
    }
    p->nconns = j;
}

static void *loop(void *arg)
{
    rk_fault_proxy *p = arg;
    for (;;) {
        int64_t now = rk_test_now_ms();
        size_t n = p->nconns;
        int timeout = FP_IDLE_MS;
        p->pfds[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        p->pfds[1] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (size_t i = 0; i < n; i++)
            conn_events(p, p->conns[i], now, &p->pfds[2 + 2 * i], &p->pfds[3 + 2 * i], &timeout);

        int rc = poll(p->pfds, 2 + 2 * n, timeout);
        if (rc < 0 && errno != EINTR) {
            fprintf(stderr, "fault_proxy: poll: %s\n", strerror(errno));
            rk_test_sleep_ms(10);
        }

        if (rc > 0 && (p->pfds[0].revents & POLLIN)) {
            char drain[64];
            for (int k = 0; k < FP_WAKE_DRAIN; k++)
                if (read(p->wake[0], drain, sizeof drain) <= 0) break;
        }
        pthread_mutex_lock(&p->mu);
        bool stop = p->stop;
        unsigned gen = p->gen;
        rk_fault_mode mode = p->mode;
        int mode_arg = p->arg;
        bool changed = gen != p->applied_gen;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        if (changed) apply_mode(p, mode, mode_arg);

        now = rk_test_now_ms();
        for (size_t i = 0; i < n; i++) {
            fp_conn *c = p->conns[i];
            if (c->dead) continue;
            short crev = rc > 0 ? p->pfds[2 + 2 * i].revents : 0;
            short urev = rc > 0 ? p->pfds[3 + 2 * i].revents : 0;
            conn_service(p, c, crev, urev, now);
        }
        if (rc > 0 && (p->pfds[1].revents & POLLIN)) accept_some(p);
        for (size_t i = 0; i < p->nconns; i++) conn_finish(p, p->conns[i]);
        reap(p);

        if (changed) {
            pthread_mutex_lock(&p->mu);
            p->applied_gen = gen;
            pthread_cond_broadcast(&p->applied_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ API */

static void wake(rk_fault_proxy *p)
{
    /* A full pipe (EAGAIN) means the loop is already due to wake up. */
    char b = 1;
    ssize_t w = write(p->wake[1], &b, 1);
    (void)w;
}

/* Release what rk_fault_proxy_start() set up, once the thread is gone. */
static void destroy(rk_fault_proxy *p)
{
    for (size_t i = 0; i < p->nconns; i++) {
        conn_close(p->conns[i], false);
        free(p->conns[i]);
    }
    free(p->conns);
    free(p->pfds);
    if (p->lfd >= 0) close(p->lfd);
    if (p->wake[0] >= 0) close(p->wake[0]);
    if (p->wake[1] >= 0) close(p->wake[1]);
    pthread_cond_destroy(&p->applied_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

rk_fault_proxy *rk_fault_proxy_start(int upstream_port)
{
    if (upstream_port <= 0 || upstream_port > 65535) {
        fprintf(stderr, "fault_proxy: bad upstream port %d\n", upstream_port);
        return NULL;
    }
    rk_fault_proxy *p = calloc(1, sizeof *p);
    if (!p) {
        fprintf(stderr, "fault_proxy: out of memory\n");
        return NULL;
    }
    p->upstream_port = upstream_port;
    p->lfd = p->wake[0] = p->wake[1] = -1;
    p->mode = p->cur_mode = RK_FAULT_PASS;
    atomic_init(&p->accepted, 0);
    pthread_mutex_init(&p->mu, NULL);
    /* The set() wait is timed on the monotonic clock: a wall-clock step
     * must not shorten or stretch it. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->applied_cv, &ca);
    pthread_condattr_destroy(&ca);

    const char *what = "socket";
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->lfd < 0) goto fail;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    what = "bind 127.0.0.1:0";
    if (bind(p->lfd, (struct sockaddr *)&a, sizeof a) < 0) goto fail;
    what = "listen";
    if (listen(p->lfd, 128) < 0) goto fail;
    what = "getsockname";
    if (getsockname(p->lfd, (struct sockaddr *)&a, &alen) < 0) goto fail;
    p->port = ntohs(a.sin_port);
    what = "pipe2";
    if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) < 0) goto fail;
    what = "malloc";
    p->pfds = malloc(2 * sizeof *p->pfds);
    if (!p->pfds) goto fail;
    int err = pthread_create(&p->thread, NULL, loop, p);
    if (err) {
        errno = err;
        what = "pthread_create";
        goto fail;
    }
    return p;

fail:
    fprintf(stderr, "fault_proxy: %s: %s\n", what, strerror(errno));
    destroy(p);
    return NULL;
}

int rk_fault_proxy_port(const rk_fault_proxy *p)
{
    return p ? p->port : -1;
}

int rk_fault_proxy_connections(const rk_fault_proxy *p)
{
    return p ? atomic_load(&((rk_fault_proxy *)p)->accepted) : 0;
}

void rk_fault_proxy_set(rk_fault_proxy *p, rk_fault_mode mode, int arg)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->mode = mode;
    p->arg = arg;
    unsigned gen = ++p->gen;
    pthread_mutex_unlock(&p->mu);
    wake(p);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += FP_SET_WAIT_MS / 1000;
    deadline.tv_nsec += (long)(FP_SET_WAIT_MS % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    /* Generations compare modulo 2^32, so wrap-around is harmless. */
    while ((int)(p->applied_gen - gen) < 0 && rc == 0)
        rc = pthread_cond_timedwait(&p->applied_cv, &p->mu, &deadline);
    bool applied = (int)(p->applied_gen - gen) >= 0;
    pthread_mutex_unlock(&p->mu);
    if (!applied) fprintf(stderr, "fault_proxy: mode %d not applied within %d ms\n", (int)mode, FP_SET_WAIT_MS);
}

void rk_fault_proxy_stop(rk_fault_proxy *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_mutex_unlock(&p->mu);
    wake(p);
    pthread_join(p->thread, NULL);
    destroy(p);
}
