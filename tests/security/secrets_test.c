/*
 * secrets_test.c — secret hygiene, end to end, against a real redis-server
 * with a password and an ACL user.
 *
 * Known secrets — the server's password, a wrong password (a secret too:
 * often a real password of another system), an ACL user's password full of
 * URL-special characters, and a 64-hex session token used as a cache value
 * and inside a cache key — go through a realistic life: URLs right and
 * wrong, malformed URLs, connects, AUTH refused, NOPERM, type errors,
 * values and keys too large, a paused server (timeouts), a killed and
 * restarted one (reconnects, circuit breaker), a server that echoes the
 * handshake's arguments (AUTH renamed away, over TCP and TLS), and the
 * redkit CLI.
 *
 * Everything redkit says is captured — every log line at DEBUG, every
 * event message, rk_last_error() after every call, rk_url_redact() output,
 * the CLI's stdout and stderr — and searched, as raw bytes, for each secret
 * in plain and percent-encoded form and for a distinctive piece of it.
 *
 * And memory: a counting allocator installed with rk_set_allocator() keeps
 * a header on each block (its size and the allocation's call stack) and, in
 * its free and realloc functions, scans the block being released for the
 * password bytes. Every password copy redkit makes must be wiped before it
 * is released: a hit is a failure, reported with where the block was
 * allocated and freed. hiredis 0.14's own buffers do not come through this
 * allocator (see include/redkit/alloc.h); redkit wipes the one of them that
 * holds a password (the encoded AUTH command) itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <redkit/redkit.h>

#include "alloc.h"
#include "url.h"
#include "support/clock.h"
#include "support/pki.h"
#include "support/redis_server.h"

#define PW "s3cr3t-Pa55w0rd-XYZ"
#define WRONG "wr0ng-Pa55w0rd-QRS"
/* The ACL user's password: every character a URL must escape. */
#define SPECIAL "Sp3c!al@pw:/?#%&=+ Zq"
#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define APP_USER "app"
#define APP_RULES "on resetkeys ~shop:* resetchannels -@all +get +set +unlink +exists +pttl +ping " \
                  "+select +client|setname"

extern char **environ;

static rk_test_server *server;
static int port;
static char special_enc[160];  /* SPECIAL percent-encoded, as a URL carries it */

/* ---- the needles ------------------------------------------------------------ */

typedef struct needle {
    const char *name;  /* printed on a failure instead of the secret */
    char bytes[160];
    size_t len;
} needle;

static needle needles[32];
static size_t n_needles;

static void add_needle(const char *name, const char *bytes)
{
    assert_true(n_needles < sizeof needles / sizeof needles[0]);
    needle *n = &needles[n_needles++];
    n->name = name;
    n->len = strlen(bytes);
    assert_true(n->len > 0 && n->len < sizeof n->bytes);
    memcpy(n->bytes, bytes, n->len + 1);
}

/* Percent-encode every byte outside A-Z a-z 0-9 - . _ ~ with the hex digits
 * in the given case. */
static void url_encode(const char *s, char *out, size_t cap, bool upper)
{
    const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t j = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        assert_true(j + 4 < cap);
        if (plain) {
            out[j++] = (char)c;
        } else {
            out[j++] = '%';
            out[j++] = hex[c >> 4];
            out[j++] = hex[c & 15];
        }
    }
    out[j] = '\0';
}

static void init_needles(void)
{
    static char enc[8][160];
    add_needle("password", PW);
    add_needle("password piece", "Pa55w0rd");
    add_needle("password piece", "s3cr3t");
    add_needle("wrong password", WRONG);
    add_needle("wrong password piece", "wr0ng");
    add_needle("ACL password", SPECIAL);
    add_needle("ACL password piece", "Sp3c!al");
    add_needle("ACL password piece", "@pw:");
    url_encode(SPECIAL, enc[0], sizeof enc[0], true);
    add_needle("ACL password, URL-encoded", enc[0]);
    url_encode(SPECIAL, enc[1], sizeof enc[1], false);
    add_needle("ACL password, URL-encoded lowercase", enc[1]);
    add_needle("ACL password piece, URL-encoded", "Sp3c%21al");
    add_needle("ACL password piece, URL-encoded", "%40pw%3A");
    add_needle("ACL password piece, URL-encoded", "%40pw%3a");
    add_needle("session token", TOKEN);
    add_needle("session token piece", "884c7d659a2feaa0");
    add_needle("session token piece", "9f86d081");
    snprintf(special_enc, sizeof special_enc, "%s", enc[0]);
}

/* ---- capturing what redkit says ------------------------------------------- */

static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;
static char corpus[1 << 20];   /* everything captured, for the markers */
static size_t corpus_len;
static unsigned long texts_checked, log_lines, events_seen;
static unsigned event_types_seen; /* bit per rk_event_type */
static unsigned long text_hits;
static char first_hit[256];
static bool self_test; /* hits are expected: do not print them */

/* Search one captured text for every needle; remember what was found where
 * (by channel and needle name, never the text: a failure report must not
 * print the secret either). */
static void check_text(const char *channel, const char *text, size_t len)
{
    pthread_mutex_lock(&capture_lock);
    texts_checked++;
    for (size_t i = 0; i < n_needles; i++) {
        if (memmem(text, len, needles[i].bytes, needles[i].len)) {
            if (text_hits++ == 0)
                snprintf(first_hit, sizeof first_hit, "%s contains the %s", channel, needles[i].name);
            if (!self_test) fprintf(stderr, "LEAK: %s contains the %s\n", channel, needles[i].name);
        }
    }
    /* Keep a copy for the markers; once full, stop copying (the needle
     * search above still sees everything). */
    if (corpus_len + len + 1 < sizeof corpus) {
        memcpy(corpus + corpus_len, text, len);
        corpus_len += len;
        corpus[corpus_len++] = '\n';
    }
    pthread_mutex_unlock(&capture_lock);
}

