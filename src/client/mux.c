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
 * in the order the commands were written), until its own slot is
 * complete; then it passes the driver's role to the oldest caller still
 * waiting. Commands that arrive while the driver is writing or waiting
 * for a reply are written by it in its next round: under load one write
 * carries many commands and one read many replies (measured with 256
 * threads on 2 cores: ~27 commands per write, ~35 replies per read), and
 * with a single caller the path is the plain one (send, recv: conn.c).
 * A dedicated I/O thread would add a thread hand-off to every call, in
 * both directions; the callers are already awake and on a CPU.
 *
 * Waking. With many threads the cost per call is not the I/O but putting
 * the caller to sleep and waking it. The callers of one write sleep on
 * one futex word (its "bell"); when the write's last reply has been
 * handed out, one FUTEX_WAKE wakes them all, with the lane's lock
 * released; a woken caller whose reply is in returns without touching the
 * lock. Waking each caller with a semaphore of its own cost twice the CPU
 * per call at 256 threads (a system call, and often the driver's CPU, per
 * reply). The lock spins briefly before sleeping, since the callers a
 * bell wakes all queue their next command at once (details at futex()).
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
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "error.h"
#include "fdwait.h"
#include "mux.h"

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

/* Waiting callers sleep on a futex word, a "bell", shared by the calls
 * of one write (bells[write % RK__LANE_BELLS]). When the last reply of a
 * write has been handed out, one FUTEX_WAKE wakes all of its callers —
 * or earlier, when the rest of the write is calls nobody waits for and
 * so nobody may read (ring_early). Waking each thread with a call of its
 * own cost the driver a system call and, often, its CPU to the thread it
 * woke, per reply — measured at
 * about twice the CPU per operation with 256 threads on 2 cores. A bell
 * is rung only when somebody sleeps on it (sleepers), so a lone caller,
 * which drives its own call, makes no wake-up call at all. A thread that
 * must be woken alone (to take the driver's role over) is nominated and
 * woken by its bitset bit (thread_bit). Two writes 64 apart share a
 * bell: a ring for one wakes the other's sleepers for nothing, and they
 * sleep again — a cost, never a lost wake-up. Linux futexes: redkit
 * already requires Linux and glibc (getaddrinfo_a, TCP_KEEPIDLE). */
static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts, uint32_t bits)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, bits);
}

/* Each thread sleeps with a bit of its own (one of 32, given out in
 * turn): a nominated thread is woken by its bit alone, and of the others
 * on its bell only those that happen to share the bit wake for nothing. */
static _Atomic unsigned next_bit;
static __thread uint32_t my_bit;

static uint32_t thread_bit(void)
{
    if (!my_bit) my_bit = 1u << (atomic_fetch_add_explicit(&next_bit, 1, memory_order_relaxed) % 32);
    return my_bit;
}

/* Ring the bell of a write: every thread sleeping on it whose bit is in
 * bits wakes up. */
static void ring_bits(rk__lane *l, uint32_t write, uint32_t bits)
{
    unsigned b = write % RK__LANE_BELLS;
    atomic_fetch_add(&l->bells[b], 1);
    if (atomic_load(&l->sleepers[b]) > 0) futex(&l->bells[b], FUTEX_WAKE_BITSET_PRIVATE, INT_MAX, NULL, bits);
}

static void ring(rk__lane *l, uint32_t write) { ring_bits(l, write, FUTEX_BITSET_MATCH_ANY); }

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

/* The lane's lock spins a little before it sleeps: it is held for
 * microseconds (queueing a command, handing out replies), and the callers
 * a bell wakes together all take it at once to queue their next command;
 * sleeping on it would cost each a futex wait and a wake-up. */
static void lane_lock_adaptive(rk__lane *l)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0) return;
    if (pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP) == 0) {
        pthread_mutex_destroy(&l->lock);
        pthread_mutex_init(&l->lock, &a); /* cannot fail on glibc: nothing to allocate */
    }
    pthread_mutexattr_destroy(&a);
}

