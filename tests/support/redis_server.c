/*
 * redis_server.c — start, break and stop private redis-server processes for
 * the tests (see redis_server.h).
 *
 * The server runs in the foreground as our child (--daemonize no) so that we
 * own its pid: signals go exactly to it, and waitpid() tells us at once when
 * it died, e.g. because its port was taken. Three layers make sure no server
 * outlives a test run: rk_test_server_stop() in the tests' teardown, an atexit
 * handler for servers a failing test left behind, and PR_SET_PDEATHSIG for a
 * test process that crashed or was killed by the CTest timeout.
 *
 * Every wait here is bounded both in iterations and in wall time, so a wedged
 * server makes a test fail, never hang.
 *
 * A TLS server keeps its unix socket in clear, and the fixture talks to it
 * there: the fixture must work whatever state the TLS code under test is in.
 */
#include "clock.h"
#include "files.h"
#include "redis_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#define RK_TS_READY_MS 5000   /* how long a (re)start may take to answer PING */
#define RK_TS_STOP_MS 3000    /* grace period after SIGTERM */
#define RK_TS_ADMIN_MS 2000   /* admin connection timeouts */
#define RK_TS_CLI_MS 10000    /* redis-cli run time limit */
#define RK_TS_START_TRIES 8   /* fresh ports tried when the chosen one was taken */
#define RK_TS_MAX_ARGS 64

struct rk_test_server {
    int port;
    pid_t pid; /* -1 while not running */
    char dir[64];
    char url[64];
    bool tls;        /* --port 0 --tls-port port, with the files below */
    char *tls_cert, *tls_key, *tls_ca;
    bool tls_auth_clients;
    bool cluster;    /* --cluster-enabled yes, all slots on this node */
    char *password;  /* admin password, or NULL */
    char **args;     /* NULL-terminated copy of the extra args, or NULL */
    rk_test_server *next; /* the live-server list, for the atexit handler */
};

/* ------------------------------------------------------------------ utils */

static const char *server_binary(void)
{
    const char *b = getenv("RK_REDIS_SERVER");
    return b && *b ? b : "redis-server";
}

static const char *cli_binary(void)
{
    const char *b = getenv("RK_REDIS_CLI");
    return b && *b ? b : "redis-cli";
}

static char **copy_args(const char *const *args)
{
    if (!args) return NULL;
    size_t n = 0;
    while (args[n]) n++;
    char **copy = calloc(n + 1, sizeof *copy);
    if (!copy) return NULL;
    for (size_t i = 0; i < n; i++) {
        copy[i] = strdup(args[i]);
        if (!copy[i]) {
            for (size_t j = 0; j < i; j++) free(copy[j]);
            free(copy);
            return NULL;
        }
    }
    return copy;
}

static void free_args(char **args)
{
    if (!args) return;
    for (size_t i = 0; args[i]; i++) free(args[i]);
    free(args);
}

/*
 * Wait up to ms for pid to exit and reap it. Returns true once reaped (or if
 * it is not our child any more).
 */
static bool reap(pid_t pid, int ms)
{
    int64_t deadline = rk_test_now_ms() + ms;
    for (int i = 0; i < ms / 5 + 2; i++) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r == -1 && errno == ECHILD)) return true;
        if (rk_test_now_ms() >= deadline) break;
        rk_test_sleep_ms(5);
    }
    return false;
}

/*
 * Ask the kernel for a free loopback port: bind port 0, read it back, close.
 * There is a small race — another process may take the port before
 * redis-server binds it — which start() covers by retrying on a new port
 * when the server reports "Address already in use".
 */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* In a freshly forked child: close every inherited descriptor above stderr,
 * so the server never keeps a test's sockets (or a proxy's listener) open. */
static void close_fds_from_3(long open_max)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0) == 0) return;
#endif
    for (long fd = 3; fd < open_max; fd++) close((int)fd);
}

static long fd_limit(void)
{
    long m = sysconf(_SC_OPEN_MAX);
    if (m < 0 || m > 65536) m = 65536;
    return m;
}

/* The child half of fork(): die with the parent, reset signals, exec. Only
 * async-signal-safe calls from here on. */
