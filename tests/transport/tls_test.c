/*
 * tls_test.c — TLS (src/transport/tls.c, and its use in conn.c and client.c) against
 * real redis-server TLS ports, with certificates made for the run by
 * tests/support/pki.c: verified TLS, mutual TLS, a wrong CA, a wrong host
 * name (and names that are only in a certificate's CN, or only as an IP),
 * server names with empty labels, skipping verification (and a URL's
 * tls_insecure=1 against code that asks for verification), a session
 * set-up failure's reason, rediss:// URLs with TLS query options,
 * AUTH over TLS, and the fault tier over TLS — kill -9 and restart under
 * load, a paused server and a blackhole during the handshake, a proxy
 * that slices, cuts and resets TLS records — plus the TLS 1.3 session
 * tickets that must not pass for unasked data.
 *
 * Assertions on time are upper bounds only, with a wide margin; the
 * outcomes asserted are statuses, messages and counters.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "conn.h"
#include "tls.h"

#include "support/capture.h"
#include "support/clock.h"
#include "support/fail_alloc.h"
#include "support/fault_proxy.h"
#include "support/fixture.h"
#include "support/fork_check.h"
#include "support/loader.h"
#include "support/pki.h"
#include "support/redis_server.h"

#define SECRET "tls-Secret-42"

/* The PKI is made once for the whole run; servers are started per test,
 * because many tests kill, pause or reconfigure theirs. */
static rk_test_pki *pki;

static int group_setup(void **state)
{
    (void)state;
    pki = rk_test_pki_new();
    return pki ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rk_test_pki_free(pki);
    pki = NULL;
    return 0;
}

static rk_test_server *start_tls_server(bool auth_clients, const char *const *extra_args)
{
    rk_test_server_tls tls = {.cert_file = pki->server_cert, .key_file = pki->server_key,
                              .ca_file = pki->ca_cert, .auth_clients = auth_clients};
    rk_test_server *s = rk_test_server_start_opts(&(rk_test_server_options){.extra_args = extra_args, .tls = &tls});
    assert_non_null(s);
    assert_true(rk_test_server_is_tls(s));
    return s;
}

/* The per-test setup of most tests: a TLS server of their own, in *state,
 * that asks for no client certificate. The teardown stops it, whatever the
 * test did to it. */
static int tls_server_setup(void **state)
{
    *state = start_tls_server(false, NULL);
    return 0;
}

static int tls_server_teardown(void **state)
{
    rk_test_server_stop(*state);
    return 0;
}

#define tls_server_test(f) cmocka_unit_test_setup_teardown(f, tls_server_setup, tls_server_teardown)

/* Options for 127.0.0.1:port over TLS, trusting the test CA. */
static rk_client_options tls_options(int port)
{
    return (rk_client_options){.host = "127.0.0.1", .port = port,
                               .tls = {.enabled = true, .ca_file = pki->ca_cert}};
}

/* tls_options(port) for the fault tests: calls and connects give up after
 * timeout_ms, reconnects come 10-20 ms apart and the circuit never opens,
 * so each phase of a test sees the server either answering or not. */
static rk_client_options fault_options(int port, int timeout_ms)
{
    rk_client_options o = tls_options(port);
    o.command_timeout_ms = timeout_ms;
    o.connect_timeout_ms = timeout_ms;
    o.breaker_threshold = -1;
    o.reconnect_base_ms = 10;
    o.reconnect_max_ms = 20;
    return o;
}

static void expect_message(const char *part)
{
    const char *msg = rk_last_error();
    if (!strstr(msg, part)) fail_msg("last error \"%s\" lacks \"%s\"", msg, part);
}

/* A new client of o (which must be created) whose first ping answers want;
 * when part is not NULL, the last error must then contain it. The client
 * is freed. */
static void expect_ping(const rk_client_options *o, rk_status want, const char *part)
{
    rk_client *c = rk_test_client_new(o);
    rk_status st = rk_client_ping(c);
    if (st != want) fail_msg("ping: want %s, got %s: %s", rk_strerror(want), rk_strerror(st), rk_last_error());
    if (part) expect_message(part);
    rk_client_free(c);
}

/* c's counters, which must be readable. */
static rk_client_stats stats_of(rk_client *c)
{
    rk_client_stats st;
    assert_int_equal(rk_client_stats_get(c, &st), RK_OK);
    return st;
}

/* A TCP connection to 127.0.0.1:port, made non-blocking, for the tests
 * that drive src/transport/tls.c directly. */
static int connect_nonblocking(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

/* The deadline of the direct rk__tls_* calls: two seconds from now. */
static int64_t in_2s(void) { return rk__now_ns() + 2000000000LL; }

/* A round trip through the cache and through rk_client_command. */
static void check_set_get(rk_client *c)
{
    rk_cache *cache;
    char *v = NULL;
    assert_int_equal(rk_cache_new(c, NULL, &cache), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "user:123", "{\"id\":123}", &(rk_cache_set_options){.ttl_s = 60}), RK_OK);
    assert_int_equal(rk_cache_get_str(cache, "user:123", &v), RK_OK);
    assert_string_equal(v, "{\"id\":123}");
    rk_free(v);
    assert_int_equal(rk_cache_get_str(cache, "absent", &v), RK_MISS);
    rk_cache_free(cache);

    const char *set[] = {"SET", "tls:plain", "over TLS"};
    const char *get[] = {"GET", "tls:plain"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 3, set, NULL, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_STATUS);
    rk_reply_free(r);
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_OK);
    assert_int_equal(r->type, RK_REPLY_STRING);
    assert_string_equal(r->str, "over TLS");
    rk_reply_free(r);
}