static void check_str(const char *channel, const char *text) { check_text(channel, text, strlen(text)); }

static void on_log(rk_log_level level, const char *message, void *user)
{
    (void)user;
    (void)level;
    __atomic_add_fetch(&log_lines, 1, __ATOMIC_RELAXED);
    check_str("a log line", message);
}

static void on_event(const rk_event *e, void *user)
{
    (void)user;
    __atomic_add_fetch(&events_seen, 1, __ATOMIC_RELAXED);
    __atomic_or_fetch(&event_types_seen, 1u << e->type, __ATOMIC_RELAXED);
    check_str("an event message", e->message ? e->message : "");
}

/* Run a redkit call and check rk_last_error() after it, whatever it
 * returned. */
#define CALL(expr) (track_status((expr)))
static rk_status track_status(rk_status st)
{
    check_str("rk_last_error()", rk_last_error());
    check_str("rk_strerror()", rk_strerror(st));
    return st;
}

static void assert_marker(const char *marker)
{
    corpus[corpus_len < sizeof corpus ? corpus_len : sizeof corpus - 1] = '\0';
    if (!memmem(corpus, corpus_len, marker, strlen(marker)))
        fail_msg("the scenario never produced \"%s\": it did not run as intended", marker);
}

/* ---- the scanning allocator ------------------------------------------------ */

#define FRAMES 12
typedef struct block_header {
    size_t size;
    int nframes;
    void *frames[FRAMES]; /* where it was allocated */
} block_header;
/* The header, rounded up so the user's block keeps malloc's alignment. */
#define HDR ((sizeof(block_header) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t))

typedef struct alloc_hit {
    size_t size;
    const char *needle;
    int nalloc, nfree;
    void *alloc_frames[FRAMES], *free_frames[FRAMES];
} alloc_hit;

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long allocs, frees, scanned, mem_hits;
static long live;
static alloc_hit hits[8];

/* Scan a block about to be released for the password bytes (the three
 * passwords as redkit stores them, decoded, and the encoded form too). */
static void scan_block(block_header *h, const char *why)
{
    (void)why;
    static const struct { const char *bytes, *name; } secrets[] = {
        {PW, "password"}, {WRONG, "wrong password"}, {SPECIAL, "ACL password"}};
    const char *user = (const char *)h + HDR;
    const char *found = NULL;
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0] && !found; i++)
        if (memmem(user, h->size, secrets[i].bytes, strlen(secrets[i].bytes))) found = secrets[i].name;
    if (!found && special_enc[0] && memmem(user, h->size, special_enc, strlen(special_enc)))
        found = "ACL password, URL-encoded";
    pthread_mutex_lock(&alloc_lock);
    scanned++;
    if (found) {
        if (mem_hits < sizeof hits / sizeof hits[0]) {
            alloc_hit *hit = &hits[mem_hits];
            hit->size = h->size;
            hit->needle = found;
            hit->nalloc = h->nframes;
            memcpy(hit->alloc_frames, h->frames, sizeof h->frames);
            hit->nfree = backtrace(hit->free_frames, FRAMES);
        }
        mem_hits++;
    }
    pthread_mutex_unlock(&alloc_lock);
}

static void *wrap(void *raw, size_t size)
{
    if (!raw) return NULL;
    block_header *h = raw;
    h->size = size;
    h->nframes = backtrace(h->frames, FRAMES);
    pthread_mutex_lock(&alloc_lock);
    allocs++;
    live++;
    pthread_mutex_unlock(&alloc_lock);
    return (char *)raw + HDR;
}

static void *scan_malloc(size_t size, void *user)
{
    (void)user;
    return wrap(malloc(HDR + size), size);
}

static void *scan_calloc(size_t n, size_t size, void *user)
{
    (void)user;
    return wrap(calloc(1, HDR + n * size), n * size); /* redkit checked n * size */
}

static void scan_free(void *p, void *user)
{
    (void)user;
    block_header *h = (block_header *)((char *)p - HDR);
    scan_block(h, "free");
    pthread_mutex_lock(&alloc_lock);
    frees++;
    live--;
    pthread_mutex_unlock(&alloc_lock);
    free(h);
}

/* realloc always moves the block — the worst case a real allocator may
 * choose — and releases the old one like free(), scanning it first: a
 * password left in a block that realloc() gives back is a copy left in
 * freed memory all the same. */
static void *scan_realloc(void *p, size_t size, void *user)
{
    if (!p) return scan_malloc(size, user);
    block_header *old = (block_header *)((char *)p - HDR);
    void *q = scan_malloc(size, user);
    if (!q) return NULL;
    memcpy(q, p, old->size < size ? old->size : size);
    scan_free(p, user);
    return q;
}

static void print_frames(void *const *frames, int n)
{
    fflush(stderr);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
}

/* No password in any block released since the last reset, and nothing
 * redkit allocated is still live. */
static void assert_memory_clean(void)
{
    pthread_mutex_lock(&alloc_lock);
    unsigned long h = mem_hits;
    long l = live;
    pthread_mutex_unlock(&alloc_lock);
    for (unsigned long i = 0; i < h && i < sizeof hits / sizeof hits[0]; i++) {
        fprintf(stderr, "LEAK: a freed block of %zu bytes held the %s. Allocated at:\n", hits[i].size,
                hits[i].needle);
        print_frames(hits[i].alloc_frames, hits[i].nalloc);
        fprintf(stderr, "  released at:\n");
        print_frames(hits[i].free_frames, hits[i].nfree);
    }
    if (h) fail_msg("%lu block(s) released by redkit still held a password (stacks above)", h);
    if (l != 0) fail_msg("%ld block(s) allocated by redkit are still live", l);
}

