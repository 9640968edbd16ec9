/*
 * pubsub_test.c — rk_pubsub and rk_client_publish against a real
 * redis-server started by the fixture: messages on channels and patterns
 * (binary payloads too), unsubscribe, the connection lost to a server
 * kill and restart and to CLIENT KILL TYPE pubsub (LOST, then
 * RESUBSCRIBED, then messages again), Redis down when the handle is made,
 * free while the server is SIGSTOPped, bad input, a subscription an ACL
 * refuses (reported by the next sync), fork() (the child's
 * handle is inert, the parent's keeps working), the metrics, a burst of
 * messages and a resubscription over TLS, and an allocation-failure walk.
 *
 * Every wait is bounded (wait_until: a count and a time); assertions are
 * on messages, events and statuses, never on time.
 *
 * RK_TEST_CLUSTER: yes (CTest runs it again against a single-node cluster)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "support/fail_alloc.h"
#include "support/fixture.h"
#include "support/fork_check.h"
#include "support/pki.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client,
                                                       .client_options = {.reconnect_base_ms = 10,
                                                                          .reconnect_max_ms = 200}});
}

/* ---- what the callbacks saw ------------------------------------------------ */

#define MAX_SEEN 64

typedef struct seen {
    pthread_mutex_t mu;
    int n;
    char channel[MAX_SEEN][64];
    char pattern[MAX_SEEN][64]; /* "" for a channel subscription */
    char payload[MAX_SEEN][64];
    size_t len[MAX_SEEN];
    atomic_int events[4];       /* by rk_pubsub_event */
} seen;

