/*
 * fault_proxy.h — a loopback TCP proxy that injects network faults, for tests.
 *
 * Fault tests put this proxy between a client and a private redis-server
 * (see redis_server.h): the client connects to rk_fault_proxy_port(), and
 * every client connection gets its own upstream connection to
 * 127.0.0.1:<upstream_port>. In RK_FAULT_PASS the proxy forwards bytes both
 * ways unchanged; the other modes delay, swallow, reset, cut or slice the
 * traffic, so a test can show how the client behaves when the network does.
 *
 * The proxy runs its own thread (a poll() loop) from rk_fault_proxy_start()
 * to rk_fault_proxy_stop(). It listens on 127.0.0.1 only, on a free port.
 * rk_fault_proxy_set() and rk_fault_proxy_connections() may be called from
 * any thread; start and stop belong to one thread (normally the test's).
 */
#ifndef RK_TEST_FAULT_PROXY_H
#define RK_TEST_FAULT_PROXY_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_fault_proxy rk_fault_proxy;

typedef enum rk_fault_mode {
    /* Forward everything as it comes. */
    RK_FAULT_PASS = 0,
    /*
     * Hold every chunk read, in both directions, for `arg` milliseconds
     * before forwarding it; order is kept. Chunks already queued when the
     * mode changes keep the delay they were given.
     */
    RK_FAULT_LATENCY,
    /*
     * Accept new connections and keep reading from clients, but forward and
     * answer nothing — not even a close — on new and existing connections
     * alike, as if the network had gone silent. Nothing is lost: what the
     * proxy holds (up to its per-direction buffer limit, after which it
     * stops reading) is delivered when the mode changes back, the way TCP
     * delivers after a partition heals.
     */
    RK_FAULT_BLACKHOLE,
    /*
     * Reset (SO_LINGER 0, then close: the peer sees ECONNRESET) every
     * existing connection, client and upstream sides, when the mode is set,
     * and every new client connection as soon as it is accepted.
     */
    RK_FAULT_RESET,
    /*
     * Forward, but once `arg` bytes have gone server->client on a connection
     * (counted from when the mode was set, or from the connection's start if
     * later), close its client side cleanly (FIN: the client reads exactly
     * those bytes, then EOF) and its upstream side.
     */
    RK_FAULT_CLOSE_AFTER,
    /*
     * Forward server->client bytes one byte per write, pausing 1 ms after
     * every 16 bytes, so every reply of more than a few bytes reaches the
     * client across several reads. client->server traffic is unchanged.
     */
    RK_FAULT_SLICE
} rk_fault_mode;

/*
 * Start a proxy in front of 127.0.0.1:upstream_port, in RK_FAULT_PASS. The
 * upstream need not be up: while it is down, each new client connection is
 * accepted and closed at once. Returns NULL, after printing why to stderr, on
 * failure (bad port, no free port, no memory, thread creation failed).
 * Free with rk_fault_proxy_stop().
 */
rk_fault_proxy *rk_fault_proxy_start(int upstream_port);

/* The loopback port clients connect to. */
int rk_fault_proxy_port(const rk_fault_proxy *p);

/*
 * Switch to `mode`. `arg` is the delay in milliseconds for RK_FAULT_LATENCY
 * and the byte count for RK_FAULT_CLOSE_AFTER (negative values count as 0);
 * it is ignored otherwise. Returns once the proxy thread has applied the
 * mode (or after 2 s if it did not, which it reports on stderr), so traffic
 * the test sends afterwards is already subject to the new mode: after
 * rk_fault_proxy_set(p, RK_FAULT_RESET, 0) the existing connections are gone.
 */
void rk_fault_proxy_set(rk_fault_proxy *p, rk_fault_mode mode, int arg);

/* How many client connections the proxy has accepted so far, in total. */
int rk_fault_proxy_connections(const rk_fault_proxy *p);

/*
 * Stop the proxy thread (promptly: it is woken, not polled), close every
 * connection and the listening socket, and free the handle. NULL is a no-op.
 */
void rk_fault_proxy_stop(rk_fault_proxy *p);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_FAULT_PROXY_H */