rk_status rk__lane_init(rk__lane *l, int64_t timeout_ns)
{
    memset(l, 0, sizeof *l);
    l->timeout_ns = timeout_ns;
    rk_status st = rk__lock_init(&l->lock, &l->ready);
    if (st == RK_OK) lane_lock_adaptive(l);
    return st;
}

/* Every change of l->conn goes through here (lock held), so that
 * callers picking a lane without the lock see whether it has one. */
static void set_conn(rk__lane *l, rk__conn *conn)
{
    l->conn = conn;
    atomic_store_explicit(&l->up, conn != NULL, memory_order_relaxed);
}

bool rk__lane_up(rk__lane *l) { return atomic_load_explicit(&l->up, memory_order_relaxed); }

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
    set_conn(l, NULL);
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
    set_conn(l, NULL);
    l->connecting = l->driving = false;
    l->out_len = 0;
    atomic_store_explicit(&l->load, 0, memory_order_relaxed);
    for (int b = 0; b < RK__LANE_BELLS; b++) atomic_store(&l->sleepers[b], 0); /* the parent's threads */
    rk__lock_init(&l->lock, &l->ready); /* cannot fail on glibc without attributes that allocate */
    lane_lock_adaptive(l);
}

void rk__lane_poison(rk__lane *l)
{
    pthread_mutex_lock(&l->lock);
    if (l->conn) rk__conn_set_broken(l->conn);
    pthread_mutex_unlock(&l->lock);
}

/* Room for len more bytes in the output buffer (lock held). */
static bool reserve(rk__lane *l, size_t len)
{
    if (l->out_cap - l->out_len >= len) return true;
    size_t cap = l->out_cap ? l->out_cap : 4096;
    while (cap - l->out_len < len) cap *= 2;
    char *grown = rk__realloc(l->out, cap);
    if (!grown) return false;
    l->out = grown;
    l->out_cap = cap;
    return true;
}

/* Append len bytes to the output buffer (lock held). */
static bool append(rk__lane *l, const char *cmd, size_t len)
{
    if (!reserve(l, len)) return false;
    memcpy(l->out + l->out_len, cmd, len);
    l->out_len += len;
    return true;
}

/* Complete a live slot (lock held). The caller may return the moment it
 * sees `done`, its slot with it: nothing of s may be read after. Its bell
 * is the dispatcher's to ring. (Sequentially consistent, as every
 * store and load around a bell: see await().) */
static void finish(rk__lane *l, rk__slot *s, rk_status st)
{
    s->st = st;
    atomic_fetch_sub_explicit(&l->load, 1, memory_order_relaxed);
    atomic_store(&s->done, true);
}

/* Fail every queued call with st (lock held): the connection is gone.
 * Returns the connection, for the caller to give back, closed, once the
 * lock is released: nothing is torn down under the lane's lock. */
static rk__conn *kill_lane(rk__lane *l, rk_status st)
{
    const char *why = rk_last_error();
    for (rk__slot *s = l->head, *next; s; s = next) {
        next = s->next;
        uint32_t write = s->write;
        bool last = !next || next->write != write;
        if (!s->replies) {
            rk__free(s);
            atomic_fetch_sub_explicit(&l->load, 1, memory_order_relaxed);
        } else {
            /* Its replies so far are freed by its caller, with the lock
             * released (await). */
            snprintf(s->msg, sizeof s->msg, "%s", why);
            finish(l, s, st);
        }
        if (last) ring(l, write); /* rare: rung with the lock held */
    }
    l->head = l->tail = NULL;
    l->out_len = 0;
    rk__conn *conn = l->conn;
    if (conn) rk__conn_set_broken(conn);
    set_conn(l, NULL);
    return conn;
}

