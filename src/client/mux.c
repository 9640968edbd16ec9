/*
 * mux.c — lanes: connections that every thread of a client shares, with
 * the commands of concurrent callers combined into one write.
 *
 * Design (chosen by measurement, see docs/client.md "Shared connections"):
 * no I/O thread. The callers themselves do the I/O, one at a time per
 * lane, as "driver". A call appends its encoded command to the lane's
 * output buffer and a slot to its queue, under the lane's lock. If no one
 * is driving, it drives: it writes everything queued in one write, reads
 * replies, hands each to the slot at the head of the queue (replies come
 * in the order the commands were written) and wakes that slot's thread,
 * until its own slot is complete; then it passes the driver's role to the
 * oldest caller still waiting. Commands that arrive while the driver is
 * writing or waiting for a reply are written by it in its next round:
 * under load one write carries many commands and one read many replies,
 * and with a single caller the path is the plain one (write, poll, read).
 * A dedicated I/O thread would add a thread hand-off to every call, in
 * both directions; the callers are already awake and on a CPU.
 *
 * One thread does the lane's I/O at a time, reads and writes both: an
 * OpenSSL session must not be read and written from two threads at once.
 *
 * Deadlines. A caller whose deadline passes gets RK_ERR_TIMEOUT at once;
 * its slot stays in the queue as a tombstone (a heap copy, since the
 * caller's stack is gone) so that its reply, when it comes, is read and
 * discarded: the queue stays aligned with the stream and no caller can
 * ever receive another's reply. The connection is declared dead, and every
 * waiter failed at once, only when the oldest reply awaited is overdue:
 * its call's dead_ns, at least the client's command timeout after it was
 * issued, has passed and the socket stayed silent. One caller with a
 * short per-call timeout therefore does not cost the others their
 * connection, and a server that stopped answering costs every caller at
 * most its own deadline.
 *
 * A lane takes its connection from the pool (client.c), through the same
 * gates (circuit breaker, backoff) as every connection, and keeps it. An
 * exclusive lease (a blocking command, a transaction) that finds the pool
 * exhausted takes the connection of an idle lane. A lane's connection
 * idle for a millisecond or more is checked as a pooled one is before it
 * is used again.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "clock.h"
#include "error.h"
#include "mux.h"

struct rk__slot {
    rk__slot *next;
    size_t n, got;        /* replies expected, received */
    rk_reply **replies;   /* the caller's array; NULL for a tombstone */
    sem_t *wake;          /* the caller's semaphore; NULL for a tombstone */
    int64_t dead_ns;
    _Atomic bool done;    /* set last, after everything the caller reads */
    rk_status st;
    char msg[RK__ERRMSG_MAX]; /* rk_last_error() for a failure */
};

/* Replies taken from the buffer per pass of the lock. */
#define BATCH 64

/* After the oldest reply is overdue, the socket must also stay silent this
 * long before the connection is declared dead: a reply nobody was reading
 * (every caller had given up) is not the server's fault. */
#define SILENCE_NS 2000000

/* Rounds a driver whose own call is answered goes on reading while others
 * wait, and how long each may wait for a reply. */
#define EXTRA_ROUNDS 4
#define EXTRA_WAIT_NS 200000

/* Each thread waits on a semaphore of its own, taken from a pool that is
 * never freed: a driver may post to it just after its owner has seen its
 * call done and even exited, and a post to a semaphore since handed to
 * another thread costs that thread one spurious wake-up, nothing more.
 * Waiting needs no mutex, so a woken caller whose reply is in returns
 * without touching the lane's lock. */
typedef struct waker {
    sem_t sem;
    struct waker *next;
} waker;

static pthread_mutex_t wakers_lock = PTHREAD_MUTEX_INITIALIZER;
static waker *free_wakers;
static pthread_key_t waker_key;
static pthread_once_t waker_once = PTHREAD_ONCE_INIT;
static __thread waker *my_waker;

static void waker_release(void *p)
{
    waker *w = p;
    pthread_mutex_lock(&wakers_lock);
    w->next = free_wakers;
    free_wakers = w;
    pthread_mutex_unlock(&wakers_lock);
}