static void child_exec(pid_t parent, long open_max, int out_fd, char *const *argv)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127); /* the parent died before prctl */

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);

    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(out_fd >= 0 ? out_fd : devnull, STDOUT_FILENO);
    } else if (out_fd >= 0) {
        dup2(out_fd, STDOUT_FILENO);
    }
    close_fds_from_3(open_max);
    execvp(argv[0], argv);
    static const char msg[] = "rk_test_server: exec failed: ";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)!write(STDERR_FILENO, argv[0], strlen(argv[0]));
    (void)!write(STDERR_FILENO, "\n", 1);
    _exit(127);
}

/* ------------------------------------------------------------------ atexit */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static rk_test_server *live;
static pid_t live_owner; /* the process that registered the handler */
static bool atexit_done;

/* Kill whatever a test left running. Forked children of the test process
 * inherit this handler; they must not kill their parent's servers. */
static void kill_leftovers(void)
{
    if (getpid() != live_owner) return;
    pthread_mutex_lock(&live_lock);
    for (rk_test_server *s = live; s; s = s->next) {
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            reap(s->pid, 2000);
            s->pid = -1;
        }
        rk_test_remove_tree(s->dir);
    }
    live = NULL;
    pthread_mutex_unlock(&live_lock);
}

static void register_live(rk_test_server *s)
{
    pthread_mutex_lock(&live_lock);
    if (!atexit_done) {
        live_owner = getpid();
        atexit(kill_leftovers);
        atexit_done = true;
    }
    s->next = live;
    live = s;
    pthread_mutex_unlock(&live_lock);
}

