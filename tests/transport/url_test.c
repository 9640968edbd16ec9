/*
 * url_test.c — unit tests for REDIS_URL parsing (src/transport/url.c): every accepted
 * form, every refused form with the part its message must name, and the
 * promise that neither an error message nor a redacted URL ever contains
 * the password ("hunter2" throughout).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include <redkit/client.h>
#include <redkit/url.h>

#include "url.h"

/* Parse a URL that must be accepted. */
static void parse_ok(const char *url, rk__url *u)
{
    rk_status st = rk__url_parse(url, u);
    if (st != RK_OK) print_error("rejected %s: %s\n", url, rk_last_error());
    assert_int_equal(st, RK_OK);
}

static void assert_empty(const rk__url *u)
{
    assert_false(u->tls);
    assert_null(u->host);
    assert_int_equal(u->port, 0);
    assert_null(u->unix_path);
    assert_null(u->username);
    assert_null(u->password);
    assert_false(u->has_db);
    assert_int_equal(u->db, 0);
    assert_int_equal(u->connect_timeout_ms, 0);
    assert_int_equal(u->command_timeout_ms, 0);
    assert_int_equal(u->pool_size, 0);
    assert_null(u->client_name);
    assert_null(u->key_prefix);
    assert_null(u->tls_ca_file);
    assert_null(u->tls_ca_dir);
    assert_null(u->tls_cert_file);
    assert_null(u->tls_key_file);
    assert_null(u->tls_server_name);
    assert_false(u->tls_insecure);
}

/* A URL that must be refused with RK_ERR_INVALID, a message naming part,
 * no password in the message, and *out left empty. */
static void expect_invalid(const char *url, const char *part)
{
    rk__url u;
    memset(&u, 0x5a, sizeof u); /* the parser must zero it */
    assert_int_equal(rk__url_parse(url, &u), RK_ERR_INVALID);
    const char *msg = rk_last_error();
    if (!strstr(msg, part)) print_error("%s: message \"%s\" lacks \"%s\"\n", url, msg, part);
    assert_non_null(strstr(msg, part));
    assert_null(strstr(msg, "hunter2"));
    assert_empty(&u);

    char *red = (char *)"untouched";
    assert_int_equal(rk_url_redact(url, &red), RK_ERR_INVALID);
    assert_null(red);
}

/* ---- accepted forms ---------------------------------------------------- */

static void test_plain_host(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://cache.internal", &u);
    assert_false(u.tls);
    assert_string_equal(u.host, "cache.internal");
    assert_int_equal(u.port, 0);
    assert_null(u.username);
    assert_null(u.password);
    assert_false(u.has_db);
    rk__url_clear(&u);
    assert_empty(&u);
}

static void test_host_port(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://10.0.0.7:6380", &u);
    assert_string_equal(u.host, "10.0.0.7");
    assert_int_equal(u.port, 6380);
    rk__url_clear(&u);

    parse_ok("redis://h:1", &u);
    assert_int_equal(u.port, 1);
    rk__url_clear(&u);
    parse_ok("redis://h:65535", &u);
    assert_int_equal(u.port, 65535);
    rk__url_clear(&u);
}

static void test_empty_authority_means_defaults(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://", &u);
    assert_empty(&u);
    rk__url_clear(&u);

    parse_ok("redis://:6390", &u);
    assert_null(u.host);
    assert_int_equal(u.port, 6390);
    rk__url_clear(&u);

    parse_ok("redis:///", &u);
    assert_empty(&u);
    rk__url_clear(&u);
}

static void test_scheme_case_insensitive(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("REDIS://h", &u);
    assert_false(u.tls);
    assert_string_equal(u.host, "h");
    rk__url_clear(&u);
    parse_ok("RedisS://h", &u);
    assert_true(u.tls);
    rk__url_clear(&u);
    parse_ok("UNIX:///tmp/r.sock", &u);
    assert_string_equal(u.unix_path, "/tmp/r.sock");
    rk__url_clear(&u);
}