static void waker_key_create(void) { pthread_key_create(&waker_key, waker_release); }

/* This thread's semaphore; NULL when out of memory. */
static sem_t *thread_wake(void)
{
    if (my_waker) return &my_waker->sem;
    pthread_once(&waker_once, waker_key_create);
    pthread_mutex_lock(&wakers_lock);
    waker *w = free_wakers;
    if (w) free_wakers = w->next;
    pthread_mutex_unlock(&wakers_lock);
    if (!w) {
        /* Plain malloc, not rk__malloc: the pool outlives any allocator
         * the application installs and removes. */
        if (!(w = malloc(sizeof *w))) return NULL;
        sem_init(&w->sem, 0, 0);
    }
    pthread_setspecific(waker_key, w);
    my_waker = w;
    return &w->sem;
}

void rk__mux_fork_prepare(void) { pthread_mutex_lock(&wakers_lock); }
void rk__mux_fork_parent(void) { pthread_mutex_unlock(&wakers_lock); }
void rk__mux_fork_child(void) { pthread_mutex_init(&wakers_lock, NULL); }

static struct timespec to_ts(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

rk_status rk__lock_init(pthread_mutex_t *lock, pthread_cond_t *cond)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0) return rk__fail(RK_ERR_SYSTEM, "pthread_condattr_init failed");
    /* Deadlines are on the monotonic clock; so must the waits be, or a
     * wall-clock jump would stretch or cut them. */
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int e = pthread_cond_init(cond, &a);
    pthread_condattr_destroy(&a);
    if (e != 0) return rk__fail(RK_ERR_SYSTEM, "pthread_cond_init: %s", strerror(e));
    if ((e = pthread_mutex_init(lock, NULL)) != 0) {
        pthread_cond_destroy(cond);
        return rk__fail(RK_ERR_SYSTEM, "pthread_mutex_init: %s", strerror(e));
    }
    return RK_OK;
}

rk_status rk__lane_init(rk__lane *l)
{
    memset(l, 0, sizeof *l);
    return rk__lock_init(&l->lock, &l->ready);
}

static void free_tombs(rk__lane *l)
{
    for (rk__slot *s = l->head, *next; s; s = next) {
        next = s->next;
        if (!s->replies) rk__free(s); /* live slots are their callers' */
    }
    l->head = l->tail = NULL;
}

void rk__lane_destroy(rk__lane *l)
{
    free_tombs(l);
    rk__conn_close(l->conn);
    l->conn = NULL;
    rk__free(l->out);
    rk__free(l->spare);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->ready);
}

void rk__lane_after_fork(rk__lane *l)
{
    /* The queue's live slots belong to threads that do not exist here;
     * its tombstones are this process's memory. */
    for (rk__slot *s = l->head, *next; s; s = next) {
        next = s->next;
        if (!s->replies) rk__free(s);
    }
    l->head = l->tail = NULL;
    rk__conn_abandon(l->conn);
    l->conn = NULL;
    l->connecting = l->driving = false;
    l->out_len = 0;
    atomic_store_explicit(&l->load, 0, memory_order_relaxed);
    rk__lock_init(&l->lock, &l->ready); /* cannot fail on glibc without attributes that allocate */
}

void rk__lane_poison(rk__lane *l)
{
    pthread_mutex_lock(&l->lock);
    if (l->conn) rk__conn_set_broken(l->conn);
    pthread_mutex_unlock(&l->lock);
}

/* Append len bytes to the output buffer (lock held). */
static bool append(rk__lane *l, const char *cmd, size_t len)
{
    if (l->out_cap - l->out_len < len) {
        size_t cap = l->out_cap ? l->out_cap : 4096;
        while (cap - l->out_len < len) cap *= 2;
        char *grown = rk__realloc(l->out, cap);
        if (!grown) return false;
        l->out = grown;
        l->out_cap = cap;
    }
    memcpy(l->out + l->out_len, cmd, len);
    l->out_len += len;
    return true;
}

