/*
 * fdwait.c — the transports' wait on a socket (contract in fdwait.h).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "fdwait.h"

rk_status rk__fd_wait(int fd, short events, int64_t deadline_ns, const char *doing, const char *peer)
{
    for (int i = 0; i < RK__MAX_WAKEUPS; i++) {
        int64_t left = deadline_ns - rk__now_ns();
        if (left <= 0) return rk__fail(RK_ERR_TIMEOUT, "%s %s: timed out", doing, peer);
        struct pollfd p = {.fd = fd, .events = events};
        int ms = (int)((left + 999999) / 1000000);
        int n = poll(&p, 1, ms);
        if (n > 0) return RK_OK; /* errors and hang-ups surface in the I/O call */
        if (n < 0 && errno != EINTR)
            return rk__fail(RK_ERR_SYSTEM, "%s %s: poll: %s", doing, peer, strerror(errno));
    }
    return rk__fail(RK_ERR_TIMEOUT, "%s %s: timed out (%d interrupted waits)", doing, peer, RK__MAX_WAKEUPS);
}