/* Must write w's bell ring before the write is fully answered (lock
 * held)? Its callers whose replies are in sleep on it until it rings.
 * The rest of the write is answered — and the bell rung — only if
 * somebody reads on: a driver, or a caller waiting in the queue whom
 * hand_off can nominate. When none of the write's calls still queued is
 * waited for (given up, or sent ahead and not waited yet), nobody may,
 * and the bell rings now. Walks the queue up to the end of the write. */
static bool ring_early(const rk__lane *l, uint32_t w)
{
    for (const rk__slot *q = l->head; q; q = q->next) {
        if ((int32_t)(q->write - w) > 0) break;
        if (q->write == w && q->replies && q->waiting) return false;
    }
    return true;
}

/* One reply arrived: it belongs to the head of the queue (lock held).
 * When it completes the last call of a write, that write's bell is added
 * to bells[*n_bells], to be rung once the lock is released (the calls of
 * one write are next to each other in the queue); when it completes a
 * live call before the rest of its write, *partial receives the write
 * (see ring_early). A reply nobody will
 * read (its caller gave up) is added to discard[*n_discard], to be freed
 * once the lock is released: a large reply takes a while to free. False
 * when nobody was waiting for it (a protocol violation; discarded too). */
static bool dispatch(rk__lane *l, rk_reply *r, uint32_t *bells, int *n_bells, rk_reply **discard,
                     int *n_discard, uint32_t *partial, bool *has_partial)
{
    rk__slot *s = l->head;
    if (!s) {
        discard[(*n_discard)++] = r;
        return false;
    }
    if (s->replies) s->replies[s->got] = r;
    else discard[(*n_discard)++] = r;
    if (++s->got < s->n) return true;
    l->head = s->next;
    if (!l->head) l->tail = NULL;
    uint32_t write = s->write;
    bool last = !l->head || l->head->write != write;
    if (last) bells[(*n_bells)++] = write;
    if (!s->replies) {
        rk__free(s);
        atomic_fetch_sub_explicit(&l->load, 1, memory_order_relaxed);
        return true;
    }
    finish(l, s, RK_OK);
    if (!last) *partial = write, *has_partial = true;
    return true;
}

/* The caller of s gives up (lock held): its slot becomes a tombstone whose
 * replies will be discarded. If no memory is left for the tombstone the
 * connection is killed instead, since a slot on a stack that is about to
 * go cannot stay in the queue; the connection is returned, as by
 * kill_lane, to the driver (by_driver) or when nobody drives — a driver
 * in another thread is using it, and gives it back itself. */
static rk__conn *abandon(rk__lane *l, rk__slot *s, bool by_driver)
{
    /* The replies it got so far stay in the caller's array, freed by the
     * caller with the lock released (await). */
    rk__slot *t = rk__malloc(sizeof *t);
    if (!t) {
        char saved[RK__ERRMSG_MAX];
        snprintf(saved, sizeof saved, "%s", rk_last_error());
        rk__fail(RK_ERR_NOMEM, "shared connection: out of memory keeping a timed-out call's place");
        rk__conn *conn = kill_lane(l, RK_ERR_NOMEM);
        snprintf(s->msg, sizeof s->msg, "%s", saved);
        s->st = RK_ERR_TIMEOUT;
        atomic_store_explicit(&s->done, true, memory_order_relaxed); /* its own thread */
        /* Another thread driving holds the connection in its I/O: it sees
         * the lane killed when it takes the lock again, and gives the
         * connection back itself. */
        return by_driver || !l->driving ? conn : NULL;
    }
    *t = (rk__slot){.next = s->next, .n = s->n, .got = s->got, .dead_ns = s->dead_ns, .write = s->write,
                    .ahead = s->ahead};
    rk__slot **at = &l->head;
    while (*at != s) at = &(*at)->next;
    *at = t;
    if (l->tail == s) l->tail = t;
    if (ring_early(l, t->write)) ring(l, t->write); /* rare: rung with the lock held */
    atomic_store_explicit(&s->done, true, memory_order_relaxed); /* its own thread */
    s->st = RK_ERR_TIMEOUT;
    snprintf(s->msg, sizeof s->msg, "read from %s: timed out (the command may still be applied; its reply will be discarded)",
             l->conn ? rk__conn_peer(l->conn) : "Redis");
    return NULL;
}