static void unregister_live(rk_test_server *s)
{
    pthread_mutex_lock(&live_lock);
    for (rk_test_server **p = &live; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
}

/* ------------------------------------------------------------------ server */

static void log_path(const rk_test_server *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/redis.log", s->dir);
}

static void sock_path(const rk_test_server *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/redis.sock", s->dir);
}

/* A fixture connection: TCP for a plain server, the clear unix socket for
 * a TLS one. */
static redisContext *admin_connect(const rk_test_server *s, struct timeval tv)
{
    if (!s->tls) return redisConnectWithTimeout("127.0.0.1", s->port, tv);
    char sock[128];
    sock_path(s, sock, sizeof sock);
    return redisConnectUnixWithTimeout(sock, tv);
}

/* Print the end of the server log, which says why a start failed. */
static void print_log_tail(const rk_test_server *s)
{
    char path[128];
    log_path(s, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[2048];
    long start = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        start = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    }
    fseek(f, start, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "rk_test_server: --- tail of %s ---\n%s\n--- end ---\n", path, buf);
}

static bool log_says_port_taken(const rk_test_server *s)
{
    char path[128];
    log_path(s, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[512];
    bool taken = false;
    while (!taken && fgets(line, sizeof line, f))
        taken = strstr(line, "Address already in use") != NULL;
    fclose(f);
    return taken;
}

/* Fork and exec redis-server for s->port and s->dir. Returns false if fork
 * failed; an exec failure shows up as the child exiting. */
static bool spawn(rk_test_server *s)
{
    char port[16], logfile[128], sock[128];
    snprintf(port, sizeof port, "%d", s->port);
    log_path(s, logfile, sizeof logfile);
    sock_path(s, sock, sizeof sock);
    unlink(logfile); /* so the log only tells about this run */

    const char *argv[RK_TS_MAX_ARGS + 48];
    size_t n = 0;
    argv[n++] = server_binary();
    if (s->tls) {
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--tls-port";
        argv[n++] = port;
        argv[n++] = "--tls-cert-file";
        argv[n++] = s->tls_cert;
        argv[n++] = "--tls-key-file";
        argv[n++] = s->tls_key;
        if (s->tls_ca) {
            argv[n++] = "--tls-ca-cert-file";
            argv[n++] = s->tls_ca;
        }
        argv[n++] = "--tls-auth-clients";
        argv[n++] = s->tls_auth_clients ? "yes" : "no";
    } else {
        argv[n++] = "--port";
        argv[n++] = port;
    }
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--logfile";
    argv[n++] = logfile;
    argv[n++] = "--unixsocket";
    argv[n++] = sock;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    argv[n++] = "--enable-debug-command";
    argv[n++] = "yes";
    if (s->cluster) {
        /* nodes.conf lands in --dir, so a restart keeps the node's slots. */
        argv[n++] = "--cluster-enabled";
        argv[n++] = "yes";
        argv[n++] = "--cluster-config-file";
        argv[n++] = "nodes.conf";
    }
    for (size_t i = 0; s->args && s->args[i]; i++) {
        if (i >= RK_TS_MAX_ARGS) {
            fprintf(stderr, "rk_test_server: more than %d extra args\n", RK_TS_MAX_ARGS);
            return false;
        }
        argv[n++] = s->args[i];
    }
    argv[n] = NULL;

    long open_max = fd_limit();
    pid_t parent = getpid();
    fflush(NULL); /* or buffered test output would be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rk_test_server: fork: %s\n", strerror(errno));
        return false;
    }
    if (pid == 0) child_exec(parent, open_max, -1, (char *const *)argv);
    s->pid = pid;
    return true;
}

/* One PING on a fresh connection; any reply (even NOAUTH) means "up". A TLS
 * server binds its TLS port before its unix socket and before it serves
 * anything, so an answer on the socket means the TLS port is up too. */
static bool answers_ping(const rk_test_server *s, int timeout_ms)
{
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    redisContext *c = admin_connect(s, tv);
    bool up = false;
    if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK) {
        redisReply *r = redisCommand(c, "PING");
        up = r != NULL;
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return up;
}

/*
 * Wait until the server answers PING. Returns 1 when it does, -1 if the
 * process exited meanwhile (it is then reaped and s->pid is -1), 0 on
 * timeout (the process is left running).
 */
static int wait_ready(rk_test_server *s, int ms)
{
    int64_t deadline = rk_test_now_ms() + ms;
    for (int i = 0; i < ms / 10 + 2; i++) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = -1;
            return -1;
        }
        if (answers_ping(s, 250)) return 1;
        if (rk_test_now_ms() >= deadline) break;
        rk_test_sleep_ms(10);
    }
    return 0;
}

/*
 * A cluster node answers PING before it serves keys: give it every slot
 * (a restarted node already has them, from nodes.conf, and refuses the
 * command — fine) and wait until CLUSTER INFO says cluster_state:ok.
 * Returns false after printing why.
 */
static bool cluster_ready(rk_test_server *s, int ms)
{
    if (!s->cluster) return true;
    redisReply *r = rk_test_server_command(s, "CLUSTER ADDSLOTSRANGE 0 16383");
    if (r) freeReplyObject(r);
    int64_t deadline = rk_test_now_ms() + ms;
    for (int i = 0; i < ms / 20 + 2; i++) {
        r = rk_test_server_command(s, "CLUSTER INFO");
        bool ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
        if (r) freeReplyObject(r);
        if (ok) return true;
        if (rk_test_now_ms() >= deadline) break;
        rk_test_sleep_ms(20);
    }
    fprintf(stderr, "rk_test_server: cluster on port %d not ok within %d ms\n", s->port, ms);
    return false;
}

bool rk_test_cluster_requested(void)
{
    const char *v = getenv("RK_TEST_CLUSTER");
    return v && *v && strcmp(v, "0") != 0;
}

bool rk_test_server_is_cluster(const rk_test_server *s) { return s->cluster; }

static void kill_and_reap(rk_test_server *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    if (!reap(s->pid, 5000))
        fprintf(stderr, "rk_test_server: pid %d did not die after SIGKILL\n", (int)s->pid);
    s->pid = -1;
}

static void free_tls(rk_test_server *s)
{
    free(s->tls_cert);
    free(s->tls_key);
    free(s->tls_ca);
}

rk_test_server *rk_test_server_start(const char *const *extra_args)
{
    return rk_test_server_start_opts(&(rk_test_server_options){.extra_args = extra_args});
}

rk_test_server *rk_test_server_start_opts(const rk_test_server_options *opts)
{
    static const rk_test_server_options defaults = {0};
    if (!opts) opts = &defaults;
    const char *const *extra_args = opts->extra_args;
    rk_test_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->pid = -1;
    s->cluster = opts->cluster;
    if (opts->tls) {
        if (!opts->tls->cert_file || !opts->tls->key_file || (opts->tls->auth_clients && !opts->tls->ca_file)) {
            fprintf(stderr, "rk_test_server: TLS needs cert_file, key_file, and ca_file with auth_clients\n");
            free(s);
            return NULL;
        }
        s->tls = true;
        s->tls_auth_clients = opts->tls->auth_clients;
        s->tls_cert = strdup(opts->tls->cert_file);
        s->tls_key = strdup(opts->tls->key_file);
        s->tls_ca = opts->tls->ca_file ? strdup(opts->tls->ca_file) : NULL;
        if (!s->tls_cert || !s->tls_key || (opts->tls->ca_file && !s->tls_ca)) {
            free_tls(s);
            free(s);
            return NULL;
        }
    }
    if (extra_args && !(s->args = copy_args(extra_args))) {
        free_tls(s);
        free(s);
        return NULL;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/rk-test-XXXXXX");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "rk_test_server: mkdtemp: %s\n", strerror(errno));
        free_args(s->args);
        free_tls(s);
        free(s);
        return NULL;
    }
    register_live(s);

    for (int attempt = 0; attempt < RK_TS_START_TRIES; attempt++) {
        s->port = free_port();
        /* A cluster node also listens on port + 10000 (the cluster bus), so
         * Redis refuses a port over 55535: ask again (bounded). */
        for (int again = 0; again < 64 && s->cluster && s->port > 55535; again++) s->port = free_port();
        if (s->port <= 0 || (s->cluster && s->port > 55535)) {
            fprintf(stderr, "rk_test_server: no free loopback port: %s\n", strerror(errno));
            break;
        }
        if (!spawn(s)) break;
        int r = wait_ready(s, RK_TS_READY_MS);
        if (r == 1) {
            snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d", s->tls ? "rediss" : "redis", s->port);
            if (!cluster_ready(s, RK_TS_READY_MS)) {
                print_log_tail(s);
                break;
            }
            return s;
        }
        if (r == 0) {
            fprintf(stderr, "rk_test_server: %s did not answer PING on port %d within %d ms\n",
                    server_binary(), s->port, RK_TS_READY_MS);
            print_log_tail(s);
            kill_and_reap(s);
            break;
        }
        if (!log_says_port_taken(s)) {
            fprintf(stderr, "rk_test_server: %s exited at startup (port %d)\n", server_binary(),
                    s->port);
            print_log_tail(s);
            break;
        }
        /* Lost the free-port race: try another port. */
    }
    rk_test_server_stop(s);
    return NULL;
}

int rk_test_server_port(const rk_test_server *s) { return s->port; }

bool rk_test_server_is_tls(const rk_test_server *s) { return s->tls; }

pid_t rk_test_server_pid(const rk_test_server *s) { return s->pid; }

const char *rk_test_server_dir(const rk_test_server *s) { return s->dir; }

const char *rk_test_server_url(const rk_test_server *s) { return s->url; }

void rk_test_server_set_admin_password(rk_test_server *s, const char *password)
{
    free(s->password);
    s->password = password ? strdup(password) : NULL;
}

redisReply *rk_test_server_command(rk_test_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = rk_test_server_vcommand(s, fmt, ap);
    va_end(ap);
    return reply;
}

redisReply *rk_test_server_vcommand(rk_test_server *s, const char *fmt, va_list ap)
{
    struct timeval tv = { RK_TS_ADMIN_MS / 1000, (RK_TS_ADMIN_MS % 1000) * 1000 };
    redisContext *c = admin_connect(s, tv);
    if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        if (c) redisFree(c);
        return NULL;
    }
    if (s->password) {
        redisReply *auth = redisCommand(c, "AUTH %s", s->password);
        if (!auth || auth->type == REDIS_REPLY_ERROR) {
            redisFree(c);
            return auth;
        }
        freeReplyObject(auth);
    }
    redisReply *reply = redisvCommand(c, fmt, ap);
    redisFree(c);
    return reply;
}

