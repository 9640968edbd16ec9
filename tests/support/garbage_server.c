/*
 * garbage_server.c — see garbage_server.h. Plain blocking sockets with
 * receive and send timeouts of one slice, so that the thread looks at its
 * stop flag at least every slice whatever the client does.
 */
#include "garbage_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define SLICE_MS 100
#define DEFAULT_WRITE ((size_t)64 << 10)

struct rk_garbage_server {
    int listen_fd;
    int port;
    char *head, *fill, *greeting;
    size_t greeting_len, head_len, fill_len, fill_bytes, write_bytes;
    int pause_ms;
    atomic_bool stop;
    atomic_int connections;
    pthread_t thread;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Write all of buf unless the client goes away or the server stops. */
static bool write_all(rk_garbage_server *s, int fd, const char *buf, size_t len)
{
    while (len > 0 && !atomic_load(&s->stop)) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            continue; /* a send timeout: look at the stop flag again */
        } else {
            return false;
        }
    }
    return len == 0;
}

/* Wait for the first bytes of a request; false when the client went away
 * or the server is stopping. */
static bool await_request(rk_garbage_server *s, int fd)
{
    char req[4096];
    for (;;) {
        if (atomic_load(&s->stop)) return false;
        ssize_t n = recv(fd, req, sizeof req, 0);
        if (n > 0) return true;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return false;
    }
}

static void serve(rk_garbage_server *s, int fd)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = SLICE_MS * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char req[4096];
    if (!await_request(s, fd)) return;
    if (s->greeting_len && (!write_all(s, fd, s->greeting, s->greeting_len) || !await_request(s, fd))) return;
    if (!write_all(s, fd, s->head, s->head_len)) return;
    if (!s->fill_len) {
        /* Nothing more: hold the connection until the client drops it. */
        while (!atomic_load(&s->stop)) {
            ssize_t n = recv(fd, req, sizeof req, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return;
        }
        return;
    }
    char *chunk = malloc(s->write_bytes);
    if (!chunk) return;
    for (size_t i = 0; i < s->write_bytes; i++) chunk[i] = s->fill[i % s->fill_len];
    /* Each write starts where the pattern left off only when write_bytes
     * is a multiple of its length; tests use such sizes. */
    for (size_t sent = 0; sent < s->fill_bytes && !atomic_load(&s->stop);) {
        size_t n = s->fill_bytes - sent < s->write_bytes ? s->fill_bytes - sent : s->write_bytes;
        if (!write_all(s, fd, chunk, n)) break;
        sent += n;
        if (s->pause_ms) sleep_ms(s->pause_ms);
    }
    free(chunk);
}

static void *run(void *arg)
{
    rk_garbage_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->listen_fd, .events = POLLIN};
        if (poll(&p, 1, SLICE_MS) <= 0) continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&s->connections, 1);
        serve(s, fd);
        close(fd);
    }
    return NULL;
}

rk_garbage_server *rk_garbage_server_start(const rk_garbage_script *script)
{
    rk_garbage_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->greeting = strdup(script->greeting ? script->greeting : "");
    s->greeting_len = s->greeting ? strlen(s->greeting) : 0;
    s->head = strdup(script->head ? script->head : "");
    s->fill = strdup(script->fill ? script->fill : "");
    s->head_len = strlen(s->head);
    s->fill_len = strlen(s->fill);
    s->fill_bytes = script->fill_bytes;
    s->pause_ms = script->pause_ms;
    s->write_bytes = script->write_bytes ? script->write_bytes : DEFAULT_WRITE;
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (!s->greeting || !s->head || !s->fill || s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->listen_fd, 16) != 0 || getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "garbage server: %s\n", strerror(errno));
        goto fail;
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        fprintf(stderr, "garbage server: cannot start its thread\n");
        goto fail;
    }
    return s;
fail:
    if (s->listen_fd >= 0) close(s->listen_fd);
    free(s->greeting);
    free(s->head);
    free(s->fill);
    free(s);
    return NULL;
}

int rk_garbage_server_port(const rk_garbage_server *s) { return s->port; }

int rk_garbage_server_connections(rk_garbage_server *s) { return atomic_load(&s->connections); }

void rk_garbage_server_stop(rk_garbage_server *s)
{
    if (!s) return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
    free(s->greeting);
    free(s->head);
    free(s->fill);
    free(s);
}
