/*
 * metrics_test.c — the metrics of include/redkit/metrics.h against a
 * private redis-server that requires a password.
 *
 * A known sequence of cache operations (sets, hits, misses, deletes, a type
 * error, bad input, a degraded read and a failed write with the server
 * killed) must show in every counter of the snapshot, exactly; the
 * Prometheus text must be well-formed line by line (a checker for the
 * exposition format's lines is below), its histogram cumulative and closed
 * by le="+Inf" equal to _count, its counters equal to the snapshot and to
 * the operations done, and it must hold no key, no password and no
 * address. rk_server_memory() must read sane figures from a real INFO and
 * warn once — and only when the server is set up badly for a cache (CONFIG
 * SET switches it). The INFO parser is also tested on fixed text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "cache.h"   /* src/: the handle's counters, to drive every field */
#include "metrics.h" /* src/: rk__info_parse */
#include "support/fixture.h"
#include "support/redis_server.h"

#define PASSWORD "pw-Zq7MARKER-secret"
#define KEY_MARKER "SECRETKEY"

static rk_test_server *server;

/* ---- An allocator that can fail on demand -------------------------------- */

/* Installed once before any redkit call (rk_set_allocator's rule); it only
 * fails while fail_at is set, counting allocations from when it was set. */
static long alloc_calls, fail_at;

static bool fail_now(void)
{
    return fail_at && ++alloc_calls == fail_at;
}
static void *t_malloc(size_t n, void *u) { (void)u; return fail_now() ? NULL : malloc(n); }
static void *t_calloc(size_t n, size_t s, void *u) { (void)u; return fail_now() ? NULL : calloc(n, s); }
static void *t_realloc(void *p, size_t n, void *u) { (void)u; return fail_now() ? NULL : realloc(p, n); }
static void t_free(void *p, void *u) { (void)u; free(p); }

/* ---- Log capture ---------------------------------------------------------- */

typedef struct logbook {
    int warnings;
    int memory_warnings;
    char text[4096]; /* every message, concatenated */
} logbook;

static void capture(rk_log_level level, const char *message, void *user)
{
    logbook *b = user;
    if (level == RK_LOG_WARN) b->warnings++;
    if (strstr(message, "maxmemory")) b->memory_warnings++;
    size_t used = strlen(b->text);
    snprintf(b->text + used, sizeof b->text - used, "%s\n", message);
}

/* ---- Fixture -------------------------------------------------------------- */

static int group_setup(void **state)
{
    static const char *const args[] = {"--requirepass", PASSWORD, NULL};
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .server_args = args,
                                                       .admin_password = PASSWORD});
}

/* A client with the password in its URL, fast reconnects (the server is
 * killed and restarted in one test) and, when book is given, logging. */
static rk_client *new_client(logbook *book)
{
    char url[256];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/0", PASSWORD, rk_test_server_port(server));
    rk_client_options o = {.url = url, .reconnect_base_ms = 1, .reconnect_max_ms = 2,
                           .log = book ? capture : NULL, .log_user = book};
    return rk_test_client_new(&o);
}

static rk_cache *new_cache(rk_client *client, const char *ns)
{
    return rk_test_cache_new(client, &(rk_cache_options){.ns = ns});
}

/* ---- A checker for the Prometheus text ------------------------------------ */

typedef struct exposition {
    regex_t sample, help, type;
} exposition;

static void exposition_init(exposition *x)
{
    assert_int_equal(regcomp(&x->sample,
                             "^redkit_[a-z_]+(\\{[a-z_]+=\"[^\"\\\\]*\"(,[a-z_]+=\"[^\"\\\\]*\")*\\})? "
                             "[0-9.e+-]+$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(regcomp(&x->help, "^# HELP redkit_[a-z_]+ [^\n]+$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regcomp(&x->type, "^# TYPE redkit_[a-z_]+ (counter|gauge|histogram)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
}

static void exposition_free(exposition *x)
{
    regfree(&x->sample);
    regfree(&x->help);
    regfree(&x->type);
}

/* The metric name of a sample line, without a histogram's suffix. */
static void family_of(const char *line, char *out, size_t cap)
{
    size_t n = strcspn(line, "{ ");
    if (n >= cap) n = cap - 1;
    memcpy(out, line, n);
    out[n] = '\0';
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t sl = strlen(suffixes[i]);
        if (n > sl && strcmp(out + n - sl, suffixes[i]) == 0 &&
            strstr(out, "_duration_seconds") == out + n - sl - strlen("_duration_seconds")) {
            out[n - sl] = '\0';
            break;
        }
    }
}

/* Every line: a # HELP, a # TYPE or a sample; each sample's family has had
 * its TYPE line; counters end in _total; no series appears twice; the
 * text ends with a newline. Returns the number of samples. */
static int check_exposition(const char *text, size_t len)
{
    exposition x;
    exposition_init(&x);
    assert_true(len > 0);
    assert_int_equal(strlen(text), len);
    assert_int_equal(text[len - 1], '\n');

    char typed[128][96];   /* families with a TYPE line, and their type */
    char types[128][16];
    int ntyped = 0, samples = 0;
    char (*seen)[256] = calloc(4096, sizeof *seen);
    assert_non_null(seen);

    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char line[512];
        size_t n = (size_t)(nl - p);
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;

        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(regexec(&x.help, line, 0, NULL, 0), 0);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            if (regexec(&x.type, line, 0, NULL, 0) != 0) fail_msg("bad TYPE line: %s", line);
            assert_true(ntyped < 128);
            assert_int_equal(sscanf(line, "# TYPE %95s %15s", typed[ntyped], types[ntyped]), 2);
            for (int i = 0; i < ntyped; i++) assert_string_not_equal(typed[i], typed[ntyped]);
            if (strcmp(types[ntyped], "counter") == 0) {
                size_t fl = strlen(typed[ntyped]);
                assert_true(fl > 6 && strcmp(typed[ntyped] + fl - 6, "_total") == 0);
            }
            ntyped++;
            continue;
        }
        if (regexec(&x.sample, line, 0, NULL, 0) != 0) fail_msg("bad sample line: '%s'", line);
        char fam[96];
        family_of(line, fam, sizeof fam);
        bool found = false;
        for (int i = 0; i < ntyped && !found; i++) found = strcmp(typed[i], fam) == 0;
        if (!found) fail_msg("sample before its TYPE line: %s", line);
        /* A series (name and labels) is unique. */
        size_t sl = strcspn(line, " ");
        assert_true(sl < 256 && samples < 4096);
        for (int i = 0; i < samples; i++)
            if (strlen(seen[i]) == sl && memcmp(seen[i], line, sl) == 0) fail_msg("duplicate series: %s", line);
        memcpy(seen[samples], line, sl);
        seen[samples][sl] = '\0';
        samples++;
    }
    free(seen);
    exposition_free(&x);
    return samples;
}