/* ---- verified TLS ------------------------------------------------------ */

static void test_verified_tls_set_get(void **state)
{
    rk_test_server *s = *state;
    rk_client_options o = tls_options(rk_test_server_port(s));
    o.command_timeout_ms = 5000;
    rk_client *c = rk_test_client_new(&o);
    check_set_get(c);

    /* 1 MB each way: many TLS records, partial writes and reads. */
    size_t big_len = 1 << 20;
    char *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++) big[i] = (char)('a' + i % 23);
    const char *set[] = {"SET", "tls:big", big};
    size_t set_len[] = {3, 7, big_len};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 3, set, set_len, &r), RK_OK);
    rk_reply_free(r);
    const char *get[] = {"GET", "tls:big"};
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_OK);
    assert_int_equal(r->len, big_len);
    assert_memory_equal(r->str, big, big_len);
    rk_reply_free(r);
    free(big);

    /* The port speaks TLS only: a plain client gets no answer from it. */
    rk_client *plain = rk_test_client_new(&(rk_client_options){.host = "127.0.0.1", .port = rk_test_server_port(s),
                                                               .command_timeout_ms = 300, .connect_timeout_ms = 300});
    assert_int_not_equal(rk_client_ping(plain), RK_OK);
    rk_client_free(plain);

    rk_client_free(c);
}

static void test_host_name_and_ca_choices(void **state)
{
    rk_test_server *s = *state;
    int port = rk_test_server_port(s);

    /* A DNS name, checked against the certificate's DNS subjectAltName. */
    expect_ping(&(rk_client_options){.host = "localhost", .port = port,
                                     .tls = {.enabled = true, .ca_file = pki->ca_cert}},
                RK_OK, NULL);

    /* A CA directory instead of a file. */
    expect_ping(&(rk_client_options){.host = "127.0.0.1", .port = port,
                                     .tls = {.enabled = true, .ca_dir = pki->ca_dir}},
                RK_OK, NULL);

    /* Neither: the system's store, which does not know the test CA. */
    expect_ping(&(rk_client_options){.host = "127.0.0.1", .port = port, .tls = {.enabled = true}},
                RK_ERR_TLS, "certificate verify failed");
}

/* ---- mutual TLS -------------------------------------------------------- */

static void test_mutual_tls(void **state)
{
    (void)state;
    rk_test_server *s = start_tls_server(true, NULL);
    rk_client_options o = tls_options(rk_test_server_port(s));
    o.tls.cert_file = pki->client_cert;
    o.tls.key_file = pki->client_key;
    rk_client *c = rk_test_client_new(&o);
    assert_int_equal(rk_client_ping(c), RK_OK);
    check_set_get(c);
    rk_client_free(c);

    /* Without a certificate the server refuses the session. Under TLS 1.3
     * it says so only after the client's half of the handshake: the
     * refusal must still come back as RK_ERR_TLS from the connect, and
     * count as a failed connect attempt. */
    rk_client_options no_cert = tls_options(rk_test_server_port(s));
    no_cert.breaker_threshold = -1;
    c = rk_test_client_new(&no_cert);
    assert_int_equal(rk_client_ping(c), RK_ERR_TLS);
    expect_message("TLS handshake with 127.0.0.1:");
    expect_message("certificate");
    rk_client_stats st = stats_of(c);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.connect_failures, 1);
    rk_client_free(c);

    /* The same with a real handshake pipeline (CLIENT SETNAME) instead of
     * the PING that stands in for an empty one. */
    no_cert.client_name = "no-cert";
    expect_ping(&no_cert, RK_ERR_TLS, "certificate");

    /* A certificate the server does not accept for a client (the server's
     * own: its extended key usage is serverAuth only): refused in the
     * handshake, with an alert. */
    rk_client_options wrong_cert = tls_options(rk_test_server_port(s));
    wrong_cert.tls.cert_file = pki->server_cert;
    wrong_cert.tls.key_file = pki->server_key;
    c = rk_test_client_new(&wrong_cert);
    assert_int_equal(rk_client_ping(c), RK_ERR_TLS);
    expect_message("TLS handshake with 127.0.0.1:");
    expect_message("alert");
    rk_client_free(c);
    rk_test_server_stop(s);
}

/* ---- verification failures ---------------------------------------------- */

static void test_wrong_ca_rejected(void **state)
{
    rk_test_server *s = *state;
    rk_client_options o = tls_options(rk_test_server_port(s));
    o.tls.ca_file = pki->other_ca_cert;
    rk_client *c = rk_test_client_new(&o);
    assert_int_equal(rk_client_ping(c), RK_ERR_TLS);
    /* OpenSSL's reason and the verification result, both. (Which result
     * depends on whether the server sends its CA along: redis-server
     * does, as OpenSSL completes the chain from its CA file.) */
    expect_message("certificate verify failed");
    const char *msg = rk_last_error();
    if (!strstr(msg, "(server certificate: self-signed certificate in certificate chain)") &&
        !strstr(msg, "(server certificate: unable to get local issuer certificate)"))
        fail_msg("no verification result in \"%s\"", msg);
    rk_client_stats st = stats_of(c);
    assert_int_equal(st.connect_failures, 1);
    assert_int_equal(st.connects, 0);
    rk_client_free(c);
}

