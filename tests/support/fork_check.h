/*
 * fork_check.h — the fork() safety check shared by the plain and the TLS
 * tests: a client used before fork() and on both sides after it, each
 * side reading only its own key.
 */
#ifndef RK_TEST_FORK_CHECK_H
#define RK_TEST_FORK_CHECK_H

#include <stdbool.h>
#include <sys/types.h>

#include <redkit/redkit.h>

/* Reads each side makes per round. */
#define RK_TEST_FORK_READS 2000

/*
 * rounds times: make a client with new_client(arg) (the caller's, a fresh
 * one each round), write two keys through it (its connections are then
 * open and idle), fork(); the child reads its key RK_TEST_FORK_READS times,
 * the parent its own, each counting answers that are not its value. Fails
 * the test (cmocka) on any wrong value on either side, or if the parent's
 * client saw a disconnect. Frees each client.
 */
void rk_test_fork_check(rk_client *(*new_client)(void *arg), void *arg, int rounds);

/*
 * For a test of its own that forks while redkit threads run: skip() the
 * cmocka test under TSan (see fork_check.c), return otherwise.
 */
void rk_test_fork_skip_under_tsan(void);

/* Is this a ThreadSanitizer build? (For tests too slow there for other
 * reasons than fork.) */
bool rk_test_under_tsan(void);

/*
 * Wait for a forked child, at most timeout_ms (looking every 50 ms): its
 * waitpid() status, or -1 when it had not finished, after killing it
 * (SIGKILL) and reaping it.
 */
int rk_test_wait_child(pid_t pid, int timeout_ms);

/* A word from the other side of a fork(): a thread started on
 * rk_test_pipe_watch with a rk_test_pipe_flag reads one byte from fd,
 * then sets *flag (for threads that poll the flag while they work). */
typedef struct rk_test_pipe_flag {
    int fd;
    _Atomic bool *flag;
} rk_test_pipe_flag;

void *rk_test_pipe_watch(void *arg);
#endif