static void seen_init(seen *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static void on_message(const char *channel, const char *pattern, const char *payload, size_t len, void *user)
{
    seen *s = user;
    pthread_mutex_lock(&s->mu);
    if (s->n < MAX_SEEN) {
        snprintf(s->channel[s->n], 64, "%s", channel);
        snprintf(s->pattern[s->n], 64, "%s", pattern ? pattern : "");
        memcpy(s->payload[s->n], payload, len < 63 ? len : 63);
        s->len[s->n] = len;
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
}

static void on_event(rk_pubsub_event ev, void *user)
{
    seen *s = user;
    if (ev >= 1 && ev <= 3) atomic_fetch_add(&s->events[ev], 1);
}

static int count(seen *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Poll cond every 10 ms for at most within_ms; true when it held. */
#define wait_until(cond, within_ms)                                                                            \
    ({                                                                                                         \
        bool held_ = false;                                                                                    \
        for (int i_ = 0; i_ <= (within_ms) / 10 && !(held_ = (cond)); i_++) sleep_ms(10);                     \
        held_;                                                                                                 \
    })

static rk_pubsub *ps_new(rk_client *c, seen *s)
{
    rk_pubsub *ps = NULL;
    rk_status st = rk_pubsub_new(c, &(rk_pubsub_options){.on_message = on_message, .on_event = on_event, .user = s},
                                 &ps);
    if (st != RK_OK) fail_msg("rk_pubsub_new: %s: %s", rk_strerror(st), rk_last_error());
    return ps;
}

static void must_sync(rk_pubsub *ps)
{
    rk_status st = rk_pubsub_sync(ps, 5000);
    if (st != RK_OK) fail_msg("rk_pubsub_sync: %s: %s", rk_strerror(st), rk_last_error());
}

/* Publish until the server counts at least one receiver (a client that
 * reconnects may need a few tries), at most 5 s. */
static void publish(const char *channel, const char *payload, size_t len)
{
    long long receivers = 0;
    rk_status st = RK_OK;
    for (int i = 0; i < 100; i++) {
        st = rk_client_publish(client, channel, payload, len, &receivers);
        if (st == RK_OK) break;
        sleep_ms(50);
    }
    if (st != RK_OK) fail_msg("rk_client_publish: %s: %s", rk_strerror(st), rk_last_error());
    assert_true(receivers >= 1);
}

/* ---- messages ------------------------------------------------------------------ */

static void test_channels_and_patterns(void **state)
{
    (void)state;
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(client, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "orders"), RK_OK);
    assert_int_equal(rk_pubsub_psubscribe(ps, "news.*"), RK_OK);
    assert_int_equal(rk_pubsub_subscribe(ps, "orders"), RK_OK); /* twice: harmless */
    must_sync(ps);
    assert_int_equal(atomic_load(&s.events[RK_PUBSUB_SUBSCRIBED]), 1);

    publish("orders", "42", 2);
    publish("news.sport", "a\0b", 3); /* binary payload */
    long long receivers = -1;
    assert_int_equal(rk_client_publish(client, "elsewhere", "x", 1, &receivers), RK_OK);
    assert_int_equal(receivers, 0);
    assert_int_equal(rk_client_publish(client, "orders", NULL, 0, &receivers), RK_OK); /* empty payload */
    assert_int_equal(receivers, 1);

    assert_true(wait_until(count(&s) == 3, 5000));
    assert_string_equal(s.channel[0], "orders");
    assert_string_equal(s.pattern[0], "");
    assert_int_equal(s.len[0], 2);
    assert_memory_equal(s.payload[0], "42", 2);
    assert_string_equal(s.channel[1], "news.sport");
    assert_string_equal(s.pattern[1], "news.*");
    assert_int_equal(s.len[1], 3);
    assert_memory_equal(s.payload[1], "a\0b", 3);
    assert_int_equal(s.len[2], 0);

    rk_pubsub_stats st;
    assert_int_equal(rk_pubsub_stats_get(ps, &st), RK_OK);
    assert_int_equal(st.messages, 3);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.subscriptions, 2);
    assert_int_equal(st.live, 1);

    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    assert_non_null(strstr(text, "redkit_pubsub_messages_total{ns=\"pubsub\"} 3"));
    assert_non_null(strstr(text, "redkit_pubsub_connects_total{ns=\"pubsub\"} 1"));
    assert_non_null(strstr(text, "redkit_pubsub_lost_total{ns=\"pubsub\"} 0"));
    assert_null(strstr(text, "orders")); /* no channel name in a label */
    rk_free(text);
    rk_pubsub_free(ps);
}

static void test_unsubscribe(void **state)
{
    (void)state;
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(client, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "a"), RK_OK);
    assert_int_equal(rk_pubsub_psubscribe(ps, "b.*"), RK_OK);
    must_sync(ps);
    publish("a", "1", 1);
    publish("b.x", "2", 1);
    assert_true(wait_until(count(&s) == 2, 5000));

    assert_int_equal(rk_pubsub_unsubscribe(ps, "a"), RK_OK);
    assert_int_equal(rk_pubsub_punsubscribe(ps, "b.*"), RK_OK);
    assert_int_equal(rk_pubsub_unsubscribe(ps, "never"), RK_OK); /* harmless */
    must_sync(ps);
    long long receivers = -1;
    assert_int_equal(rk_client_publish(client, "a", "3", 1, &receivers), RK_OK);
    assert_int_equal(receivers, 0);
    assert_int_equal(rk_client_publish(client, "b.x", "4", 1, &receivers), RK_OK);
    assert_int_equal(receivers, 0);
    rk_pubsub_stats st;
    assert_int_equal(rk_pubsub_stats_get(ps, &st), RK_OK);
    assert_int_equal(st.subscriptions, 0);
    assert_int_equal(st.live, 1); /* still connected, with nothing subscribed */

    /* And back: subscribing again works on the same connection. */
    assert_int_equal(rk_pubsub_subscribe(ps, "a"), RK_OK);
    must_sync(ps);
    publish("a", "5", 1);
    assert_true(wait_until(count(&s) == 3, 5000));
    assert_memory_equal(s.payload[2], "5", 1);
    rk_pubsub_free(ps);
}

/* ---- losing the connection ----------------------------------------------------- */

static void test_server_restart(void **state)
{
    (void)state;
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(client, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "ch"), RK_OK);
    assert_int_equal(rk_pubsub_psubscribe(ps, "p.*"), RK_OK);
    must_sync(ps);
    publish("ch", "before", 6);
    assert_true(wait_until(count(&s) == 1, 5000));

    assert_true(rk_test_server_signal(server, SIGKILL));
    assert_true(wait_until(atomic_load(&s.events[RK_PUBSUB_LOST]) == 1, 5000));
    assert_int_equal(rk_pubsub_sync(ps, 50), RK_ERR_TIMEOUT); /* nothing to confirm with */
    assert_true(rk_test_server_restart(server, NULL));
    assert_true(wait_until(atomic_load(&s.events[RK_PUBSUB_RESUBSCRIBED]) == 1, 10000));
    must_sync(ps);
    publish("ch", "after", 5);
    publish("p.q", "pattern", 7);
    assert_true(wait_until(count(&s) == 3, 5000));
    assert_memory_equal(s.payload[1], "after", 5);
    assert_string_equal(s.pattern[2], "p.*");

    rk_pubsub_stats st;
    assert_int_equal(rk_pubsub_stats_get(ps, &st), RK_OK);
    assert_int_equal(st.lost, 1);
    assert_true(st.connects >= 2);
    assert_int_equal(atomic_load(&s.events[RK_PUBSUB_SUBSCRIBED]), 1);
    rk_pubsub_free(ps);
}