/* The client's Prometheus text, which must be well-formed
 * (check_exposition()). Free it with rk_free(). */
static char *scrape(rk_client *client)
{
    char *text;
    size_t len;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    check_exposition(text, len);
    return text;
}

/* The value of one series ("name" or "name{labels}"); fails if absent. */
static double series(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    fail_msg("series %s not in the text", name);
    return -1;
}

static bool has_series(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{')) return true;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return false;
}

static uint64_t cache_series(const char *text, const char *metric, const char *ns)
{
    char name[256];
    snprintf(name, sizeof name, "redkit_cache_%s{ns=\"%s\"}", metric, ns);
    return (uint64_t)series(text, name);
}

static uint64_t error_series(const char *text, const char *ns, const char *status)
{
    char name[256];
    snprintf(name, sizeof name, "redkit_cache_errors_total{ns=\"%s\",status=\"%s\"}", ns, status);
    return (uint64_t)series(text, name);
}

/* The histogram: le bounds strictly increasing, counts cumulative, ending
 * with +Inf equal to _count. Returns _count. */
static uint64_t check_histogram(const char *text, const char *name)
{
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s_bucket{le=\"", name);
    size_t pl = strlen(prefix);
    double last_le = -1;
    uint64_t last_count = 0, inf = 0;
    int buckets = 0;
    bool saw_inf = false;
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, pl) == 0) {
            assert_false(saw_inf); /* +Inf is the last bucket */
            const char *q = p + pl;
            const char *close = strchr(q, '"');
            uint64_t count = strtoull(strchr(q, ' ') + 1, NULL, 10);
            assert_true(count >= last_count);
            last_count = count;
            if (strncmp(q, "+Inf\"", 5) == 0) {
                saw_inf = true;
                inf = count;
            } else {
                double le = strtod(q, NULL);
                assert_ptr_equal(close, strchr(q, '"'));
                assert_true(le > last_le);
                last_le = le;
            }
            buckets++;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    assert_true(saw_inf);
    assert_true(buckets >= 10);
    char count_name[160];
    snprintf(count_name, sizeof count_name, "%s_count", name);
    assert_int_equal((uint64_t)series(text, count_name), inf);
    return inf;
}

/* The buckets against the latency snapshot taken with no request in
 * between: every bound above the maximum holds every request, and no
 * bound at or below the median's bucket holds half of them. */
static void check_histogram_against(const char *text, const rk_latency *lat)
{
    const char *prefix = "redkit_client_request_duration_seconds_bucket{le=\"";
    size_t pl = strlen(prefix);
    uint64_t half = (lat->count + 1) / 2;
    int above_max = 0, below_median = 0;
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, pl) == 0 && p[pl] != '+') {
            double le_us = strtod(p + pl, NULL) * 1e6 + 0.5;
            uint64_t count = strtoull(strchr(p + pl, ' ') + 1, NULL, 10);
            if ((uint64_t)le_us > lat->max_us) {
                assert_int_equal(count, lat->count);
                above_max++;
            }
            /* The median is reported as its bucket's midpoint, at most
             * 1/16 above the bucket's lower bound. */
            if ((uint64_t)le_us * 17 <= lat->p50_us * 16) {
                assert_true(count < half);
                below_median++;
            }
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    assert_true(above_max >= 1);
    if (lat->p50_us >= 16) assert_true(below_median >= 1);
}

/* ---- The INFO parser, on fixed text --------------------------------------- */

static const char info_text[] =
    "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\r\n"
    "# Clients\r\nconnected_clients:3\r\n\r\n"
    "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_rss:2097152\r\n"
    "used_memory_peak:3000000\r\nused_memory_peak_human:2.86M\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\n"
    "maxmemory_policy:noeviction\r\nmem_fragmentation_ratio:1.50\r\n\r\n"
    "# Stats\r\ntotal_commands_processed:1000\r\ninstantaneous_ops_per_sec:17\r\nexpired_keys:5\r\n"
    "evicted_keys:2\r\nkeyspace_hits:30\r\nkeyspace_misses:10\r\n\r\n"
    "# Keyspace\r\ndb0:keys=7,expires=2,avg_ttl=100\r\ndb3:keys=11,expires=4,avg_ttl=0\r\n"
    "db30:keys=99,expires=99,avg_ttl=0\r\n";

