/*
 * garbage_server.h — a tiny loopback TCP server that answers every
 * request with a scripted byte string, for tests of what the client does
 * with replies no Redis would send: a header announcing a gigabyte, an
 * array of 2^31 elements, arrays nested deeper than anyone needs, a bulk
 * string that trickles in forever.
 *
 * One thread (its own) accepts connections on 127.0.0.1, a free port, and
 * serves them one at a time: it waits for the first bytes of a request
 * (answering it with `greeting` and waiting for the next, when set),
 * then writes `head` once and `fill` over and over until fill_bytes have
 * gone out, the client closes the connection, or the server is stopped.
 * Every wait is bounded (100 ms slices), so stopping never hangs.
 */
#ifndef RK_TEST_GARBAGE_SERVER_H
#define RK_TEST_GARBAGE_SERVER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_garbage_script {
    const char *greeting; /* the answer to a connection's first request (a
                             client's handshake), NULL = none: the script
                             answers the first request */
    const char *head;     /* written once per connection, first (NUL-terminated) */
    const char *fill;     /* then repeated; NULL = nothing more */
    size_t fill_bytes;    /* how many bytes of fill in all, per connection */
    int pause_ms;         /* pause between writes of fill (0 = as fast as
                             the client reads) */
    size_t write_bytes;   /* bytes of fill per write; 0 = 64 KiB */
} rk_garbage_script;

typedef struct rk_garbage_server rk_garbage_server;

/* Start serving the script (copied). NULL, after printing why, on failure. */
rk_garbage_server *rk_garbage_server_start(const rk_garbage_script *script);

/* The port it listens on (127.0.0.1). */
int rk_garbage_server_port(const rk_garbage_server *s);

/* Connections accepted so far. */
int rk_garbage_server_connections(rk_garbage_server *s);

/* Stop the thread, close everything, free. NULL is a no-op. */
void rk_garbage_server_stop(rk_garbage_server *s);

#ifdef __cplusplus
}
#endif

#endif