static void test_rediss(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("rediss://app:hunter2@secure.example.com:6380/3", &u);
    assert_true(u.tls);
    assert_string_equal(u.host, "secure.example.com");
    assert_int_equal(u.port, 6380);
    assert_string_equal(u.username, "app");
    assert_string_equal(u.password, "hunter2");
    assert_true(u.has_db);
    assert_int_equal(u.db, 3);
    rk__url_clear(&u);
}

static void test_user_and_password(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://app:hunter2@h:6379", &u);
    assert_string_equal(u.username, "app");
    assert_string_equal(u.password, "hunter2");
    assert_string_equal(u.host, "h");
    rk__url_clear(&u);
    assert_null(u.password);
}

static void test_password_only(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://:hunter2@h", &u);
    assert_null(u.username);
    assert_string_equal(u.password, "hunter2");
    rk__url_clear(&u);
}

static void test_user_only(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://app@h", &u);
    assert_string_equal(u.username, "app");
    assert_null(u.password);
    rk__url_clear(&u);

    /* An empty password is no password. */
    parse_ok("redis://app:@h", &u);
    assert_string_equal(u.username, "app");
    assert_null(u.password);
    rk__url_clear(&u);

    parse_ok("redis://@h", &u);
    assert_null(u.username);
    assert_null(u.password);
    assert_string_equal(u.host, "h");
    rk__url_clear(&u);
}

static void test_percent_decoding(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://us%65r:p%40ss%3Aw%2Fo%3frd%23@h", &u);
    assert_string_equal(u.username, "user");
    assert_string_equal(u.password, "p@ss:w/o?rd#");
    rk__url_clear(&u);
}

static void test_last_at_and_first_colon(void **state)
{
    (void)state;
    rk__url u;
    /* Unescaped '@' and ':' in a password still parse: the userinfo ends
     * at the last '@', the user at the first ':'. */
    parse_ok("redis://app:hun@ter:2@h:7000", &u);
    assert_string_equal(u.username, "app");
    assert_string_equal(u.password, "hun@ter:2");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 7000);
    rk__url_clear(&u);
}

static void test_ipv6(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://[::1]", &u);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 0);
    rk__url_clear(&u);

    parse_ok("redis://:hunter2@[2001:db8::42]:6380/1", &u);
    assert_string_equal(u.host, "2001:db8::42");
    assert_int_equal(u.port, 6380);
    assert_string_equal(u.password, "hunter2");
    assert_int_equal(u.db, 1);
    rk__url_clear(&u);

    parse_ok("redis://[::ffff:10.0.0.1]:6379", &u);
    assert_string_equal(u.host, "::ffff:10.0.0.1");
    rk__url_clear(&u);
}

static void test_db_path(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://h/0", &u);
    assert_true(u.has_db);
    assert_int_equal(u.db, 0);
    rk__url_clear(&u);

    parse_ok("redis://h/2147483647", &u);
    assert_true(u.has_db);
    assert_int_equal(u.db, INT_MAX);
    rk__url_clear(&u);

    parse_ok("redis://h/", &u);
    assert_false(u.has_db);
    rk__url_clear(&u);
}

static void test_query_options(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://h?connect_timeout=250&command_timeout=3600000&pool_size=1024"
             "&name=worker-7&prefix=shop.eu_v2-x&db=9",
             &u);
    assert_int_equal(u.connect_timeout_ms, 250);
    assert_int_equal(u.command_timeout_ms, RK_MAX_TIMEOUT_MS);
    assert_int_equal(u.pool_size, RK_MAX_POOL_SIZE);
    assert_string_equal(u.client_name, "worker-7");
    assert_string_equal(u.key_prefix, "shop.eu_v2-x");
    assert_true(u.has_db);
    assert_int_equal(u.db, 9);
    rk__url_clear(&u);
}