/* Wake the oldest caller still waiting to take over the driver's role
 * (lock held, nobody driving). A slot nobody waits on (a command sent
 * ahead, not yet waited for) cannot take it. */
static void hand_off(rk__lane *l)
{
    for (rk__slot *s = l->head; s; s = s->next)
        if (s->replies && s->waiting) {
            atomic_store(&s->nominated, true);
            ring_bits(l, s->write, s->bit);
            return;
        }
}

/* Put back the part of a write the server did not take, in front of
 * whatever was queued meanwhile (lock held): the stream must go on with
 * exactly those bytes. */
static bool put_back(rk__lane *l, const char *rest, size_t len)
{
    if (!reserve(l, len)) return false;
    memmove(l->out + len, l->out, l->out_len);
    memcpy(l->out, rest, len);
    l->out_len += len;
    return true;
}

static int64_t head_dead(const rk__lane *l);

/* Write everything queued in one write (lock held, dropped for the
 * write; l->driving set), by deadline_ns: the deadline of the call whose
 * thread writes, so that it returns by then whoever's bytes it writes.
 * On a plain connection a write the server has not taken by then stops
 * half-way (RK_ERR_TIMEOUT, *gone NULL): the rest is put back in front of
 * the queue for the next driver, and the connection lives on — unless
 * the oldest reply awaited is overdue too (the server stopped reading
 * altogether), which kills the lane. A TLS record cannot stop half-way:
 * there the write may run until the oldest reply is overdue. Any other
 * failure kills the lane; *gone then receives the connection. If the lane
 * was killed meanwhile by another thread (abandon, out of memory), the
 * connection is this driver's to give back: *gone, RK_ERR_UNAVAILABLE. */
static rk_status write_out(rk__lane *l, int64_t deadline_ns, rk__conn **gone)
{
    char *buf = l->out;
    size_t len = l->out_len, cap = l->out_cap;
    l->out = l->spare;
    l->out_cap = l->spare_cap;
    l->out_len = 0;
    l->written++; /* calls queued from now on go out in the next write */
    l->spare = buf;
    l->spare_cap = cap;
    rk__conn *conn = l->conn;
    int64_t now = rk__now_ns();
    l->write_ns[l->written % RK__LANE_BELLS] = now;
    int64_t tls_deadline = l->head ? head_dead(l) : 0;
    if (tls_deadline < deadline_ns) tls_deadline = deadline_ns;
    pthread_mutex_unlock(&l->lock);
    size_t sent = 0;
    rk_status st = rk__conn_send_some(conn, buf, len, deadline_ns, tls_deadline, &sent);
    pthread_mutex_lock(&l->lock);
    if (l->conn != conn) { /* killed under this driver */
        *gone = conn;
        return RK_ERR_UNAVAILABLE;
    }
    if (st == RK_ERR_TIMEOUT && !rk__conn_broken(conn)) {
        if (!put_back(l, buf + sent, len - sent))
            st = rk__fail(RK_ERR_NOMEM, "write to %s: out of memory keeping the rest of a write", rk__conn_peer(conn));
        else if (l->head && head_dead(l) <= rk__now_ns())
            st = rk__fail(RK_ERR_TIMEOUT, "write to %s: the server took no more bytes (%zu of %zu written) and "
                                          "the oldest reply is overdue", rk__conn_peer(conn), sent, len);
        else
            return RK_ERR_TIMEOUT; /* the connection lives on */
    }
    if (st != RK_OK) *gone = kill_lane(l, st);
    return st;
}

/* One write by a thread that is not driving (lock held, nobody driving):
 * it takes the driver's role for the write only, then hands it to a
 * waiting caller. As write_out. */
