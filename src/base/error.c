/*
 * error.c — status names and the per-thread "last error" message.
 *
 * The message lives in a thread-local buffer rather than in the handles
 * because handles are shared between threads: a message stored in an
 * rk_client could be overwritten by another thread before it is read.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static _Thread_local char rk_errmsg[RK__ERRMSG_MAX];

rk_status rk__fail(rk_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rk_errmsg, sizeof rk_errmsg, fmt, ap);
    va_end(ap);
    return status;
}

rk_status rk__fail_str(rk_status status, const char *msg)
{
    snprintf(rk_errmsg, sizeof rk_errmsg, "%s", msg ? msg : "");
    return status;
}

const char *rk_last_error(void) { return rk_errmsg; }

const char *rk_strerror(rk_status status)
{
    switch (status) {
    case RK_OK: return "ok";
    case RK_MISS: return "miss";
    case RK_ERR_INVALID: return "invalid argument";
    case RK_ERR_UNAVAILABLE: return "redis unavailable";
    case RK_ERR_TIMEOUT: return "timeout";
    case RK_ERR_AUTH: return "authentication failed";
    case RK_ERR_TLS: return "TLS error";
    case RK_ERR_PROTOCOL: return "protocol error";
    case RK_ERR_SERVER: return "server error";
    case RK_ERR_TYPE: return "type mismatch";
    case RK_ERR_TOO_LARGE: return "too large";
    case RK_ERR_NOMEM: return "out of memory";
    case RK_ERR_SYSTEM: return "system error";
    case RK_DEGRADED: return "degraded (redis unavailable, treated as a miss)";
    case RK_ERR_SOURCE: return "source failed";
    case RK_ERR_CONFLICT: return "conflict (a watched key changed)";
    }
    return "unknown status";
}

bool rk_status_is_error(rk_status status)
{
    return status != RK_OK && status != RK_MISS && status != RK_DEGRADED;
}

bool rk_status_is_miss(rk_status status) { return status == RK_MISS || status == RK_DEGRADED; }

bool rk_status_is_retryable(rk_status status)
{
    return status == RK_ERR_UNAVAILABLE || status == RK_ERR_TIMEOUT;
}