/* Complete a live slot (lock held): returns the semaphore to post once
 * the lock is released, read before `done` is set since the caller may
 * return the moment it sees it. */
static sem_t *finish(rk__lane *l, rk__slot *s, rk_status st)
{
    sem_t *wake = s->wake;
    s->st = st;
    atomic_fetch_sub_explicit(&l->load, 1, memory_order_relaxed);
    atomic_store_explicit(&s->done, true, memory_order_release);
    return wake;
}

/* Fail every queued call with st (lock held): the connection is gone.
 * Returns the connection, for the caller to give back, closed, once the
 * lock is released. */
static rk__conn *kill_lane(rk__lane *l, rk_status st)
{
    const char *why = rk_last_error();
    for (rk__slot *s = l->head, *next; s; s = next) {
        next = s->next;
        if (!s->replies) {
            rk__free(s);
            atomic_fetch_sub_explicit(&l->load, 1, memory_order_relaxed);
            continue;
        }
        for (size_t i = 0; i < s->got; i++) {
            rk_reply_free(s->replies[i]);
            s->replies[i] = NULL;
        }
        snprintf(s->msg, sizeof s->msg, "%s", why);
        sem_post(finish(l, s, st)); /* rare: posted with the lock held */
    }
    l->head = l->tail = NULL;
    l->out_len = 0;
    rk__conn *conn = l->conn;
    if (conn) rk__conn_set_broken(conn);
    l->conn = NULL;
    return conn;
}

/* One reply arrived: it belongs to the head of the queue (lock held). A
 * call it completes gets its semaphore added to wake[*n_wake], to be
 * posted once the lock is released — unless it is the driver's own (me),
 * which is awake: a post would only make its next wait return at once for
 * nothing. False when nobody was waiting for it (a protocol violation). */
static bool dispatch(rk__lane *l, const rk__slot *me, rk_reply *r, sem_t **wake, int *n_wake)
{
    rk__slot *s = l->head;
    if (!s) {
        rk_reply_free(r);
        return false;
    }
    if (s->replies) s->replies[s->got] = r;
    else rk_reply_free(r);
    if (++s->got < s->n) return true;
    l->head = s->next;
    if (!l->head) l->tail = NULL;
    if (!s->replies) {
        rk__free(s);
        atomic_fetch_sub_explicit(&l->load, 1, memory_order_relaxed);
        return true;
    }
    sem_t *sem = finish(l, s, RK_OK);
    if (s != me) wake[(*n_wake)++] = sem;
    return true;
}

/* The caller of s gives up (lock held): its slot becomes a tombstone whose
 * replies will be discarded. If no memory is left for the tombstone the
 * connection is killed instead (returned, as by kill_lane), since a slot
 * on a stack that is about to go cannot stay in the queue. */
static rk__conn *abandon(rk__lane *l, rk__slot *s)
{
    for (size_t i = 0; i < s->got; i++) {
        rk_reply_free(s->replies[i]);
        s->replies[i] = NULL;
    }
    rk__slot *t = rk__malloc(sizeof *t);
    if (!t) {
        char saved[RK__ERRMSG_MAX];
        snprintf(saved, sizeof saved, "%s", rk_last_error());
        rk__fail(RK_ERR_NOMEM, "shared connection: out of memory keeping a timed-out call's place");
        rk__conn *conn = kill_lane(l, RK_ERR_NOMEM);
        snprintf(s->msg, sizeof s->msg, "%s", saved);
        s->st = RK_ERR_TIMEOUT;
        atomic_store_explicit(&s->done, true, memory_order_relaxed); /* its own thread */
        return conn;
    }
    *t = (rk__slot){.next = s->next, .n = s->n, .got = s->got, .dead_ns = s->dead_ns};
    rk__slot **at = &l->head, *prev = NULL;
    while (*at != s) {
        prev = *at;
        at = &(*at)->next;
    }
    *at = t;
    if (l->tail == s) l->tail = t;
    (void)prev;
    atomic_store_explicit(&s->done, true, memory_order_relaxed); /* its own thread */
    s->st = RK_ERR_TIMEOUT;
    snprintf(s->msg, sizeof s->msg, "read from %s: timed out (the reply will be discarded)",
             l->conn ? rk__conn_peer(l->conn) : "Redis");
    return NULL;
}

