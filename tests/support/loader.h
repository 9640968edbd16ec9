/*
 * loader.h — kill -9 and restart a redis-server under load: the fault
 * scenario that tests/client/fault_test.c runs over TCP and tests/transport/tls_test.c over
 * TLS, with the same threads, timing and checks.
 */
#ifndef RK_TEST_LOADER_H
#define RK_TEST_LOADER_H

#include <stdint.h>

#include <redkit/redkit.h>

#include "redis_server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How many loader threads rk_test_kill_restart_under_load() runs. */
#define RK_TEST_LOADERS 4

/*
 * Run RK_TEST_LOADERS threads on cache, each looping over 20 keys of its
 * own ("k<thread>:<n>") and alternating rk_cache_set_str(value, 60 s TTL)
 * with rk_cache_get_str(), backing off 2 ms after a failed call. 300 ms
 * in, kill the server with SIGKILL; 600 ms later restart it
 * (rk_test_server_restart(s, NULL): same port, arguments and TLS); then
 * wait, bounded by 10 s, until every thread has had a call succeed since
 * the restart, and stop and join the threads.
 *
 * Then assert, for each thread in turn: it got no status other than
 * RK_OK, RK_MISS, RK_DEGRADED, RK_ERR_UNAVAILABLE or RK_ERR_TIMEOUT (the
 * failure names the thread, the count and the last such status with its
 * message); it made calls; a call succeeded after the restart; and, when
 * max_call_ms > 0, no call took longer than max_call_ms.
 *
 * Fails the test (cmocka) on any of that, or when a thread cannot be
 * started, or the kill or restart fails. The caller keeps s and cache,
 * which must outlive the call; value is only read.
 */
void rk_test_kill_restart_under_load(rk_test_server *s, rk_cache *cache, const char *value, int64_t max_call_ms);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_LOADER_H */
