/*
 * compress_test.c — compression of large cache values (src/cache/compress.c and
 * the cache's encode/decode around it).
 *
 * Unit tests, without a server: zstd frames round-trip at the sizes that
 * matter (0, 1, threshold-1, threshold, 1 MiB); the encoder compresses
 * only typed values at or over the threshold and only when that makes them
 * smaller; the decoder treats its input as hostile — corrupt, truncated
 * and padded frames, a frame declaring an absurd size and a real
 * decompression bomb all end in a clean error, and a counting allocator
 * shows that nothing near the declared size is ever allocated.
 *
 * Integration tests, against a private redis-server: what Redis actually
 * holds (STRLEN, MEMORY USAGE, the flag byte), raw handles that neither
 * compress nor decode, and the counters.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "alloc.h"
#include "cache.h"
#include "compress.h"
#include "support/fixture.h"
#include "support/redis_server.h"

#define THRESHOLD RK_CACHE_DEFAULT_COMPRESS_THRESHOLD
#define MIB ((size_t)1 << 20)

static rk_test_server *server;
static rk_client *client; /* no key prefix: the cache writes "cache:<key>" */
static rk_cache *typed;   /* namespace "cache", all defaults */
static rk_cache *raw;     /* namespace "cache" too, raw: reads typed values */

/* ---- a counting allocator ------------------------------------------------ */

/* It records the largest single request, and when armed counts requests
 * and fails the fail_at-th. It passes every call to libc, so memory
 * allocated before it was installed can be freed through it. */
static _Atomic size_t largest;
static _Atomic bool armed;
static _Atomic long calls, fail_at;
static _Atomic bool failed;

/* Record a request of n bytes; true when this one must fail. */
static bool request(size_t n)
{
    size_t seen = atomic_load(&largest);
    /* Bounded: each failed exchange means another thread raised it. */
    for (int i = 0; i < 1000 && n > seen && !atomic_compare_exchange_weak(&largest, &seen, n); i++) {
    }
    if (!atomic_load(&armed)) return false;
    if (atomic_fetch_add(&calls, 1) + 1 != atomic_load(&fail_at)) return false;
    atomic_store(&failed, true);
    return true;
}

static void *count_malloc(size_t n, void *user)
{
    (void)user;
    return request(n) ? NULL : malloc(n);
}

static void *count_calloc(size_t n, size_t size, void *user)
{
    (void)user;
    return request(n * size) ? NULL : calloc(n, size); /* rk__calloc checked n * size */
}

static void *count_realloc(void *p, size_t n, void *user)
{
    (void)user;
    return request(n) ? NULL : realloc(p, n);
}

static void count_free(void *p, void *user)
{
    (void)user;
    free(p);
}

/* ---- test data ----------------------------------------------------------- */

/* n bytes of JSON-like API text (cut at n, so not always valid JSON): the
 * kind of value the cache compresses. Caller frees. */
static char *json_text(size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    size_t len = 0;
    for (unsigned i = 0; len < n; i++) { /* ends: each record adds > 0 bytes */
        char rec[160];
        int k = snprintf(rec, sizeof rec,
                         "{\"id\":%u,\"name\":\"user %u\",\"email\":\"user%u@example.com\","
                         "\"active\":%s,\"score\":%u},",
                         1000 + i, i * 7 % 101, i, i % 3 ? "true" : "false", i * 37 % 1000);
        size_t take = (size_t)k < n - len ? (size_t)k : n - len;
        memcpy(s + len, rec, take);
        len += take;
    }
    s[n] = '\0';
    return s;
}

/* n bytes that do not compress (splitmix64). */
static char *random_bytes(size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    uint64_t x = 0x1234567;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        s[i] = (char)(z ^ (z >> 31));
    }
    s[n] = '\0';
    return s;
}

/* A zstd frame of src (caller frees), made with redkit's compressor. */
static char *frame_of(const void *src, size_t n, size_t *flen)
{
    size_t cap = n + n / 8 + 256; /* > zstd's worst case for these sizes */
    char *f = malloc(cap);
    assert_non_null(f);
    assert_int_equal(rk__compress(NULL, 0, src, n, f, cap, flen), RK_OK);
    assert_true(*flen > 0);
    return f;
}

