/*
 * shortage_test.c — the client when this machine, not Redis, runs short:
 * every file descriptor in use (RLIMIT_NOFILE reached) while a call needs
 * a new connection to a server named by host name (and, for comparison,
 * by IP address).
 *
 * Two defects lived here (issue 14, items 2 and 3): glibc's resolver
 * thread, exiting through pthread_exit(), had to load libgcc_s.so.1 with
 * no descriptor left and aborted the process; and the resolver's failure
 * was reported as RK_ERR_UNAVAILABLE, which moved the reconnect schedule
 * and opened the circuit breaker against a healthy server.
 *
 * The descriptor limit is per process, so each scenario runs in a forked
 * child that lowers its own limit; the parent (the cmocka test) only reads
 * how the child ended. The child never returns into cmocka: it reports
 * through its exit status and stderr, and leaves with _exit() so that no
 * atexit handler of the fixture (which stops the test's redis-server)
 * runs in it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "support/clock.h"
#include "support/redis_server.h"

/* The child's descriptor limit: low, so that exhausting it is quick. */
#define FD_LIMIT 256

/* Calls made while no descriptor is left: more than the breaker's
 * threshold (5 by default), so that counting them would open it. */
#define STARVED_CALLS 8

/* How long the child may take in all. */
#define CHILD_LIMIT_S 30

/* Slack over a call's deadline for scheduling on a loaded 2-core machine
 * (load averages of 12 seen) and sanitizer builds: never the client's own
 * waiting. */
#define MARGIN_MS 800

#define COMMAND_MS 1000
#define CONNECT_MS 1000

/* Exit statuses of the child: 0 = every check passed. */
enum { CHILD_OK = 0, CHILD_SETUP = 10, CHILD_STARVED_STATUS, CHILD_BREAKER, CHILD_LATE, CHILD_RECOVERY,
       CHILD_AFTER_BREAKER };

static rk_test_server *server;

static int hold[FD_LIMIT + 8];
static int held;

/* Open /dev/null until the process has no descriptor left. */
static void exhaust(void)
{
    held = 0;
    while (held < (int)(sizeof hold / sizeof hold[0])) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) break;
        hold[held++] = fd;
    }
}

static void release(void)
{
    while (held > 0) close(hold[--held]);
}

/* One call in a starved process: returns its status, and fails the child
 * if it outlived its deadline. */
static rk_status timed_ping(rk_client *c, int *late)
{
    int64_t t0 = rk_test_now_ms();
    rk_status st = rk_client_ping(c);
    if (rk_test_now_ms() - t0 > COMMAND_MS + CONNECT_MS + MARGIN_MS) (*late)++;
    return st;
}

/* The child's whole scenario; returns its exit status. */
static int starved_child(const char *host, int port, bool warm)
{
    struct rlimit rl = {.rlim_cur = FD_LIMIT, .rlim_max = FD_LIMIT};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "child: setrlimit: %s\n", strerror(errno));
        return CHILD_SETUP;
    }
    char url[64];
    snprintf(url, sizeof url, "redis://%s:%d", host, port);
    rk_client *c = NULL;
    rk_client_options o = {.url = url, .command_timeout_ms = COMMAND_MS, .connect_timeout_ms = CONNECT_MS,
                           .pool_size = 2, .shared_connections = -1};
    if (rk_client_new(&o, &c) != RK_OK) {
        fprintf(stderr, "child: rk_client_new: %s\n", rk_last_error());
        return CHILD_SETUP;
    }
    /* warm: glibc's resolver has already run once in this process, with
     * descriptors to spare (its libraries are loaded); cold: the first
     * lookup of the process happens with none left. */
    if (warm) {
        rk_client *w = NULL;
        if (rk_client_new(&o, &w) != RK_OK || rk_client_ping(w) != RK_OK) {
            fprintf(stderr, "child: warm-up ping: %s\n", rk_last_error());
            return CHILD_SETUP;
        }
        rk_client_free(w);
    }
    int rc = CHILD_OK, late = 0;
    exhaust();
    for (int i = 0; i < STARVED_CALLS; i++) {
        rk_status st = timed_ping(c, &late);
        if (st != RK_ERR_SYSTEM) {
            fprintf(stderr, "child: starved call %d: %s (%s), want RK_ERR_SYSTEM\n", i, rk_strerror(st),
                    rk_last_error());
            if (rc == CHILD_OK) rc = CHILD_STARVED_STATUS;
        }
    }
    rk_client_stats stats;
    rk_client_stats_get(c, &stats);
    if (rc == CHILD_OK && stats.circuit != RK_CIRCUIT_CLOSED) {
        fprintf(stderr, "child: the breaker opened on a local shortage (%d)\n", (int)stats.circuit);
        rc = CHILD_BREAKER;
    }
    release();
    /* Descriptors are back: the very first call connects, with no backoff
     * delay to wait out and no circuit to probe. */
    rk_status st = timed_ping(c, &late);
    if (rc == CHILD_OK && st != RK_OK) {
        fprintf(stderr, "child: first call after the shortage: %s (%s)\n", rk_strerror(st), rk_last_error());
        rc = CHILD_RECOVERY;
    }
    rk_client_stats_get(c, &stats);
    if (rc == CHILD_OK && (stats.circuit != RK_CIRCUIT_CLOSED || stats.circuit_opened != 0 || stats.fast_failed != 0)) {
        fprintf(stderr, "child: opened %llu times, %llu fast failures\n", (unsigned long long)stats.circuit_opened,
                (unsigned long long)stats.fast_failed);
        rc = CHILD_AFTER_BREAKER;
    }
    if (rc == CHILD_OK && late) {
        fprintf(stderr, "child: %d calls past their deadline\n", late);
        rc = CHILD_LATE;
    }
    rk_client_free(c);
    return rc;
}

/* Run the scenario in a child and check how it ended. */
static void run_starved(const char *host, bool warm)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(CHILD_LIMIT_S); /* a hang ends as SIGALRM, which the parent reports */
        _exit(starved_child(host, rk_test_server_port(server), warm));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("the child died of signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != CHILD_OK) fail_msg("the child failed check %d (see stderr)", WEXITSTATUS(status));
}

/* The first lookup of the process runs with no descriptor left. */
static void test_cold_resolver_out_of_descriptors(void **state)
{
    (void)state;
    run_starved("localhost", false);
}

/* The resolver ran before; then descriptors run out. */
static void test_warm_resolver_out_of_descriptors(void **state)
{
    (void)state;
    run_starved("localhost", true);
}

/* No resolver: socket() itself finds no descriptor. */
static void test_ip_literal_out_of_descriptors(void **state)
{
    (void)state;
    run_starved("127.0.0.1", false);
}

static int setup(void **state)
{
    (void)state;
    server = rk_test_server_start(NULL);
    return server ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rk_test_server_stop(server);
    server = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cold_resolver_out_of_descriptors),
        cmocka_unit_test(test_warm_resolver_out_of_descriptors),
        cmocka_unit_test(test_ip_literal_out_of_descriptors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
