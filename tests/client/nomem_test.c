/*
 * nomem_test.c — every allocation failure on the common paths, one at a
 * time, against a private redis-server.
 *
 * The test installs an allocator (rk_set_allocator()) that counts the
 * allocations redkit makes and fails exactly the Nth one, then runs the
 * same scenario — create a client from a URL and a cache, set and get each
 * kind of value, delete, exists, TTL, commands of one's own with a nested
 * reply, URL redaction, key building, free everything — for N = 1, 2, ...
 * until a run completes without reaching N: by then every allocation point
 * the scenario passes has failed once. (Failing only the Nth, rather than
 * every allocation from the Nth on, walks each path once and lets the rest
 * of the run show that the library recovers: a connection broken by a
 * failure in the protocol reader is replaced by the next call.)
 *
 * For every N: each call returns its normal status or RK_ERR_NOMEM (the
 * latter only once the injected failure has happened, and at most once),
 * outputs are NULL after a failure, nothing crashes, and when everything is
 * freed the allocator holds no live block and was never handed a pointer it
 * did not allocate. Under ASan/LSan the same walk also proves there is no
 * leak or misuse in memory the hook does not see (hiredis's own).
 *
 * The data the reads expect is written before each run with injection
 * off, so a write that failed never changes what a later read should see.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "support/redis_server.h"

/* Upper bound of the walk: far above what the scenario allocates, low
 * enough that a walk that never ends is reported rather than hung. */
#define MAX_N 2000

#define LONG_KEY_PAD 300   /* a user key this long is built on the heap */
#define BIG_VALUE 600      /* a value this long is assembled on the heap */

/* ---- The counting, failing allocator ----------------------------------- */

#define LIVE_MAGIC 0x726b6c6976650001ull
#define DEAD_MAGIC 0x726b646561640002ull

/* Each block carries a header, so that freeing a pointer the hook did not
 * allocate (libc or hiredis memory going to rk_free, say) is caught and
 * counted instead of corrupting the heap. */
typedef union block {
    max_align_t align;
    struct {
        uint64_t magic;
        size_t size;
    } h;
} block;

typedef struct injector {
    long calls;     /* allocation attempts: malloc, calloc, realloc */
    long fail_at;   /* fail this attempt (1-based); 0 = never */
    bool hit;       /* the failure was injected */
    long live;      /* blocks allocated and not yet freed */
    long bad_free;  /* frees of pointers this allocator did not hand out */
    long bad_args;  /* zero sizes, foreign user pointers */
} injector;

static injector inj;

static bool fail_now(void *user)
{
    if (user != &inj) inj.bad_args++;
    if (++inj.calls != inj.fail_at) return false;
    inj.hit = true;
    return true;
}

static void *wrap(block *b, size_t size)
{
    if (!b) return NULL;
    b->h.magic = LIVE_MAGIC;
    b->h.size = size;
    return b + 1;
}

static block *unwrap(void *ptr)
{
    block *b = (block *)ptr - 1;
    if (b->h.magic != LIVE_MAGIC) {
        inj.bad_free++;
        return NULL;
    }
    return b;
}

static void *inj_malloc(size_t size, void *user)
{
    if (size == 0) inj.bad_args++;
    if (fail_now(user)) return NULL;
    void *p = wrap(malloc(sizeof(block) + size), size);
    if (p) inj.live++;
    return p;
}

static void *inj_calloc(size_t n, size_t size, void *user)
{
    if (n == 0 || size == 0 || size > (SIZE_MAX - sizeof(block)) / n) inj.bad_args++;
    if (fail_now(user)) return NULL;
    block *b = malloc(sizeof(block) + n * size);
    if (b) memset(b + 1, 0, n * size);
    void *p = wrap(b, n * size);
    if (p) inj.live++;
    return p;
}

static void *inj_realloc(void *ptr, size_t size, void *user)
{
    if (size == 0) inj.bad_args++;
    if (!ptr) return inj_malloc(size, user);
    if (fail_now(user)) return NULL;
    block *b = unwrap(ptr);
    if (!b) return NULL;
    block *grown = realloc(b, sizeof(block) + size);
    if (!grown) return NULL;
    return wrap(grown, size);
}