static void test_info_parse(void **state)
{
    (void)state;
    rk_memory_info m;
    rk__info_parse(info_text, sizeof info_text - 1, 3, &m);
    assert_string_equal(m.redis_version, "7.0.15");
    assert_int_equal(m.uptime_s, 42);
    assert_int_equal(m.connected_clients, 3);
    assert_int_equal(m.used_memory, 1048576);
    assert_int_equal(m.used_memory_rss, 2097152);
    assert_int_equal(m.used_memory_peak, 3000000);
    assert_int_equal(m.maxmemory, 0);
    assert_string_equal(m.maxmemory_policy, "noeviction");
    assert_true(m.mem_fragmentation_ratio > 1.49 && m.mem_fragmentation_ratio < 1.51);
    assert_int_equal(m.total_commands, 1000);
    assert_int_equal(m.ops_per_sec, 17);
    assert_int_equal(m.expired_keys, 5);
    assert_int_equal(m.evicted_keys, 2);
    assert_int_equal(m.keyspace_hits, 30);
    assert_int_equal(m.keyspace_misses, 10);
    assert_true(m.hit_ratio > 0.7499 && m.hit_ratio < 0.7501);
    assert_int_equal(m.db, 3);
    assert_int_equal(m.db_keys, 11); /* db3, not db0 nor db30 */
    assert_int_equal(m.db_expires, 4);
    assert_int_equal(m.warnings, RK_MEMORY_WARN_NO_MAXMEMORY | RK_MEMORY_WARN_NOEVICTION);

    rk__info_parse(info_text, sizeof info_text - 1, 5, &m); /* an empty db has no line */
    assert_int_equal(m.db_keys, 0);

    /* A server that hides maxmemory: no warning about it. Malformed and
     * overflowing numbers are skipped; a last line without a newline is
     * read; LF-only lines too. */
    static const char odd[] = "# Memory\nmaxmemory_policy:allkeys-lru\nused_memory:12x\n"
                              "evicted_keys:99999999999999999999999\nkeyspace_hits:0\nexpired_keys:9";
    rk__info_parse(odd, sizeof odd - 1, 0, &m);
    assert_int_equal(m.warnings, 0);
    assert_string_equal(m.maxmemory_policy, "allkeys-lru");
    assert_int_equal(m.used_memory, 0);
    assert_int_equal(m.evicted_keys, 0);
    assert_int_equal(m.expired_keys, 9);
    assert_true(m.hit_ratio == 0.0);

    /* Set and noeviction: only the policy is wrong. */
    static const char limited[] = "maxmemory:104857600\r\nmaxmemory_policy:noeviction\r\n";
    rk__info_parse(limited, sizeof limited - 1, 0, &m);
    assert_int_equal(m.maxmemory, 104857600);
    assert_int_equal(m.warnings, RK_MEMORY_WARN_NOEVICTION);

    rk__info_parse("", 0, 0, &m);
    assert_int_equal(m.warnings, 0);
}