/* A GET reply holding bytes, as the client would hand it to decode. */
static rk_reply *string_reply(const void *bytes, size_t n)
{
    rk_reply *r = rk__calloc(1, sizeof *r);
    assert_non_null(r);
    r->type = RK_REPLY_STRING;
    r->str = rk__malloc(n + 1);
    assert_non_null(r->str);
    if (n) memcpy(r->str, bytes, n);
    r->str[n] = '\0';
    r->len = n;
    return r;
}

/* Decode header + frame as the typed cache c would read it. */
static rk_status decode_frame(rk_cache *c, unsigned char flags, const void *frame, size_t flen, char **out,
                              size_t *len)
{
    unsigned char *v = malloc(flen + 2);
    assert_non_null(v);
    v[0] = RK__VALUE_MAGIC;
    v[1] = (unsigned char)(RK__V_STRING | flags);
    if (flen) memcpy(v + 2, frame, flen);
    rk_status st = rk__cache_decode(c, string_reply(v, flen + 2), RK__ACCEPT(RK__V_STRING), RK__V_STRING,
                                    out, len, NULL);
    free(v);
    return st;
}

/* ---- unit: frames -------------------------------------------------------- */

static const size_t sizes[] = {0, 1, THRESHOLD - 1, THRESHOLD, MIB};

static void test_frame_round_trip(void **state)
{
    (void)state;
    rk__zpool pool = {.cctx = {NULL}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *text = json_text(sizes[i]);
        for (int pooled = 0; pooled < 2; pooled++) {
            rk__zpool *p = pooled ? &pool : NULL;
            size_t cap = sizes[i] + 256, flen = 0;
            char *f = malloc(cap);
            assert_int_equal(rk__compress(p, 0, text, sizes[i], f, cap, &flen), RK_OK);
            assert_true(flen > 0);
            char *back = (char *)"untouched";
            size_t n = 7;
            assert_int_equal(rk__decompress(p, f, flen, sizes[i], &back, &n), RK_OK);
            assert_int_equal(n, sizes[i]);
            assert_memory_equal(back, text, n + 1); /* with the NUL */
            rk__free(back);
            free(f);
        }
        free(text);
    }
    /* Every level in range works; one outside is refused. */
    char *text = json_text(4096), f[8192];
    size_t flen;
    for (int level = RK__COMPRESS_LEVEL_MIN; level <= RK__COMPRESS_LEVEL_MAX; level++) {
        assert_int_equal(rk__compress(&pool, level, text, 4096, f, sizeof f, &flen), RK_OK);
        assert_true(flen > 0 && flen < 4096);
    }
    assert_int_equal(rk__compress(&pool, RK__COMPRESS_LEVEL_MAX + 1, text, 4096, f, sizeof f, &flen),
                     RK_ERR_INVALID);
    assert_int_equal(rk__compress(&pool, RK__COMPRESS_LEVEL_MIN - 1, text, 4096, f, sizeof f, &flen),
                     RK_ERR_INVALID);
    /* A frame that would not fit reports 0 bytes, not an error. */
    assert_int_equal(rk__compress(&pool, 0, text, 4096, f, 16, &flen), RK_OK);
    assert_int_equal(flen, 0);
    free(text);
    rk__zpool_clear(&pool);
    rk__zpool_clear(&pool); /* twice is harmless */
    rk__zpool_clear(NULL);
}

/* Threads share one pool: every round trip must still be exact (and
 * ASan/TSan see the hand-overs). */
#define POOL_THREADS 8
#define POOL_ROUNDS 40

typedef struct pool_job {
    rk__zpool *pool;
    unsigned seed;
    int failures;
} pool_job;

static void *pool_worker(void *arg)
{
    pool_job *job = arg;
    char src[6000], f[8000];
    for (int round = 0; round < POOL_ROUNDS; round++) {
        size_t n = 2000 + (job->seed * 131 + (unsigned)round * 977) % 4000;
        for (size_t i = 0; i < n; i++) src[i] = "{\"id\":1234,}abcd"[(i * (job->seed + 1)) % 16];
        size_t flen = 0, back_len = 0;
        char *back = NULL;
        if (rk__compress(job->pool, (int)(job->seed % 3) + 1, src, n, f, sizeof f, &flen) != RK_OK ||
            flen == 0 || rk__decompress(job->pool, f, flen, n, &back, &back_len) != RK_OK ||
            back_len != n || memcmp(back, src, n) != 0)
            job->failures++;
        rk__free(back);
    }
    return NULL;
}

