/*
 * rand.h — randomness: the OS CSPRNG for what must not be guessed (lock
 * tokens, seeds), and splitmix64 for what only needs spread (backoff
 * jitter, XFetch draws).
 */
#ifndef RK_SRC_RAND_H
#define RK_SRC_RAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fill buf with n bytes from getrandom(2); false if the OS could not. */
bool rk__fill_random(void *buf, size_t n);

/* splitmix64: advance *state and return the next well-mixed 64 bits.
 * Not secret; the caller owns the state (and its thread safety). */
static inline uint64_t rk__splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