static rk_status write_alone(rk__lane *l, int64_t deadline_ns, rk__conn **gone)
{
    l->driving = true;
    rk_status st = write_out(l, deadline_ns, gone);
    l->driving = false;
    hand_off(l);
    return st;
}

/* When the oldest reply awaited is overdue (lock held, l->head set): its
 * call's dead_ns. A command sent ahead (rk__lane_send) may have waited in
 * the queue for a long while before it went out: its reply is not
 * overdue before the command timeout has run from the write that carried
 * it. (A write more than RK__LANE_BELLS writes old has its time
 * overwritten by a later one: that only moves the bound later.) A
 * blocking call is written within the driver's round: its own dead_ns
 * stands, so that a lone caller's deadline on a silent server is also
 * the connection's. */
static int64_t head_dead(const rk__lane *l)
{
    int64_t dead = l->head->dead_ns;
    if (l->head->ahead) {
        int64_t sent = l->write_ns[l->head->write % RK__LANE_BELLS] + l->timeout_ns;
        if (sent > dead) dead = sent;
    }
    return dead;
}

/* The time the driver reads until, at most, before it declares the
 * connection dead: head_dead, but never sooner than SILENCE_NS from now. */
static int64_t overdue_at(const rk__lane *l, int64_t now)
{
    int64_t dead = head_dead(l);
    return dead > now + SILENCE_NS ? dead : now + SILENCE_NS;
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
            /* Past its own deadline, it leaves the writing to the next
             * driver rather than write under a deadline that has passed. */
            if (l->out_len && rk__now_ns() >= k->deadline_ns) break;
            extra++;
        }
        if (l->out_len) {
            rk_status st = write_out(l, k->deadline_ns, gone);
            if (st == RK_ERR_TIMEOUT && !*gone) {
                /* Stopped half-way at this caller's deadline: it gives up
                 * its own call, and the next driver writes the rest. */
                if (!s->done) {
                    *gone = abandon(l, s, true), *gone_st = RK_ERR_NOMEM;
                    if (!*gone)
                        snprintf(s->msg, sizeof s->msg, "write to %s: timed out with the server not taking "
                                 "bytes (the rest goes out with the next write; the reply will be discarded)",
                                 rk__conn_peer(conn));
                }
                break;
            }
            if (st != RK_OK) {
                *gone_st = st;
                break;
            }
            continue;
        }
        int64_t now = rk__now_ns();
        int64_t dead = overdue_at(l, now);
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
        if (l->conn != conn) { /* killed under this driver (abandon, out of memory): it gives it back */
            for (int i = 0; i < n; i++) rk_reply_free(got[i]);
            *gone = conn;
            *gone_st = RK_ERR_UNAVAILABLE;
            break;
        }
        bool stray = false, has_partial = false;
        uint32_t bells[BATCH + 1], partial = 0;
        int n_bells = 0, n_discard = 0;
        for (int i = 0; i < n; i++)
            if (!dispatch(l, got[i], bells, &n_bells, got, &n_discard, &partial, &has_partial)) stray = true;
        if (has_partial && l->head && l->head->write == partial && ring_early(l, partial))
            bells[n_bells++] = partial;
        if (n_bells || n_discard) {
            /* Rung with the lock released, so that the woken need not
             * wait for it; discarded replies freed likewise. (got[] is
             * reused for them: dispatch reads got[i] before it stores at
             * got[n_discard], n_discard <= i.) */
            pthread_mutex_unlock(&l->lock);
            for (int i = 0; i < n_bells; i++) ring(l, bells[i]);
            for (int i = 0; i < n_discard; i++) rk_reply_free(got[i]);
            pthread_mutex_lock(&l->lock);
        }
        if (stray) {
            *gone_st = rk__fail(RK_ERR_PROTOCOL, "reply from %s: a reply nobody asked for", rk__conn_peer(conn));
            *gone = kill_lane(l, RK_ERR_PROTOCOL);
            break;
        }
        if (st == RK_OK) continue;
        if (st == RK_ERR_TIMEOUT && !at_dead) {
            if (!s->done) *gone = abandon(l, s, true), *gone_st = RK_ERR_NOMEM;
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
        set_conn(l, NULL);
    }
    pthread_mutex_unlock(&l->lock);
    return conn;
}