static void reset_memory_hits(void)
{
    pthread_mutex_lock(&alloc_lock);
    mem_hits = 0;
    pthread_mutex_unlock(&alloc_lock);
}

/* ---- fixture ------------------------------------------------------------------ */

static void admin_ok(const char *fmt, const char *arg)
{
    redisReply *r = rk_test_server_command(server, fmt, arg);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("admin command failed: %s", r->str);
    freeReplyObject(r);
}

static void create_acl_user(void) { admin_ok("ACL SETUSER " APP_USER " " APP_RULES " >%s", SPECIAL); }

static int group_setup(void **state)
{
    (void)state;
    init_needles();
    const char *args[] = {"--requirepass", PW, NULL};
    server = rk_test_server_start(args);
    if (!server) return -1;
    rk_test_server_set_admin_password(server, PW);
    port = rk_test_server_port(server);
    create_acl_user();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rk_test_server_stop(server);
    return 0;
}

/* Every test starts with no hits counted and ends with clean memory and
 * clean text. */
static int test_setup(void **state)
{
    (void)state;
    reset_memory_hits();
    return 0;
}

static void assert_text_clean(void)
{
    if (text_hits) fail_msg("%lu captured text(s) held a secret; first: %s", text_hits, first_hit);
}

static rk_client *new_client(rk_client_options o)
{
    o.log = on_log;
    o.log_level = RK_LOG_DEBUG;
    o.on_event = on_event;
    rk_client *c = NULL;
    rk_status st = CALL(rk_client_new(&o, &c));
    if (st != RK_OK) fail_msg("rk_client_new: %s: %s", rk_strerror(st), rk_last_error());
    return c;
}

/* Ping until it answers, bounded in count and time. */
static bool recovers(rk_client *c, int within_ms)
{
    int64_t end = rk_test_now_ms() + within_ms;
    for (int i = 0; i < 1000 && rk_test_now_ms() < end; i++) {
        if (CALL(rk_client_ping(c)) == RK_OK) return true;
        rk_test_sleep_ms(10);
    }
    return false;
}

/* ---- tests ------------------------------------------------------------------- */

/* The scanner itself: a password freed without wiping is seen, a wiped
 * one is not. Without this a scanner that never looks would pass. */
static void test_scanner_sees_unwiped_password(void **state)
{
    (void)state;
    char *copy = rk__strdup("prefix " PW " suffix");
    assert_non_null(copy);
    rk__free(copy);
    pthread_mutex_lock(&alloc_lock);
    unsigned long h = mem_hits;
    pthread_mutex_unlock(&alloc_lock);
    assert_int_equal(h, 1);
    assert_int_equal(hits[0].size, strlen("prefix " PW " suffix") + 1);
    reset_memory_hits();
    char *wiped = rk__strdup(PW);
    assert_non_null(wiped);
    explicit_bzero(wiped, strlen(wiped));
    rk__free(wiped);
    char *grown = rk__strdup("x");
    grown = rk__realloc(grown, 64);
    assert_non_null(grown);
    rk__free(grown);
    assert_memory_clean();

    /* The text check sees a secret too: the token and its two pieces. */
    unsigned long before = text_hits;
    self_test = true;
    check_str("the self-test text", "... " TOKEN " ...");
    assert_int_equal(text_hits, before + 3);
    check_str("the self-test text", "... " "Sp3c%21al%40pw%3A" " ...");
    assert_int_equal(text_hits, before + 5); /* a piece, encoded, in two cases */
    self_test = false;
    text_hits = before;
    first_hit[0] = '\0';
}

/* URLs, well-formed and not: redaction hides the password; a URL that does
 * not parse is never echoed, by rk_url_redact() or rk_client_new(). */
static void test_urls(void **state)
{
    (void)state;
    char good[6][512];
    snprintf(good[0], sizeof good[0], "redis://:" PW "@127.0.0.1:%d/1?name=api&prefix=shop", port);
    snprintf(good[1], sizeof good[1], "redis://" APP_USER ":%s@127.0.0.1:%d?prefix=shop", special_enc, port);
    snprintf(good[2], sizeof good[2], "redis://:" WRONG "@127.0.0.1:%d", port);
    snprintf(good[3], sizeof good[3], "unix://:" PW "@%s/redis.sock?db=1", rk_test_server_dir(server));
    snprintf(good[4], sizeof good[4], "redis://app:" PW "@cache.internal:6380/2?prefix=shop&pool_size=8");
    snprintf(good[5], sizeof good[5], "redis://:" PW "@[::1]:%d", port);
    for (size_t i = 0; i < 6; i++) {
        char *shown = NULL;
        assert_int_equal(CALL(rk_url_redact(good[i], &shown)), RK_OK);
        check_str("rk_url_redact() output", shown);
        assert_non_null(strstr(shown, ":***@"));
        rk_free(shown);
        rk_client *c = NULL;
        assert_int_equal(CALL(rk_client_new_url(good[i], &c)), RK_OK);
        rk_client_free(c);
    }

    static const char *const bad[] = {
        "redis://:" PW "@127.0.0.1:99999",
        "redis://:" PW "@127.0.0.1:port",
        "redis://:" PW "@[::1",
        "redis://:" PW "#frag@127.0.0.1",
        "redis://:" PW "/x@127.0.0.1",
        "redis://:" PW "?x@127.0.0.1",
        "redis://:" PW "%zz@127.0.0.1",
        "redis://:" PW "%00@127.0.0.1",
        "redis://:" PW "@127.0.0.1?pool_size=0",
        "redis://:" PW "@127.0.0.1?connect_timeout=1&connect_timeout=2",
        "redis://:" PW "@127.0.0.1?nosuchoption=1",
        "redis://" APP_USER ":" SPECIAL "@127.0.0.1",
        "http://:" PW "@127.0.0.1",
        "redis://:" PW "@127.0.0.1\n",
        "rediss://:" PW "@127.0.0.1:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *shown = (char *)1;
        rk_status st = CALL(rk_url_redact(bad[i], &shown));
        if (st == RK_OK) {
            check_str("rk_url_redact() output", shown); /* rediss:// parses */
            rk_free(shown);
        } else {
            assert_int_equal(st, RK_ERR_INVALID);
            assert_null(shown);
        }
        rk_client *c = (rk_client *)1;
        st = CALL(rk_client_new_url(bad[i], &c));
        if (st == RK_OK) rk_client_free(c); /* rediss:// once TLS lands */
        else assert_null(c);
    }
    assert_marker("URL port");
    assert_text_clean();
    assert_memory_clean();
}