static void test_pool_shared_by_threads(void **state)
{
    (void)state;
    rk__zpool pool = {.cctx = {NULL}};
    pthread_t t[POOL_THREADS];
    pool_job jobs[POOL_THREADS];
    for (unsigned i = 0; i < POOL_THREADS; i++) {
        jobs[i] = (pool_job){&pool, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, pool_worker, &jobs[i]), 0);
    }
    for (unsigned i = 0; i < POOL_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
    }
    rk__zpool_clear(&pool);
}

/* ---- unit: the encoder --------------------------------------------------- */

static void test_encode_threshold(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *text = json_text(sizes[i]);
        rk__encoded e;
        assert_int_equal(rk__cache_encode(typed, RK__V_STRING, text, sizes[i], NULL, &e), RK_OK);
        const unsigned char *p = (const unsigned char *)e.data;
        assert_int_equal(p[0], RK__VALUE_MAGIC);
        if (sizes[i] < THRESHOLD) {
            /* Below the threshold: exactly as before compression existed. */
            assert_int_equal(p[1], RK__V_STRING);
            assert_int_equal(e.len, sizes[i] + 2);
            if (sizes[i]) assert_memory_equal(e.data + 2, text, sizes[i]);
        } else {
            assert_int_equal(p[1], RK__V_STRING | RK__VF_COMPRESSED);
            assert_true(e.len < sizes[i] / 2); /* JSON compresses well */
        }
        /* Whatever the encoding, decode gives the value back. */
        char *back = NULL;
        size_t n = 0;
        assert_int_equal(rk__cache_decode(typed, string_reply(e.data, e.len), RK__ACCEPT(RK__V_STRING),
                                          RK__V_STRING, &back, &n, NULL),
                         RK_OK);
        assert_int_equal(n, sizes[i]);
        assert_memory_equal(back, text, n + 1);
        rk__free(back);
        rk__cache_encoded_release(&e);
        free(text);
    }
}

static void test_encode_with_meta(void **state)
{
    (void)state;
    char *text = json_text(20000);
    rk__value_meta meta = {.expires_at_ms = 1700000000123, .compute_ms = 42}, got;
    rk__encoded e;
    assert_int_equal(rk__cache_encode(typed, RK__V_BYTES, text, 20000, &meta, &e), RK_OK);
    assert_int_equal((unsigned char)e.data[1], RK__V_BYTES | RK__VF_COMPRESSED | RK__VF_META);
    char *back = NULL;
    size_t n = 0;
    assert_int_equal(rk__cache_decode(typed, string_reply(e.data, e.len), RK__ACCEPT(RK__V_BYTES), RK__V_BYTES,
                                      &back, &n, &got),
                     RK_OK);
    assert_int_equal(n, 20000);
    assert_memory_equal(back, text, n);
    assert_true(got.expires_at_ms == meta.expires_at_ms);
    assert_int_equal(got.compute_ms, 42);
    rk__free(back);
    rk__cache_encoded_release(&e);
    free(text);
}

static void test_incompressible_stored_plain(void **state)
{
    (void)state;
    const size_t n = 64 * 1024;
    char *noise = random_bytes(n);
    rk__encoded e;
    assert_int_equal(rk__cache_encode(typed, RK__V_BYTES, noise, n, NULL, &e), RK_OK);
    assert_int_equal((unsigned char)e.data[1], RK__V_BYTES); /* no flag */
    assert_int_equal(e.len, n + 2);
    assert_memory_equal(e.data + 2, noise, n);
    rk__cache_encoded_release(&e);
    free(noise);
}

