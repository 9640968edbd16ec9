/*
 * fixture.h — the cmocka side of the test fixture, shared by the
 * integration tests: a group fixture (a private redis-server and, when
 * asked, a client and a cache on it), client and cache constructors that
 * fail the test with rk_last_error(), and checks of what the server holds.
 *
 * redis_server.h reports failures by return value and can be used outside
 * cmocka (bench/ does); everything here asserts, and so may only be called
 * from a cmocka test, setup or teardown. Include <cmocka.h> (with its
 * usual prerequisites) before calling anything here.
 */
#ifndef RK_TEST_FIXTURE_H
#define RK_TEST_FIXTURE_H

#include <redkit/redkit.h>

#include "fault_proxy.h"
#include "redis_server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the group fixture -------------------------------------------------- */

/*
 * What a test program's group fixture holds. The handles live in the test
 * program's own variables: the fixture is told where they are, fills them
 * in rk_test_group_setup() and frees and clears them in
 * rk_test_group_teardown(), so tests go on using their file-scope
 * `server`, `client` and `cache`.
 */
typedef struct rk_test_group {
    rk_test_server **server;             /* required: receives the started server */
    const char *const *server_args;      /* extra redis-server arguments, or NULL */
    const char *admin_password;          /* rk_test_server_set_admin_password(), or NULL */
    rk_client **client;                  /* receives a client on the server; NULL = none */
    rk_client_options client_options;    /* its options; .url is replaced by the server's */
    rk_cache **cache;                    /* receives a cache on the client; NULL = none */
    const rk_cache_options *cache_options; /* its options; NULL = defaults */
} rk_test_group;

/*
 * A cmocka group setup: start a private redis-server (rk_test_server_start()
 * with g->server_args; a single-node cluster when RK_TEST_CLUSTER=1 is set,
 * see redis_server.h), then the client and the cache that g asks for, and
 * store them where g says. *state becomes the group's record (the fixture
 * owns it; tests see it as their state and should not touch it), which
 * rk_test_group_flush() and rk_test_group_teardown() need. g is only read
 * during the call.
 *
 * Returns 0, or -1 after printing why (rk_last_error() for a client or
 * cache) to stderr; on failure it has already freed whatever it made and
 * set *state to NULL.
 */
int rk_test_group_setup(void **state, const rk_test_group *g);

/*
 * A cmocka group teardown for rk_test_group_setup(): frees the cache, the
 * client and the server whose places the group was given (whatever they
 * hold by then), sets those places to NULL and frees the record. A NULL
 * *state is a no-op. Returns 0.
 */
int rk_test_group_teardown(void **state);

/*
 * A cmocka per-test setup for a group made by rk_test_group_setup():
 * FLUSHALL on the group's server (rk_test_server_flush()), so each test
 * starts on an empty server. Returns -1 when the flush failed.
 */
int rk_test_group_flush(void **state);

/* ---- clients and caches -------------------------------------------------- */

/*
 * rk_client_new(o) that must succeed: fails the test with the status and
 * rk_last_error() otherwise. The caller owns the client (rk_client_free()).
 */
rk_client *rk_test_client_new(const rk_client_options *o);

/*
 * rk_cache_new(client, o) that must succeed: fails the test with the
 * status and rk_last_error() otherwise. The caller owns the cache
 * (rk_cache_free()).
 */
rk_cache *rk_test_cache_new(rk_client *client, const rk_cache_options *o);

/*
 * rk_cache_get_str(c, key) must answer RK_OK (else the test fails with the
 * status and rk_last_error()) with a value equal to want.
 */
void rk_test_assert_cached(rk_cache *c, const char *key, const char *want);

/*
 * A command sent through the library (rk_client_command(c, argc, argv,
 * lens)) that must succeed with an integer reply, which is returned.
 */
long long rk_test_client_integer(rk_client *c, int argc, const char **argv, const size_t *lens);

/*
 * Ping c until it answers, every 20 ms for at most within_ms: true when it
 * did (the client recovered by itself), false when time ran out.
 */
bool rk_test_client_recovers(rk_client *c, int within_ms);

/*
 * End a fault: set proxy p back to RK_FAULT_PASS, then c must recover
 * (rk_test_client_recovers()) within within_ms, else the test fails.
 */
void rk_test_proxy_heal(rk_fault_proxy *p, rk_client *c, int within_ms);

/* ---- what the server holds ------------------------------------------------ */

/*
 * Run an admin command (rk_test_server_command(), printf-style) that must
 * succeed: fails the test when the server gives no reply or an error reply
 * (with the command and the server's error text).
 */
void rk_test_server_ok(rk_test_server *s, const char *fmt, ...);

/*
 * Run an admin command whose reply must be an integer, such as "PTTL %s"
 * or "DBSIZE", and return it; fails the test on no reply or any other
 * reply type.
 */
long long rk_test_server_integer(rk_test_server *s, const char *fmt, ...);

/*
 * How many times the server ran cmd (its INFO commandstats name, lower
 * case: "set", "ping", "evalsha") since it started or since CONFIG
 * RESETSTAT; 0 when it never did. Fails the test when INFO gives no text.
 */
long long rk_test_server_command_calls(rk_test_server *s, const char *cmd);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_FIXTURE_H */