bool rk_test_server_flush(rk_test_server *s)
{
    redisReply *r = rk_test_server_command(s, "FLUSHALL");
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    return ok;
}

int rk_test_server_cli(rk_test_server *s, char *out, size_t cap, const char *const *args)
{
    if (out && cap) out[0] = '\0';

    char port[16], sock[128];
    snprintf(port, sizeof port, "%d", s->port);
    sock_path(s, sock, sizeof sock);
    const char *argv[RK_TS_MAX_ARGS + 16];
    size_t n = 0;
    argv[n++] = cli_binary();
    if (s->tls) {
        argv[n++] = "-s";
        argv[n++] = sock;
    } else {
        argv[n++] = "-h";
        argv[n++] = "127.0.0.1";
        argv[n++] = "-p";
        argv[n++] = port;
    }
    if (s->password) {
        argv[n++] = "-a";
        argv[n++] = s->password;
        argv[n++] = "--no-auth-warning";
    }
    for (size_t i = 0; args && args[i]; i++) {
        if (i >= RK_TS_MAX_ARGS) return -1;
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    long open_max = fd_limit();
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) child_exec(parent, open_max, fds[1], (char *const *)argv);
    close(fds[1]);

    /* Read until EOF or the deadline; keep what fits, drain the rest so
     * redis-cli never blocks on a full pipe. */
    size_t len = 0;
    bool timed_out = false;
    int64_t deadline = rk_test_now_ms() + RK_TS_CLI_MS;
    for (int i = 0; i < 100000; i++) {
        int64_t left = deadline - rk_test_now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) {
            timed_out = pr == 0;
            break;
        }
        char buf[4096];
        ssize_t got = read(fds[0], buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (out && cap > 1 && len < cap - 1) {
            size_t take = (size_t)got < cap - 1 - len ? (size_t)got : cap - 1 - len;
            memcpy(out + len, buf, take);
            len += take;
        }
    }
    close(fds[0]);
    if (out && cap) {
        out[len] = '\0';
        while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r')) out[--len] = '\0';
    }

    if (timed_out) {
        fprintf(stderr, "rk_test_server: redis-cli took more than %d ms, killed\n", RK_TS_CLI_MS);
        kill(pid, SIGKILL);
    }
    int status = 0;
    pid_t r = -1;
    int64_t wait_deadline = rk_test_now_ms() + 2000;
    for (int i = 0; i < 1000; i++) {
        r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r == -1 && errno != EINTR)) break;
        if (rk_test_now_ms() >= wait_deadline) {
            kill(pid, SIGKILL);
            r = waitpid(pid, &status, 0);
            break;
        }
        rk_test_sleep_ms(2);
    }
    if (r != pid || timed_out || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

bool rk_test_server_signal(rk_test_server *s, int sig)
{
    if (!s || s->pid <= 0) return false;
    if (kill(s->pid, sig) != 0) return false;
    if (sig == SIGKILL) {
        if (!reap(s->pid, 5000)) {
            fprintf(stderr, "rk_test_server: pid %d did not die after SIGKILL\n", (int)s->pid);
            return false;
        }
        s->pid = -1;
    }
    return true;
}

bool rk_test_server_restart(rk_test_server *s, const char *const *extra_args)
{
    if (!s) return false;
    kill_and_reap(s);
    if (extra_args) {
        char **copy = copy_args(extra_args);
        if (!copy) return false;
        free_args(s->args);
        s->args = copy;
    }
    /* The old process's port is free once it is reaped, but a client of the
     * test may briefly hold it (e.g. a connect racing the restart), so a bind
     * failure is retried on the same port until the deadline. */
    int64_t deadline = rk_test_now_ms() + RK_TS_READY_MS;
    for (int attempt = 0; attempt < 50; attempt++) {
        int left = (int)(deadline - rk_test_now_ms());
        if (left <= 0) break;
        if (!spawn(s)) return false;
        int r = wait_ready(s, left);
        if (r == 1) return cluster_ready(s, RK_TS_READY_MS);
        if (r == 0) {
            kill_and_reap(s);
            break;
        }
        if (!log_says_port_taken(s)) break;
        rk_test_sleep_ms(100);
    }
    fprintf(stderr, "rk_test_server: restart on port %d failed\n", s->port);
    print_log_tail(s);
    return false;
}

void rk_test_server_stop(rk_test_server *s)
{
    if (!s) return;
    unregister_live(s);
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        kill(s->pid, SIGCONT); /* a SIGSTOPped server must wake to handle it */
        if (reap(s->pid, RK_TS_STOP_MS)) {
            s->pid = -1;
        } else {
            kill_and_reap(s);
        }
    }
    rk_test_remove_tree(s->dir);
    free(s->password);
    free_args(s->args);
    free_tls(s);
    free(s);
}