static void test_client_kill(void **state)
{
    (void)state;
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(client, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "k"), RK_OK);
    must_sync(ps);
    rk_test_server_ok(server, "CLIENT KILL TYPE pubsub");
    assert_true(wait_until(atomic_load(&s.events[RK_PUBSUB_RESUBSCRIBED]) == 1, 5000));
    assert_int_equal(atomic_load(&s.events[RK_PUBSUB_LOST]), 1);
    must_sync(ps);
    publish("k", "again", 5);
    assert_true(wait_until(count(&s) == 1, 5000));
    rk_pubsub_free(ps);
}

static void test_down_at_creation(void **state)
{
    (void)state;
    assert_true(rk_test_server_signal(server, SIGKILL));
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(client, &s); /* succeeds with Redis down */
    assert_int_equal(rk_pubsub_subscribe(ps, "late"), RK_OK);
    rk_status st = rk_pubsub_sync(ps, 100);
    assert_int_equal(st, RK_ERR_TIMEOUT);
    assert_non_null(strstr(rk_last_error(), "not connected"));
    assert_true(rk_test_server_restart(server, NULL));
    must_sync(ps);
    assert_int_equal(atomic_load(&s.events[RK_PUBSUB_SUBSCRIBED]), 1);
    assert_int_equal(atomic_load(&s.events[RK_PUBSUB_LOST]), 0);
    publish("late", "hello", 5);
    assert_true(wait_until(count(&s) == 1, 5000));
    rk_pubsub_free(ps);
}

static void test_free_while_stopped(void **state)
{
    (void)state;
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(client, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "s"), RK_OK);
    must_sync(ps);
    assert_true(rk_test_server_signal(server, SIGSTOP));
    sleep_ms(50);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    rk_pubsub_free(ps); /* returns: the thread waits on its wake-up pipe too */
    clock_gettime(CLOCK_MONOTONIC, &b);
    print_message("rk_pubsub_free with the server stopped: %.1f ms\n",
                  (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    assert_true(rk_test_server_signal(server, SIGCONT));
    assert_true(rk_test_client_recovers(client, 5000));
}

/* ---- bad input ---------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    rk_pubsub *ps = (rk_pubsub *)&ps;
    assert_int_equal(rk_pubsub_new(NULL, &(rk_pubsub_options){.on_message = on_message}, &ps), RK_ERR_INVALID);
    assert_null(ps);
    assert_int_equal(rk_pubsub_new(client, NULL, &ps), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_new(client, &(rk_pubsub_options){0}, &ps), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "on_message"));
    assert_int_equal(rk_pubsub_new(client, &(rk_pubsub_options){.on_message = on_message}, NULL), RK_ERR_INVALID);

    seen s;
    seen_init(&s);
    ps = ps_new(client, &s);
    assert_int_equal(rk_pubsub_subscribe(NULL, "x"), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_subscribe(ps, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_subscribe(ps, ""), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "empty"));
    assert_int_equal(rk_pubsub_psubscribe(ps, ""), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_unsubscribe(ps, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_punsubscribe(ps, ""), RK_ERR_INVALID);
    char *longname = malloc(RK_PUBSUB_MAX_NAME_BYTES + 2);
    assert_non_null(longname);
    memset(longname, 'a', RK_PUBSUB_MAX_NAME_BYTES + 1);
    longname[RK_PUBSUB_MAX_NAME_BYTES + 1] = '\0';
    assert_int_equal(rk_pubsub_subscribe(ps, longname), RK_ERR_INVALID);
    assert_int_equal(rk_client_publish(client, longname, "x", 1, NULL), RK_ERR_INVALID);
    free(longname);
    assert_int_equal(rk_pubsub_sync(NULL, 10), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_sync(ps, -1), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_sync(ps, RK_MAX_TIMEOUT_MS + 1), RK_ERR_INVALID);
    assert_int_equal(rk_pubsub_stats_get(ps, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_publish(NULL, "c", "x", 1, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_publish(client, NULL, "x", 1, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_publish(client, "", "x", 1, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_publish(client, "c", NULL, 1, NULL), RK_ERR_INVALID);
    rk_pubsub_free(ps);
    rk_pubsub_free(NULL);

    /* The raw command path points at this API. */
    const char *sub[] = {"SUBSCRIBE", "x"};
    rk_reply *r = NULL;
    assert_int_equal(rk_client_command(client, 2, sub, NULL, &r), RK_ERR_INVALID);
    assert_non_null(strstr(rk_last_error(), "rk_pubsub"));
    assert_null(r);
}