static void test_each_option_alone(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://h?connect_timeout=1", &u);
    assert_int_equal(u.connect_timeout_ms, 1);
    assert_int_equal(u.command_timeout_ms, 0);
    rk__url_clear(&u);
    parse_ok("redis://h?command_timeout=500", &u);
    assert_int_equal(u.command_timeout_ms, 500);
    assert_int_equal(u.connect_timeout_ms, 0);
    rk__url_clear(&u);
    parse_ok("redis://h?pool_size=1", &u);
    assert_int_equal(u.pool_size, 1);
    rk__url_clear(&u);
    parse_ok("redis://h/?name=api%2Dgw", &u);
    assert_string_equal(u.client_name, "api-gw");
    rk__url_clear(&u);
    parse_ok("redis://h?prefix=shop", &u);
    assert_string_equal(u.key_prefix, "shop");
    rk__url_clear(&u);
    parse_ok("redis://h?db=0", &u);
    assert_true(u.has_db);
    assert_int_equal(u.db, 0);
    rk__url_clear(&u);
}

static void test_empty_query_pairs_skipped(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("redis://h?", &u);
    assert_string_equal(u.host, "h");
    rk__url_clear(&u);
    parse_ok("redis://h?&pool_size=2&&", &u);
    assert_int_equal(u.pool_size, 2);
    rk__url_clear(&u);
}

static void test_unix_socket(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("unix:///var/run/redis/redis.sock", &u);
    assert_string_equal(u.unix_path, "/var/run/redis/redis.sock");
    assert_null(u.host);
    assert_false(u.has_db);
    rk__url_clear(&u);

    parse_ok("unix:///tmp/redis.sock?db=4&pool_size=8", &u);
    assert_string_equal(u.unix_path, "/tmp/redis.sock");
    assert_true(u.has_db);
    assert_int_equal(u.db, 4);
    assert_int_equal(u.pool_size, 8);
    rk__url_clear(&u);

    parse_ok("unix:///tmp/my%20redis.sock", &u);
    assert_string_equal(u.unix_path, "/tmp/my redis.sock");
    rk__url_clear(&u);
}

static void test_unix_socket_with_credentials(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("unix://app:hunter2@/tmp/redis.sock", &u);
    assert_string_equal(u.username, "app");
    assert_string_equal(u.password, "hunter2");
    assert_string_equal(u.unix_path, "/tmp/redis.sock");
    rk__url_clear(&u);
}

static void test_clear_is_safe(void **state)
{
    (void)state;
    rk__url u;
    memset(&u, 0, sizeof u);
    rk__url_clear(&u);
    rk__url_clear(NULL);
    assert_empty(&u);
}

/* ---- refused forms ----------------------------------------------------- */

static void test_null_arguments(void **state)
{
    (void)state;
    rk__url u;
    memset(&u, 0x5a, sizeof u);
    assert_int_equal(rk__url_parse(NULL, &u), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "URL"));
    assert_empty(&u);
    assert_int_equal(rk__url_parse("redis://h", NULL), RK_ERR_INVALID);
}

static void test_bad_scheme(void **state)
{
    (void)state;
    expect_invalid("http://h", "URL scheme");
    expect_invalid("redis:/h", "URL scheme");
    expect_invalid("redis:h", "URL scheme");
    expect_invalid("h:6379", "URL scheme");
    expect_invalid("", "URL scheme");
    expect_invalid("rediss+tls://h", "URL scheme");
    expect_invalid("//h", "URL scheme");
    expect_invalid("hunter2@h", "URL scheme");
}

static void test_bad_port(void **state)
{
    (void)state;
    expect_invalid("redis://h:0", "URL port");
    expect_invalid("redis://h:65536", "URL port");
    expect_invalid("redis://h:abc", "URL port");
    expect_invalid("redis://h:", "URL port");
    expect_invalid("redis://h:-1", "URL port");
    expect_invalid("redis://h:+80", "URL port");
    expect_invalid("redis://h:99999999999999999999999", "URL port");
    expect_invalid("redis://app:hunter2@h:0x50", "URL port");
}