static void test_encode_off_and_raw(void **state)
{
    (void)state;
    char *text = json_text(MIB);
    rk_cache *off, *low;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.compress_threshold = RK_CACHE_COMPRESS_OFF}, &off),
                     RK_OK);
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.compress_threshold = 100}, &low), RK_OK);
    rk__encoded e;

    assert_int_equal(rk__cache_encode(off, RK__V_STRING, text, MIB, NULL, &e), RK_OK);
    assert_int_equal((unsigned char)e.data[1], RK__V_STRING);
    assert_int_equal(e.len, MIB + 2);
    rk__cache_encoded_release(&e);

    /* A raw cache hands over the caller's bytes, untouched. */
    assert_int_equal(rk__cache_encode(raw, RK__V_STRING, text, MIB, NULL, &e), RK_OK);
    assert_ptr_equal(e.data, text);
    assert_int_equal(e.len, MIB);
    rk__cache_encoded_release(&e);

    /* A lower threshold compresses smaller values. */
    assert_int_equal(rk__cache_encode(low, RK__V_STRING, text, 300, NULL, &e), RK_OK);
    assert_int_equal((unsigned char)e.data[1], RK__V_STRING | RK__VF_COMPRESSED);
    assert_true(e.len < 300);
    rk__cache_encoded_release(&e);
    assert_int_equal(rk__cache_encode(low, RK__V_STRING, text, 99, NULL, &e), RK_OK);
    assert_int_equal((unsigned char)e.data[1], RK__V_STRING);
    rk__cache_encoded_release(&e);

    rk_cache_free(off);
    rk_cache_free(low);
    free(text);
}

static void test_level_option(void **state)
{
    (void)state;
    rk_cache *c = (rk_cache *)1;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.compress_level = RK__COMPRESS_LEVEL_MAX + 1}, &c),
                     RK_ERR_INVALID);
    assert_null(c);
    assert_non_null(strstr(rk_last_error(), "compress_level"));
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.compress_level = RK__COMPRESS_LEVEL_MIN - 1}, &c),
                     RK_ERR_INVALID);
    const int good[] = {RK__COMPRESS_LEVEL_MIN, -1, 0, 1, 3, RK__COMPRESS_LEVEL_MAX};
    char *text = json_text(50000);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(rk_cache_new(client, &(rk_cache_options){.compress_level = good[i]}, &c), RK_OK);
        rk__encoded e;
        assert_int_equal(rk__cache_encode(c, RK__V_STRING, text, 50000, NULL, &e), RK_OK);
        assert_true(e.len < 50000 / 2);
        char *back;
        size_t n;
        assert_int_equal(rk__cache_decode(c, string_reply(e.data, e.len), RK__ACCEPT(RK__V_STRING),
                                          RK__V_STRING, &back, &n, NULL),
                         RK_OK);
        assert_int_equal(n, 50000);
        assert_memory_equal(back, text, n);
        rk__free(back);
        rk__cache_encoded_release(&e);
        rk_cache_free(c);
    }
    free(text);
}

/* ---- unit: hostile frames ---------------------------------------------- */

/* The outputs are passed by address: the call that fills them is
 * evaluated first, whatever the order of the arguments. */
static void assert_corrupt(rk_status st, char *const *out, const size_t *len)
{
    assert_int_equal(st, RK_ERR_TYPE);
    assert_non_null(strstr(rk_last_error(), "corrupt"));
    assert_null(*out);
    assert_int_equal(*len, 0);
}

static void test_corrupt_frames(void **state)
{
    (void)state;
    char *text = json_text(3000);
    size_t flen;
    char *f = frame_of(text, 3000, &flen);
    char *out;
    size_t len;

    /* Every single-byte change (one bit in turn flipped) is caught, or
     * when it lands where zstd does not look, gives back the exact value:
     * never wrong bytes, never a crash. */
    int caught = 0;
    for (size_t i = 0; i < flen; i++) {
        f[i] ^= (char)(1u << (i % 8));
        rk_status st = decode_frame(typed, RK__VF_COMPRESSED, f, flen, &out, &len);
        if (st == RK_OK) {
            assert_int_equal(len, 3000);
            assert_memory_equal(out, text, len);
            rk__free(out);
        } else {
            assert_true(st == RK_ERR_TYPE || st == RK_ERR_TOO_LARGE);
            assert_null(out);
            caught++;
        }
        f[i] ^= (char)(1u << (i % 8));
    }
    assert_true(caught > (int)flen * 9 / 10);

    /* Not zstd at all, or too short to be anything. */
    assert_corrupt(decode_frame(typed, RK__VF_COMPRESSED, "{\"id\":1}", 8, &out, &len), &out, &len);
    assert_corrupt(decode_frame(typed, RK__VF_COMPRESSED, "", 0, &out, &len), &out, &len);
    assert_corrupt(decode_frame(typed, RK__VF_COMPRESSED, "\x28\xb5\x2f", 3, &out, &len), &out, &len);
    /* A skippable frame (zstd would read it as empty): not ours. */
    assert_corrupt(decode_frame(typed, RK__VF_COMPRESSED, "\x50\x2a\x4d\x18\x00\x00\x00\x00", 8, &out, &len),
                   &out, &len);

    /* A byte after the frame, or a second frame. */
    char *two = malloc(2 * flen);
    memcpy(two, f, flen);
    memcpy(two + flen, f, flen);
    assert_corrupt(decode_frame(typed, RK__VF_COMPRESSED, two, flen + 1, &out, &len), &out, &len);
    assert_corrupt(decode_frame(typed, RK__VF_COMPRESSED, two, 2 * flen, &out, &len), &out, &len);
    free(two);

    /* The untouched frame still reads: the checks above were the cause. */
    assert_int_equal(decode_frame(typed, RK__VF_COMPRESSED, f, flen, &out, &len), RK_OK);
    assert_int_equal(len, 3000);
    rk__free(out);
    free(f);
    free(text);
}

