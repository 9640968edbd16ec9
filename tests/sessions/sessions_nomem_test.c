/*
 * sessions_nomem_test.c — an allocation-failure walk over every allocating path of
 * rk_sessions (handle, create with a user and attributes, get, set, unset,
 * touch, list, regenerate, destroy_user, destroy, count) against a real
 * redis-server: the Nth allocation fails, for N = 1, 2, ... until a run
 * needs fewer; each call reports RK_ERR_NOMEM (or completes), nothing
 * crashes and nothing leaks.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <redkit/redkit.h>

#include "support/fail_alloc.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;

static int group_setup(void **state) { return rk_test_group_setup(state, &(rk_test_group){.server = &server}); }

static int nomem_returns; /* RK_ERR_NOMEM returns in one run */

/* st is what the call returns with memory to spare (normal, or alt which
 * an earlier failure allows), or RK_ERR_NOMEM once the failure was
 * injected, once per run. True when st is normal. */
static bool outcome(rk_status st, rk_status normal, rk_status alt, const char *what)
{
    if (st == normal || st == alt) return st == normal;
    if (st == RK_ERR_NOMEM && rk_test_fail_hit() && ++nomem_returns == 1 && *rk_last_error()) return false;
    fail_msg("N=%ld: %s: %s: %s", rk_test_fail_at(), what, rk_strerror(st), rk_last_error());
    return false;
}

static void scenario(const char *url, int run)
{
    rk_client *c;
    /* A generous timeout: the walk runs hundreds of clients on a busy
     * machine, and a timeout is not what it tests. */
    if (!outcome(rk_client_new(&(rk_client_options){.url = url, .command_timeout_ms = 10000}, &c), RK_OK, RK_OK,
                 "rk_client_new"))
        return;
    rk_sessions *s;
    if (!outcome(rk_sessions_new(c, NULL, &s), RK_OK, RK_OK, "rk_sessions_new")) {
        rk_client_free(c);
        return;
    }
    char user[32];
    snprintf(user, sizeof user, "user%d", run); /* a fresh index each run */
    char token[RK_SESSION_TOKEN_SIZE], other[RK_SESSION_TOKEN_SIZE], fresh[RK_SESSION_TOKEN_SIZE];
    rk_session_attr a[2] = {{"theme", "dark", 4}, {"cart", "[1,2,3]", 7}};
    rk_session_create_options co = {.user = user, .attrs = a, .nattrs = 2};
    if (!outcome(rk_sessions_create(s, &co, token), RK_OK, RK_OK, "create")) goto out;
    if (!outcome(rk_sessions_create(s, &co, other), RK_OK, RK_OK, "create 2")) goto out;
    rk_session *got = NULL;
    outcome(rk_sessions_get(s, token, NULL, 0, &got), RK_OK, RK_OK, "get");
    rk_session_free(got);
    const char *names[2] = {"cart", "nope"};
    got = NULL;
    outcome(rk_sessions_get(s, token, names, 2, &got), RK_OK, RK_OK, "get names");
    rk_session_free(got);
    outcome(rk_sessions_set_str(s, token, "step", "2"), RK_OK, RK_OK, "set");
    outcome(rk_sessions_unset(s, token, names, 1), RK_OK, RK_OK, "unset");
    outcome(rk_sessions_touch(s, token), RK_OK, RK_OK, "touch");
    rk_session_list *l = NULL;
    outcome(rk_sessions_list(s, user, &l), RK_OK, RK_OK, "list");
    rk_session_list_free(l);
    uint64_t n;
    outcome(rk_sessions_count(s, &n), RK_OK, RK_OK, "count");
    /* After a failed regenerate the session may be gone (it was taken
     * from the old token but not stored under the new one). */
    if (!outcome(rk_sessions_regenerate(s, token, NULL, fresh), RK_OK, RK_MISS, "regenerate")) goto out;
    size_t destroyed;
    outcome(rk_sessions_destroy_user(s, user, fresh, &destroyed), RK_OK, RK_OK, "destroy_user");
    outcome(rk_sessions_destroy(s, fresh), RK_OK, RK_MISS, "destroy");
out:
    rk_sessions_free(s);
    rk_client_free(c);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s", rk_test_server_url(server));
    long n;
    for (n = 1; n < 5000; n++) {
        /* Each run on an empty server, so that every run allocates alike
         * (count's SCAN replies grow with what failed runs left). */
        assert_true(rk_test_server_flush(server));
        long live = rk_test_fail_live();
        rk_test_fail_arm(n);
        nomem_returns = 0;
        scenario(url, (int)n);
        rk_test_fail_disarm();
        if (rk_test_fail_live() != live) fail_msg("N=%ld: %ld blocks leaked", n, rk_test_fail_live() - live);
        if (!rk_test_fail_hit()) break;
    }
    print_message("out-of-memory walk: %ld allocation points\n", n - 1);
    assert_true(n > 20 && n < 5000);
}

int main(void)
{
    /* Before any other redkit call, as rk_set_allocator asks. */
    if (rk_set_allocator(&rk_test_fail_allocator) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
