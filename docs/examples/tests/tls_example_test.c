/*
 * tls_example_test.c — the examples of docs/tls.md, run for real: a
 * redis-server with TLS (and one that requires client certificates), the
 * same client configured by rk_client_options and by a rediss:// URL.
 *
 * The certificates are made for the run by tests/support/pki.c (a
 * throwaway CA, a server certificate for 127.0.0.1 and localhost, a
 * client certificate); in production they come from your own CA, and the
 * paths below from your configuration.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

#include "pki.h"
#include "redis_server.h"

struct fixture {
    rk_test_pki *pki;
    rk_test_server *server;       /* TLS */
    rk_test_server *mtls_server;  /* TLS, client certificates required */
};

static int group_setup(void **state)
{
    static struct fixture f;
    f.pki = rk_test_pki_new();
    if (!f.pki) return -1;
    rk_test_server_tls tls = {.cert_file = f.pki->server_cert, .key_file = f.pki->server_key,
                              .ca_file = f.pki->ca_cert};
    f.server = rk_test_server_start_opts(&(rk_test_server_options){.tls = &tls});
    tls.auth_clients = true;
    f.mtls_server = rk_test_server_start_opts(&(rk_test_server_options){.tls = &tls});
    *state = &f;
    return f.server && f.mtls_server ? 0 : -1;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    rk_test_server_stop(f->server);
    rk_test_server_stop(f->mtls_server);
    rk_test_pki_free(f->pki);
    return 0;
}

/* docs/tls.md, "By options": TLS with the server checked against your CA. */
static void test_tls_by_options(void **state)
{
    struct fixture *f = *state;
    const char *ca_file = f->pki->ca_cert; /* e.g. "/etc/redkit/ca.pem" */

    rk_client *client;
    rk_status st = rk_client_new(&(rk_client_options){
                                     .host = "127.0.0.1",
                                     .port = rk_test_server_port(f->server),
                                     .tls = {
                                         .enabled = true,
                                         .ca_file = ca_file,
                                     },
                                 }, &client);
    if (st != RK_OK) fail_msg("redis: %s: %s", rk_strerror(st), rk_last_error());

    rk_cache *cache;
    char *user = NULL;
    assert_int_equal(rk_cache_new(client, NULL, &cache), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "user:123", "{\"id\":123}", &(rk_cache_set_options){.ttl_s = 300}), RK_OK);
    assert_int_equal(rk_cache_get_str(cache, "user:123", &user), RK_OK);
    assert_string_equal(user, "{\"id\":123}");
    rk_free(user);
    rk_cache_free(cache);
    rk_client_free(client);
}

/* docs/tls.md, "Mutual TLS" and "By URL": the whole configuration in one
 * REDIS_URL, with a client certificate. */
static void test_mutual_tls_by_url(void **state)
{
    struct fixture *f = *state;
    char url[1024]; /* what REDIS_URL would hold */
    snprintf(url, sizeof url,
             "rediss://127.0.0.1:%d?tls_ca_file=%s&tls_cert_file=%s&tls_key_file=%s",
             rk_test_server_port(f->mtls_server), f->pki->ca_cert, f->pki->client_cert, f->pki->client_key);

    rk_client *client;
    rk_status st = rk_client_new_url(url, &client);
    if (st != RK_OK) fail_msg("redis: %s: %s", rk_strerror(st), rk_last_error());
    assert_int_equal(rk_client_ping(client), RK_OK);
    rk_client_free(client);

    /* Without the client certificate the server refuses: RK_ERR_TLS, with
     * OpenSSL's reason in rk_last_error(). */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d?tls_ca_file=%s", rk_test_server_port(f->mtls_server),
             f->pki->ca_cert);
    assert_int_equal(rk_client_new_url(url, &client), RK_OK);
    assert_int_equal(rk_client_ping(client), RK_ERR_TLS);
    assert_non_null(strstr(rk_last_error(), "certificate required"));
    rk_client_free(client);
}

/* docs/tls.md, "What failures look like": a certificate from a CA the
 * client does not trust. */
static void test_untrusted_server(void **state)
{
    struct fixture *f = *state;
    rk_client *client;
    assert_int_equal(rk_client_new(&(rk_client_options){
                                       .host = "127.0.0.1",
                                       .port = rk_test_server_port(f->server),
                                       .tls = {.enabled = true, .ca_file = f->pki->other_ca_cert},
                                   }, &client),
                     RK_OK);
    assert_int_equal(rk_client_ping(client), RK_ERR_TLS);
    assert_non_null(strstr(rk_last_error(), "certificate verify failed"));
    rk_client_free(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_by_options),
        cmocka_unit_test(test_mutual_tls_by_url),
        cmocka_unit_test(test_untrusted_server),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
