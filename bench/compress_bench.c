/*
 * compress_bench.c — zstd against LZ4 on the values a cache actually
 * holds: JSON API responses.
 *
 *     ./compress_bench [MIB]
 *
 * It decides which library compresses large cache values (docs/cache.md,
 * "Compression", shows the figures and the choice). Nothing here talks to
 * Redis: compression is pure CPU work, so it is measured alone, and the
 * program ignores REDIS_URL (so `make bench` can run it like the others).
 *
 * The values are generated, deterministically, as a JSON API would answer:
 * pages of users, products and orders, with the same field names in every
 * record, ids, prices, timestamps, nested objects and arrays, and some
 * free text drawn from a word list, each page cut to 1, 4, 16, 64 and
 * 256 KiB. Random hex ids and numbers keep them from being unrealistically
 * repetitive.
 *
 * Every codec runs on every value through the API the library would use,
 * with its contexts reused from call to call. Two extra lines: "zstd-1
 * new" shows what creating the contexts on each call costs, as the
 * one-shot ZSTD_compress()/ZSTD_decompress() do; "zstd-1 chk" is exactly
 * what redkit stores, a frame with a content checksum. Each value is compressed and
 * decompressed repeatedly, about MIB MiB of input per measurement
 * (argv[1] or $BENCH_MIB, default 8), in 3 rounds taking turns between
 * codecs; the fastest round is kept, since noise only ever adds time.
 * Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not the wall
 * clock: the work is pure CPU, and on a shared machine (2 cores, other
 * builds running) wall time would mostly measure the other processes.
 * Every round trip is checked byte for byte, outside the timed loops.
 *
 * It prints figures and never judges them: the exit status only says
 * whether the run could be done.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lz4.h>
#include <lz4hc.h>
#include <zstd.h>

/* CPU time of the calling thread, in ns. */
static int64_t cpu_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define ROUNDS 3
#define MIN_REPS 3
#define MAX_REPS 20000 /* bounds every timed loop, whatever MIB says */
#define DEFAULT_MIB 8

/* ---- the values ------------------------------------------------------------ */

enum { KIND_USERS, KIND_PRODUCTS, KIND_ORDERS, N_KINDS };
static const char *const kind_names[N_KINDS] = { "users", "products", "orders" };
static const size_t sizes_kib[] = { 1, 4, 16, 64, 256 };
#define N_SIZES (sizeof sizes_kib / sizeof sizes_kib[0])

typedef struct value {
    char *data;
    size_t len;
} value;

/* splitmix64: a tiny deterministic generator, so every run (and every
 * machine) measures the same bytes. */
static uint64_t rng_state = 0x5eed5eed5eedULL;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned pick(unsigned n) { return (unsigned)(rng() % n); }

static const char *const first_names[] = {
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Dennis",
    "Margaret", "Linus", "Radia", "John", "Hedy", "Tim", "Sophie", "Niklaus", "Leslie",
};
static const char *const last_names[] = {
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
    "Ritchie", "Hamilton", "Torvalds", "Perlman", "McCarthy", "Lamarr", "Berners-Lee",
    "Wilson", "Wirth", "Lamport",
};
static const char *const cities[] = {
    "Lyon", "Leeds", "Porto", "Gdansk", "Austin", "Osaka", "Bergen", "Turin", "Ghent",
    "Tartu", "Cork", "Graz",
};
static const char *const countries[] = { "FR", "GB", "PT", "PL", "US", "JP", "NO", "IT",
                                         "BE", "EE", "IE", "AT" };
static const char *const roles[] = { "admin", "editor", "viewer", "billing", "support" };
static const char *const words[] = {
    "durable", "stainless", "steel", "bottle", "insulated", "lightweight", "compact",
    "wireless", "charger", "cotton", "organic", "premium", "classic", "travel", "kitchen",
    "outdoor", "ceramic", "set", "of", "with", "and", "for", "the", "everyday", "use",
    "black", "blue", "green", "large", "small", "pack", "edition", "recycled", "bamboo",
};
static const char *const statuses[] = { "pending", "paid", "shipped", "delivered",
                                        "cancelled", "refunded" };
