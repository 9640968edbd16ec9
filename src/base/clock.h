/*
 * clock.h — the two clocks of the library, in one place.
 *
 * Deadlines, waits and durations use the monotonic clock, which no wall
 * clock step can stretch or shrink. Only what is shared with other
 * processes and hosts — the logical expiry of a cached value — uses the
 * wall clock.
 */
#ifndef RK_SRC_CLOCK_H
#define RK_SRC_CLOCK_H

#include <stdint.h>

/* Monotonic clock in nanoseconds (the clock of every deadline). */
int64_t rk__now_ns(void);

/* Wall clock, Unix milliseconds. */
int64_t rk__wall_ms(void);

#endif