static void test_truncated_frames(void **state)
{
    (void)state;
    char *text = json_text(5000);
    size_t flen;
    char *f = frame_of(text, 5000, &flen);
    for (size_t cut = 0; cut < flen; cut++) {
        char *out = (char *)"untouched";
        size_t len = 9;
        assert_corrupt(rk__decompress(NULL, f, cut, 16 * MIB, &out, &len), &out, &len);
    }
    free(f);
    free(text);
}

/* The content checksum of "abcd" (the low 32 bits of its XXH64), taken
 * from the end of a frame zstd made: it does not depend on how the blocks
 * were encoded, so a hand-made frame of "abcd" can carry it too. */
static void abcd_checksum(unsigned char sum[4])
{
    unsigned char z[64];
    size_t zn = 0;
    assert_int_equal(rk__compress(NULL, 0, "abcd", 4, z, sizeof z, &zn), RK_OK);
    assert_true(zn > 4);
    memcpy(sum, z + zn - 4, 4);
}

/* A hand-made frame: magic, a header declaring `declared` bytes (8-byte
 * size field, single segment, a content checksum), then one last raw
 * block holding body, then the checksum of "abcd". */
static size_t declaring_frame(unsigned char *f, uint64_t declared, const char *body, size_t bodylen)
{
    size_t n = 0;
    const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    memcpy(f, magic, 4);
    n = 4;
    f[n++] = 0xE4; /* content size: 8 bytes; single segment; checksum */
    for (int i = 0; i < 8; i++) f[n++] = (unsigned char)(declared >> (8 * i));
    uint32_t bh = 1u | (0u << 1) | ((uint32_t)bodylen << 3); /* last, raw, size */
    f[n++] = (unsigned char)bh;
    f[n++] = (unsigned char)(bh >> 8);
    f[n++] = (unsigned char)(bh >> 16);
    memcpy(f + n, body, bodylen);
    n += bodylen;
    abcd_checksum(f + n);
    return n + 4;
}

static void test_frame_declaring_huge_size(void **state)
{
    (void)state;
    unsigned char f[64];
    char *out;
    size_t len;

    /* The frame is a valid zstd frame for 4 bytes "abcd"... */
    size_t n = declaring_frame(f, 4, "abcd", 4);
    assert_int_equal(rk__decompress(NULL, f, n, 100, &out, &len), RK_OK);
    assert_int_equal(len, 4);
    assert_string_equal(out, "abcd");
    rk__free(out);

    /* The same frame without its checksum is not one of ours. */
    f[4] = 0xE0;
    assert_corrupt(rk__decompress(NULL, f, n - 4, 100, &out, &len), &out, &len);
    assert_non_null(strstr(rk_last_error(), "checksum"));

    /* ... and declaring 1 TiB, or one byte over the bound, it is refused
     * before anything of that size is allocated. */
    atomic_store(&largest, 0);
    n = declaring_frame(f, (uint64_t)1 << 40, "abcd", 4);
    out = (char *)"untouched";
    assert_int_equal(rk__decompress(NULL, f, n, 16 * MIB, &out, &len), RK_ERR_TOO_LARGE);
    assert_null(out);
    assert_non_null(strstr(rk_last_error(), "maximum"));
    n = declaring_frame(f, 16 * MIB + 1, "abcd", 4);
    assert_int_equal(rk__decompress(NULL, f, n, 16 * MIB, &out, &len), RK_ERR_TOO_LARGE);
    assert_true(atomic_load(&largest) < MIB);

    /* Declaring more than it holds, or less: corrupt. */
    n = declaring_frame(f, 1000, "abcd", 4);
    assert_corrupt(rk__decompress(NULL, f, n, 16 * MIB, &out, &len), &out, &len);
    n = declaring_frame(f, 2, "abcd", 4);
    assert_corrupt(rk__decompress(NULL, f, n, 16 * MIB, &out, &len), &out, &len);

    /* A frame that does not declare its size at all (no size field, a
     * window descriptor instead). */
    const unsigned char nosize[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x21, 0x00, 0x00, 'a', 'b', 'c', 'd'};
    assert_corrupt(rk__decompress(NULL, nosize, sizeof nosize, 16 * MIB, &out, &len), &out, &len);
    assert_non_null(strstr(rk_last_error(), "size"));
}