/* Queue n encoded commands in slot s (lock held on return when RK_OK;
 * released on failure, with nothing queued): take or check the lane's
 * connection first if it has none or sat idle. */
static rk_status queue(rk_client *c, rk__lane *l, rk__call *k, const char *cmd, size_t len, size_t n,
                       rk_reply **replies, rk__slot *s)
{
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    k->gone = NULL;
    k->gone_st = RK_OK;
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
        set_conn(l, NULL);
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
            k->unsent = true;
            return st;
        }
        set_conn(l, conn);
        opened = true;
        break;
    }
    if (!opened) k->reused = true;
    if (!append(l, cmd, len)) {
        pthread_mutex_unlock(&l->lock);
        rk__pool_probe_cancel(c, k->probe); /* or every other call would fail fast for good */
        return rk__fail(RK_ERR_NOMEM, "shared connection: out of memory queueing a command");
    }
    *s = (rk__slot){.n = n, .replies = replies, .dead_ns = k->dead_ns, .write = l->written + 1};
    if (l->tail) l->tail->next = s;
    else l->head = s;
    l->tail = s;
    atomic_fetch_add_explicit(&l->load, 1, memory_order_relaxed);
    return RK_OK;
}

/* Wait until s is complete (lock held on entry if locked; released on
 * return), driving the lane whenever nobody does; then end the call. */
static rk_status await(rk_client *c, rk__lane *l, rk__call *k, rk__slot *s, bool locked)
{
    rk__conn *gone = k->gone;
    rk_status gone_st = k->gone_st;
    s->bit = thread_bit();
    while (!atomic_load_explicit(&s->done, memory_order_acquire)) {
        if (!l->driving) {
            drive(l, k, s, &gone, &gone_st);
            continue;
        }
        /* Sleep on the bell of this call's write. Counted among its
         * sleepers before the bell is read and `done` looked at, while
         * the ringer sets `done`, rings, then counts the sleepers (all
         * sequentially consistent): either the ringer sees this thread
         * and wakes it, or this thread sees `done`; and a ring after the
         * bell was read makes the wait return at once. */
        unsigned b = s->write % RK__LANE_BELLS;
        atomic_fetch_add(&l->sleepers[b], 1);
        uint32_t seen = atomic_load(&l->bells[b]);
        s->waiting = true;
        pthread_mutex_unlock(&l->lock);
        struct timespec ts = to_ts(k->deadline_ns);
        for (int i = 0; i < RK__MAX_WAKEUPS && !atomic_load(&s->done) && !atomic_load(&s->nominated); i++) {
            /* Absolute, on CLOCK_MONOTONIC (FUTEX_WAIT_BITSET's clock). */
            if (futex(&l->bells[b], FUTEX_WAIT_BITSET_PRIVATE, seen, &ts, s->bit) != 0 && errno == ETIMEDOUT) break;
            seen = atomic_load(&l->bells[b]); /* another write's ring, or this one's: look again */
        }
        atomic_fetch_sub(&l->sleepers[b], 1);
        /* The common case: the reply is in, and the lock is not needed
         * (a done slot is out of the queue: nobody reads `waiting`). */
        if (atomic_load(&s->done)) {
            locked = false;
            break;
        }
        pthread_mutex_lock(&l->lock);
        s->waiting = false;
        atomic_store(&s->nominated, false);
        if (!atomic_load(&s->done) && rk__now_ns() >= k->deadline_ns) {
            gone = abandon(l, s, false);
            gone_st = RK_ERR_NOMEM;
            if (!l->driving) hand_off(l);
        }
    }
    if (locked) pthread_mutex_unlock(&l->lock);

    size_t n = s->n;
    rk_reply **replies = s->replies;
    rk_status st = s->st;
    char msg[RK__ERRMSG_MAX];
    if (st != RK_OK) {
        snprintf(msg, sizeof msg, "%s", s->msg);
        /* A failed call's partial replies: freed here, with no lock held
         * (kill_lane and abandon leave them). */
        for (size_t i = 0; i < n; i++) {
            rk_reply_free(replies[i]);
            replies[i] = NULL;
        }
    }
    rk__pool_lane_end(c, k->probe, st, gone, gone_st);
    return st == RK_OK ? st : rk__fail_str(st, msg);
}