static void test_status_labels_and_bad_arguments(void **state)
{
    (void)state;
    assert_string_equal(rk__metrics_status_label(RK_ERR_TIMEOUT), "timeout");
    assert_string_equal(rk__metrics_status_label(RK_ERR_TOO_LARGE), "too_large");
    assert_null(rk__metrics_status_label(RK_OK));
    assert_null(rk__metrics_status_label(RK_MISS));
    assert_null(rk__metrics_status_label(RK_DEGRADED));
    assert_null(rk__metrics_status_label(-1));
    assert_null(rk__metrics_status_label(31));

    rk_client *client = new_client(NULL);
    rk_cache *cache = new_cache(client, "args");
    rk_cache_metrics m;
    rk_latency lat;
    rk_memory_info mem;
    char *text = (char *)"untouched";
    size_t len = 99;
    assert_int_equal(rk_cache_metrics_get(NULL, &m), RK_ERR_INVALID);
    assert_int_equal(rk_cache_metrics_get(cache, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_client_latency_get(NULL, &lat), RK_ERR_INVALID);
    assert_int_equal(rk_client_latency_get(client, NULL), RK_ERR_INVALID);
    assert_int_equal(rk_metrics_prometheus(NULL, &text, &len), RK_ERR_INVALID);
    assert_null(text);
    assert_int_equal(len, 0);
    assert_int_equal(rk_metrics_prometheus(client, NULL, &len), RK_ERR_INVALID);
    assert_int_equal(rk_server_memory(NULL, &mem), RK_ERR_INVALID);
    assert_int_equal(rk_server_memory(client, NULL), RK_ERR_INVALID);
    /* len may be NULL. */
    assert_int_equal(rk_metrics_prometheus(client, &text, NULL), RK_OK);
    assert_non_null(text);
    rk_free(text);
    rk_cache_free(cache);
    rk_client_free(client);
}

/* ---- Counters against a known sequence ------------------------------------ */

#define N_SETS 5
#define M_HITS 3
#define K_MISSES 4

static void test_counters_match_operations(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *cache = new_cache(client, "seq");
    char key[64], value[64];
    uint64_t bytes_in = 0;
    long long bytes_stored = 0;

    for (int i = 0; i < N_SETS; i++) {
        snprintf(key, sizeof key, KEY_MARKER "-%d", i);
        snprintf(value, sizeof value, "value number %d, %.*s", i, i * 7, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_int_equal(rk_cache_set_str(cache, key, value, NULL), RK_OK);
        bytes_in += strlen(value);
    }
    /* What was stored, as the server counts it (the client has no prefix). */
    for (int i = 0; i < N_SETS; i++) {
        char full[96];
        snprintf(full, sizeof full, "seq:" KEY_MARKER "-%d", i);
        bytes_stored += rk_test_server_integer(server, "STRLEN %s", full);
    }
    for (int i = 0; i < M_HITS; i++) {
        char *got = NULL;
        snprintf(key, sizeof key, KEY_MARKER "-%d", i);
        assert_int_equal(rk_cache_get_str(cache, key, &got), RK_OK);
        rk_free(got);
    }
    for (int i = 0; i < K_MISSES; i++) {
        char *got = NULL;
        snprintf(key, sizeof key, KEY_MARKER "-absent-%d", i);
        assert_int_equal(rk_cache_get_str(cache, key, &got), RK_MISS);
    }
    /* Two deletes that remove, one that finds nothing (not a delete). */
    assert_int_equal(rk_cache_delete(cache, KEY_MARKER "-3"), RK_OK);
    assert_int_equal(rk_cache_delete(cache, KEY_MARKER "-4"), RK_OK);
    assert_int_equal(rk_cache_delete(cache, KEY_MARKER "-4"), RK_OK); /* absent: not counted */
    /* A type error (a string read as an int64) and bad input. */
    int64_t i64;
    assert_int_equal(rk_cache_get_i64(cache, KEY_MARKER "-0", &i64), RK_ERR_TYPE);
    assert_int_equal(rk_cache_set_str(cache, "", "v", NULL), RK_ERR_INVALID);

    /* The server dies: a read degrades, a write fails. */
    assert_true(rk_test_server_signal(server, SIGKILL));
    char *got = NULL;
    assert_int_equal(rk_cache_get_str(cache, KEY_MARKER "-0", &got), RK_DEGRADED);
    rk_status write_st = rk_cache_set_str(cache, KEY_MARKER "-9", "v", NULL);
    assert_true(write_st == RK_ERR_UNAVAILABLE || write_st == RK_ERR_TIMEOUT);
    assert_true(rk_test_server_restart(server, NULL));

    rk_cache_metrics m;
    assert_int_equal(rk_cache_metrics_get(cache, &m), RK_OK);
    assert_int_equal(m.sets, N_SETS);
    assert_int_equal(m.hits, M_HITS);
    assert_int_equal(m.misses, K_MISSES);
    assert_int_equal(m.degraded, 1);
    assert_int_equal(m.deletes, 2);
    assert_int_equal(m.bytes_in, bytes_in);
    assert_int_equal(m.bytes_stored, (uint64_t)bytes_stored);
    assert_true(m.bytes_stored > m.bytes_in); /* the type headers */
    assert_int_equal(m.stale, 0);
    assert_int_equal(m.computations, 0);
    assert_int_equal(m.compute_errors, 0);
    assert_int_equal(m.early_refreshes, 0);
    assert_int_equal(m.lock_waits, 0);
    for (int s = 0; s < RK_METRICS_STATUS_SLOTS; s++) {
        uint64_t want = s == RK_ERR_TYPE || s == RK_ERR_INVALID || s == (int)write_st ? 1 : 0;
        if (m.errors[s] != want) fail_msg("errors[%d] = %" PRIu64 ", want %" PRIu64, s, m.errors[s], want);
    }
    assert_int_equal(m.errors_total, 3);
    assert_true(m.hit_ratio > 3.0 / 7 - 1e-9 && m.hit_ratio < 3.0 / 7 + 1e-9);

    /* The same figures in the Prometheus text. */
    char *text = scrape(client);
    assert_int_equal(cache_series(text, "sets_total", "seq"), N_SETS);
    assert_int_equal(cache_series(text, "hits_total", "seq"), M_HITS);
    assert_int_equal(cache_series(text, "misses_total", "seq"), K_MISSES);
    assert_int_equal(cache_series(text, "degraded_total", "seq"), 1);
    assert_int_equal(cache_series(text, "deletes_total", "seq"), 2);
    assert_int_equal(cache_series(text, "set_bytes_total", "seq"), bytes_in);
    assert_int_equal(cache_series(text, "stored_bytes_total", "seq"), (uint64_t)bytes_stored);
    assert_int_equal(error_series(text, "seq", "type"), 1);
    assert_int_equal(error_series(text, "seq", "invalid"), 1);
    assert_int_equal(error_series(text, "seq", write_st == RK_ERR_TIMEOUT ? "timeout" : "unavailable"), 1);
    assert_int_equal(error_series(text, "seq", "server"), 0);
    assert_null(strstr(text, KEY_MARKER));
    assert_null(strstr(text, "MARKER"));
    rk_free(text);

    rk_cache_free(cache);
    rk_client_free(client);
}

/* Each internal counter, set to its own value, must land in its own field
 * and its own series: no two swapped, none missing. The fetch counters
 * are driven this way because get-or-compute is exercised by its own
 * tests. */
static void test_every_counter_reaches_snapshot_and_text(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *cache = new_cache(client, "all");
    RK__COUNT(cache, hits, 101);
    RK__COUNT(cache, misses, 102);
    RK__COUNT(cache, degraded, 103);
    RK__COUNT(cache, stale, 104);
    RK__COUNT(cache, sets, 105);
    RK__COUNT(cache, deletes, 106);
    RK__COUNT(cache, computations, 107);
    RK__COUNT(cache, compute_errors, 108);
    RK__COUNT(cache, early, 109);
    RK__COUNT(cache, lock_waits, 110);
    RK__COUNT(cache, bytes_in, 111);
    RK__COUNT(cache, bytes_stored, 112);
    for (int s = RK_ERR_INVALID; s <= RK_ERR_SYSTEM; s++)
        for (int n = 0; n < s; n++) rk__cache_count_error(cache, (rk_status)s);
    rk__cache_count_error(cache, RK_OK);       /* not errors */
    rk__cache_count_error(cache, RK_MISS);
    rk__cache_count_error(cache, RK_DEGRADED);
    rk__cache_count_error(cache, (rk_status)77); /* a future status: last slot */

    rk_cache_metrics m;
    assert_int_equal(rk_cache_metrics_get(cache, &m), RK_OK);
    assert_int_equal(m.hits, 101);
    assert_int_equal(m.misses, 102);
    assert_int_equal(m.degraded, 103);
    assert_int_equal(m.stale, 104);
    assert_int_equal(m.sets, 105);
    assert_int_equal(m.deletes, 106);
    assert_int_equal(m.computations, 107);
    assert_int_equal(m.compute_errors, 108);
    assert_int_equal(m.early_refreshes, 109);
    assert_int_equal(m.lock_waits, 110);
    assert_int_equal(m.bytes_in, 111);
    assert_int_equal(m.bytes_stored, 112);
    uint64_t total = 0;
    for (int s = RK_ERR_INVALID; s <= RK_ERR_SYSTEM; s++) {
        assert_int_equal(m.errors[s], (uint64_t)s);
        total += (uint64_t)s;
    }
    assert_int_equal(m.errors[RK_OK], 0);
    assert_int_equal(m.errors[RK_MISS], 0);
    assert_int_equal(m.errors[RK_DEGRADED], 0);
    assert_int_equal(m.errors[RK_METRICS_STATUS_SLOTS - 1], 1);
    assert_int_equal(m.errors_total, total + 1);
    assert_true(m.hit_ratio > 101.0 / 203 - 1e-9 && m.hit_ratio < 101.0 / 203 + 1e-9);

    char *text = scrape(client);
    assert_int_equal(cache_series(text, "hits_total", "all"), 101);
    assert_int_equal(cache_series(text, "misses_total", "all"), 102);
    assert_int_equal(cache_series(text, "degraded_total", "all"), 103);
    assert_int_equal(cache_series(text, "stale_total", "all"), 104);
    assert_int_equal(cache_series(text, "sets_total", "all"), 105);
    assert_int_equal(cache_series(text, "deletes_total", "all"), 106);
    assert_int_equal(cache_series(text, "computations_total", "all"), 107);
    assert_int_equal(cache_series(text, "compute_errors_total", "all"), 108);
    assert_int_equal(cache_series(text, "early_refreshes_total", "all"), 109);
    assert_int_equal(cache_series(text, "lock_waits_total", "all"), 110);
    assert_int_equal(cache_series(text, "set_bytes_total", "all"), 111);
    assert_int_equal(cache_series(text, "stored_bytes_total", "all"), 112);
    static const char *const labels[] = {"invalid", "unavailable", "timeout", "auth", "tls", "protocol",
                                         "server", "type", "too_large", "nomem", "system"};
    for (int s = RK_ERR_INVALID; s <= RK_ERR_SYSTEM; s++)
        assert_int_equal(error_series(text, "all", labels[s - RK_ERR_INVALID]), (uint64_t)s);
    assert_int_equal(error_series(text, "all", "other"), 1);
    rk_free(text);
    rk_cache_free(cache);
    rk_client_free(client);
}

/* ---- The Prometheus text --------------------------------------------------- */

static void test_prometheus_client_and_latency(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *cache = new_cache(client, "lat");

    /* Before any request: an empty histogram, still complete. */
    char *text = scrape(client);
    assert_int_equal(check_histogram(text, "redkit_client_request_duration_seconds"), 0);
    assert_true(series(text, "redkit_client_request_duration_seconds_sum") == 0.0);
    rk_free(text);

    /* 20 round trips: 10 sets, 5 hits, 5 misses; one bad key that never
     * reaches the network. */
    char key[32];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, KEY_MARKER "%d", i);
        assert_int_equal(rk_cache_set_i64(cache, key, i, NULL), RK_OK);
    }
    for (int i = 0; i < 10; i++) {
        int64_t v;
        snprintf(key, sizeof key, KEY_MARKER "%d", i * 2);
        assert_int_equal(rk_cache_get_i64(cache, key, &v), i < 5 ? RK_OK : RK_MISS);
    }
    assert_int_equal(rk_cache_get_i64(cache, NULL, &(int64_t){0}), RK_ERR_INVALID);

    rk_latency lat;
    assert_int_equal(rk_client_latency_get(client, &lat), RK_OK);
    assert_int_equal(lat.count, 20);
    assert_true(lat.max_us > 0 && lat.sum_us >= lat.max_us);
    assert_true(lat.p50_us <= lat.p90_us && lat.p90_us <= lat.p99_us && lat.p99_us <= lat.p999_us);
    assert_true(lat.p999_us <= lat.max_us);
    assert_true(lat.sum_us <= lat.max_us * lat.count);

    rk_client_stats stats;
    assert_int_equal(rk_client_stats_get(client, &stats), RK_OK);
    size_t len;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    int samples = check_exposition(text, len);
    assert_true(samples > 40);
    assert_int_equal(check_histogram(text, "redkit_client_request_duration_seconds"), 20);
    check_histogram_against(text, &lat);
    double sum_s = series(text, "redkit_client_request_duration_seconds_sum");
    assert_true(sum_s > 0 && sum_s * 1e6 >= (double)lat.sum_us && sum_s * 1e6 < (double)lat.sum_us + 1);
    assert_int_equal((uint64_t)series(text, "redkit_client_requests_total"), stats.requests);
    assert_int_equal(stats.requests, 20);
    assert_int_equal((uint64_t)series(text, "redkit_client_connects_total"), stats.connects);
    assert_int_equal((uint64_t)series(text, "redkit_client_timeouts_total"), 0);
    assert_int_equal((uint64_t)series(text, "redkit_client_circuit_state"), RK_CIRCUIT_CLOSED);
    assert_int_equal((uint64_t)series(text, "redkit_client_connections"), (uint64_t)stats.open_connections);
    assert_true(has_series(text, "redkit_build_info"));
    assert_non_null(strstr(text, "redkit_build_info{version=\"" RK_VERSION_STRING "\"} 1\n"));
    assert_int_equal(cache_series(text, "sets_total", "lat"), 10);
    assert_int_equal(cache_series(text, "hits_total", "lat"), 5);
    assert_int_equal(cache_series(text, "misses_total", "lat"), 5);
    assert_int_equal(error_series(text, "lat", "invalid"), 1);
    rk_free(text);
    rk_cache_free(cache);
    rk_client_free(client);
}