static void inj_free(void *ptr, void *user)
{
    if (!ptr || user != &inj) inj.bad_args++;
    if (!ptr) return;
    block *b = unwrap(ptr);
    if (!b) return; /* leaked on purpose: freeing it would corrupt the heap */
    b->h.magic = DEAD_MAGIC;
    inj.live--;
    free(b);
}

static const rk_allocator hook = {inj_malloc, inj_calloc, inj_realloc, inj_free, &inj};

static void arm(long fail_at)
{
    inj.calls = 0;
    inj.fail_at = fail_at;
    inj.hit = false;
}

/* ---- Fixture ------------------------------------------------------------ */

static rk_test_server *server;
static char url[256];
static char long_key_r[LONG_KEY_PAD + 8], long_key_w[LONG_KEY_PAD + 8];
static unsigned char big[BIG_VALUE];

static int group_setup(void **state)
{
    (void)state;
    server = rk_test_server_start(NULL);
    if (!server) return -1;
    /* db 2 adds SELECT to the handshake, name adds CLIENT SETNAME: both
     * pipelined with it, both with replies to read. */
    snprintf(url, sizeof url, "%s/2?prefix=nm&name=nomem-test", rk_test_server_url(server));
    snprintf(long_key_r, sizeof long_key_r, "r:b:%0*d", LONG_KEY_PAD, 0);
    snprintf(long_key_w, sizeof long_key_w, "w:b:%0*d", LONG_KEY_PAD, 0);
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 7);
    big[3] = 0; /* binary-safe */
    /* Before any other redkit call, as the contract asks. */
    return rk_set_allocator(&hook) == RK_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rk_set_allocator(NULL);
    rk_test_server_stop(server);
    return 0;
}

/* ---- The scenario ------------------------------------------------------- */

typedef struct run {
    long n;        /* the attempt that fails, for messages; 0 = none */
    int nomem;     /* calls that returned RK_ERR_NOMEM */
} run;

/* The call returned what it returns when memory is plentiful, or
 * RK_ERR_NOMEM because of the injected failure. Returns st == normal. */
static bool expect(run *r, rk_status st, rk_status normal, const char *what)
{
    if (st == normal) return true;
    if (st == RK_ERR_NOMEM && inj.hit) {
        r->nomem++;
        if (getenv("RK_NOMEM_VERBOSE")) print_message("N=%ld: %s: %s\n", r->n, what, rk_last_error());
        if (r->nomem > 1) fail_msg("N=%ld: %s: a second RK_ERR_NOMEM after one injected failure", r->n, what);
        if (!*rk_last_error()) fail_msg("N=%ld: %s: RK_ERR_NOMEM with no message", r->n, what);
        return false;
    }
    fail_msg("N=%ld: %s returned %s (wanted %s or out of memory%s): %s", r->n, what, rk_strerror(st),
             rk_strerror(normal), inj.hit ? "" : "; no failure injected yet", rk_last_error());
    return false;
}

static void check_integer_reply(rk_reply *reply)
{
    assert_non_null(reply);
    assert_int_equal(reply->type, RK_REPLY_INTEGER);
}

/* Write, with injection off, what the reads of the scenario expect. */
static void seed(void)
{
    rk_client *client = NULL;
    rk_cache *cache = NULL;
    assert_int_equal(rk_client_new(&(rk_client_options){.url = url}, &client), RK_OK);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "c"}, &cache), RK_OK);
    rk_reply *reply = NULL;
    const char *flush[] = {"FLUSHDB"};
    assert_int_equal(rk_client_command(client, 1, flush, NULL, &reply), RK_OK);
    rk_reply_free(reply);
    assert_int_equal(rk_cache_set_str(cache, "r:s", "seeded", &(rk_cache_set_options){.ttl_s = 600}), RK_OK);
    assert_int_equal(rk_cache_set_i64(cache, "r:i", -7, NULL), RK_OK);
    assert_int_equal(rk_cache_set(cache, long_key_r, big, sizeof big, NULL), RK_OK);
    assert_int_equal(rk_cache_set_str(cache, "r:del", "x", NULL), RK_OK);
    const char *hset[] = {"HSET", "nm:r:h", "a", "1", "b", "2"};
    assert_int_equal(rk_client_command(client, 6, hset, NULL, &reply), RK_OK);
    rk_reply_free(reply);
    rk_cache_free(cache);
    rk_client_free(client);
}