static void test_bad_host(void **state)
{
    (void)state;
    expect_invalid("redis://bad host", "URL host");
    expect_invalid("redis://a%20b", "URL host");
    expect_invalid("redis://::1", "URL host");
    expect_invalid("redis://h:1:2", "URL host");
    expect_invalid("redis://a,b", "URL host");
}

static void test_unbalanced_brackets(void **state)
{
    (void)state;
    expect_invalid("redis://[::1", "URL host");
    expect_invalid("redis://::1]", "URL host");
    expect_invalid("redis://h]", "URL host");
    expect_invalid("redis://[::1]x", "URL host");
    expect_invalid("redis://[::1]6379", "URL host");
    expect_invalid("redis://[]", "URL host");
    expect_invalid("redis://[not-ipv6]", "URL host");
    expect_invalid("redis://:hunter2@[::1:6379", "URL host");
}

static void test_bad_db(void **state)
{
    (void)state;
    expect_invalid("redis://h/abc", "URL db");
    expect_invalid("redis://h/-1", "URL db");
    expect_invalid("redis://h/2147483648", "URL db");
    expect_invalid("redis://h/1/", "URL db");
    expect_invalid("redis://h/1/2", "URL db");
    expect_invalid("redis://h?db=x", "URL option db");
    expect_invalid("redis://h?db=2147483648", "URL option db");
}

static void test_bad_percent_escape(void **state)
{
    (void)state;
    expect_invalid("redis://us%zzer@h", "URL user");
    expect_invalid("redis://user%4@h", "URL user");
    expect_invalid("redis://app:hunter2%@h", "URL password");
    expect_invalid("redis://app:hunter2%4@h", "URL password");
    expect_invalid("redis://app:hunter2%G1@h", "URL password");
    expect_invalid("redis://app:hunter2%00x@h", "URL password");
    expect_invalid("redis://h?name=a%2", "URL option name");
    expect_invalid("unix:///tmp/a%zz", "URL path");
}

static void test_unknown_option(void **state)
{
    (void)state;
    expect_invalid("redis://h?timeout=5", "URL option timeout");
    expect_invalid("redis://h?Pool_Size=5", "URL option Pool_Size");
    expect_invalid("redis://:hunter2@h?password=x", "URL option password");
    /* A very long name is cut short in the message. */
    expect_invalid("redis://h?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", "...: unknown");
}

static void test_option_missing_value(void **state)
{
    (void)state;
    expect_invalid("redis://h?pool_size", "URL option pool_size");
    expect_invalid("redis://h?pool_size=", "URL option pool_size");
    expect_invalid("redis://h?name=", "URL option name");
    expect_invalid("redis://h?prefix=", "URL option prefix");
}

static void test_option_out_of_range(void **state)
{
    (void)state;
    expect_invalid("redis://h?connect_timeout=0", "URL option connect_timeout");
    expect_invalid("redis://h?connect_timeout=3600001", "URL option connect_timeout");
    expect_invalid("redis://h?connect_timeout=1.5", "URL option connect_timeout");
    expect_invalid("redis://h?command_timeout=0", "URL option command_timeout");
    expect_invalid("redis://h?command_timeout=-5", "URL option command_timeout");
    expect_invalid("redis://h?command_timeout=10s", "URL option command_timeout");
    expect_invalid("redis://h?pool_size=0", "URL option pool_size");
    expect_invalid("redis://h?pool_size=1025", "URL option pool_size");
    expect_invalid("redis://h?pool_size=%20", "URL option pool_size");
}

static void test_bad_client_name(void **state)
{
    (void)state;
    expect_invalid("redis://h?name=my%20app", "URL option name");
    expect_invalid("redis://h?name=a%0Ab", "URL option name");
    expect_invalid("redis://h?name=caf%C3%A9", "URL option name");
}

