/*
 * redis_server.h — the test fixture: a private, real redis-server per test.
 *
 * Integration and fault tests never talk to a shared Redis or to a mock: each
 * starts its own redis-server on a free loopback port, in its own temporary
 * directory, without persistence, and stops it when done. Fault tests use
 * the same handle to kill, pause, resume and restart the server.
 *
 * Which binaries: $RK_REDIS_SERVER and $RK_REDIS_CLI if set, otherwise
 * "redis-server" and "redis-cli" from $PATH (scripts/deps installs them).
 *
 * Every server started here also listens on a unix socket,
 * "<rk_test_server_dir()>/redis.sock" (mode 700), for the unix:// tests.
 *
 * A server started with TLS (rk_test_server_start_opts()) listens with TLS
 * only on its TCP port (--port 0 --tls-port PORT); the fixture's own
 * traffic — the readiness PING, rk_test_server_command(),
 * rk_test_server_cli() — then goes in clear over the unix socket, so it
 * needs no certificates and never depends on the TLS code under test.
 *
 * Not thread-safe per handle: drive one rk_test_server from one thread at a
 * time. Start servers from the main thread: the child is bound to its parent
 * thread by PR_SET_PDEATHSIG, so a server started from a thread that exits
 * is killed with it.
 */
#ifndef RK_TEST_REDIS_SERVER_H
#define RK_TEST_REDIS_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_test_server rk_test_server;

/*
 * Start a private redis-server: free loopback port, own mkdtemp directory
 * under /tmp, no persistence, --daemonize no, --enable-debug-command yes,
 * logfile "redis.log" in the directory. extra_args is a NULL-terminated array
 * of extra command-line arguments (e.g. {"--requirepass", "pw", NULL}), or
 * NULL; it is copied. Waits up to 5 s for the server to answer PING (any
 * reply, so a server with requirepass counts as up). Returns NULL, after
 * printing the reason (and the tail of the server log) to stderr, on failure.
 *
 * The child gets PR_SET_PDEATHSIG(SIGKILL), so it dies with the test process
 * even if that crashes; an atexit handler kills any server still running on
 * a normal exit. Free with rk_test_server_stop().
 */
rk_test_server *rk_test_server_start(const char *const *extra_args);

/* TLS settings for a test server. The paths are copied. */
typedef struct rk_test_server_tls {
    const char *cert_file;   /* --tls-cert-file: the server's certificate (PEM) */
    const char *key_file;    /* --tls-key-file: its key */
    const char *ca_file;     /* --tls-ca-cert-file: the CA client certificates
                                must chain to; NULL = none (then auth_clients
                                must be false) */
    bool auth_clients;       /* --tls-auth-clients yes (mutual TLS) or no */
} rk_test_server_tls;

typedef struct rk_test_server_options {
    const char *const *extra_args;  /* as for rk_test_server_start() */
    const rk_test_server_tls *tls;  /* NULL = plain TCP */
    bool cluster;                   /* a single-node Redis Cluster: see below */
} rk_test_server_options;

/*
 * A single-node Redis Cluster (options.cluster, or RK_TEST_CLUSTER=1 in the
 * environment for servers that rk_test_group_setup() starts): the server
 * runs with --cluster-enabled yes, and the fixture assigns all 16384 slots
 * to it (CLUSTER ADDSLOTSRANGE) and waits for cluster_state:ok, after a
 * start and after every restart. Such a node has only database 0 and
 * refuses (CROSSSLOT) a script whose declared keys, or a multi-key command
 * whose keys, fall in two hash slots: the cheap proof that a module's keys
 * are cluster-ready. It cannot see keys a script builds itself.
 */
bool rk_test_cluster_requested(void);

/*
 * rk_test_server_start() with options; opts NULL means all defaults. With
 * tls set the server listens with TLS only on its port: rk_test_server_port()
 * is the TLS port and rk_test_server_url() is "rediss://127.0.0.1:PORT"
 * (without certificate options: a test adds its own).
 * rk_test_server_restart() keeps the TLS settings.
 */
rk_test_server *rk_test_server_start_opts(const rk_test_server_options *opts);

/* True when the server runs as a single-node cluster. */
bool rk_test_server_is_cluster(const rk_test_server *s);

/* True when the server was started with TLS. */
bool rk_test_server_is_tls(const rk_test_server *s);

/* The TCP port (the same across rk_test_server_restart()). */
int rk_test_server_port(const rk_test_server *s);

/* The server's process id, or -1 while it is not running (after SIGKILL). */
pid_t rk_test_server_pid(const rk_test_server *s);

/* The server's private directory (its working dir, log and unix socket). */
const char *rk_test_server_dir(const rk_test_server *s);

/* "redis://127.0.0.1:PORT" ("rediss://" for a TLS server), without
 * credentials. Valid until _stop(). */
const char *rk_test_server_url(const rk_test_server *s);

/*
 * The password the admin helpers below authenticate with; set it when the
 * server was started with --requirepass. Copied; NULL clears it.
 */
void rk_test_server_set_admin_password(rk_test_server *s, const char *password);

/*
 * Run one admin command on a fresh hiredis connection (authenticating with
 * the admin password if one is set), printf-style like redisCommand(). Connect
 * and command timeouts are 2 s. Returns the reply, which the caller frees
 * with freeReplyObject() (an AUTH failure returns the AUTH error reply), or
 * NULL if the server could not be reached or did not answer in time.
 */
redisReply *rk_test_server_command(rk_test_server *s, const char *fmt, ...);

/* rk_test_server_command() with a va_list, for helpers that take a format. */
redisReply *rk_test_server_vcommand(rk_test_server *s, const char *fmt, va_list ap);

/*
 * FLUSHALL through rk_test_server_command(): every key of every database
 * goes. Returns false when the server gave no reply or an error reply
 * (nothing is printed: a cmocka setup returns -1 on it).
 */
bool rk_test_server_flush(rk_test_server *s);

/*
 * Run the real redis-cli: `redis-cli -h 127.0.0.1 -p PORT [-a PW
 * --no-auth-warning] ARGS...` (`-s SOCKET` for a TLS server) with stdin from /dev/null (so its output is
 * raw: "PONG", "1", no type prefixes). Captures stdout into out (at most
 * cap-1 bytes, NUL-terminated, trailing newlines stripped); out may be NULL
 * when cap is 0. args is NULL-terminated. Gives redis-cli 10 s, then kills
 * it. Returns redis-cli's exit status, or -1 if it could not be run, was
 * killed, or timed out.
 */
int rk_test_server_cli(rk_test_server *s, char *out, size_t cap, const char *const *args);

/*
 * Send a signal to the server: SIGKILL, SIGSTOP, SIGCONT (or any other).
 * For SIGKILL the process is also reaped, and rk_test_server_pid() becomes
 * -1. Returns false if the server is not running or kill() failed.
 */
bool rk_test_server_signal(rk_test_server *s, int sig);

/*
 * (Re)start the server on the SAME port and directory, after a kill or a
 * stop. A server process still present (stopped with SIGSTOP, say) is killed
 * first. extra_args replaces the previous extra arguments; NULL keeps them.
 * TLS settings are always kept.
 * Waits up to 5 s for PING. Returns false (and prints why) on failure.
 */
bool rk_test_server_restart(rk_test_server *s, const char *const *extra_args);

/*
 * Stop the server: SIGTERM (and SIGCONT, in case it is stopped), wait up to
 * 3 s, then SIGKILL; remove its directory; free the handle. NULL is a no-op.
 */
void rk_test_server_stop(rk_test_server *s);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_REDIS_SERVER_H */