static void scenario(run *r)
{
    rk_client *client = (rk_client *)&inj; /* must be overwritten */
    rk_status st = rk_client_new(&(rk_client_options){.url = url}, &client);
    if (!expect(r, st, RK_OK, "rk_client_new")) {
        assert_null(client);
        return; /* nothing else can run without a client */
    }
    assert_string_equal(rk_client_key_prefix(client), "nm");

    rk_cache *cache = (rk_cache *)&inj;
    st = rk_cache_new(client, &(rk_cache_options){.ns = "c"}, &cache);
    if (!expect(r, st, RK_OK, "rk_cache_new")) {
        assert_null(cache);
        rk_client_free(client);
        return;
    }

    /* Strings. */
    expect(r, rk_cache_set_str(cache, "w:s", "hello", &(rk_cache_set_options){.ttl_s = 60}), RK_OK, "set_str");
    char *s = (char *)&inj;
    if (expect(r, rk_cache_get_str(cache, "r:s", &s), RK_OK, "get_str")) {
        assert_string_equal(s, "seeded");
        rk_free(s);
    } else {
        assert_null(s);
    }

    /* Integers. */
    expect(r, rk_cache_set_i64(cache, "w:i", 42, NULL), RK_OK, "set_i64");
    int64_t i = 0;
    if (expect(r, rk_cache_get_i64(cache, "r:i", &i), RK_OK, "get_i64")) assert_int_equal(i, -7);

    /* Bytes, with a key and a value long enough to go to the heap. */
    expect(r, rk_cache_set(cache, long_key_w, big, sizeof big, NULL), RK_OK, "set (bytes)");
    void *v = &inj;
    size_t vlen = 0;
    if (expect(r, rk_cache_get(cache, long_key_r, &v, &vlen), RK_OK, "get (bytes)")) {
        assert_int_equal(vlen, sizeof big);
        assert_memory_equal(v, big, sizeof big);
        rk_free(v);
    } else {
        assert_null(v);
    }

    /* Delete, exists, TTL. */
    expect(r, rk_cache_delete(cache, "r:del"), RK_OK, "delete");
    expect(r, rk_cache_exists(cache, "r:s"), RK_OK, "exists");
    int64_t ttl = 0;
    if (expect(r, rk_cache_ttl_ms(cache, "r:s", &ttl), RK_OK, "ttl_ms")) {
        assert_true(ttl > 0);
        assert_true(ttl <= 600000);
    }

    /* Commands of one's own: an integer reply, an array reply, and more
     * than 16 arguments with argvlen NULL (the lengths go on the heap). */
    rk_reply *reply = (rk_reply *)&inj;
    const char *hset[] = {"HSET", "nm:w:h", "f1", "v1", "f2", "v2"};
    if (expect(r, rk_client_command(client, 6, hset, NULL, &reply), RK_OK, "HSET")) {
        check_integer_reply(reply);
        rk_reply_free(reply);
    } else {
        assert_null(reply);
    }
    reply = (rk_reply *)&inj;
    const char *hgetall[] = {"HGETALL", "nm:r:h"};
    const size_t hgetall_len[] = {7, 6};
    if (expect(r, rk_client_command(client, 2, hgetall, hgetall_len, &reply), RK_OK, "HGETALL")) {
        assert_non_null(reply);
        assert_int_equal(reply->type, RK_REPLY_ARRAY);
        assert_int_equal(reply->elements, 4);
        for (size_t k = 0; k < 4; k++) assert_int_equal(reply->element[k]->type, RK_REPLY_STRING);
        rk_reply_free(reply);
    } else {
        assert_null(reply);
    }
    reply = (rk_reply *)&inj;
    const char *exists[20] = {"EXISTS"};
    for (int k = 1; k < 20; k++) exists[k] = k % 2 ? "nm:r:h" : "nm:none";
    if (expect(r, rk_client_command(client, 20, exists, NULL, &reply), RK_OK, "EXISTS x19")) {
        check_integer_reply(reply);
        assert_int_equal(reply->integer, 10);
        rk_reply_free(reply);
    } else {
        assert_null(reply);
    }

    /* Pure functions that allocate. */
    char *redacted = (char *)&inj;
    if (expect(r, rk_url_redact("redis://app:s3cret@db.example:6380/1?name=x", &redacted), RK_OK,
               "rk_url_redact")) {
        assert_string_equal(redacted, "redis://app:***@db.example:6380/1?name=x");
        rk_free(redacted);
    } else {
        assert_null(redacted);
    }
    char key[64];
    size_t klen = 0;
    if (expect(r, rk_key_build(client, "sessions", "abc", key, sizeof key, &klen), RK_OK, "rk_key_build")) {
        assert_string_equal(key, "nm:sessions:abc");
        assert_int_equal(klen, strlen("nm:sessions:abc"));
    }

    rk_cache_free(cache);
    rk_client_free(client);
}