/* A secret where no secret belongs — a password passed as an option value
 * or as the path, a mistake some other clients' URL syntax invites
 * (?password=) — is still never echoed, and every decoded option value
 * is wiped before it is freed, whether the URL was refused or kept. */
static void test_secret_in_other_url_parts(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "redis://127.0.0.1:1?password=" PW,
        "redis://:" PW "@127.0.0.1/" PW,
        "redis://:" PW "@127.0.0.1?pool_size=" PW,
        "redis://:" PW "@127.0.0.1?db=" PW,
        "redis://127.0.0.1?name=" PW "%20x",
        "redis://127.0.0.1?prefix=" PW ":x",
        "redis://127.0.0.1?connect_timeout=" WRONG,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *shown = (char *)1;
        assert_int_equal(CALL(rk_url_redact(bad[i], &shown)), RK_ERR_INVALID);
        assert_null(shown);
        rk_client *c = (rk_client *)1;
        assert_int_equal(CALL(rk_client_new_url(bad[i], &c)), RK_ERR_INVALID);
        assert_null(c);
    }
    assert_marker("URL option password: unknown");

    /* Values the parser keeps (name, prefix, the tls_ paths and server
     * name) are wiped too when the parsed URL is cleared: a password
     * pasted into the wrong option is still a password. Parsed directly,
     * because these URLs are valid and a client would echo the paths (they
     * are not secrets) in its messages. */
    static const char *const kept[] = {
        "redis://127.0.0.1?name=" PW "&prefix=" PW,
        "rediss://127.0.0.1?tls_ca_file=" PW "&tls_ca_dir=" PW "&tls_cert_file=" PW "&tls_key_file=" PW
        "&tls_server_name=" PW,
    };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        rk__url u;
        assert_int_equal(rk__url_parse(kept[i], &u), RK_OK);
        rk__url_clear(&u);
    }
    assert_text_clean();
    assert_memory_clean();
}

static void cache_round(rk_client *c, const char *ns)
{
    rk_cache *cache = NULL;
    assert_int_equal(CALL(rk_cache_new(c, &(rk_cache_options){.ns = ns}, &cache)), RK_OK);
    assert_int_equal(CALL(rk_cache_set_str(cache, "session:" TOKEN, TOKEN, &(rk_cache_set_options){.ttl_s = 600})),
                     RK_OK);
    char *v = NULL;
    assert_int_equal(CALL(rk_cache_get_str(cache, "session:" TOKEN, &v)), RK_OK);
    assert_string_equal(v, TOKEN); /* the value itself is the caller's: not captured */
    rk_free(v);
    assert_int_equal(CALL(rk_cache_exists(cache, "session:" TOKEN)), RK_OK);
    int64_t ttl = 0;
    assert_int_equal(CALL(rk_cache_ttl_ms(cache, "session:" TOKEN, &ttl)), RK_OK);
    int64_t n;
    assert_int_equal(CALL(rk_cache_get_i64(cache, "session:" TOKEN, &n)), RK_ERR_TYPE);
    assert_int_equal(CALL(rk_cache_delete(cache, "session:" TOKEN)), RK_OK);
    assert_int_equal(CALL(rk_cache_get_str(cache, "session:" TOKEN, &v)), RK_MISS);
    rk_cache_free(cache);
}

/* The right password, URL and options forms, TCP and Unix; errors of every
 * kind on the way; a paused server (timeouts, the breaker), a killed and
 * restarted one (disconnects, reconnects). */