rk_status rk__lane_call(rk_client *c, rk__lane *l, rk__call *k, const char *cmd, size_t len, size_t n,
                        rk_reply **replies)
{
    rk__slot s;
    rk_status st = queue(c, l, k, cmd, len, n, replies, &s);
    return st == RK_OK ? await(c, l, k, &s, true) : st;
}

rk_status rk__lane_send(rk_client *c, rk__lane *l, rk__call *k, const char *cmd, size_t len, size_t n,
                        rk_reply **replies, rk__slot *s)
{
    rk_status st = queue(c, l, k, cmd, len, n, replies, s);
    if (st != RK_OK) return st;
    s->ahead = true;
    /* A lone command goes out now, so that it is not kept back until the
     * caller waits; behind others, it joins the write the lane's driver
     * (or the next waiter) makes, with everything queued meanwhile. */
    if (!l->driving && l->head == s) {
        rk_status wst = write_alone(l, k->deadline_ns, &k->gone);
        if (k->gone) k->gone_st = wst;
    }
    pthread_mutex_unlock(&l->lock);
    return RK_OK;
}

rk_status rk__lane_wait(rk_client *c, rk__lane *l, rk__call *k, rk__slot *s)
{
    if (atomic_load_explicit(&s->done, memory_order_acquire)) return await(c, l, k, s, false);
    pthread_mutex_lock(&l->lock);
    if (!atomic_load(&s->done) && rk__now_ns() >= k->deadline_ns) {
        /* Too late to drive for it (a write now could not be waited
         * for): given up without I/O. */
        rk__conn *gone = abandon(l, s, false);
        if (gone) k->gone = gone, k->gone_st = RK_ERR_NOMEM;
        if (!l->driving) hand_off(l);
    }
    return await(c, l, k, s, true);
}

void rk__lane_forget(rk_client *c, rk__lane *l, rk__call *k, rk__slot *s)
{
    pthread_mutex_lock(&l->lock);
    bool done = atomic_load(&s->done);
    rk__conn *gone = k->gone;
    rk_status gone_st = k->gone_st;
    if (!done) {
        rk__conn *killed = abandon(l, s, false);
        if (killed) gone = killed, gone_st = RK_ERR_NOMEM;
        /* Its command still goes out if nobody else is about to write
         * it: a command sent and forgotten is sent all the same. */
        if (!l->driving && l->out_len && l->conn && !gone && rk__now_ns() < k->deadline_ns) {
            rk_status wst = write_alone(l, k->deadline_ns, &gone);
            if (gone) gone_st = wst;
        } else if (!l->driving) {
            hand_off(l);
        }
    }
    pthread_mutex_unlock(&l->lock);
    for (size_t i = 0; i < s->n; i++) {
        rk_reply_free(s->replies[i]);
        s->replies[i] = NULL;
    }
    /* A call given up before its reply is not counted as an outcome; a
     * connection it leaves to give back is. (Never the breaker's probe:
     * a probe future runs to its end at send, async.c.) */
    if (done) rk__pool_lane_end(c, k->probe, s->st, gone, gone_st);
    else if (gone) rk__pool_lane_end(c, k->probe, RK_ERR_TIMEOUT, gone, gone_st);
}