/* Wake the oldest caller still waiting to take over the driver's role
 * (lock held, nobody driving). */
static void hand_off(rk__lane *l)
{
    for (rk__slot *s = l->head; s; s = s->next)
        if (s->replies) {
            sem_post(s->wake);
            return;
        }
}

/* Drive the lane until s is complete, abandoned, or the connection dies
 * (lock held throughout, dropped for I/O). *gone receives a connection
 * to give back closed, with *gone_st. */
static void drive(rk__lane *l, rk__call *k, rk__slot *s, rk__conn **gone, rk_status *gone_st)
{
    l->driving = true;
    rk__conn *conn = l->conn;
    for (int extra = 0;; ) {
        /* Its own call answered, the driver still writes what is queued
         * (so no command waits for the next driver to be scheduled) and
         * reads a few more rounds while others wait, to spare them the
         * hand-off. */
        if (s->done) {
            if (!l->out_len && (extra >= EXTRA_ROUNDS || !l->head)) break;
            extra++;
        }
        if (l->out_len) {
            char *buf = l->out;
            size_t len = l->out_len, cap = l->out_cap;
            l->out = l->spare;
            l->out_cap = l->spare_cap;
            l->out_len = 0;
            l->spare = buf;
            l->spare_cap = cap;
            pthread_mutex_unlock(&l->lock);
            /* The write may take as long as the connection may live: a
             * partial write would leave the stream unusable for all. */
            rk_status st = rk__conn_send(conn, buf, len, s->dead_ns);
            pthread_mutex_lock(&l->lock);
            if (st != RK_OK) {
                *gone_st = st;
                *gone = kill_lane(l, st);
                break;
            }
            continue;
        }
        int64_t now = rk__now_ns();
        int64_t dead = l->head->dead_ns > now + SILENCE_NS ? l->head->dead_ns : now + SILENCE_NS;
        int64_t until = s->done ? now + EXTRA_WAIT_NS : k->deadline_ns;
        bool at_dead = dead <= until;
        if (at_dead) until = dead;
        pthread_mutex_unlock(&l->lock);
        rk_reply *got[BATCH];
        int n = 0;
        rk_status st = rk__conn_read_reply(conn, &got[0], until);
        if (st == RK_OK)
            for (n = 1; n < BATCH; n++)
                if ((st = rk__conn_buffered_reply(conn, &got[n])) != RK_OK || !got[n]) break;
        pthread_mutex_lock(&l->lock);
        bool stray = false;
        sem_t *wake[BATCH];
        int n_wake = 0;
        for (int i = 0; i < n; i++)
            if (!dispatch(l, s, got[i], wake, &n_wake)) stray = true;
        if (n_wake) {
            /* Woken with the lock released, so that they need not wait for it. */
            pthread_mutex_unlock(&l->lock);
            for (int i = 0; i < n_wake; i++) sem_post(wake[i]);
            pthread_mutex_lock(&l->lock);
        }
        if (stray) {
            *gone_st = rk__fail(RK_ERR_PROTOCOL, "reply from %s: a reply nobody asked for", rk__conn_peer(conn));
            *gone = kill_lane(l, RK_ERR_PROTOCOL);
            break;
        }
        if (st == RK_OK) continue;
        if (st == RK_ERR_TIMEOUT && !at_dead) {
            if (!s->done) *gone = abandon(l, s), *gone_st = RK_ERR_NOMEM;
            break;
        }
        if (st == RK_ERR_TIMEOUT)
            st = rk__fail(RK_ERR_TIMEOUT, "read from %s: no reply within %lld ms", rk__conn_peer(conn),
                          (long long)((rk__now_ns() - k->start_ns) / 1000000));
        *gone_st = st;
        *gone = kill_lane(l, st);
        break;
    }
    l->driving = false;
    hand_off(l);
}

