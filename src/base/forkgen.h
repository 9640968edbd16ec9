/*
 * forkgen.h — which process this is after fork(): a number that changes
 * in every child, for state that must not be carried into one (inherited
 * connections, near caches, random streams). One counter for the whole
 * library, bumped by a pthread_atfork child handler that does nothing
 * else (it runs where little is allowed); readers compare it lazily.
 */
#ifndef RK_SRC_FORKGEN_H
#define RK_SRC_FORKGEN_H

/* Start counting forks (once per process; later calls cost a
 * pthread_once check). Call it when the state that depends on the
 * generation is made, before any fork() it must notice. */
void rk__fork_watch(void);

/* The generation: 1 in the process that first watched, one more in each
 * child of a fork() made after that. One relaxed atomic load. */
unsigned rk__fork_generation(void);

#endif