/* Handles of one namespace are one series; a freed handle leaves. */
static void test_namespaces_summed_and_removed(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *a1 = new_cache(client, "alpha");
    rk_cache *a2 = new_cache(client, "alpha");
    rk_cache *b = new_cache(client, "beta.v2-x_y");
    assert_int_equal(rk_cache_set_str(a1, "k1", "v", NULL), RK_OK);
    assert_int_equal(rk_cache_set_str(a2, "k2", "v", NULL), RK_OK);
    assert_int_equal(rk_cache_set_str(b, "k3", "v", NULL), RK_OK);

    char *text = scrape(client); /* would catch a duplicate alpha series */
    assert_int_equal(cache_series(text, "sets_total", "alpha"), 2);
    assert_int_equal(cache_series(text, "sets_total", "beta.v2-x_y"), 1);
    rk_free(text);

    rk_cache_free(a1);
    rk_cache_free(b);
    text = scrape(client);
    assert_int_equal(cache_series(text, "sets_total", "alpha"), 1);
    assert_null(strstr(text, "beta"));
    rk_free(text);

    /* No handle left: no cache families at all, and still valid. */
    rk_cache_free(a2);
    text = scrape(client);
    assert_null(strstr(text, "redkit_cache_"));
    rk_free(text);

    /* Many handles: the registry grows. */
    rk_cache *many[40];
    for (int i = 0; i < 40; i++) {
        char ns[16];
        snprintf(ns, sizeof ns, "ns%d", i);
        many[i] = new_cache(client, ns);
    }
    text = scrape(client);
    assert_int_equal(cache_series(text, "sets_total", "ns0"), 0);
    assert_int_equal(cache_series(text, "sets_total", "ns39"), 0);
    rk_free(text);
    for (int i = 0; i < 40; i++) rk_cache_free(many[i]);
    rk_client_free(client);
}

/* The lines of text that belong to module families (not redkit_client_ or
 * redkit_build_info), concatenated: what the modules wrote through the
 * registry. The caller frees it. */