static void test_wrong_host_name_rejected(void **state)
{
    rk_test_server *s = *state;
    rk_client_options o = tls_options(rk_test_server_port(s));

    o.tls.server_name = "wrong.example"; /* not in the certificate's SAN */
    expect_ping(&o, RK_ERR_TLS, "hostname mismatch");
    o.tls.server_name = "127.0.0.2"; /* an IP the certificate does not name */
    expect_ping(&o, RK_ERR_TLS, "IP address mismatch");
    o.tls.server_name = "localhost"; /* reach 127.0.0.1, check "localhost" */
    expect_ping(&o, RK_OK, NULL);
}

/* A certificate without any DNS subjectAltName is not checked against its
 * subject CN (OpenSSL's fallback, which RFC 6125 deprecates): a CN of
 * "localhost" alone does not make it a certificate for localhost. */
static void test_common_name_is_not_a_host_name(void **state)
{
    (void)state;
    /* No subjectAltName at all, CN=localhost. */
    rk_test_server_tls cn_only = {.cert_file = pki->server_cn_only_cert, .key_file = pki->server_cn_only_key};
    rk_test_server *s = rk_test_server_start_opts(&(rk_test_server_options){.tls = &cn_only});
    assert_non_null(s);
    expect_ping(&(rk_client_options){.host = "localhost", .port = rk_test_server_port(s),
                                     .tls = {.enabled = true, .ca_file = pki->ca_cert}},
                RK_ERR_TLS, "hostname mismatch");
    /* The chain itself is fine: skipping the name check (and everything
     * else) connects, so the refusal above was the name. */
    expect_ping(&(rk_client_options){.host = "localhost", .port = rk_test_server_port(s),
                                     .tls = {.enabled = true, .insecure_skip_verify = true}},
                RK_OK, NULL);
    /* Reached by address, the CN does not stand in for an IP either. */
    expect_ping(&(rk_client_options){.host = "127.0.0.1", .port = rk_test_server_port(s),
                                     .tls = {.enabled = true, .ca_file = pki->ca_cert}},
                RK_ERR_TLS, "IP address mismatch");
    rk_test_server_stop(s);

    /* Only an IP subjectAltName (127.0.0.1), CN=localhost: reached by
     * address it is the right certificate; reached by the name localhost,
     * without a server_name, the default check is against the host and
     * refuses it. */
    rk_test_server_tls ip_only = {.cert_file = pki->server_ip_only_cert, .key_file = pki->server_ip_only_key};
    s = rk_test_server_start_opts(&(rk_test_server_options){.tls = &ip_only});
    assert_non_null(s);
    expect_ping(&(rk_client_options){.host = "127.0.0.1", .port = rk_test_server_port(s),
                                     .tls = {.enabled = true, .ca_file = pki->ca_cert}},
                RK_OK, NULL);
    expect_ping(&(rk_client_options){.host = "localhost", .port = rk_test_server_port(s),
                                     .tls = {.enabled = true, .ca_file = pki->ca_cert}},
                RK_ERR_TLS, "hostname mismatch");
    rk_test_server_stop(s);
}

/* A name with a leading '.' would make OpenSSL accept any subdomain
 * (".example.com" matches cache.example.com); a trailing '.' or an empty
 * label is no host name a certificate carries. All refused up front. */
static void test_server_name_with_empty_labels_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {".example.com", "example.com.", "cache..example.com", ".", ".localhost"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rk_client *c = (rk_client *)1;
        rk_status st = rk_client_new(&(rk_client_options){.host = "127.0.0.1",
                                                          .tls = {.enabled = true, .ca_file = pki->ca_cert,
                                                                  .server_name = bad[i]}}, &c);
        if (st != RK_ERR_INVALID) fail_msg("server_name \"%s\": %s (%s)", bad[i], rk_strerror(st), rk_last_error());
        assert_null(c);
        expect_message("tls.server_name");
        char url[256];
        snprintf(url, sizeof url, "rediss://127.0.0.1:6380?tls_server_name=%s", bad[i]);
        c = (rk_client *)1;
        assert_int_equal(rk_client_new_url(url, &c), RK_ERR_INVALID);
        assert_null(c);
        expect_message("tls_server_name");
        /* The host is the name checked when there is no server_name. */
        c = (rk_client *)1;
        assert_int_equal(rk_client_new(&(rk_client_options){.host = bad[i], .tls = {.enabled = true,
                                                            .ca_file = pki->ca_cert}}, &c), RK_ERR_INVALID);
        assert_null(c);
    }
    /* The leading-dot case against a real server: refused before any
     * connection, where it used to accept any subdomain of the name. */
    rk_client *c = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.host = "127.0.0.1", .port = 1,
                                                        .tls = {.enabled = true, .ca_file = pki->ca_cert,
                                                                .server_name = ".localhost"}}, &c),
                     RK_ERR_INVALID);
    /* Well-formed names still work. */
    assert_int_equal(rk_client_new(&(rk_client_options){.tls = {.enabled = true, .ca_file = pki->ca_cert,
                                                                .server_name = "cache.example.com"}}, &c),
                     RK_OK);
    rk_client_free(c);
}