static const char *const currencies[] = { "EUR", "USD", "GBP" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define ANY(a) ((a)[pick((unsigned)COUNT(a))])

/* A growing text buffer with room for one more record than the page
 * needs. */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len) {
        fprintf(stderr, "compress_bench: record buffer too small\n");
        exit(2);
    }
    t->len += (size_t)n;
}

static void put_hex(text *t, int digits)
{
    for (int i = 0; i < digits; i++)
        put(t, "%c", "0123456789abcdef"[pick(16)]);
}

static void put_date(text *t)
{
    put(t, "\"2024-%02u-%02uT%02u:%02u:%02uZ\"", 1 + pick(12), 1 + pick(28), pick(24),
        pick(60), pick(60));
}

static void put_words(text *t, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        put(t, "%s%s", i ? " " : "", ANY(words));
}

static void user_record(text *t, unsigned id)
{
    const char *first = ANY(first_names), *last = ANY(last_names);
    unsigned nroles = 1 + pick(2);

    put(t, "{\"id\":%u,\"uuid\":\"", id);
    put_hex(t, 8);
    put(t, "-");
    put_hex(t, 4);
    put(t, "\",\"name\":\"%s %s\",\"email\":\"%c%c.%s%u@example.com\",\"created_at\":", first,
        last, first[0] | 0x20, first[1], last, pick(100));
    put_date(t);
    put(t, ",\"active\":%s,\"roles\":[", pick(5) ? "true" : "false");
    for (unsigned i = 0; i < nroles; i++)
        put(t, "%s\"%s\"", i ? "," : "", ANY(roles));
    unsigned city = pick((unsigned)COUNT(cities));
    put(t, "],\"address\":{\"street\":\"%u %s Street\",\"city\":\"%s\",\"zip\":\"%05u\","
           "\"country\":\"%s\"},\"score\":%u.%02u,\"logins\":%u}",
        1 + pick(200), ANY(last_names), cities[city], pick(100000), countries[city], pick(100),
        pick(100), pick(5000));
}

static void product_record(text *t, unsigned id)
{
    put(t, "{\"sku\":\"SKU-%06u\",\"title\":\"", id * 7 + pick(7));
    put_words(t, 3 + pick(4));
    put(t, "\",\"price\":{\"amount\":%u,\"currency\":\"%s\"},\"stock\":%u,\"rating\":%u.%u,"
           "\"reviews\":%u,\"tags\":[\"%s\",\"%s\"],\"description\":\"",
        199 + pick(20000), ANY(currencies), pick(500), 1 + pick(4), pick(10), pick(3000),
        ANY(words), ANY(words));
    put_words(t, 12 + pick(20));
    put(t, "\",\"updated_at\":");
    put_date(t);
    put(t, ",\"dimensions\":{\"w\":%u,\"h\":%u,\"d\":%u,\"unit\":\"mm\"}}", 10 + pick(500),
        10 + pick(500), 10 + pick(500));
}

static void order_record(text *t, unsigned id)
{
    unsigned nitems = 1 + pick(4), total = 0;

    put(t, "{\"order_id\":\"ord_");
    put_hex(t, 16);
    put(t, "\",\"number\":%u,\"user_id\":%u,\"status\":\"%s\",\"placed_at\":", 100000 + id,
        1000 + pick(90000), ANY(statuses));
    put_date(t);
    put(t, ",\"items\":[");
    for (unsigned i = 0; i < nitems; i++) {
        unsigned qty = 1 + pick(3), price = 199 + pick(9000);

        total += qty * price;
        put(t, "%s{\"sku\":\"SKU-%06u\",\"qty\":%u,\"unit_price\":%u}", i ? "," : "",
            pick(700000), qty, price);
    }
    unsigned city = pick((unsigned)COUNT(cities));
    put(t, "],\"total\":{\"amount\":%u,\"currency\":\"%s\"},\"shipping\":{\"method\":\"%s\","
           "\"city\":\"%s\",\"country\":\"%s\",\"tracking\":\"",
        total, ANY(currencies), pick(2) ? "standard" : "express", cities[city],
        countries[city]);
    put_hex(t, 12);
    put(t, "\"}}");
}

/* One page of kind, as close to max bytes as whole records allow:
 * {"data":[r,r,...],"page":N,"per_page":N,"total":N} */