static char *module_lines(const char *text)
{
    size_t cap = strlen(text) + 1, len = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line + 1) : strlen(line);
        bool client_line = strstr(line, "redkit_client_") && strstr(line, "redkit_client_") < line + n;
        bool build_line = strstr(line, "redkit_build_info") && strstr(line, "redkit_build_info") < line + n;
        if (!client_line && !build_line) {
            memcpy(out + len, line, n);
            len += n;
        }
        line += n;
    }
    return out;
}

/* The cache's part of the Prometheus text, byte for byte, for a known
 * sequence over two namespaces (one with two handles): the golden copy of
 * what the text said before the module registry, which must not change. */
static const char golden_cache_text[] =
    "# HELP redkit_cache_hits_total Cache reads that found a value.\n"
    "# TYPE redkit_cache_hits_total counter\n"
    "redkit_cache_hits_total{ns=\"alpha\"} 1\n"
    "redkit_cache_hits_total{ns=\"beta\"} 1\n"
    "# HELP redkit_cache_misses_total Cache reads that found no value.\n"
    "# TYPE redkit_cache_misses_total counter\n"
    "redkit_cache_misses_total{ns=\"alpha\"} 1\n"
    "redkit_cache_misses_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_degraded_total Cache reads that could not ask Redis and answered as a miss.\n"
    "# TYPE redkit_cache_degraded_total counter\n"
    "redkit_cache_degraded_total{ns=\"alpha\"} 0\n"
    "redkit_cache_degraded_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_stale_total Values served past their fresh lifetime.\n"
    "# TYPE redkit_cache_stale_total counter\n"
    "redkit_cache_stale_total{ns=\"alpha\"} 0\n"
    "redkit_cache_stale_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_sets_total Values written.\n"
    "# TYPE redkit_cache_sets_total counter\n"
    "redkit_cache_sets_total{ns=\"alpha\"} 1\n"
    "redkit_cache_sets_total{ns=\"beta\"} 1\n"
    "# HELP redkit_cache_deletes_total Keys removed by delete, clear and tag invalidation.\n"
    "# TYPE redkit_cache_deletes_total counter\n"
    "redkit_cache_deletes_total{ns=\"alpha\"} 0\n"
    "redkit_cache_deletes_total{ns=\"beta\"} 1\n"
    "# HELP redkit_cache_computations_total Compute callbacks run by fetch.\n"
    "# TYPE redkit_cache_computations_total counter\n"
    "redkit_cache_computations_total{ns=\"alpha\"} 0\n"
    "redkit_cache_computations_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_compute_errors_total Compute callbacks that failed.\n"
    "# TYPE redkit_cache_compute_errors_total counter\n"
    "redkit_cache_compute_errors_total{ns=\"alpha\"} 0\n"
    "redkit_cache_compute_errors_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_early_refreshes_total Early (XFetch) recomputations of fresh values.\n"
    "# TYPE redkit_cache_early_refreshes_total counter\n"
    "redkit_cache_early_refreshes_total{ns=\"alpha\"} 0\n"
    "redkit_cache_early_refreshes_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_lock_waits_total Fetches that waited for another caller's computation.\n"
    "# TYPE redkit_cache_lock_waits_total counter\n"
    "redkit_cache_lock_waits_total{ns=\"alpha\"} 0\n"
    "redkit_cache_lock_waits_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_set_bytes_total Bytes of the values given to set, before encoding.\n"
    "# TYPE redkit_cache_set_bytes_total counter\n"
    "redkit_cache_set_bytes_total{ns=\"alpha\"} 5\n"
    "redkit_cache_set_bytes_total{ns=\"beta\"} 2\n"
    "# HELP redkit_cache_stored_bytes_total Bytes written to Redis for those values, after header and compression.\n"
    "# TYPE redkit_cache_stored_bytes_total counter\n"
    "redkit_cache_stored_bytes_total{ns=\"alpha\"} 7\n"
    "redkit_cache_stored_bytes_total{ns=\"beta\"} 4\n"
    "# HELP redkit_cache_store_errors_total Computed values fetch returned but could not store in Redis.\n"
    "# TYPE redkit_cache_store_errors_total counter\n"
    "redkit_cache_store_errors_total{ns=\"alpha\"} 0\n"
    "redkit_cache_store_errors_total{ns=\"beta\"} 0\n"
    "# HELP redkit_cache_errors_total Cache calls that failed, by status.\n"
    "# TYPE redkit_cache_errors_total counter\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"invalid\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"unavailable\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"timeout\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"auth\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"tls\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"protocol\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"server\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"type\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"too_large\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"nomem\"} 0\n"
    "redkit_cache_errors_total{ns=\"alpha\",status=\"system\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"invalid\"} 1\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"unavailable\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"timeout\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"auth\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"tls\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"protocol\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"server\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"type\"} 1\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"too_large\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"nomem\"} 0\n"
    "redkit_cache_errors_total{ns=\"beta\",status=\"system\"} 0\n";

