/*
 * clock.h — the two time helpers every test and test-support file needs:
 * a monotonic clock in milliseconds, and a sleep that survives signals.
 */
#ifndef RK_TEST_CLOCK_H
#define RK_TEST_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC (unaffected by wall-clock changes). */
int64_t rk_test_now_ms(void);

/* Sleep ms milliseconds, resuming after a signal interrupts the sleep. */
void rk_test_sleep_ms(int ms);

#endif /* RK_TEST_CLOCK_H */