static void test_decompression_bomb(void **state)
{
    (void)state;
    const size_t huge = 100 * MIB;
    char *zeros = calloc(1, huge);
    assert_non_null(zeros);
    size_t cap = MIB, flen = 0;
    char *f = malloc(cap);
    assert_int_equal(rk__compress(NULL, 0, zeros, huge, f, cap, &flen), RK_OK);
    free(zeros);
    assert_true(flen > 0 && flen < 64 * 1024); /* ~100 MiB in a few KiB */

    /* Through the cache (max_value 16 MiB by default), and directly. */
    atomic_store(&largest, 0);
    char *out = (char *)"untouched";
    size_t len = 5;
    assert_int_equal(decode_frame(typed, RK__VF_COMPRESSED, f, flen, &out, &len), RK_ERR_TOO_LARGE);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_non_null(strstr(rk_last_error(), "maximum of 16777216"));
    assert_int_equal(rk__decompress(NULL, f, flen, 16 * MIB, &out, &len), RK_ERR_TOO_LARGE);
    assert_true(atomic_load(&largest) < MIB);

    /* Allowed a bound that large, it does decompress. */
    assert_int_equal(rk__decompress(NULL, f, flen, huge, &out, &len), RK_OK);
    assert_int_equal(len, huge);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[huge - 1], 0);
    rk__free(out);
    free(f);
}

/* Every allocation of a compressing set and a decompressing get fails
 * once in turn, zstd's own included (they go through redkit's allocator):
 * each ends in RK_ERR_NOMEM or success, never a crash or a leak (ASan),
 * and the next call recovers. */
static void test_allocation_failures(void **state)
{
    (void)state;
    const size_t n = 64 * 1024;
    char *text = json_text(n);
    rk_cache *c;
    assert_int_equal(rk_cache_new(client, NULL, &c), RK_OK);
    long most = 0;
    bool complete = false;
    for (long at = 1; at <= 500 && !complete; at++) {
        rk__zpool_clear(&c->zpool); /* contexts are made (and fail) anew */
        atomic_store(&calls, 0);
        atomic_store(&fail_at, at);
        atomic_store(&failed, false);

        rk__encoded e;
        atomic_store(&armed, true);
        rk_status st = rk__cache_encode(c, RK__V_STRING, text, n, NULL, &e);
        atomic_store(&armed, false);
        if (st != RK_OK) {
            assert_int_equal(st, RK_ERR_NOMEM);
            assert_true(atomic_load(&failed));
            rk__cache_encoded_release(&e);
            continue;
        }
        assert_int_equal((unsigned char)e.data[1], RK__V_STRING | RK__VF_COMPRESSED);
        rk_reply *r = string_reply(e.data, e.len);
        rk__cache_encoded_release(&e);
        char *back = (char *)"untouched";
        size_t len = 9;
        atomic_store(&armed, true);
        st = rk__cache_decode(c, r, RK__ACCEPT(RK__V_STRING), RK__V_STRING, &back, &len, NULL);
        atomic_store(&armed, false);
        if (st != RK_OK) {
            assert_int_equal(st, RK_ERR_NOMEM);
            assert_true(atomic_load(&failed));
            assert_null(back);
            continue;
        }
        assert_int_equal(len, n);
        assert_memory_equal(back, text, n + 1);
        rk__free(back);
        complete = !atomic_load(&failed);
        most = atomic_load(&calls);
    }
    assert_true(complete);
    /* The value's buffer, and zstd's contexts and workspace, were all
     * asked of redkit's allocator. */
    print_message("allocations in one compressing round trip: %ld\n", most);
    assert_true(most >= 4);
    rk_cache_free(c);
    free(text);
}