static void test_prometheus_cache_text_golden(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *a1 = new_cache(client, "alpha");
    rk_cache *a2 = new_cache(client, "alpha");
    rk_cache *b = new_cache(client, "beta");
    char *v = NULL;
    int64_t n = 0;
    assert_int_equal(rk_cache_set_str(a1, "k1", "value", NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(a2, "k1", &v), RK_OK);
    rk_free(v);
    assert_int_equal(rk_cache_get_str(a2, "nope", &v), RK_MISS);
    assert_int_equal(rk_cache_set_i64(b, "n", 42, NULL), RK_OK);
    assert_int_equal(rk_cache_get_str(b, "n", &v), RK_ERR_TYPE);
    assert_int_equal(rk_cache_get_i64(b, "n", &n), RK_OK);
    assert_int_equal(rk_cache_delete(b, "n"), RK_OK);
    assert_int_equal(rk_cache_set_str(b, "", "x", NULL), RK_ERR_INVALID);

    char *text = scrape(client);
    char *mine = module_lines(text);
    if (strcmp(mine, golden_cache_text) != 0) {
        fputs("module lines:\n", stdout);
        fputs(mine, stdout);
        fputs("end of module lines\n", stdout);
    }
    assert_string_equal(mine, golden_cache_text);
    free(mine);
    rk_free(text);
    rk_cache_free(a1);
    rk_cache_free(a2);
    rk_cache_free(b);
    rk_client_free(client);
}

/* Nothing secret in the text, even when everything failed: the password,
 * the keys, the URL and the address never appear. */
static void test_prometheus_holds_no_secret(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *cache = new_cache(client, "sec");
    assert_int_equal(rk_cache_set_str(cache, KEY_MARKER "-a", PASSWORD, NULL), RK_OK);
    char *got = NULL;
    assert_int_equal(rk_cache_get_str(cache, KEY_MARKER "-a", &got), RK_OK);
    rk_free(got);
    assert_int_equal(rk_cache_get_str(cache, KEY_MARKER "-b", &got), RK_MISS);
    char *text;
    size_t len;
    assert_int_equal(rk_metrics_prometheus(client, &text, &len), RK_OK);
    assert_null(strstr(text, PASSWORD));
    assert_null(strstr(text, "MARKER"));
    assert_null(strstr(text, "redis://"));
    assert_null(strstr(text, "127.0.0.1"));
    char port[16];
    snprintf(port, sizeof port, "%d", rk_test_server_port(server));
    assert_null(strstr(text, port));
    rk_free(text);
    rk_cache_free(cache);
    rk_client_free(client);
}

/* Every allocation of a scrape may fail: RK_ERR_NOMEM, no text, no leak
 * (ASan), and the next scrape works. */
static void test_prometheus_out_of_memory(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *cache = new_cache(client, "oom");
    assert_int_equal(rk_cache_set_str(cache, "k", "v", NULL), RK_OK);
    int failures = 0;
    for (long n = 1; n < 100; n++) {
        char *text = (char *)"untouched";
        size_t len = 7;
        alloc_calls = 0;
        fail_at = n;
        rk_status st = rk_metrics_prometheus(client, &text, &len);
        fail_at = 0;
        if (st == RK_OK) {
            check_exposition(text, len);
            rk_free(text);
            break;
        }
        assert_int_equal(st, RK_ERR_NOMEM);
        assert_null(text);
        assert_int_equal(len, 0);
        failures++;
    }
    assert_true(failures >= 3); /* the snapshot, the rows, the text */
    rk_cache_free(cache);
    rk_client_free(client);
}

/* Threads working a shared handle while the main thread scrapes and
 * creates and frees handles: the counters stay exact and the registry
 * safe (run under ASan/TSan to see the second). */
#define WORKERS 4
#define WORKER_OPS 300

typedef struct worker {
    rk_cache *cache;
    int id;
    int failures;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char key[32];
    for (int i = 0; i < WORKER_OPS; i++) {
        snprintf(key, sizeof key, "w%d-%d", w->id, i);
        if (rk_cache_set_str(w->cache, key, "v", NULL) != RK_OK) w->failures++;
        char *got = NULL;
        if (rk_cache_get_str(w->cache, key, &got) != RK_OK) w->failures++;
        rk_free(got);
    }
    return NULL;
}

static void test_concurrent_use_and_scrapes(void **state)
{
    (void)state;
    rk_client *client = new_client(NULL);
    rk_cache *cache = new_cache(client, "busy");
    pthread_t t[WORKERS];
    worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (worker){.cache = cache, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 50; i++) {
        rk_cache *extra = new_cache(client, i % 2 ? "extra" : "busy");
        rk_free(scrape(client));
        rk_latency lat;
        assert_int_equal(rk_client_latency_get(client, &lat), RK_OK);
        rk_cache_free(extra);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    rk_cache_metrics m;
    assert_int_equal(rk_cache_metrics_get(cache, &m), RK_OK);
    assert_int_equal(m.sets, WORKERS * WORKER_OPS);
    assert_int_equal(m.hits, WORKERS * WORKER_OPS);
    assert_int_equal(m.errors_total, 0);
    rk_latency lat;
    assert_int_equal(rk_client_latency_get(client, &lat), RK_OK);
    assert_int_equal(lat.count, 2 * WORKERS * WORKER_OPS);
    rk_cache_free(cache);
    rk_client_free(client);
}

/* ---- Server memory and the warning ------------------------------------------ */

static void test_server_memory_and_warning_once(void **state)
{
    (void)state;
    /* The fixture's server has the defaults: no maxmemory, noeviction. */
    rk_test_server_ok(server, "CONFIG SET maxmemory %s", "0");
    rk_test_server_ok(server, "CONFIG SET maxmemory-policy %s", "noeviction");
    logbook book = {0};
    rk_client *client = new_client(&book);
    rk_cache *cache = new_cache(client, "mem");
    char key[32];
    for (int i = 0; i < 12; i++) {
        snprintf(key, sizeof key, KEY_MARKER "%d", i);
        assert_int_equal(rk_cache_set_str(cache, key, "v", &(rk_cache_set_options){.ttl_s = i < 4 ? 600 : 0}), RK_OK);
    }
    char *got = NULL;
    assert_int_equal(rk_cache_get_str(cache, KEY_MARKER "0", &got), RK_OK);
    rk_free(got);
    assert_int_equal(rk_cache_get_str(cache, KEY_MARKER "-none", &got), RK_MISS);

    rk_memory_info m;
    assert_int_equal(rk_server_memory(client, &m), RK_OK);
    assert_true(m.used_memory > 100000); /* an empty Redis uses ~1 MB */
    assert_true(m.used_memory_rss > 0);
    assert_true(m.used_memory_peak > 0);
    assert_int_equal(m.maxmemory, 0);
    assert_string_equal(m.maxmemory_policy, "noeviction");
    assert_true(m.mem_fragmentation_ratio > 0);
    assert_true(m.keyspace_hits >= 1 && m.keyspace_misses >= 1);
    double ratio = (double)m.keyspace_hits / (double)(m.keyspace_hits + m.keyspace_misses);
    assert_true(m.hit_ratio > ratio - 1e-12 && m.hit_ratio < ratio + 1e-12);
    assert_int_equal(m.db, 0);
    assert_int_equal(m.db_keys, 12);
    assert_int_equal(m.db_expires, 12); /* every cache value has a TTL */
    assert_true(strlen(m.redis_version) >= 5 && strchr(m.redis_version, '.'));
    assert_true(m.connected_clients >= 1);
    assert_true(m.total_commands >= 14);
    assert_int_equal(m.warnings, RK_MEMORY_WARN_NO_MAXMEMORY | RK_MEMORY_WARN_NOEVICTION);

    /* One line per condition, the first time only. */
    assert_int_equal(book.memory_warnings, 2);
    assert_non_null(strstr(book.text, "maxmemory 0"));
    assert_non_null(strstr(book.text, "noeviction"));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rk_server_memory(client, &m), RK_OK);
        assert_int_equal(m.warnings, RK_MEMORY_WARN_NO_MAXMEMORY | RK_MEMORY_WARN_NOEVICTION);
    }
    assert_int_equal(book.memory_warnings, 2);
    assert_null(strstr(book.text, PASSWORD));
    assert_null(strstr(book.text, "MARKER"));

    /* A second client is a second "once". */
    logbook book2 = {0};
    rk_client *client2 = new_client(&book2);
    rk_cache *cache2 = new_cache(client2, "mem2");
    assert_int_equal(rk_server_memory(client2, &m), RK_OK);
    assert_int_equal(book2.memory_warnings, 2);
    rk_cache_free(cache2);
    rk_client_free(client2);

    rk_cache_free(cache);
    rk_client_free(client);
}