static void test_bad_prefix(void **state)
{
    (void)state;
    expect_invalid("redis://h?prefix=a*b", "URL option prefix");
    expect_invalid("redis://h?prefix=a:b", "URL option prefix"); /* the separator */
    expect_invalid("redis://h?prefix=a%20b", "URL option prefix");
    expect_invalid("redis://h?prefix=a/b", "URL option prefix");
    /* 64 bytes is the limit. */
    rk__url u;
    parse_ok("redis://h?prefix=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &u);
    assert_int_equal(strlen(u.key_prefix), 64);
    rk__url_clear(&u);
    expect_invalid("redis://h?prefix=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                   "URL option prefix");
}

static void test_duplicate_option(void **state)
{
    (void)state;
    expect_invalid("redis://h?pool_size=2&pool_size=3", "URL option pool_size: given more");
    expect_invalid("redis://h?name=a&name=a", "URL option name: given more");
    expect_invalid("redis://h/1?db=2", "URL option db: given more");
    expect_invalid("unix:///s?db=1&db=1", "URL option db: given more");
}

static void test_fragment(void **state)
{
    (void)state;
    expect_invalid("redis://h#frag", "URL fragment");
    expect_invalid("redis://h/0?name=x#y", "URL fragment");
    /* An unescaped '#' in a password must not leak the rest of it. */
    expect_invalid("redis://app:hun#ter2hunter2@h", "URL fragment");
}

static void test_unescaped_delimiter_in_password(void **state)
{
    (void)state;
    /* '/' or '?' in a password ends the authority early; the '@' left
     * behind is caught before any of the password is parsed as a path
     * or an option (which could echo it). */
    expect_invalid("redis://app:x/hunter2@h", "URL userinfo");
    expect_invalid("redis://app:x?hunter2=1@h", "URL userinfo");
    expect_invalid("redis://:1?hunter2@h", "URL userinfo");
}

static void test_unix_bad_path(void **state)
{
    (void)state;
    expect_invalid("unix://", "URL path");
    expect_invalid("unix:///", "URL path");
    expect_invalid("unix://?db=1", "URL path");
    expect_invalid("unix:///?db=1", "URL path");
    expect_invalid("unix://relative/sock", "URL host");
    expect_invalid("unix://:hunter2@host/tmp/s", "URL host");
    expect_invalid("unix:///tmp/s?db=-1", "URL option db");
    char long_url[256] = "unix:///";
    memset(long_url + strlen(long_url), 'a', 150);
    expect_invalid(long_url, "URL path");
}

static void test_control_characters(void **state)
{
    (void)state;
    expect_invalid("redis://h\n", "URL");
    expect_invalid("redis://app:hunter2\t@h", "URL");
    rk__url u;
    assert_int_equal(rk__url_parse("redis://h\r", &u), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "control character"));
}

static void test_message_never_echoes_url(void **state)
{
    (void)state;
    rk__url u;
    assert_int_equal(rk__url_parse("redis://app:hunter2@h:99999", &u), RK_ERR_INVALID);
    assert_null(strstr(rk_last_error(), "hunter2"));
    assert_null(strstr(rk_last_error(), "app"));
    assert_null(strstr(rk_last_error(), "99999"));
}

/* ---- TLS query options ------------------------------------------------- */

static void test_tls_options(void **state)
{
    (void)state;
    rk__url u;
    parse_ok("rediss://app:hunter2@cache.internal:6380/1?tls_ca_file=/etc/redkit/ca.pem"
             "&tls_ca_dir=/etc/ssl/certs&tls_cert_file=/etc/redkit/client.pem"
             "&tls_key_file=/etc/redkit/client.key&tls_server_name=redis.example.com&tls_insecure=1"
             "&pool_size=8",
             &u);
    assert_true(u.tls);
    assert_string_equal(u.host, "cache.internal");
    assert_string_equal(u.password, "hunter2");
    assert_string_equal(u.tls_ca_file, "/etc/redkit/ca.pem");
    assert_string_equal(u.tls_ca_dir, "/etc/ssl/certs");
    assert_string_equal(u.tls_cert_file, "/etc/redkit/client.pem");
    assert_string_equal(u.tls_key_file, "/etc/redkit/client.key");
    assert_string_equal(u.tls_server_name, "redis.example.com");
    assert_true(u.tls_insecure);
    assert_int_equal(u.pool_size, 8);
    rk__url_clear(&u);
    assert_empty(&u);

    /* Paths are percent-decoded; the switch takes 0 as well as 1. */
    parse_ok("rediss://h?tls_ca_file=%2Fsrv%2Fmy%20certs%2Fca%26more.pem&tls_insecure=0", &u);
    assert_string_equal(u.tls_ca_file, "/srv/my certs/ca&more.pem");
    assert_false(u.tls_insecure);
    rk__url_clear(&u);

    /* A server name may be an IP literal, IPv6 without brackets. */
    parse_ok("rediss://10.0.0.5?tls_server_name=10.0.0.6", &u);
    assert_string_equal(u.tls_server_name, "10.0.0.6");
    rk__url_clear(&u);
    parse_ok("rediss://[::1]?tls_server_name=::1", &u);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.tls_server_name, "::1");
    rk__url_clear(&u);

    /* rediss:// alone: TLS on, nothing else set. */
    parse_ok("rediss://h", &u);
    assert_true(u.tls);
    assert_null(u.tls_ca_file);
    assert_false(u.tls_insecure);
    rk__url_clear(&u);
}