/* ---- integration ---------------------------------------------------------- */

/* The byte after 0xFE of a stored value. */
static unsigned char stored_flags(const char *key)
{
    redisReply *r = rk_test_server_command(server, "GETRANGE %s 0 1", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 2);
    assert_int_equal((unsigned char)r->str[0], RK__VALUE_MAGIC);
    unsigned char flags = (unsigned char)r->str[1];
    freeReplyObject(r);
    return flags;
}

/* STRLEN through the library's own escape hatch. */
static long long client_strlen(const char *key)
{
    const char *argv[2] = {"STRLEN", key};
    return rk_test_client_integer(client, 2, argv, (size_t[2]){6, strlen(key)});
}

static void test_json_64k_in_redis(void **state)
{
    (void)state;
    const size_t n = 64 * 1024;
    char *text = json_text(n);
    rk_cache *plain;
    assert_int_equal(rk_cache_new(client, &(rk_cache_options){.ns = "plain", .raw = true}, &plain), RK_OK);

    uint64_t in0 = atomic_load(&typed->counters.bytes_in), stored0 = atomic_load(&typed->counters.bytes_stored);
    assert_int_equal(rk_cache_set_str(typed, "big", text, NULL), RK_OK);
    assert_int_equal(rk_cache_set_str(plain, "big", text, NULL), RK_OK);

    char *back = NULL;
    assert_int_equal(rk_cache_get_str(typed, "big", &back), RK_OK);
    assert_string_equal(back, text);
    rk__free(back);

    long long stored = client_strlen("cache:big");
    assert_true(stored > 0 && stored < (long long)n / 2);
    assert_int_equal(client_strlen("plain:big"), n);
    assert_int_equal(stored_flags("cache:big"), RK__V_STRING | RK__VF_COMPRESSED);
    long long mem_compressed = rk_test_server_integer(server, "MEMORY USAGE %s", "cache:big");
    long long mem_plain = rk_test_server_integer(server, "MEMORY USAGE %s", "plain:big");
    assert_true(mem_compressed < mem_plain / 2);

    /* The counters see the payload given and the bytes that went to Redis. */
    assert_int_equal(atomic_load(&typed->counters.bytes_in) - in0, n);
    assert_int_equal(atomic_load(&typed->counters.bytes_stored) - stored0, (uint64_t)stored);

    /* rk_cache_get reads it too (a string is bytes), and so does mget. */
    void *bytes = NULL;
    size_t len = 0;
    assert_int_equal(rk_cache_get(typed, "big", &bytes, &len), RK_OK);
    assert_int_equal(len, n);
    assert_memory_equal(bytes, text, n + 1);
    rk_free(bytes);
    const char *keys[2] = {"big", "absent"};
    rk_cache_result res[2];
    assert_int_equal(rk_cache_mget(typed, keys, 2, res), RK_OK);
    assert_int_equal(res[0].status, RK_OK);
    assert_int_equal(res[0].len, n);
    assert_memory_equal(res[0].value, text, n);
    assert_int_equal(res[1].status, RK_MISS);
    rk_cache_results_free(res, 2);

    /* Read as a number: text that does not parse is a type error. */
    int64_t i = 7;
    assert_int_equal(rk_cache_get_i64(typed, "big", &i), RK_ERR_TYPE);
    assert_int_equal(i, 7);

    rk_cache_free(plain);
    free(text);
}