/* A session set-up failure (here: an SNI name longer than TLS allows)
 * reports OpenSSL's reason, not "unknown OpenSSL error" — the reason must
 * be read before the failed session is freed. */
static void test_session_setup_failure_has_reason(void **state)
{
    rk_test_server *s = *state;
    char name[300];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    rk__tls_ctx *ctx = NULL;
    assert_int_equal(rk__tls_ctx_new(&(rk__tls_config){.ca_file = pki->ca_cert, .verify_name = name}, &ctx), RK_OK);
    int fd = connect_nonblocking(rk_test_server_port(s));
    rk__tls *t = (rk__tls *)1;
    assert_int_equal(rk__tls_connect(ctx, fd, "test peer", in_2s(), &t), RK_ERR_TLS);
    assert_null(t);
    expect_message("TLS server name indication");
    if (strstr(rk_last_error(), "unknown OpenSSL error")) fail_msg("no reason in \"%s\"", rk_last_error());
    expect_message("error:");
    close(fd);
    rk__tls_ctx_free(ctx);
}

/* ---- skipping verification ---------------------------------------------- */

static int count_lines_with(rk_test_log *l, const char *part)
{
    int n = 0;
    pthread_mutex_lock(&l->lock);
    for (const char *p = l->text; (p = strstr(p, part)) != NULL; p += strlen(part)) n++;
    pthread_mutex_unlock(&l->lock);
    return n;
}

static void test_skip_verify_warns_once(void **state)
{
    rk_test_server *s = *state;
    rk_test_log log = RK_TEST_LOG_INIT;
    rk_client_options o = tls_options(rk_test_server_port(s));
    o.tls.ca_file = pki->other_ca_cert; /* would fail verification */
    o.tls.insecure_skip_verify = true;
    o.log = rk_test_log_capture;
    o.log_user = &log;
    rk_client *c = rk_test_client_new(&o);
    assert_int_equal(rk_client_ping(c), RK_OK);
    check_set_get(c);
    /* More connections: the server drops them all, the client reconnects. */
    redisReply *r = rk_test_server_command(s, "CLIENT KILL TYPE normal");
    assert_non_null(r);
    freeReplyObject(r);
    assert_true(rk_test_client_recovers(c, 3000));
    assert_true(stats_of(c).connects >= 2);
    assert_int_equal(count_lines_with(&log, "verification is disabled"), 1);
    rk_client_free(c);

    /* Once per client: a second client warns once more. */
    expect_ping(&o, RK_OK, NULL);
    assert_int_equal(count_lines_with(&log, "verification is disabled"), 2);
    pthread_mutex_lock(&log.lock);
    assert_non_null(strstr(log.text, "3 TLS certificate verification is disabled")); /* RK_LOG_WARN */
    pthread_mutex_unlock(&log.lock);

    /* A log level above WARN silences it. */
    o.log_level = RK_LOG_ERROR;
    c = rk_test_client_new(&o);
    rk_client_free(c);
    assert_int_equal(count_lines_with(&log, "verification is disabled"), 2);
}

/* ---- rediss:// URLs ----------------------------------------------------- */

static void test_rediss_url_with_query_options(void **state)
{
    (void)state;
    rk_test_server *s = start_tls_server(true, NULL);
    int port = rk_test_server_port(s);
    char url[1024];
    snprintf(url, sizeof url,
             "rediss://127.0.0.1:%d?tls_ca_file=%s&tls_cert_file=%s&tls_key_file=%s"
             "&tls_server_name=localhost&name=tls-test&command_timeout=2000",
             port, pki->ca_cert, pki->client_cert, pki->client_key);
    rk_client *c = NULL;
    assert_int_equal(rk_client_new_url(url, &c), RK_OK);
    check_set_get(c);
    rk_client_free(c);

    /* Fields in the struct override the URL's: a wrong CA in the URL,
     * the right one in code... */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d?tls_ca_file=%s&tls_cert_file=%s&tls_key_file=%s", port,
             pki->other_ca_cert, pki->client_cert, pki->client_key);
    expect_ping(&(rk_client_options){.url = url, .tls = {.ca_file = pki->ca_cert}}, RK_OK, NULL);
    /* ...and the other way round. */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d?tls_ca_file=%s&tls_cert_file=%s&tls_key_file=%s", port,
             pki->ca_cert, pki->client_cert, pki->client_key);
    expect_ping(&(rk_client_options){.url = url, .tls = {.ca_file = pki->other_ca_cert}}, RK_ERR_TLS, NULL);

    /* tls_insecure=1 in the URL: connects with the wrong CA. */
    snprintf(url, sizeof url,
             "rediss://127.0.0.1:%d?tls_ca_file=%s&tls_cert_file=%s&tls_key_file=%s&tls_insecure=1", port,
             pki->other_ca_cert, pki->client_cert, pki->client_key);
    assert_int_equal(rk_client_new_url(url, &c), RK_OK);
    assert_int_equal(rk_client_ping(c), RK_OK);
    rk_client_free(c);

    /* ...but not when the code asks for verification: a CA (file or
     * directory) or a server name set in the struct says the program
     * expects the server to be checked, and a URL from the environment
     * must not silently turn that off. Refused, naming both sides. */
    const rk_tls_options verifying[] = {{.ca_file = pki->ca_cert}, {.ca_dir = pki->ca_dir},
                                        {.server_name = "localhost"}};
    const char *const field[] = {"tls.ca_file", "tls.ca_dir", "tls.server_name"};
    for (size_t i = 0; i < 3; i++) {
        c = (rk_client *)1;
        assert_int_equal(rk_client_new(&(rk_client_options){.url = url, .tls = verifying[i]}, &c), RK_ERR_INVALID);
        assert_null(c);
        expect_message("tls_insecure=1");
        expect_message(field[i]);
    }
    /* The code may still turn verification off itself, or add only a
     * client certificate to the URL's choice. */
    expect_ping(&(rk_client_options){.url = url, .tls = {.ca_file = pki->ca_cert, .insecure_skip_verify = true}},
                RK_OK, NULL);
    expect_ping(&(rk_client_options){.url = url, .tls = {.cert_file = pki->client_cert, .key_file = pki->client_key}},
                RK_OK, NULL);

    /* The test fixture's own URL is rediss:// too. */
    expect_ping(&(rk_client_options){.url = rk_test_server_url(s),
                                     .tls = {.ca_file = pki->ca_cert, .cert_file = pki->client_cert,
                                             .key_file = pki->client_key}},
                RK_OK, NULL);
    rk_test_server_stop(s);
}

