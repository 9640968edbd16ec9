/*
 * registry_test.c — the client's module registry (src/client/registry.c):
 * a kind of module that exists only in this test reaches the Prometheus
 * text through the registry alone; kinds keep their order and their
 * handles stay together; a handle keeps its client alive after
 * rk_client_free(), and the client goes with its last handle (ASan and
 * valgrind would report the use after free or the leak otherwise).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#include "registry.h"
#include "sink.h"
#include "support/fixture.h"
#include "support/redis_server.h"

static rk_test_server *server;
static rk_client *client;

static int group_setup(void **state)
{
    return rk_test_group_setup(state, &(rk_test_group){.server = &server, .client = &client});
}

/* ---- A module kind of the test's own --------------------------------------- */

typedef struct widget {
    const char *ns;
    uint64_t things;
} widget;

static void widget_emit(void *const *handles, size_t n, rk__sink *sink)
{
    rk__sink_family(sink, "redkit_widget_things_total", "counter", "Things a widget did.");
    for (size_t i = 0; i < n; i++) {
        const widget *w = handles[i];
        rk__sink_u64(sink, "redkit_widget_things_total", w->ns, NULL, NULL, w->things);
    }
    rk__sink_family(sink, "redkit_widget_ratio", "gauge", "A ratio, with a second label.");
    for (size_t i = 0; i < n; i++) {
        const widget *w = handles[i];
        rk__sink_f64(sink, "redkit_widget_ratio", w->ns, "part", "a\"b", 0.5);
    }
}

static const rk__module_ops widget_ops = {.kind = "widget", .emit = widget_emit};
static const rk__module_ops silent_ops = {.kind = "silent", .emit = NULL};

static char *scrape(rk_client *c)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rk_metrics_prometheus(c, &text, &len), RK_OK);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_new_kind_through_registry_alone(void **state)
{
    (void)state;
    widget w1 = {"w1", 7}, w2 = {"w2", 9};
    int silent;
    assert_int_equal(rk__registry_add(client, &w1, &widget_ops), RK_OK);
    assert_int_equal(rk__registry_add(client, &silent, &silent_ops), RK_OK);
    assert_int_equal(rk__registry_add(client, &w2, &widget_ops), RK_OK);
    assert_int_equal(rk__registry_count(client, "widget"), 2);
    assert_int_equal(rk__registry_count(client, "silent"), 1);

    char *text = scrape(client);
    /* One HELP per family, and both handles' samples under it, together,
     * although another kind registered between them. */
    const char *want =
        "# HELP redkit_widget_things_total Things a widget did.\n"
        "# TYPE redkit_widget_things_total counter\n"
        "redkit_widget_things_total{ns=\"w1\"} 7\n"
        "redkit_widget_things_total{ns=\"w2\"} 9\n"
        "# HELP redkit_widget_ratio A ratio, with a second label.\n"
        "# TYPE redkit_widget_ratio gauge\n"
        "redkit_widget_ratio{ns=\"w1\",part=\"a\\\"b\"} 0.5\n"
        "redkit_widget_ratio{ns=\"w2\",part=\"a\\\"b\"} 0.5\n";
    assert_non_null(strstr(text, want));
    rk_free(text);

    rk__registry_remove(client, &w1);
    rk__registry_remove(client, &w1); /* twice: ignored */
    text = scrape(client);
    assert_null(strstr(text, "ns=\"w1\""));
    assert_non_null(strstr(text, "redkit_widget_things_total{ns=\"w2\"} 9\n"));
    rk_free(text);
    rk__registry_remove(client, &w2);
    rk__registry_remove(client, &silent);
    text = scrape(client);
    assert_null(strstr(text, "widget"));
    rk_free(text);
    assert_int_equal(rk__registry_count(client, "widget"), 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    widget w = {"w", 1};
    assert_int_equal(rk__registry_add(NULL, &w, &widget_ops), RK_ERR_INVALID);
    assert_int_equal(rk__registry_add(client, NULL, &widget_ops), RK_ERR_INVALID);
    assert_int_equal(rk__registry_add(client, &w, NULL), RK_ERR_INVALID);
    rk__registry_remove(NULL, &w); /* no-ops */
    rk__registry_remove(client, NULL);
}

/* rk_client_free() before the handles: they keep working, and the client
 * goes with the last of them. */
static void test_handles_keep_their_client(void **state)
{
    (void)state;
    rk_client *c = rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(server)});
    rk_cache *a = rk_test_cache_new(c, &(rk_cache_options){.ns = "a"});
    rk_cache *b = rk_test_cache_new(c, &(rk_cache_options){.ns = "b"});
    rk_client_free(c); /* the caller's reference only */

    assert_int_equal(rk_cache_set_str(a, "k", "v", NULL), RK_OK);
    rk_test_assert_cached(a, "k", "v");
    rk_cache_free(a);
    assert_int_equal(rk_cache_set_str(b, "k", "w", NULL), RK_OK);
    rk_test_assert_cached(b, "k", "w");
    rk_cache_free(b); /* the last reference: the client goes here */

    /* And the usual order still works. */
    c = rk_test_client_new(&(rk_client_options){.url = rk_test_server_url(server)});
    a = rk_test_cache_new(c, NULL);
    rk_cache_free(a);
    rk_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_kind_through_registry_alone),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_handles_keep_their_client),
    };
    return cmocka_run_group_tests(tests, group_setup, rk_test_group_teardown);
}