/* A subscription the user's ACL refuses: the others stand, and the next
 * sync says which was refused, once. */
static void test_acl_refusal(void **state)
{
    (void)state;
    rk_test_server_ok(server, "ACL SETUSER narrow on >narrow-pass ~* +@all resetchannels &ok:*");
    char url[160];
    snprintf(url, sizeof url, "redis://narrow:narrow-pass@127.0.0.1:%d", rk_test_server_port(server));
    rk_client *c = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = url}, &c), RK_OK);
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(c, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "ok:1"), RK_OK);
    assert_int_equal(rk_pubsub_subscribe(ps, "secret:1"), RK_OK);
    assert_int_equal(rk_pubsub_sync(ps, 5000), RK_ERR_SERVER);
    assert_non_null(strstr(rk_last_error(), "NOPERM"));
    assert_null(strstr(rk_last_error(), "narrow-pass"));
    must_sync(ps); /* told once */
    publish("ok:1", "yes", 3);
    assert_true(wait_until(count(&s) == 1, 5000));
    assert_string_equal(s.channel[0], "ok:1");
    rk_pubsub_free(ps);
    rk_client_free(c);
    rk_test_server_ok(server, "ACL DELUSER narrow");
}

/* ---- fork() ----------------------------------------------------------------- */

static void test_fork(void **state)
{
    (void)state;
    rk_test_fork_skip_under_tsan();
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(client, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "f"), RK_OK);
    must_sync(ps);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child: the inherited handle is inert; a new one works. */
        int code = 0;
        if (rk_pubsub_subscribe(ps, "g") != RK_ERR_INVALID || !strstr(rk_last_error(), "fork()")) code = 1;
        if (!code && rk_pubsub_sync(ps, 10) != RK_ERR_INVALID) code = 2;
        rk_pubsub_free(ps); /* closes the child's copy only */
        seen cs;
        seen_init(&cs);
        rk_pubsub *mine = NULL;
        if (!code && rk_pubsub_new(client, &(rk_pubsub_options){.on_message = on_message, .user = &cs}, &mine) != RK_OK)
            code = 3;
        if (!code && (rk_pubsub_subscribe(mine, "child") != RK_OK || rk_pubsub_sync(mine, 5000) != RK_OK)) code = 4;
        char b = (char)code;
        if (write(ready[1], &b, 1) != 1) code = 5;
        /* The parent publishes once it has read the byte. */
        bool got = false;
        for (int i = 0; !code && i < 500 && !(got = count(&cs) == 1); i++) sleep_ms(10);
        if (!code && !got) code = 6;
        rk_pubsub_free(mine);
        _exit(code);
    }
    char b = 99;
    assert_int_equal(read(ready[0], &b, 1), 1);
    close(ready[0]);
    close(ready[1]);
    long long receivers = 0;
    if (b == 0) assert_int_equal(rk_client_publish(client, "child", "hi", 2, &receivers), RK_OK);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0) fail_msg("child failed at step %d", WEXITSTATUS(status));
    /* The parent's subscriber was not disturbed by the child. */
    publish("f", "parent", 6);
    assert_true(wait_until(count(&s) == 1, 5000));
    assert_int_equal(atomic_load(&s.events[RK_PUBSUB_LOST]), 0);
    rk_pubsub_stats st;
    assert_int_equal(rk_pubsub_stats_get(ps, &st), RK_OK);
    assert_int_equal(st.connects, 1);
    rk_pubsub_free(ps);
}

/* ---- TLS ------------------------------------------------------------------------ */

/* Many messages arrive in few TLS records: those already decrypted inside
 * OpenSSL must be read without waiting for the socket. */
