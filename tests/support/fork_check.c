/*
 * fork_check.c — see fork_check.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "fork_check.h"

/* ThreadSanitizer does not support fork() while other threads run (and
 * takes the fork handlers' re-initialised locks for locks still held):
 * the check runs in the plain and ASan builds, and is skipped under TSan. */
#if defined(__SANITIZE_THREAD__)
#define RK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RK_TSAN 1
#endif
#endif

static int wrong_reads(rk_client *c, const char *key, const char *want)
{
    int wrong = 0;
    const char *get[] = {"GET", key};
    for (int i = 0; i < RK_TEST_FORK_READS; i++) {
        rk_reply *r = NULL;
        rk_status st = rk_client_command(c, 2, get, NULL, &r);
        if (st != RK_OK || r->type != RK_REPLY_STRING || strcmp(r->str, want) != 0) {
            if (wrong == 0)
                fprintf(stderr, "pid %d, %s: %s: %s\n", (int)getpid(), key, rk_strerror(st),
                        st == RK_OK ? r->str : rk_last_error());
            wrong++;
        }
        rk_reply_free(r);
    }
    return wrong;
}

void rk_test_fork_skip_under_tsan(void)
{
#ifdef RK_TSAN
    skip();
#endif
}

bool rk_test_under_tsan(void)
{
#ifdef RK_TSAN
    return true;
#else
    return false;
#endif
}

int rk_test_wait_child(pid_t pid, int timeout_ms)
{
    int status = -1;
    for (int i = 0; i <= timeout_ms / 50; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) return status;
        rk_test_sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

void rk_test_fork_check(rk_client *(*new_client)(void *arg), void *arg, int rounds)
{
#ifdef RK_TSAN
    (void)new_client;
    (void)arg;
    (void)rounds;
    skip();
#endif
    for (int round = 0; round < rounds; round++) {
        rk_client *c = new_client(arg);
        const char *p[] = {"SET", "fork:parent", "parent value"}, *k[] = {"SET", "fork:child", "child value"};
        rk_reply *r = NULL;
        assert_int_equal(rk_client_command(c, 3, p, NULL, &r), RK_OK);
        rk_reply_free(r);
        assert_int_equal(rk_client_command(c, 3, k, NULL, &r), RK_OK);
        rk_reply_free(r);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int wrong = wrong_reads(c, "fork:child", "child value");
            rk_client_free(c);
            _exit(wrong > 100 ? 100 : wrong);
        }
        int wrong = wrong_reads(c, "fork:parent", "parent value");
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0 || wrong != 0)
            fail_msg("round %d: %d wrong values in the parent, child exit %d", round, wrong, WEXITSTATUS(status));
        rk_client_stats st;
        assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
        assert_int_equal(st.disconnects, 0); /* the child sent nothing on the parent's connections */
        rk_client_free(c);
    }
}

void *rk_test_pipe_watch(void *arg)
{
    rk_test_pipe_flag *p = arg;
    char b;
    if (read(p->fd, &b, 1) == 1) atomic_store(p->flag, true);
    return NULL;
}