static value make_page(int kind, size_t max)
{
    static char record[4096];
    char tail[96];
    text page = { malloc(max + 1), 0, max + 1 };
    unsigned n = 0;

    if (page.p == NULL) {
        fprintf(stderr, "compress_bench: out of memory\n");
        exit(2);
    }
    put(&page, "{\"data\":[");
    for (;; n++) { /* ends: every record is non-empty and max is finite */
        text r = { record, 0, sizeof record };

        if (kind == KIND_USERS)
            user_record(&r, 1000 + n);
        else if (kind == KIND_PRODUCTS)
            product_record(&r, 1000 + n);
        else
            order_record(&r, 1000 + n);
        int tl = snprintf(tail, sizeof tail, "],\"page\":1,\"per_page\":%u,\"total\":%u}", n + 1,
                          (n + 1) * 37);
        if (page.len + (n ? 1 : 0) + r.len + (size_t)tl > max)
            break;
        if (n)
            put(&page, ",");
        memcpy(page.p + page.len, r.p, r.len);
        page.len += r.len;
        page.p[page.len] = '\0';
    }
    put(&page, "],\"page\":1,\"per_page\":%u,\"total\":%u}", n, n * 37);
    return (value){ page.p, page.len };
}

/* ---- the codecs -------------------------------------------------------------- */

/* Contexts and scratch space of all codecs, made once. */
static ZSTD_CCtx *zc;
static ZSTD_DCtx *zd;
static void *lz4_state, *lz4hc_state;

/* Each returns the compressed size, 0 when dst is too small or on error. */
typedef size_t (*compress_fn)(int level, const char *src, size_t n, char *dst, size_t cap);
/* Each returns the decompressed size, or SIZE_MAX on error. */
typedef size_t (*decompress_fn)(const char *src, size_t n, char *dst, size_t cap);

static size_t zstd_c(int level, const char *src, size_t n, char *dst, size_t cap)
{
    size_t r = ZSTD_compressCCtx(zc, dst, cap, src, n, level);
    return ZSTD_isError(r) ? 0 : r;
}

static size_t zstd_d(const char *src, size_t n, char *dst, size_t cap)
{
    size_t r = ZSTD_decompressDCtx(zd, dst, cap, src, n);
    return ZSTD_isError(r) ? SIZE_MAX : r;
}

/* What redkit stores: one frame with its size and a content checksum
 * (ZSTD_compress2 on a context whose level and checksum flag are set on
 * each call, as src/cache/compress.c does). Decompression checks the sum. */
static size_t zstd_chk_c(int level, const char *src, size_t n, char *dst, size_t cap)
{
    size_t r = ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, level);

    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_compress2(zc, dst, cap, src, n);
    ZSTD_CCtx_reset(zc, ZSTD_reset_parameters); /* the other codecs share zc */
    return ZSTD_isError(r) ? 0 : r;
}

/* The one-shot API: a new context allocated (and freed) on every call. */
static size_t zstd_new_c(int level, const char *src, size_t n, char *dst, size_t cap)
{
    size_t r = ZSTD_compress(dst, cap, src, n, level);
    return ZSTD_isError(r) ? 0 : r;
}

static size_t zstd_new_d(const char *src, size_t n, char *dst, size_t cap)
{
    size_t r = ZSTD_decompress(dst, cap, src, n);
    return ZSTD_isError(r) ? SIZE_MAX : r;
}

/* LZ4's block format, the lean one: no header, no size. A cache must
 * store the size beside the block to decompress it, so each LZ4 codec
 * below is charged 4 bytes for it (codec.extra), as zstd's frame header,
 * which carries the size, is counted in zstd's output. */
static size_t lz4_c(int level, const char *src, size_t n, char *dst, size_t cap)
{
    (void)level;
    int r = LZ4_compress_fast_extState(lz4_state, src, dst, (int)n, (int)cap, 1);
    return r > 0 ? (size_t)r : 0;
}

static size_t lz4hc_c(int level, const char *src, size_t n, char *dst, size_t cap)
{
    int r = LZ4_compress_HC_extStateHC(lz4hc_state, src, dst, (int)n, (int)cap, level);
    return r > 0 ? (size_t)r : 0;
}

