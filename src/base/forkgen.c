/*
 * forkgen.c — the fork generation (see forkgen.h).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "forkgen.h"

static _Atomic unsigned generation = 1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void in_child(void) { atomic_fetch_add_explicit(&generation, 1, memory_order_relaxed); }

static void register_handler(void) { pthread_atfork(NULL, NULL, in_child); }

void rk__fork_watch(void) { pthread_once(&once, register_handler); }

unsigned rk__fork_generation(void) { return atomic_load_explicit(&generation, memory_order_relaxed); }