rk__conn *rk__lane_take_idle(rk__lane *l)
{
    if (pthread_mutex_trylock(&l->lock) != 0) return NULL;
    rk__conn *conn = NULL;
    if (l->conn && !l->head && !l->driving && !l->connecting && !l->out_len) {
        conn = l->conn;
        l->conn = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    return conn;
}

rk_status rk__lane_call(rk_client *c, rk__lane *l, rk__call *k, const char *cmd, size_t len, size_t n,
                        rk_reply **replies)
{
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    pthread_mutex_lock(&l->lock);
    bool opened = false;
    for (;;) {
        if (l->connecting) {
            struct timespec ts = to_ts(k->deadline_ns);
            if (pthread_cond_timedwait(&l->ready, &l->lock, &ts) == ETIMEDOUT && l->connecting) {
                pthread_mutex_unlock(&l->lock);
                rk__pool_lane_end(c, k->probe, RK_ERR_TIMEOUT, NULL, RK_OK);
                return rk__fail(RK_ERR_TIMEOUT, "waiting for a connection to Redis: timed out");
            }
            continue;
        }
        /* In use, or used a moment ago: good (the hot path). The call's
         * own clock read, microseconds old, is good enough for "a moment":
         * no need for another. */
        if (l->conn && (l->head || l->driving ||
                        (!rk__conn_broken(l->conn) &&
                         k->start_ns - rk__conn_last_used(l->conn) < RK__PEER_CHECK_AFTER_NS)))
            break;
        /* Idle for a while, or none: check it, or take one from the pool,
         * with the lock released and the others waiting. */
        l->connecting = true;
        rk__conn *conn = l->conn;
        l->conn = NULL;
        pthread_mutex_unlock(&l->lock);
        rk_status st = RK_OK;
        if (conn && !rk__pool_check(c, conn, k->deadline_ns)) conn = NULL; /* closed and counted */
        if (conn) k->reused = true;
        else st = rk__pool_acquire(c, k, &conn);
        pthread_mutex_lock(&l->lock);
        l->connecting = false;
        pthread_cond_broadcast(&l->ready);
        if (st != RK_OK) {
            pthread_mutex_unlock(&l->lock);
            return st;
        }
        l->conn = conn;
        opened = true;
        break;
    }
    if (!opened) k->reused = true;
    sem_t *wake = thread_wake();
    if (!wake || !append(l, cmd, len)) {
        pthread_mutex_unlock(&l->lock);
        return rk__fail(RK_ERR_NOMEM, "shared connection: out of memory queueing a command");
    }
    rk__slot s = {.n = n, .replies = replies, .wake = wake, .dead_ns = k->dead_ns};
    if (l->tail) l->tail->next = &s;
    else l->head = &s;
    l->tail = &s;
    atomic_fetch_add_explicit(&l->load, 1, memory_order_relaxed);

    rk__conn *gone = NULL;
    rk_status gone_st = RK_OK;
    bool locked = true;
    while (!atomic_load_explicit(&s.done, memory_order_acquire)) {
        if (!l->driving) {
            drive(l, k, &s, &gone, &gone_st);
            continue;
        }
        pthread_mutex_unlock(&l->lock);
        struct timespec ts = to_ts(k->deadline_ns);
        while (sem_clockwait(wake, CLOCK_MONOTONIC, &ts) != 0 && errno == EINTR) continue;
        /* The common case: the reply is in, and the lock is not needed. */
        if (atomic_load_explicit(&s.done, memory_order_acquire)) {
            locked = false;
            break;
        }
        pthread_mutex_lock(&l->lock);
        if (!atomic_load_explicit(&s.done, memory_order_acquire) && rk__now_ns() >= k->deadline_ns) {
            gone = abandon(l, &s);
            gone_st = RK_ERR_NOMEM;
            if (!l->driving) hand_off(l);
        }
    }
    if (locked) pthread_mutex_unlock(&l->lock);

    rk_status st = s.st;
    char msg[RK__ERRMSG_MAX];
    if (st != RK_OK) snprintf(msg, sizeof msg, "%s", s.msg);
    rk__pool_lane_end(c, k->probe, st, gone, gone_st);
    return st == RK_OK ? st : rk__fail_str(st, msg);
}