static size_t lz4_d(const char *src, size_t n, char *dst, size_t cap)
{
    int r = LZ4_decompress_safe(src, dst, (int)n, (int)cap);
    return r >= 0 ? (size_t)r : SIZE_MAX;
}

typedef struct codec {
    const char *name;
    int level;
    compress_fn c;
    decompress_fn d;
    size_t extra; /* bytes the cache would add to each compressed value */
} codec;

static const codec codecs[] = {
    { "zstd-1", 1, zstd_c, zstd_d, 0 },
    { "zstd-3", 3, zstd_c, zstd_d, 0 },
    { "zstd--1", -1, zstd_c, zstd_d, 0 }, /* zstd's first "fast" level */
    { "lz4", 1, lz4_c, lz4_d, 4 },
    { "lz4hc-9", 9, lz4hc_c, lz4_d, 4 },
    { "zstd-1 new", 1, zstd_new_c, zstd_new_d, 0 },
    { "zstd-1 chk", 1, zstd_chk_c, zstd_d, 0 }, /* redkit's frames */
};
#define N_CODECS (sizeof codecs / sizeof codecs[0])

/* ---- measuring ----------------------------------------------------------------- */

typedef struct cell {
    size_t in, out;           /* bytes of the value, compressed */
    int64_t c_ns, d_ns;       /* best round: time per value */
} cell;

static cell cells[N_CODECS][N_KINDS][N_SIZES];

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "compress_bench: %s\n", what);
    exit(2);
}

/* Time reps compressions (or decompressions) of one value; ns per call. */
static int64_t time_compress(const codec *k, const value *v, char *dst, size_t cap, size_t reps)
{
    int64_t t0 = cpu_now_ns();

    for (size_t i = 0; i < reps; i++)
        if (k->c(k->level, v->data, v->len, dst, cap) == 0)
            die("compression failed");
    return (cpu_now_ns() - t0) / (int64_t)reps;
}

static int64_t time_decompress(const codec *k, const char *src, size_t n, char *dst,
                               size_t expect, size_t reps)
{
    int64_t t0 = cpu_now_ns();

    for (size_t i = 0; i < reps; i++)
        if (k->d(src, n, dst, expect) != expect)
            die("decompression failed");
    return (cpu_now_ns() - t0) / (int64_t)reps;
}

static size_t parse_mib(const char *s)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || v == 0 || v > 1024)
        die("MIB: expected a number of MiB per measurement, 1..1024");
    return (size_t)v;
}

static void print_row(const char *name, const char *what, size_t in, size_t out, double c_ns,
                      double d_ns, double values)
{
    /* in and out are totals over `values` values; c_ns and d_ns too. */
    double kib = (double)in / 1024.0;

    printf("%-11s %-8s %7.2f %9.1f %8.0f %9.1f %8.0f %8.0f %8.0f\n", name, what,
           (double)in / (double)out, c_ns / values / 1000.0, (double)in / c_ns * 1000.0,
           d_ns / values / 1000.0, (double)in / d_ns * 1000.0, c_ns / kib, d_ns / kib);
}