/* ---- AUTH over TLS ------------------------------------------------------ */

static void test_password_over_tls(void **state)
{
    (void)state;
    const char *args[] = {"--requirepass", SECRET, NULL};
    rk_test_server *s = start_tls_server(false, args);
    rk_test_server_set_admin_password(s, SECRET);
    char url[512];
    snprintf(url, sizeof url, "rediss://:%s@127.0.0.1:%d?tls_ca_file=%s", SECRET, rk_test_server_port(s),
             pki->ca_cert);
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = url});
    check_set_get(c);
    rk_client_free(c);

    /* A wrong password is an AUTH failure, not a TLS one. */
    snprintf(url, sizeof url, "rediss://:not-%s@127.0.0.1:%d?tls_ca_file=%s", SECRET, rk_test_server_port(s),
             pki->ca_cert);
    c = rk_test_client_new(&(rk_client_options){.url = url});
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    assert_null(strstr(rk_last_error(), SECRET));
    rk_client_free(c);

    /* No password at all: the TLS session is accepted; commands get NOAUTH,
     * exactly as over TCP. */
    rk_client_options o = tls_options(rk_test_server_port(s));
    c = rk_test_client_new(&o);
    assert_int_equal(rk_client_ping(c), RK_ERR_AUTH);
    assert_int_equal(stats_of(c).connects, 1);
    rk_client_free(c);
    rk_test_server_stop(s);
}

/* ---- kill -9 and restart under load, over TLS --------------------------- */

static void test_kill9_and_restart_over_tls(void **state)
{
    rk_test_server *s = *state;
    rk_client_options o = tls_options(rk_test_server_port(s));
    o.pool_size = 4;
    o.command_timeout_ms = 300;
    o.connect_timeout_ms = 300;
    o.reconnect_base_ms = 20;
    o.reconnect_max_ms = 200;
    rk_client *c = rk_test_client_new(&o);
    rk_cache *cache = rk_test_cache_new(c, NULL);

    /* A server that dies mid-session must look exactly as over TCP:
     * unavailable or timed out, never a TLS or protocol error. The restart
     * keeps the port, and TLS. */
    rk_test_kill_restart_under_load(s, cache, "value over TLS", 0);
    assert_true(rk_test_server_is_tls(s));
    rk_client_stats st = stats_of(c);
    assert_true(st.disconnects > 0);
    assert_true(st.reconnects > 0);
    assert_true(rk_test_client_recovers(c, 5000));
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_CLOSED);
    assert_int_equal(rk_cache_set_str(cache, "after", "ok", NULL), RK_OK);
    rk_cache_free(cache);
    rk_client_free(c);
}

/* ---- a silent server during the handshake ------------------------------- */

static void test_paused_server_handshake_times_out(void **state)
{
    rk_test_server *s = *state;
    rk_client_options o = fault_options(rk_test_server_port(s), 200);
    rk_client *c = rk_test_client_new(&o);

    /* The kernel still accepts the TCP connection of a stopped process;
     * the ClientHello is never answered. */
    assert_true(rk_test_server_signal(s, SIGSTOP));
    assert_int_equal(rk_client_ping(c), RK_ERR_TIMEOUT);
    expect_message("TLS handshake with 127.0.0.1:");
    expect_message("timed out");
    assert_true(rk_test_server_signal(s, SIGCONT));
    assert_true(rk_test_client_recovers(c, 5000));
    rk_client_free(c);
}