/* A server set up for a cache: no warning at all. */
static void test_no_warning_with_maxmemory_and_lru(void **state)
{
    (void)state;
    rk_test_server_ok(server, "CONFIG SET maxmemory %s", "104857600");
    rk_test_server_ok(server, "CONFIG SET maxmemory-policy %s", "allkeys-lru");
    logbook book = {0};
    rk_client *client = new_client(&book);
    rk_cache *cache = new_cache(client, "lru");
    rk_memory_info m;
    assert_int_equal(rk_server_memory(client, &m), RK_OK);
    assert_int_equal(m.maxmemory, 104857600);
    assert_string_equal(m.maxmemory_policy, "allkeys-lru");
    assert_int_equal(m.warnings, 0);
    assert_int_equal(book.memory_warnings, 0);

    /* Only the policy wrong: only that warning. */
    rk_test_server_ok(server, "CONFIG SET maxmemory-policy %s", "noeviction");
    assert_int_equal(rk_server_memory(client, &m), RK_OK);
    assert_int_equal(m.warnings, RK_MEMORY_WARN_NOEVICTION);
    assert_int_equal(book.memory_warnings, 1);
    assert_null(strstr(book.text, "maxmemory 0"));

    rk_test_server_ok(server, "CONFIG SET maxmemory %s", "0");
    rk_cache_free(cache);
    rk_client_free(client);
}

/* No cache on the client: the bits say it, the log stays quiet. */
static void test_no_warning_without_cache(void **state)
{
    (void)state;
    logbook book = {0};
    rk_client *client = new_client(&book);
    rk_memory_info m;
    assert_int_equal(rk_server_memory(client, &m), RK_OK);
    assert_int_equal(m.warnings, RK_MEMORY_WARN_NO_MAXMEMORY | RK_MEMORY_WARN_NOEVICTION);
    assert_int_equal(book.memory_warnings, 0);
    /* A handle created and freed again does not count either. */
    rk_cache *cache = new_cache(client, "gone");
    rk_cache_free(cache);
    assert_int_equal(rk_server_memory(client, &m), RK_OK);
    assert_int_equal(book.memory_warnings, 0);
    rk_client_free(client);
}

/* Redis down: the client's error, within the deadline, and *out zeroed. */
static void test_server_memory_unavailable(void **state)
{
    (void)state;
    rk_client *client;
    assert_int_equal(rk_client_new_url("redis://127.0.0.1:1", &client), RK_OK);
    rk_memory_info m;
    memset(&m, 0xAB, sizeof m);
    assert_int_equal(rk_server_memory(client, &m), RK_ERR_UNAVAILABLE);
    assert_int_equal(m.used_memory, 0);
    assert_int_equal(m.warnings, 0);
    /* A wrong password: RK_ERR_AUTH, never the password in the message. */
    rk_client *bad;
    char url[128];
    snprintf(url, sizeof url, "redis://:wrong-%s@127.0.0.1:%d", PASSWORD, rk_test_server_port(server));
    assert_int_equal(rk_client_new_url(url, &bad), RK_OK);
    assert_int_equal(rk_server_memory(bad, &m), RK_ERR_AUTH);
    assert_null(strstr(rk_last_error(), PASSWORD));
    rk_client_free(bad);
    rk_client_free(client);
}

int main(void)
{
    static const rk_allocator a = {t_malloc, t_calloc, t_realloc, t_free, NULL};
    if (rk_set_allocator(&a) != RK_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_parse),
        cmocka_unit_test_setup(test_status_labels_and_bad_arguments, rk_test_group_flush),
        cmocka_unit_test_setup(test_counters_match_operations, rk_test_group_flush),
        cmocka_unit_test_setup(test_every_counter_reaches_snapshot_and_text, rk_test_group_flush),
        cmocka_unit_test_setup(test_prometheus_client_and_latency, rk_test_group_flush),
        cmocka_unit_test_setup(test_namespaces_summed_and_removed, rk_test_group_flush),
        cmocka_unit_test_setup(test_prometheus_cache_text_golden, rk_test_group_flush),
        cmocka_unit_test_setup(test_prometheus_holds_no_secret, rk_test_group_flush),
        cmocka_unit_test_setup(test_prometheus_out_of_memory, rk_test_group_flush),
        cmocka_unit_test_setup(test_concurrent_use_and_scrapes, rk_test_group_flush),
        cmocka_unit_test_setup(test_server_memory_and_warning_once, rk_test_group_flush),
        cmocka_unit_test_setup(test_no_warning_with_maxmemory_and_lru, rk_test_group_flush),
        cmocka_unit_test_setup(test_no_warning_without_cache, rk_test_group_flush),
        cmocka_unit_test_setup(test_server_memory_unavailable, rk_test_group_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