static void test_tls(void **state)
{
    (void)state;
    rk_test_pki *pki = rk_test_pki_new();
    assert_non_null(pki);
    rk_test_server *ts = rk_test_server_start_opts(&(rk_test_server_options){
        .tls = &(rk_test_server_tls){.cert_file = pki->server_cert, .key_file = pki->server_key}});
    assert_non_null(ts);
    rk_client *tc = rk_test_client_new(&(rk_client_options){
        .url = rk_test_server_url(ts), .reconnect_base_ms = 10, .reconnect_max_ms = 200,
        .tls = {.enabled = true, .ca_file = pki->ca_cert}});
    seen s;
    seen_init(&s);
    rk_pubsub *ps = ps_new(tc, &s);
    assert_int_equal(rk_pubsub_subscribe(ps, "t"), RK_OK);
    must_sync(ps);
    enum { BURST = 60 };
    for (int i = 0; i < BURST; i++) {
        char payload[16];
        int n = snprintf(payload, sizeof payload, "m%d", i);
        long long receivers = 0;
        assert_int_equal(rk_client_publish(tc, "t", payload, (size_t)n, &receivers), RK_OK);
        assert_int_equal(receivers, 1);
    }
    assert_true(wait_until(count(&s) == BURST, 5000));
    for (int i = 0; i < BURST; i++) { /* all of them, in order */
        char want[16];
        int n = snprintf(want, sizeof want, "m%d", i);
        assert_int_equal(s.len[i], (size_t)n);
        assert_memory_equal(s.payload[i], want, (size_t)n);
    }
    redisReply *r = rk_test_server_command(ts, "CLIENT KILL TYPE pubsub");
    assert_non_null(r);
    freeReplyObject(r);
    assert_true(wait_until(atomic_load(&s.events[RK_PUBSUB_RESUBSCRIBED]) == 1, 5000));
    must_sync(ps);
    long long receivers = 0;
    assert_int_equal(rk_client_publish(tc, "t", "x", 1, &receivers), RK_OK);
    assert_int_equal(receivers, 1);
    assert_true(wait_until(count(&s) == BURST + 1, 5000));
    rk_pubsub_free(ps);
    rk_client_free(tc);
    rk_test_server_stop(ts);
    rk_test_pki_free(pki);
}

/* ---- out of memory ---------------------------------------------------------- */

/* Create, subscribe, wait for the confirmation, free, on a client of its
 * own. Returns 1 when the subscription was confirmed. */
static int nomem_scenario(const char *url)
{
    rk_client *c = NULL;
    if (rk_client_new_url(url, &c) != RK_OK) return 0;
    int confirmed = 0;
    seen s;
    seen_init(&s);
    rk_pubsub *ps = NULL;
    rk_status st = rk_pubsub_new(c, &(rk_pubsub_options){.on_message = on_message, .user = &s}, &ps);
    if (st == RK_OK) {
        st = rk_pubsub_subscribe(ps, "oom");
        if (st == RK_OK) st = rk_pubsub_psubscribe(ps, "oom.*");
        if (st == RK_OK) confirmed = rk_pubsub_sync(ps, 300) == RK_OK;
        else if (st != RK_ERR_NOMEM) fail_msg("subscribe: unexpected %s", rk_strerror(st));
        rk_pubsub_free(ps);
    } else if (st != RK_ERR_NOMEM && st != RK_ERR_SYSTEM) {
        fail_msg("rk_pubsub_new: unexpected %s: %s", rk_strerror(st), rk_last_error());
    }
    rk_client_free(c);
    return confirmed;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s", rk_test_server_url(server));
    long n;
    for (n = 1; n < 2000; n++) {
        long live = rk_test_fail_live();
        rk_test_fail_arm(n);
        nomem_scenario(url);
        rk_test_fail_disarm();
        if (rk_test_fail_live() != live) fail_msg("N=%ld: %ld blocks leaked", n, rk_test_fail_live() - live);
        if (!rk_test_fail_hit()) break;
    }
    assert_true(n < 2000);
    assert_int_equal(nomem_scenario(url), 1);
    print_message("out-of-memory walk: %ld allocation points\n", n - 1);
}

int main(void)
{
    /* Before any other redkit call, as rk_set_allocator asks. */
    if (rk_set_allocator(&rk_test_fail_allocator) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_channels_and_patterns, rk_test_group_flush),
        cmocka_unit_test_setup(test_unsubscribe, rk_test_group_flush),
        cmocka_unit_test_setup(test_bad_input, rk_test_group_flush),
        cmocka_unit_test_setup(test_acl_refusal, rk_test_group_flush),
        cmocka_unit_test_setup(test_fork, rk_test_group_flush),
        cmocka_unit_test_setup(test_client_kill, rk_test_group_flush),
        cmocka_unit_test_setup(test_server_restart, rk_test_group_flush),
        cmocka_unit_test_setup(test_down_at_creation, rk_test_group_flush),
        cmocka_unit_test_setup(test_free_while_stopped, rk_test_group_flush),
        cmocka_unit_test_setup(test_tls, rk_test_group_flush),
        cmocka_unit_test_setup(test_out_of_memory, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
