/*
 * fdwait.h — the one wait of every transport: until a socket is ready, or a
 * deadline. Below both the plain connection (conn.c) and TLS (tls.c), so
 * neither depends on the other for it.
 */
#ifndef RK_SRC_TRANSPORT_FDWAIT_H
#define RK_SRC_TRANSPORT_FDWAIT_H

#include <stdint.h>

#include <redkit/status.h>

/* Waits that end without the awaited event (a signal, a spurious wake-up)
 * are retried within the deadline, but not more often than this: a bound
 * on the count as well as on the time. */
#define RK__MAX_WAKEUPS 1000000

/* Wait until fd is ready for events (POLLIN, POLLOUT) or deadline_ns (on
 * CLOCK_MONOTONIC) has passed: RK_OK, RK_ERR_TIMEOUT ("<doing> <peer>:
 * timed out") or RK_ERR_SYSTEM. Errors and hang-ups surface in the I/O
 * call that follows. */
rk_status rk__fd_wait(int fd, short events, int64_t deadline_ns, const char *doing, const char *peer);

#endif