static void test_right_password_life(void **state)
{
    (void)state;
    char url[512];
    snprintf(url, sizeof url, "redis://:" PW "@127.0.0.1:%d/1?name=api&prefix=shop&command_timeout=300"
             "&connect_timeout=300&pool_size=2", port);
    rk_client *c = new_client((rk_client_options){.url = url, .reconnect_base_ms = 10, .reconnect_max_ms = 50,
                                                  .breaker_threshold = 3});
    assert_int_equal(CALL(rk_client_ping(c)), RK_OK);
    cache_round(c, "sess");

    /* Server errors: WRONGTYPE on a key holding the token. */
    rk_cache *cache = NULL;
    assert_int_equal(CALL(rk_cache_new(c, &(rk_cache_options){.ns = "sess"}, &cache)), RK_OK);
    char key[256];
    size_t klen;
    assert_int_equal(CALL(rk_key_build(c, "sess", "list:" TOKEN, key, sizeof key, &klen)), RK_OK);
    const char *lpush[] = {"LPUSH", key, TOKEN};
    rk_reply *reply = NULL;
    assert_int_equal(CALL(rk_client_command(c, 3, lpush, NULL, &reply)), RK_OK);
    rk_reply_free(reply);
    char *v = NULL;
    assert_int_equal(CALL(rk_cache_get_str(cache, "list:" TOKEN, &v)), RK_ERR_SERVER);
    assert_int_equal(CALL(rk_cache_set_str(cache, "list:" TOKEN, TOKEN, NULL)), RK_OK); /* SET replaces */
    const char *incr[] = {"INCR", key};
    assert_int_equal(CALL(rk_client_command(c, 2, incr, NULL, &reply)), RK_ERR_SERVER);
    assert_int_equal(CALL(rk_cache_delete(cache, "list:" TOKEN)), RK_OK);
    rk_cache_free(cache);

    /* Too large, and invalid: refused before sending. */
    rk_cache *tight = NULL;
    assert_int_equal(CALL(rk_cache_new(c, &(rk_cache_options){.ns = "sess", .max_key_bytes = 40,
                                                              .max_value_bytes = 32}, &tight)), RK_OK);
    assert_int_equal(CALL(rk_cache_set_str(tight, "session:" TOKEN, "v", NULL)), RK_ERR_TOO_LARGE);
    assert_int_equal(CALL(rk_cache_set_str(tight, "s", TOKEN, NULL)), RK_ERR_TOO_LARGE);
    assert_int_equal(CALL(rk_cache_get_str(tight, "session:" TOKEN, &v)), RK_ERR_TOO_LARGE);
    assert_int_equal(CALL(rk_cache_set_str(tight, "s", TOKEN, &(rk_cache_set_options){.ttl_s = -5})), RK_ERR_INVALID);
    rk_cache_free(tight);
    rk_cache *bad_ns = (rk_cache *)1;
    assert_int_equal(CALL(rk_cache_new(c, &(rk_cache_options){.ns = TOKEN ":x"}, &bad_ns)), RK_ERR_INVALID);
    assert_int_equal(CALL(rk_key_build(c, "sess", "", key, sizeof key, &klen)), RK_ERR_INVALID);
    assert_int_equal(CALL(rk_key_build(c, "sess", "session:" TOKEN, key, 8, &klen)), RK_ERR_TOO_LARGE);

    /* A paused server: timeouts, then the circuit opens; resumed, it
     * closes again. */
    assert_true(rk_test_server_signal(server, SIGSTOP));
    assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_TIMEOUT);
    assert_int_equal(CALL(rk_cache_new(c, &(rk_cache_options){.ns = "sess"}, &cache)), RK_OK);
    for (int i = 0; i < 3; i++) {
        rk_status st = CALL(rk_cache_get_str(cache, "session:" TOKEN, &v));
        assert_int_equal(st, RK_DEGRADED);
        st = CALL(rk_cache_set_str(cache, "session:" TOKEN, TOKEN, NULL));
        assert_true(st == RK_ERR_TIMEOUT || st == RK_ERR_UNAVAILABLE);
    }
    assert_true(rk_test_server_signal(server, SIGCONT));
    assert_true(recovers(c, 10000));

    /* Killed and restarted: one failed attempt, then a reconnect... */
    assert_true(rk_test_server_signal(server, SIGKILL));
    assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_UNAVAILABLE);
    assert_true(rk_test_server_restart(server, NULL));
    create_acl_user();
    assert_true(recovers(c, 10000));
    /* ...and down long enough for the breaker to open. */
    assert_true(rk_test_server_signal(server, SIGKILL));
    for (int i = 0; i < 6; i++) {
        CALL(rk_client_ping(c));
        CALL(rk_cache_get_str(cache, "session:" TOKEN, &v));
        CALL(rk_cache_set_str(cache, "session:" TOKEN, TOKEN, NULL));
        rk_test_sleep_ms(20);
    }
    assert_true(rk_test_server_restart(server, NULL));
    create_acl_user();
    assert_true(recovers(c, 10000));
    cache_round(c, "sess");
    rk_cache_free(cache);
    rk_client_free(c);

    /* The ACL user, its password URL-encoded: NOPERM outside its keys. */
    snprintf(url, sizeof url, "redis://" APP_USER ":%s@127.0.0.1:%d?prefix=other&name=app", special_enc, port);
    c = new_client((rk_client_options){.url = url});
    assert_int_equal(CALL(rk_cache_new(c, NULL, &cache)), RK_OK);
    assert_int_equal(CALL(rk_cache_set_str(cache, "session:" TOKEN, TOKEN, NULL)), RK_ERR_SERVER);
    assert_int_equal(CALL(rk_cache_get_str(cache, "session:" TOKEN, &v)), RK_ERR_SERVER);
    const char *config[] = {"CONFIG", "GET", "requirepass"};
    assert_int_equal(CALL(rk_client_command(c, 3, config, NULL, &reply)), RK_ERR_SERVER);
    rk_cache_free(cache);
    rk_client_free(c);
    snprintf(url, sizeof url, "redis://" APP_USER ":%s@127.0.0.1:%d/3?prefix=shop", special_enc, port);
    c = new_client((rk_client_options){.url = url});
    cache_round(c, "sess");
    rk_client_free(c);

    /* Options instead of a URL; a URL's wrong password overridden by the
     * right one in options; the Unix socket. */
    c = new_client((rk_client_options){.host = "127.0.0.1", .port = port, .password = PW, .db = 2,
                                       .client_name = "worker", .key_prefix = "shop"});
    cache_round(c, "sess");
    rk_client_free(c);
    c = new_client((rk_client_options){.host = "127.0.0.1", .port = port, .username = APP_USER,
                                       .password = SPECIAL, .key_prefix = "shop"});
    cache_round(c, "sess");
    rk_client_free(c);
    snprintf(url, sizeof url, "redis://:" WRONG "@127.0.0.1:%d", port);
    c = new_client((rk_client_options){.url = url, .password = PW});
    assert_int_equal(CALL(rk_client_ping(c)), RK_OK);
    rk_client_free(c);
    snprintf(url, sizeof url, "unix://:" PW "@%s/redis.sock?db=1&prefix=shop", rk_test_server_dir(server));
    c = new_client((rk_client_options){.url = url});
    cache_round(c, "sess");
    rk_client_free(c);

    assert_marker("NOPERM");
    assert_marker("WRONGTYPE");
    assert_marker("timed out");
    assert_marker("circuit open");
    assert_marker("circuit closed");
    assert_marker("reconnected");
    assert_marker("connection closed");
    assert_marker("degraded");
    assert_marker("longer than");
    unsigned want = 1u << RK_EVENT_CONNECTED | 1u << RK_EVENT_DISCONNECTED | 1u << RK_EVENT_RECONNECT_SCHEDULED |
                    1u << RK_EVENT_CIRCUIT_OPEN | 1u << RK_EVENT_CIRCUIT_HALF_OPEN | 1u << RK_EVENT_CIRCUIT_CLOSED;
    assert_int_equal(event_types_seen & want, want);
    assert_true(log_lines >= 6);
    assert_text_clean();
    assert_memory_clean();
}