static void test_bad_tls_options(void **state)
{
    (void)state;
    /* TLS settings in a URL that is not TLS: a mistake, never plaintext. */
    expect_invalid("redis://h?tls_ca_file=/ca.pem", "URL option tls_ca_file: only for rediss://");
    expect_invalid("redis://:hunter2@h?tls_insecure=1", "URL option tls_insecure: only for rediss://");
    expect_invalid("unix:///tmp/r.sock?tls_cert_file=/c.pem", "URL option tls_cert_file: only for rediss://");
    expect_invalid("rediss://h?tls_insecure=yes", "URL option tls_insecure");
    expect_invalid("rediss://h?tls_insecure=2", "URL option tls_insecure");
    expect_invalid("rediss://h?tls_server_name=bad%20name", "URL option tls_server_name");
    expect_invalid("rediss://h?tls_server_name=a/b", "URL option tls_server_name");
    /* Empty labels: a leading '.' would let OpenSSL match any subdomain. */
    expect_invalid("rediss://h?tls_server_name=.example.com", "URL option tls_server_name");
    expect_invalid("rediss://h?tls_server_name=example.com.", "URL option tls_server_name");
    expect_invalid("rediss://h?tls_server_name=cache..example.com", "URL option tls_server_name");
    expect_invalid("rediss://h?tls_server_name=.", "URL option tls_server_name");
    assert_false(rk__server_name_valid(".example.com"));
    assert_true(rk__server_name_valid("cache.example.com"));
    assert_true(rk__server_name_valid("::1"));
    assert_true(rk__server_name_valid("10.0.0.5"));
    expect_invalid("rediss://h?tls_ca_file=", "URL option tls_ca_file: missing value");
    expect_invalid("rediss://h?tls_key_file", "URL option tls_key_file: missing value");
    expect_invalid("rediss://h?tls_ca_dir=/a%00b", "URL option tls_ca_dir");
    expect_invalid("rediss://h?tls_ca_file=/a&tls_ca_file=/b", "URL option tls_ca_file: given more than once");
    expect_invalid("rediss://h?tls_ca=/a", "URL option tls_ca: unknown");
    expect_invalid("rediss://h?TLS_CA_FILE=/a", "URL option TLS_CA_FILE: unknown");
}

/* ---- rk_url_redact ----------------------------------------------------- */