static void test_sizes_round_trip_in_redis(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *text = json_text(sizes[i]);
        assert_int_equal(rk_cache_set(typed, "v", text, sizes[i], NULL), RK_OK);
        void *back = NULL;
        size_t len = 99;
        assert_int_equal(rk_cache_get(typed, "v", &back, &len), RK_OK);
        assert_int_equal(len, sizes[i]);
        assert_memory_equal(back, text, len + 1);
        rk_free(back);
        unsigned char flags = stored_flags("cache:v");
        if (sizes[i] < THRESHOLD) {
            /* Below the threshold: no 0x10 flag, stored as given. */
            assert_int_equal(flags, RK__V_BYTES);
            assert_int_equal(client_strlen("cache:v"), sizes[i] + 2);
        } else {
            assert_int_equal(flags, RK__V_BYTES | RK__VF_COMPRESSED);
            assert_true(client_strlen("cache:v") < (long long)sizes[i]);
        }
        free(text);
    }
}

static void test_raw_never_compresses_nor_decodes(void **state)
{
    (void)state;
    const size_t n = 64 * 1024;
    char *text = json_text(n);

    /* A raw set stores the bytes as given. */
    assert_int_equal(rk_cache_set_str(raw, "r", text, NULL), RK_OK);
    assert_int_equal(client_strlen("cache:r"), n);
    redisReply *r = rk_test_server_command(server, "GETRANGE %s 0 0", "cache:r");
    assert_non_null(r);
    assert_string_equal(r->str, "{");
    freeReplyObject(r);

    /* A raw read of a compressed value returns the stored bytes. */
    assert_int_equal(rk_cache_set_str(typed, "t", text, NULL), RK_OK);
    long long stored = client_strlen("cache:t");
    assert_true(stored < (long long)n);
    void *bytes = NULL;
    size_t len = 0;
    assert_int_equal(rk_cache_get(raw, "t", &bytes, &len), RK_OK);
    assert_int_equal(len, (size_t)stored);
    assert_int_equal(((unsigned char *)bytes)[0], RK__VALUE_MAGIC);
    assert_int_equal(((unsigned char *)bytes)[1], RK__V_STRING | RK__VF_COMPRESSED);
    r = rk_test_server_command(server, "GET %s", "cache:t");
    assert_non_null(r);
    assert_int_equal(r->len, len);
    assert_memory_equal(r->str, bytes, len);
    freeReplyObject(r);
    rk_free(bytes);
    free(text);
}

static void test_stored_garbage_is_an_error(void **state)
{
    (void)state;
    /* Another client writes a value that claims to be compressed. */
    redisReply *r = rk_test_server_command(server, "SET %s %b", "cache:g", "\xFE\x12not zstd at all", (size_t)17);
    assert_non_null(r);
    freeReplyObject(r);
    char *s = (char *)"untouched";
    assert_int_equal(rk_cache_get_str(typed, "g", &s), RK_ERR_TYPE);
    assert_null(s);
    assert_non_null(strstr(rk_last_error(), "corrupt"));
    /* The handle still works. */
    assert_int_equal(rk_cache_set_str(typed, "g", "fine", NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(typed, "g", &s), RK_OK);
    assert_string_equal(s, "fine");
    rk_free(s);
}

static int group_setup(void **state)
{
    if (rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client, .cache = &typed}))
        return -1;
    return rk_cache_new(client, &(rk_cache_options){.raw = true}, &raw) == RK_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    rk_cache_free(raw);
    return rk_test_group_teardown(state);
}

int main(void)
{
    /* Before any other redkit call, as rk_set_allocator() requires. */
    static const rk_allocator counting = {count_malloc, count_calloc, count_realloc, count_free, NULL};
    if (rk_set_allocator(&counting) != RK_OK) return 1;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_round_trip),
        cmocka_unit_test(test_pool_shared_by_threads),
        cmocka_unit_test(test_encode_threshold),
        cmocka_unit_test(test_encode_with_meta),
        cmocka_unit_test(test_incompressible_stored_plain),
        cmocka_unit_test(test_encode_off_and_raw),
        cmocka_unit_test(test_level_option),
        cmocka_unit_test(test_corrupt_frames),
        cmocka_unit_test(test_truncated_frames),
        cmocka_unit_test(test_frame_declaring_huge_size),
        cmocka_unit_test(test_decompression_bomb),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test_setup(test_json_64k_in_redis, rk_test_group_flush),
        cmocka_unit_test_setup(test_sizes_round_trip_in_redis, rk_test_group_flush),
        cmocka_unit_test_setup(test_raw_never_compresses_nor_decodes, rk_test_group_flush),
        cmocka_unit_test_setup(test_stored_garbage_is_an_error, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