/* Wrong passwords, and none: RK_ERR_AUTH, repeated until the breaker
 * opens, with every message captured. */
static void test_wrong_passwords(void **state)
{
    (void)state;
    char urls[5][512];
    snprintf(urls[0], sizeof urls[0], "redis://:" WRONG "@127.0.0.1:%d?name=api", port);
    snprintf(urls[1], sizeof urls[1], "redis://" APP_USER ":" WRONG "@127.0.0.1:%d/2", port);
    snprintf(urls[2], sizeof urls[2], "redis://nobody:%s@127.0.0.1:%d", special_enc, port);
    snprintf(urls[3], sizeof urls[3], "redis://127.0.0.1:%d", port); /* none: NOAUTH */
    snprintf(urls[4], sizeof urls[4], "unix://:" WRONG "@%s/redis.sock", rk_test_server_dir(server));
    for (size_t i = 0; i < 5; i++) {
        rk_client *c = new_client((rk_client_options){.url = urls[i], .breaker_threshold = 2,
                                                      .reconnect_base_ms = 5, .reconnect_max_ms = 20});
        assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_AUTH);
        rk_cache *cache = NULL;
        assert_int_equal(CALL(rk_cache_new(c, NULL, &cache)), RK_OK);
        char *v;
        for (int k = 0; k < 8; k++) {
            CALL(rk_cache_set_str(cache, "session:" TOKEN, TOKEN, NULL));
            CALL(rk_cache_get_str(cache, "session:" TOKEN, &v));
            CALL(rk_client_ping(c));
            rk_test_sleep_ms(5);
        }
        rk_cache_free(cache);
        rk_client_free(c);
    }
    rk_client *c = new_client((rk_client_options){.host = "127.0.0.1", .port = port, .username = APP_USER,
                                                  .password = WRONG, .db = 1, .client_name = "x"});
    assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_AUTH);
    rk_client_free(c);
    assert_marker("WRONGPASS");
    assert_marker("NOAUTH");
    assert_marker("circuit open");
    assert_text_clean();
    assert_memory_clean();
}

/* ---- a server that echoes the handshake's arguments ------------------------------- */

/* A Redis with AUTH renamed away answers the handshake's AUTH with "ERR
 * unknown command 'AUTH', with args beginning with: '<the password>'" (as
 * would a proxy or fork that quotes arguments in its errors). Three
 * clients of the same server — URL, options with an ACL user name, Unix
 * socket — each refused a few times so that events and the breaker's log
 * lines are produced too. */
static void auth_echo_clients(rk_test_server *s, const rk_tls_options *tls, const char *url)
{
    rk_client *c = new_client((rk_client_options){.url = url, .tls = tls ? *tls : (rk_tls_options){0},
                                                  .breaker_threshold = 2, .reconnect_base_ms = 5,
                                                  .reconnect_max_ms = 20});
    assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_AUTH);
    if (!strstr(rk_last_error(), "AUTH refused by 127.0.0.1:"))
        fail_msg("AUTH failure without its peer: %s", text_hits ? "(withheld: holds a secret)" : rk_last_error());
    for (int k = 0; k < 6; k++) {
        CALL(rk_client_ping(c));
        rk_test_sleep_ms(5);
    }
    rk_client_free(c);

    c = new_client((rk_client_options){.host = tls ? "localhost" : "127.0.0.1", .port = rk_test_server_port(s),
                                       .username = APP_USER, .password = SPECIAL, .db = 2, .client_name = "api",
                                       .tls = tls ? *tls : (rk_tls_options){0}});
    assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_AUTH);
    rk_client_free(c);

    if (!tls) {
        char unix_url[512];
        snprintf(unix_url, sizeof unix_url, "unix://:" WRONG "@%s/redis.sock", rk_test_server_dir(s));
        c = new_client((rk_client_options){.url = unix_url});
        assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_AUTH);
        rk_client_free(c);
    }
}