static void expect_redacted(const char *url, const char *want)
{
    char *out = NULL;
    assert_int_equal(rk_url_redact(url, &out), RK_OK);
    assert_non_null(out);
    assert_string_equal(out, want);
    assert_null(strstr(out, "hunter2"));
    rk_free(out);
}

static void test_redact_password(void **state)
{
    (void)state;
    expect_redacted("redis://app:hunter2@db:6379/2", "redis://app:***@db:6379/2");
    expect_redacted("redis://:hunter2@db", "redis://:***@db");
    expect_redacted("rediss://app:hunter2@[::1]:6380?name=x", "rediss://app:***@[::1]:6380?name=x");
    expect_redacted("redis://app:hun@ter:2@h", "redis://app:***@h");
    expect_redacted("redis://app:hunter2%40x@h", "redis://app:***@h");
    expect_redacted("unix://:hunter2@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1");
    expect_redacted("REDIS://App:hunter2@H", "REDIS://App:***@H");
    expect_redacted("rediss://:hunter2@h:6380?tls_ca_file=/etc/ca.pem&tls_insecure=1",
                    "rediss://:***@h:6380?tls_ca_file=/etc/ca.pem&tls_insecure=1");
}

static void test_redact_without_password(void **state)
{
    (void)state;
    expect_redacted("redis://h", "redis://h");
    expect_redacted("redis://app@h:6379/0", "redis://app@h:6379/0");
    expect_redacted("redis://app:@h", "redis://app:@h");
    expect_redacted("unix:///tmp/r.sock?db=2", "unix:///tmp/r.sock?db=2");
    expect_redacted("redis://", "redis://");
}

static void test_redact_invalid(void **state)
{
    (void)state;
    char *out = (char *)"untouched";
    assert_int_equal(rk_url_redact("redis://app:hunter2@h:0", &out), RK_ERR_INVALID);
    assert_null(out);
    assert_non_null(strstr(rk_last_error(), "URL port"));
    assert_null(strstr(rk_last_error(), "hunter2"));

    out = (char *)"untouched";
    assert_int_equal(rk_url_redact(NULL, &out), RK_ERR_INVALID);
    assert_null(out);
    assert_int_equal(rk_url_redact("redis://h", NULL), RK_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_host),
        cmocka_unit_test(test_host_port),
        cmocka_unit_test(test_empty_authority_means_defaults),
        cmocka_unit_test(test_scheme_case_insensitive),
        cmocka_unit_test(test_rediss),
        cmocka_unit_test(test_tls_options),
        cmocka_unit_test(test_bad_tls_options),
        cmocka_unit_test(test_user_and_password),
        cmocka_unit_test(test_password_only),
        cmocka_unit_test(test_user_only),
        cmocka_unit_test(test_percent_decoding),
        cmocka_unit_test(test_last_at_and_first_colon),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_db_path),
        cmocka_unit_test(test_query_options),
        cmocka_unit_test(test_each_option_alone),
        cmocka_unit_test(test_empty_query_pairs_skipped),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_unix_socket_with_credentials),
        cmocka_unit_test(test_clear_is_safe),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_bad_scheme),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_bad_host),
        cmocka_unit_test(test_unbalanced_brackets),
        cmocka_unit_test(test_bad_db),
        cmocka_unit_test(test_bad_percent_escape),
        cmocka_unit_test(test_unknown_option),
        cmocka_unit_test(test_option_missing_value),
        cmocka_unit_test(test_option_out_of_range),
        cmocka_unit_test(test_bad_client_name),
        cmocka_unit_test(test_bad_prefix),
        cmocka_unit_test(test_duplicate_option),
        cmocka_unit_test(test_fragment),
        cmocka_unit_test(test_unescaped_delimiter_in_password),
        cmocka_unit_test(test_unix_bad_path),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_message_never_echoes_url),
        cmocka_unit_test(test_redact_password),
        cmocka_unit_test(test_redact_without_password),
        cmocka_unit_test(test_redact_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