static void test_blackhole_opens_and_probe_closes_circuit(void **state)
{
    rk_test_server *s = *state;
    rk_fault_proxy *p = rk_fault_proxy_start(rk_test_server_port(s));
    assert_non_null(p);
    rk_test_events rec = RK_TEST_EVENTS_INIT;
    rk_client_options o = tls_options(rk_fault_proxy_port(p));
    o.command_timeout_ms = 150;
    o.connect_timeout_ms = 150;
    o.breaker_threshold = 3;
    o.reconnect_base_ms = 200;
    o.reconnect_max_ms = 400;
    o.on_event = rk_test_events_record;
    o.event_user = &rec;
    rk_client *c = rk_test_client_new(&o);
    assert_int_equal(rk_client_ping(c), RK_OK);

    rk_fault_proxy_set(p, RK_FAULT_BLACKHOLE, 0);
    /* The pooled connection times out reading; new ones time out in the
     * TLS handshake, a failed connect attempt that schedules the next one,
     * so calls whose deadline comes first fail fast meanwhile (as they do
     * over TCP when the handshake has an AUTH). Three counted failures
     * open the circuit. */
    int timeouts = 0;
    for (int i = 0; i < 40 && rk_client_circuit(c) != RK_CIRCUIT_OPEN; i++) {
        rk_status st = rk_client_ping(c);
        assert_true(st == RK_ERR_TIMEOUT || st == RK_ERR_UNAVAILABLE);
        timeouts += st == RK_ERR_TIMEOUT;
        if (st == RK_ERR_UNAVAILABLE) rk_test_sleep_ms(20);
    }
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_OPEN);
    assert_true(timeouts >= 2);
    /* Open: fast failures. The cool-down is drawn with full jitter and may
     * end during the loop: the probe then times out in the blackhole and
     * reopens the circuit with a longer envelope, so a few are allowed. */
    rk_client_stats before, after;
    rk_client_stats_get(c, &before);
    int fast = 0, probes = 0;
    for (int i = 0; i < 100 && fast < 50; i++) {
        rk_status st = rk_client_ping(c);
        if (st == RK_ERR_UNAVAILABLE) {
            fast++;
        } else {
            assert_int_equal(st, RK_ERR_TIMEOUT);
            probes++;
        }
    }
    assert_int_equal(fast, 50);
    assert_true(probes <= 5);
    rk_client_stats_get(c, &after);
    assert_true(after.fast_failed >= before.fast_failed + 50);
    assert_true(after.connects <= before.connects + (uint64_t)probes);

    /* A fresh client meets the blackhole in its TLS handshake. */
    rk_client_options fresh = tls_options(rk_fault_proxy_port(p));
    fresh.connect_timeout_ms = 150;
    expect_ping(&fresh, RK_ERR_TIMEOUT, "TLS handshake with");

    rk_test_proxy_heal(p, c, 5000);
    assert_int_equal(rk_client_circuit(c), RK_CIRCUIT_CLOSED);
    assert_true(rk_test_events_count(&rec, RK_EVENT_CIRCUIT_OPEN) >= 1);
    assert_true(rk_test_events_count(&rec, RK_EVENT_CIRCUIT_HALF_OPEN) >= 1);
    assert_true(rk_test_events_count(&rec, RK_EVENT_CIRCUIT_CLOSED) >= 1);
    rk_client_free(c);
    rk_fault_proxy_stop(p);
}

/* ---- TLS records sliced, cut and reset ---------------------------------- */

static void test_sliced_cut_and_reset_records(void **state)
{
    rk_test_server *s = *state;
    rk_fault_proxy *p = rk_fault_proxy_start(rk_test_server_port(s));
    assert_non_null(p);
    rk_client_options o = fault_options(rk_fault_proxy_port(p), 10000);
    rk_client *c = rk_test_client_new(&o);
    rk_cache *cache = rk_test_cache_new(c, NULL);
    char big[3000];
    for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('a' + i % 26);
    big[sizeof big - 1] = '\0';
    assert_int_equal(rk_cache_set_str(cache, "big", big, NULL), RK_OK);

    /* Records arrive a byte at a time: still decrypted and parsed whole. */
    rk_fault_proxy_set(p, RK_FAULT_SLICE, 0);
    rk_test_assert_cached(cache, "big", big);

    /* A record cut short by the server's side closing: the server went
     * away (unavailable), as a cut TCP reply is — not a TLS error. */
    rk_fault_proxy_set(p, RK_FAULT_CLOSE_AFTER, 10);
    const char *get[] = {"GET", "cache:big"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_ERR_UNAVAILABLE);
    assert_null(r);
    expect_message("connection closed by server");
    rk_test_proxy_heal(p, c, 3000);

    /* A reset: unavailable too, and it recovers. */
    rk_fault_proxy_set(p, RK_FAULT_RESET, 0);
    assert_int_equal(rk_client_command(c, 2, get, NULL, &r), RK_ERR_UNAVAILABLE);
    rk_test_proxy_heal(p, c, 3000);
    rk_test_assert_cached(cache, "big", big);
    rk_cache_free(cache);
    rk_client_free(c);
    rk_fault_proxy_stop(p);
}

/* ---- idle connections: session tickets and dead peers ------------------- */