static void test_server_echoing_auth_arguments(void **state)
{
    (void)state;
    const char *args[] = {"--rename-command", "AUTH", "", NULL};
    rk_test_server *s = rk_test_server_start(args);
    assert_non_null(s);
    char url[512];
    snprintf(url, sizeof url, "redis://:" PW "@127.0.0.1:%d/1?name=api", rk_test_server_port(s));
    auth_echo_clients(s, NULL, url);
    rk_test_server_stop(s);
    assert_marker("AUTH refused by");
    assert_text_clean();
    assert_memory_clean();

    /* The second line of defence: any handshake reply quoting the
     * password is scrubbed. Here CLIENT is renamed away and the client
     * name, by mistake, is the password. */
    const char *args2[] = {"--requirepass", PW, "--rename-command", "CLIENT", "", NULL};
    s = rk_test_server_start(args2);
    assert_non_null(s);
    rk_client *c = new_client((rk_client_options){.host = "127.0.0.1", .port = rk_test_server_port(s),
                                                  .password = PW, .client_name = PW});
    assert_int_equal(CALL(rk_client_ping(c)), RK_ERR_SERVER);
    if (!strstr(rk_last_error(), "CLIENT SETNAME: ERR unknown command") || !strstr(rk_last_error(), "'***'"))
        fail_msg("the SETNAME refusal was not reported, scrubbed: %s",
                 text_hits ? "(withheld: holds a secret)" : rk_last_error());
    rk_client_free(c);
    rk_test_server_stop(s);
    assert_text_clean();
    /* Not checked for memory: the client keeps its name, no secret by
     * contract, in a block freed like any other string. */
    reset_memory_hits();
}

/* The same over TLS (rediss://): the refusal travels encrypted, and must
 * not come out in clear in what redkit says. */
static void test_server_echoing_auth_arguments_over_tls(void **state)
{
    (void)state;
    rk_test_pki *pki = rk_test_pki_new();
    assert_non_null(pki);
    rk_test_server_tls tls = {.cert_file = pki->server_cert, .key_file = pki->server_key};
    const char *args[] = {"--rename-command", "AUTH", "", NULL};
    rk_test_server *s = rk_test_server_start_opts(&(rk_test_server_options){.extra_args = args, .tls = &tls});
    assert_non_null(s);
    char url[768];
    snprintf(url, sizeof url, "rediss://:" PW "@127.0.0.1:%d/1?name=api&tls_ca_file=%s", rk_test_server_port(s),
             pki->ca_cert);
    auth_echo_clients(s, &(rk_tls_options){.enabled = true, .ca_file = pki->ca_cert}, url);
    rk_test_server_stop(s);
    rk_test_pki_free(pki);
    assert_marker("AUTH refused by");
    assert_text_clean();
    assert_memory_clean();
}

/* ---- the CLI -------------------------------------------------------------------- */

/* The redkit tool: $RK_REDKIT_CLI, else <build>/redkit next to <build>/tests/
 * (where CMake puts it; tests/tools/cli_test.sh gets the same file from CMake). */
static bool find_cli(char *path, size_t cap)
{
    const char *env = getenv("RK_REDKIT_CLI");
    if (env && *env) {
        snprintf(path, cap, "%s", env);
        return access(path, X_OK) == 0;
    }
    char self[PATH_MAX - 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return false;
    self[n] = '\0';
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(self, '/');
        if (!slash) return false;
        *slash = '\0';
    }
    snprintf(path, cap, "%s/redkit", self);
    return access(path, X_OK) == 0;
}

typedef struct cli_result {
    int status;
    char out[8192], err[8192];
    size_t out_len, err_len;
} cli_result;

/* Run the CLI with args, REDIS_URL set to redis_url (or unset when NULL),
 * capturing stdout and stderr; killed after 15 s. */