/* One run with the Nth allocation failing (0: none). Returns whether the
 * failure was reached. */
static bool one_run(long n, long *allocations)
{
    arm(0);
    seed();
    assert_int_equal(inj.live, 0);

    run r = {.n = n};
    arm(n);
    scenario(&r);
    *allocations = inj.calls;
    if (inj.live != 0) fail_msg("N=%ld: %ld block(s) leaked", n, inj.live);
    if (inj.bad_free != 0) fail_msg("N=%ld: %ld free(s) of foreign pointers", n, inj.bad_free);
    if (inj.bad_args != 0) fail_msg("N=%ld: the hook got a zero size, a NULL free or a wrong user", n);
    if (n == 0 || !inj.hit) assert_int_equal(r.nomem, 0);
    return inj.hit;
}

/* ---- Tests -------------------------------------------------------------- */

/* Fail each allocation of the scenario in turn. */
static void test_walk(void **state)
{
    (void)state;
    long full = 0, n;
    for (n = 1; n <= MAX_N; n++) {
        long allocations;
        if (!one_run(n, &allocations)) {
            full = allocations;
            break;
        }
    }
    if (n > MAX_N) fail_msg("the walk did not finish within %d allocations", MAX_N);
    print_message("nomem walk: %ld allocation points failed one at a time\n", n - 1);
    assert_int_equal(full, n - 1);
    assert_true(full > 20); /* the scenario really went through the hook */
}

/* After the walk, with the injector off, everything succeeds. */
static void test_normal_run(void **state)
{
    (void)state;
    long allocations;
    assert_false(one_run(0, &allocations));
    assert_true(allocations > 0);
}

/* rk_set_allocator: refuses a half-filled struct and keeps the allocator
 * in use; copies the struct; NULL restores libc; rk_free() goes through
 * the hook. Nothing of redkit's is live while it switches. */
static void test_set_allocator(void **state)
{
    (void)state;
    static const char *names[] = {"malloc", "calloc", "realloc", "free"};
    for (int k = 0; k < 4; k++) {
        rk_allocator a = hook;
        if (k == 0) a.malloc = NULL;
        if (k == 1) a.calloc = NULL;
        if (k == 2) a.realloc = NULL;
        if (k == 3) a.free = NULL;
        assert_int_equal(rk_set_allocator(&a), RK_ERR_INVALID);
        assert_non_null(strstr(rk_last_error(), names[k]));
    }

    /* Still the hook, and rk_free() returns the block to it. */
    arm(0);
    char *out = NULL;
    assert_int_equal(rk_url_redact("redis://h:1", &out), RK_OK);
    assert_true(inj.calls > 0);
    assert_int_equal(inj.live, 1);
    rk_free(out);
    assert_int_equal(inj.live, 0);
    rk_free(NULL);

    /* The struct is copied: changing ours afterwards changes nothing. */
    rk_allocator mine = hook;
    assert_int_equal(rk_set_allocator(&mine), RK_OK);
    mine.malloc = NULL;
    out = NULL;
    assert_int_equal(rk_url_redact("redis://h:1", &out), RK_OK);
    rk_free(out);
    assert_int_equal(inj.live, 0);

    /* NULL: libc again; the hook sees nothing. */
    assert_int_equal(rk_set_allocator(NULL), RK_OK);
    arm(0);
    assert_int_equal(rk_url_redact("redis://h:1", &out), RK_OK);
    rk_free(out);
    assert_int_equal(inj.calls, 0);

    assert_int_equal(rk_set_allocator(&hook), RK_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_allocator),
        cmocka_unit_test(test_walk),
        cmocka_unit_test(test_normal_run),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
