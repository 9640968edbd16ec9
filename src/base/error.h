/*
 * error.h — setting the calling thread's last error message.
 *
 * Every internal failure path ends in rk__fail(status, fmt, ...), which
 * formats the detail into thread-local storage and returns status, so a
 * function can `return rk__fail(RK_ERR_INVALID, "key is empty");`.
 * Messages must never contain a password, session ID or API key: format
 * only what is safe to log.
 */
#ifndef RK_SRC_ERROR_H
#define RK_SRC_ERROR_H

#include <redkit/status.h>

#define RK__ERRMSG_MAX 512

rk_status rk__fail(rk_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Set the message to a plain string (copied, truncated to fit). */
rk_status rk__fail_str(rk_status status, const char *msg);

#endif