static void run_cli(const char *cli, const char *redis_url, const char *const *args, cli_result *res)
{
    int out_pipe[2], err_pipe[2];
    assert_int_equal(pipe2(out_pipe, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err_pipe, O_CLOEXEC), 0);
    const char *argv[16];
    size_t n = 0;
    argv[n++] = cli;
    for (; args[n - 1] && n < 15; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(err_pipe[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        if (redis_url) setenv("REDIS_URL", redis_url, 1);
        else unsetenv("REDIS_URL");
        execv(cli, (char *const *)argv);
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    memset(res, 0, sizeof *res);
    struct pollfd p[2] = {{.fd = out_pipe[0], .events = POLLIN}, {.fd = err_pipe[0], .events = POLLIN}};
    int64_t end = rk_test_now_ms() + 15000;
    int open_fds = 2;
    for (int rounds = 0; open_fds > 0 && rounds < 100000; rounds++) {
        int64_t left = end - rk_test_now_ms();
        if (left <= 0) break;
        if (poll(p, 2, (int)left) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char *buf = i == 0 ? res->out : res->err;
            size_t *len = i == 0 ? &res->out_len : &res->err_len;
            char scratch[512];
            size_t room = sizeof res->out - 1 - *len;
            ssize_t got = read(p[i].fd, room ? buf + *len : scratch, room ? room : sizeof scratch);
            if (got > 0) {
                if (room) *len += (size_t)got;
            } else if (got == 0 || errno != EINTR) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0) close(p[i].fd);
    int status = 0;
    if (open_fds > 0) kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (open_fds > 0) fail_msg("the CLI did not finish within 15 s");
    res->out[res->out_len] = '\0';
    res->err[res->err_len] = '\0';
    res->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int cli_case;

static void cli_expect(const char *cli, const char *redis_url, const char *const *args, int want_status,
                       const char *want_out)
{
    cli_result res;
    char channel[64];
    cli_case++;
    run_cli(cli, redis_url, args, &res);
    snprintf(channel, sizeof channel, "the CLI's stdout (call #%d)", cli_case);
    check_text(channel, res.out, res.out_len);
    snprintf(channel, sizeof channel, "the CLI's stderr (call #%d)", cli_case);
    check_text(channel, res.err, res.err_len);
    if (res.status != want_status)
        fail_msg("redkit %s %s: exit %d, want %d; stderr: %.200s", args[0], args[1] ? args[1] : "", res.status,
                 want_status, text_hits ? "(withheld: holds a secret)" : res.err);
    if (want_out && strcmp(res.out, want_out) != 0)
        fail_msg("redkit %s: stdout %.100s, want %s", args[0], text_hits ? "(withheld)" : res.out, want_out);
}

/* The CLI with the password in --url and in REDIS_URL, for calls that
 * succeed and calls that fail; its output never shows a secret. */
static void test_cli(void **state)
{
    (void)state;
    char cli[PATH_MAX];
    if (!find_cli(cli, sizeof cli)) {
        fprintf(stderr, "redkit CLI not found next to the tests (set RK_REDKIT_CLI): skipped\n");
        skip();
    }
    char url_pw[512], url_pw_eq[600], url_wrong[512], url_app[512], url_bad[256], url_down[256];
    snprintf(url_pw, sizeof url_pw, "redis://:" PW "@127.0.0.1:%d", port);
    snprintf(url_pw_eq, sizeof url_pw_eq, "--url=%s", url_pw);
    snprintf(url_wrong, sizeof url_wrong, "redis://:" WRONG "@127.0.0.1:%d", port);
    snprintf(url_app, sizeof url_app, "redis://" APP_USER ":%s@127.0.0.1:%d?prefix=shop", special_enc, port);
    snprintf(url_bad, sizeof url_bad, "redis://:" PW "@127.0.0.1:99999");
    snprintf(url_down, sizeof url_down, "redis://:" PW "@127.0.0.1:1?connect_timeout=300");

    /* A list where the CLI expects a string: WRONGTYPE, key with the token. */
    admin_ok("DEL %s", "cache:list:" TOKEN);
    admin_ok("LPUSH %s x", "cache:list:" TOKEN);

    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "ping", NULL}, 0, "PONG\n");
    cli_expect(cli, NULL, (const char *[]){url_pw_eq, "ping", NULL}, 0, "PONG\n");
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "set", "greeting", "hello", NULL}, 0, "OK\n");
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "get", "greeting", NULL}, 0, "hello\n");
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "get", "session:" TOKEN, NULL}, 1, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "get", "list:" TOKEN, NULL}, 2, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "ttl", "list:" TOKEN, NULL}, 0, NULL);
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "--raw", "get", "list:" TOKEN, NULL}, 2, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "set", "k", "v", "--ttl", "-1", NULL}, 2, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_pw, "nosuchcommand", NULL}, 2, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_wrong, "ping", NULL}, 2, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_wrong, "get", "session:" TOKEN, NULL}, 2, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_app, "ping", NULL}, 0, "PONG\n");
    cli_expect(cli, NULL, (const char *[]){"--url", url_app, "--ns", "x", "set", "k", "v", NULL}, 0, "OK\n");
    cli_expect(cli, NULL, (const char *[]){"--url", url_bad, "ping", NULL}, 2, "");
    cli_expect(cli, NULL, (const char *[]){"--url", url_down, "ping", NULL}, 2, "");
    /* The URL by mistake where the command belongs: a usage error. */
    cli_expect(cli, NULL, (const char *[]){url_pw, "ping", NULL}, 2, "");
    /* The same through REDIS_URL. */
    cli_expect(cli, url_pw, (const char *[]){"ping", NULL}, 0, "PONG\n");
    cli_expect(cli, url_pw, (const char *[]){"get", "list:" TOKEN, NULL}, 2, "");
    cli_expect(cli, url_wrong, (const char *[]){"ping", NULL}, 2, "");
    cli_expect(cli, url_bad, (const char *[]){"get", "k", NULL}, 2, "");
    cli_expect(cli, url_app, (const char *[]){"--ns", "x", "get", "k", NULL}, 0, "v\n");
    admin_ok("DEL %s", "cache:list:" TOKEN);

    assert_marker("authentication failed");
    assert_marker("WRONGTYPE");
    assert_marker("URL port");
    assert_text_clean();
}

int main(void)
{
    /* Before any other redkit call, as rk_set_allocator() requires. One
     * backtrace() first: its first call loads libgcc, which must not
     * happen inside the allocator. */
    void *warm[2];
    backtrace(warm, 2);
    rk_allocator a = {scan_malloc, scan_calloc, scan_realloc, scan_free, NULL};
    if (rk_set_allocator(&a) != RK_OK) return 1;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_scanner_sees_unwiped_password, test_setup),
        cmocka_unit_test_setup(test_urls, test_setup),
        cmocka_unit_test_setup(test_secret_in_other_url_parts, test_setup),
        cmocka_unit_test_setup(test_right_password_life, test_setup),
        cmocka_unit_test_setup(test_wrong_passwords, test_setup),
        cmocka_unit_test_setup(test_server_echoing_auth_arguments, test_setup),
        cmocka_unit_test_setup(test_server_echoing_auth_arguments_over_tls, test_setup),
        cmocka_unit_test_setup(test_cli, test_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