static void test_idle_connection_reused_and_dead_peer_noticed(void **state)
{
    rk_test_server *s = *state;
    rk_client_options o = tls_options(rk_test_server_port(s));
    o.pool_size = 1;
    o.reconnect_base_ms = 10;
    o.reconnect_max_ms = 20;
    rk_client *c = rk_test_client_new(&o);
    /* Idle past the 1 ms threshold each time, so every reuse goes through
     * rk__conn_peer_gone(): the session must survive it. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rk_client_ping(c), RK_OK);
        rk_test_sleep_ms(20);
    }
    rk_client_stats st = stats_of(c);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.disconnects, 0);

    /* The server dies and comes back: the idle session is found dead
     * before use (no failed request, no read retry), a new one opened. */
    assert_true(rk_test_server_signal(s, SIGKILL));
    assert_true(rk_test_server_restart(s, NULL));
    assert_int_equal(rk_client_ping(c), RK_OK);
    st = stats_of(c);
    assert_int_equal(st.read_retries, 0);
    assert_int_equal(st.disconnects, 1);
    assert_int_equal(st.connects, 2);
    rk_client_free(c);
}

/* The connection layer directly: a TLS session with no round trip yet, so
 * the server's TLS 1.3 session tickets are still unread on the socket. */
static void test_session_tickets_are_not_unasked_data(void **state)
{
    rk_test_server *s = *state;
    rk__tls_ctx *ctx = NULL;
    assert_int_equal(rk__tls_ctx_new(&(rk__tls_config){.ca_file = pki->ca_cert, .verify_name = "127.0.0.1"}, &ctx),
                     RK_OK);
    int fd = connect_nonblocking(rk_test_server_port(s));
    rk__tls *t = NULL;
    assert_int_equal(rk__tls_connect(ctx, fd, "test peer", in_2s(), &t), RK_OK);

    /* Wait (bounded) for the tickets to be readable on the socket. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_false(rk__tls_peer_gone(t));
    assert_false(rk__tls_peer_gone(t));

    /* The session still works, and its first reply is PING's. */
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    assert_int_equal(rk__tls_write(t, ping, sizeof ping - 1, in_2s()), RK_OK);
    char buf[64];
    size_t got = 0, total = 0;
    for (int i = 0; i < 100 && total < 7; i++) {
        assert_int_equal(rk__tls_read(t, buf + total, sizeof buf - 1 - total, &got, in_2s()), RK_OK);
        total += got;
    }
    buf[total] = '\0';
    assert_string_equal(buf, "+PONG\r\n");
    assert_false(rk__tls_peer_gone(t));

    /* Unasked application data does count: send PING, do not read. */
    assert_int_equal(rk__tls_write(t, ping, sizeof ping - 1, in_2s()), RK_OK);
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_true(rk__tls_peer_gone(t));

    rk__tls_free(t);
    close(fd);
    rk__tls_ctx_free(ctx);
}

/* ---- options that cannot work ------------------------------------------- */

static void expect_new_fails(const rk_client_options *o, rk_status want, const char *part)
{
    rk_client *c = (rk_client *)1;
    rk_status st = rk_client_new(o, &c);
    if (st != want) fail_msg("want %s, got %s: %s", rk_strerror(want), rk_strerror(st), rk_last_error());
    assert_null(c);
    expect_message(part);
}

static void test_bad_tls_options(void **state)
{
    (void)state;
    rk_tls_options ok = {.enabled = true, .ca_file = pki->ca_cert};
    rk_tls_options t;

    t = ok;
    t.ca_file = "/nonexistent/ca.pem";
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_TLS, "ca_file /nonexistent/ca.pem");
    t = ok;
    t.ca_file = NULL;
    t.ca_dir = "/nonexistent/ca.d";
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_TLS, "ca_dir /nonexistent/ca.d");
    t = ok;
    t.ca_file = pki->server_key; /* not a certificate */
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_TLS, "ca_file");
    t = ok;
    t.cert_file = pki->client_cert;
    t.key_file = pki->server_key; /* somebody else's key */
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_TLS, "key values mismatch");
    t = ok;
    t.cert_file = pki->client_cert; /* no key_file, and no key in it */
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_TLS, "key in cert_file");
    t = ok;
    t.key_file = pki->client_key;
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_INVALID, "tls.key_file: needs tls.cert_file");
    t = ok;
    t.server_name = "bad name";
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_INVALID, "tls.server_name");
    t = ok;
    t.ca_file = "";
    expect_new_fails(&(rk_client_options){.tls = t}, RK_ERR_INVALID, "tls.ca_file: empty");
    expect_new_fails(&(rk_client_options){.unix_path = "/tmp/redis.sock", .tls = ok}, RK_ERR_INVALID,
                     "Unix socket");
    /* TLS settings without TLS: a forgotten switch, not plaintext. */
    expect_new_fails(&(rk_client_options){.url = "redis://127.0.0.1", .tls = {.ca_file = pki->ca_cert}},
                     RK_ERR_INVALID, "tls.ca_file: TLS is not enabled");
    expect_new_fails(&(rk_client_options){.tls = {.insecure_skip_verify = true}}, RK_ERR_INVALID,
                     "tls.insecure_skip_verify: TLS is not enabled");
    expect_new_fails(&(rk_client_options){.url = "redis://127.0.0.1?tls_ca_file=/x"}, RK_ERR_INVALID,
                     "URL option tls_ca_file: only for rediss:// URLs");

    /* The same CA, well-formed: created without touching the network. */
    rk_client *c = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.tls = ok}, &c), RK_OK);
    rk_client_free(c);
    assert_int_equal(rk_client_new_url("rediss://127.0.0.1:1", &c), RK_OK); /* the system store */
    rk_client_free(c);
}

