/*
 * rand.c — the OS random source (see rand.h).
 */
#include <errno.h>
#include <sys/random.h>

#include "rand.h"

bool rk__fill_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    for (int tries = 0; n > 0 && tries < 8; tries++) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += (size_t)got;
        n -= (size_t)got;
    }
    return n == 0;
}