int main(int argc, char **argv)
{
    const char *mib_text = argc > 1 ? argv[1] : getenv("BENCH_MIB");
    size_t budget = (mib_text && *mib_text ? parse_mib(mib_text) : DEFAULT_MIB) << 20;
    static value values[N_KINDS][N_SIZES];
    size_t max_len = 0;

    for (int kind = 0; kind < N_KINDS; kind++)
        for (size_t s = 0; s < N_SIZES; s++) {
            values[kind][s] = make_page(kind, sizes_kib[s] << 10);
            if (values[kind][s].len > max_len)
                max_len = values[kind][s].len;
        }

    size_t cap = ZSTD_compressBound(max_len);
    if ((size_t)LZ4_compressBound((int)max_len) > cap)
        cap = (size_t)LZ4_compressBound((int)max_len);
    char *packed = malloc(cap), *unpacked = malloc(max_len + 1);
    zc = ZSTD_createCCtx();
    zd = ZSTD_createDCtx();
    lz4_state = malloc((size_t)LZ4_sizeofState());
    lz4hc_state = malloc((size_t)LZ4_sizeofStateHC());
    if (!packed || !unpacked || !zc || !zd || !lz4_state || !lz4hc_state)
        die("out of memory");

    printf("redkit compress bench: zstd %s, lz4 %s; JSON API pages (users, products, "
           "orders)\nof 1..256 KiB, ~%zu MiB of input per measurement, best of %d rounds, thread CPU time.\n\n",
           ZSTD_versionString(), LZ4_versionString(), budget >> 20, ROUNDS);
    fflush(stdout);

    for (int round = 0; round < ROUNDS; round++)
        for (size_t s = 0; s < N_SIZES; s++)
            for (int kind = 0; kind < N_KINDS; kind++)
                for (size_t j = 0; j < N_CODECS; j++) {
                    /* Codecs take turns, the first rotating with the round. */
                    size_t ci = (j + (size_t)round) % N_CODECS;
                    const codec *k = &codecs[ci];
                    const value *v = &values[kind][s];
                    cell *cl = &cells[ci][kind][s];
                    size_t reps = budget / v->len;

                    reps = reps < MIN_REPS ? MIN_REPS : reps > MAX_REPS ? MAX_REPS : reps;
                    size_t clen = k->c(k->level, v->data, v->len, packed, cap);
                    if (clen == 0)
                        die("compression failed");
                    if (k->d(packed, clen, unpacked, v->len) != v->len ||
                        memcmp(unpacked, v->data, v->len) != 0)
                        die("round trip changed the value");
                    int64_t c_ns = time_compress(k, v, packed, cap, reps);
                    int64_t d_ns = time_decompress(k, packed, clen, unpacked, v->len, reps);
                    cl->in = v->len;
                    cl->out = clen + k->extra;
                    if (round == 0 || c_ns < cl->c_ns)
                        cl->c_ns = c_ns;
                    if (round == 0 || d_ns < cl->d_ns)
                        cl->d_ns = d_ns;
                }

    printf("ratio = input/compressed; us = microseconds per value; MB/s of input;\n"
           "ns/KiB = cost per KiB of input. Each size row sums the 3 kinds of page.\n\n");
    printf("%-11s %-8s %7s %9s %8s %9s %8s %8s %8s\n", "codec", "size", "ratio", "comp_us",
           "comp_MBs", "decomp_us", "dec_MBs", "c_ns/KiB", "d_ns/KiB");
    for (size_t ci = 0; ci < N_CODECS; ci++) {
        size_t all_in = 0, all_out = 0;
        double all_c = 0, all_d = 0;

        for (size_t s = 0; s < N_SIZES; s++) {
            size_t in = 0, out = 0;
            double c = 0, d = 0;
            char what[16];

            for (int kind = 0; kind < N_KINDS; kind++) {
                const cell *cl = &cells[ci][kind][s];
                in += cl->in;
                out += cl->out;
                c += (double)cl->c_ns;
                d += (double)cl->d_ns;
            }
            snprintf(what, sizeof what, "%zuK", sizes_kib[s]);
            print_row(codecs[ci].name, what, in, out, c, d, N_KINDS);
            all_in += in;
            all_out += out;
            all_c += c;
            all_d += d;
        }
        print_row(codecs[ci].name, "all", all_in, all_out, all_c, all_d,
                  (double)(N_KINDS * N_SIZES));
        printf("\n");
    }

    printf("ratio by kind of page, 64 KiB:");
    for (int kind = 0; kind < N_KINDS; kind++)
        printf(" %s", kind_names[kind]);
    printf("\n");
    for (size_t ci = 0; ci < N_CODECS; ci++) {
        printf("  %-11s", codecs[ci].name);
        for (int kind = 0; kind < N_KINDS; kind++)
            printf(" %6.2f", (double)cells[ci][kind][3].in / (double)cells[ci][kind][3].out);
        printf("\n");
    }

    for (int kind = 0; kind < N_KINDS; kind++)
        for (size_t s = 0; s < N_SIZES; s++)
            free(values[kind][s].data);
    free(packed);
    free(unpacked);
    free(lz4_state);
    free(lz4hc_state);
    ZSTD_freeCCtx(zc);
    ZSTD_freeDCtx(zd);
    return 0;
}