/* ---- every allocation failure on the TLS paths ------------------------- */

static bool ok_or_nomem(rk_status st, rk_status normal)
{
    if (st == normal) return true;
    if (st == RK_ERR_NOMEM && rk_test_fail_hit()) return true;
    print_error("N=%ld: got %s (%s), want %s or a NOMEM after the injected failure\n", rk_test_fail_at(),
                rk_strerror(st), rk_last_error(), rk_strerror(normal));
    return false;
}

static void test_allocation_failures(void **state)
{
    (void)state;
    const char *args[] = {"--requirepass", SECRET, NULL};
    rk_test_server *s = start_tls_server(true, args);
    char url[1024];
    snprintf(url, sizeof url, "rediss://app-user:%s@127.0.0.1:%d?tls_ca_file=%s&tls_cert_file=%s&tls_key_file=%s"
             "&tls_server_name=localhost&name=walker", SECRET, rk_test_server_port(s), pki->ca_cert, pki->client_cert,
             pki->client_key);
    /* An ACL user, so the AUTH command takes the longer form. */
    rk_test_server_set_admin_password(s, SECRET);
    redisReply *r = rk_test_server_command(s, "ACL SETUSER app-user on >%s ~* +@all", SECRET);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    long n;
    for (n = 1; n < 2000; n++) {
        /* The allocator fails the Nth allocation redkit makes, and counts
         * live blocks, as tests/client/nomem_test.c does for the plain paths. */
        rk_test_fail_arm(n);
        assert_int_equal(rk_set_allocator(&rk_test_fail_allocator), RK_OK);
        rk_client *c = NULL;
        rk_status st = rk_client_new(&(rk_client_options){.url = url, .breaker_threshold = -1,
                                                          .reconnect_base_ms = 1, .reconnect_max_ms = 1}, &c);
        assert_true(ok_or_nomem(st, RK_OK));
        if (st == RK_OK) {
            /* A failure while connecting fails this call; the next one
             * connects again, which must work. */
            st = rk_client_ping(c);
            assert_true(ok_or_nomem(st, RK_OK));
            if (st != RK_OK) rk_test_sleep_ms(2);
            assert_true(ok_or_nomem(rk_client_ping(c), RK_OK));
            const char *set[] = {"SET", "walk", "value"};
            rk_reply *reply = NULL;
            st = rk_client_command(c, 3, set, NULL, &reply);
            assert_true(ok_or_nomem(st, RK_OK));
            if (st != RK_OK) assert_null(reply);
            rk_reply_free(reply);
            rk_client_free(c);
        } else {
            assert_null(c);
        }
        assert_int_equal(rk_set_allocator(NULL), RK_OK);
        if (rk_test_fail_live() != 0) fail_msg("N=%ld: %ld blocks still allocated", n, rk_test_fail_live());
        if (!rk_test_fail_hit()) break; /* the run passed every allocation point */
    }
    assert_true(n > 5);   /* the walk did reach the TLS paths */
    assert_true(n < 2000);
    rk_test_server_stop(s);
}

/* ---- fork ------------------------------------------------------------- */

static rk_client *tls_client_for(void *server)
{
    rk_client_options o = tls_options(rk_test_server_port(server));
    o.command_timeout_ms = 5000;
    return rk_test_client_new(&o);
}

/* A client opened before fork() and used on both sides: the child drops
 * the inherited TLS sessions without a close_notify (which would end the
 * parent's) and opens its own; each side reads only its own values. */
static void test_fork_over_tls(void **state) { rk_test_fork_check(tls_client_for, *state, 20); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        tls_server_test(test_verified_tls_set_get),
        tls_server_test(test_host_name_and_ca_choices),
        cmocka_unit_test(test_mutual_tls),
        tls_server_test(test_wrong_ca_rejected),
        tls_server_test(test_wrong_host_name_rejected),
        cmocka_unit_test(test_common_name_is_not_a_host_name),
        cmocka_unit_test(test_server_name_with_empty_labels_refused),
        tls_server_test(test_session_setup_failure_has_reason),
        tls_server_test(test_skip_verify_warns_once),
        cmocka_unit_test(test_rediss_url_with_query_options),
        cmocka_unit_test(test_password_over_tls),
        tls_server_test(test_kill9_and_restart_over_tls),
        tls_server_test(test_paused_server_handshake_times_out),
        tls_server_test(test_blackhole_opens_and_probe_closes_circuit),
        tls_server_test(test_sliced_cut_and_reset_records),
        tls_server_test(test_idle_connection_reused_and_dead_peer_noticed),
        tls_server_test(test_session_tickets_are_not_unasked_data),
        cmocka_unit_test(test_bad_tls_options),
        cmocka_unit_test(test_allocation_failures),
        tls_server_test(test_fork_over_tls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
