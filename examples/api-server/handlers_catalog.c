/*
 * handlers_catalog.c — users and products, read through the cache.
 *
 * Reads are get-or-compute (rk_cache_fetch): the cached JSON when there is
 * one, else one SQLite query whose answer is cached for the next caller —
 * and when many callers miss the same key at once, one of them queries
 * while the rest wait for its answer. A value stays fresh for CACHE_TTL_S
 * and may be served stale for STALE_MS more (while one caller refreshes
 * it, or from this process's copy while Redis is unreachable). The
 * X-Cache header says which happened: hit, miss, stale or degraded.
 *
 * Writes go to SQLite first, then remove exactly what changed from the
 * cache: the user's key on a profile update; the category's tag (every
 * cached page of that category's list) on a new product. If Redis cannot
 * be told, the old value lives at most until its TTL; the response says
 * so in X-Cache-Invalidation: failed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"

#define STALE_MS 30000
#define PER_PAGE 20
#define MAX_PAGE 1000

enum kind { USER, PRODUCT, PRODUCT_LIST };

/* What to load from SQLite, for the compute callback. */
struct lookup {
    struct app *app;
    enum kind kind;
    int64_t id;
    const char *category;
    int page;
};

/* The JSON text of the looked-up thing, or DB_NOT_FOUND / DB_ERROR. */
static int load(const struct lookup *l, char **text)
{
    json_t *json = NULL;
    int rc = l->kind == USER      ? db_user_get(l->app->db, l->id, &json)
             : l->kind == PRODUCT ? db_product_get(l->app->db, l->id, &json)
                                  : db_product_list(l->app->db, l->category, l->page, PER_PAGE,
                                                    &json);
    if (rc != DB_OK)
        return rc;
    *text = json_dumps(json, JSON_COMPACT);
    json_decref(json);
    return *text ? DB_OK : DB_ERROR;
}

static rk_status compute(const char *key, rk_cache_computed *out, void *ctx)
{
    char *text = NULL;
    (void)key;
    int rc = load(ctx, &text);
    if (rc == DB_NOT_FOUND)
        return RK_MISS; /* nothing cached: a later insert needs no invalidation */
    if (rc != DB_OK)
        return RK_ERR_SYSTEM;
    rk_status st = rk_cache_computed_set(out, text, strlen(text));
    free(text);
    return st;
}

/* Answer with the looked-up JSON: through the cache (key, tagged with tag
 * if not NULL), or straight from SQLite when the cache is off. */
static void serve(struct http_response *rs, const char *key, const char *tag, struct lookup *l)
{
    struct app *app = l->app;
    if (!app->cfg.cache_enabled) {
        char *text = NULL;
        int rc = load(l, &text);
        if (rc == DB_OK)
            resp_json_text(rs, 200, text, strlen(text));
        else if (rc == DB_NOT_FOUND)
            resp_problem(rs, 404, "not-found", "Not found", "no such resource");
        else
            resp_problem(rs, 500, "internal", "Internal error", "the database failed");
        free(text);
        return;
    }
    rk_cache_fetch_options opts = {
        .ttl_s = app->cfg.cache_ttl_s,
        .stale_ms = STALE_MS,
        .tags = tag ? &tag : NULL,
        .ntags = tag ? 1 : 0,
    };
    rk_cache_fetch_info info;
    void *value = NULL;
    size_t len = 0;
    rk_status st = rk_cache_fetch(app->cache, key, compute, l, &opts, &value, &len, &info);
    if (st == RK_OK) {
        resp_json_text(rs, 200, value, len);
        resp_header(rs, "X-Cache", "%s",
                    info.degraded ? "degraded" : info.stale ? "stale" : info.computed ? "miss"
                                                                                     : "hit");
    } else if (st == RK_MISS) {
        resp_problem(rs, 404, "not-found", "Not found", "no such resource");
    } else {
        log_msg(LOG_ERROR, "cache fetch: %s: %s", rk_strerror(st), rk_last_error());
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
    }
    rk_free(value);
}

/* GET of one row by id: "user:<id>" or "product:<id>". */
static void get_one(struct app *app, struct http_response *rs, const char *arg, enum kind kind)
{
    int64_t id;
    if (!parse_id(arg, &id, rs))
        return;
    char key[40];
    snprintf(key, sizeof key, "%s:%lld", kind == USER ? "user" : "product", (long long)id);
    serve(rs, key, NULL, &(struct lookup){ .app = app, .kind = kind, .id = id });
}

void h_user_get(struct app *app, const struct http_request *rq, struct http_response *rs,
                const char *arg)
{
    (void)rq;
    get_one(app, rs, arg, USER);
}

void h_product_get(struct app *app, const struct http_request *rq, struct http_response *rs,
                   const char *arg)
{
    (void)rq;
    get_one(app, rs, arg, PRODUCT);
}

/* Categories are short lower-case words: anything else is refused before
 * it reaches a cache key or the database. */
static bool valid_category(const char *c)
{
    size_t n = c ? strlen(c) : 0;
    if (n == 0 || n > 32)
        return false;
    for (; *c; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '-')
            return false;
    return true;
}

void h_products_list(struct app *app, const struct http_request *rq, struct http_response *rs,
                     const char *arg)
{
    (void)arg;
    const char *category = http_query(rq, "category");
    const char *page_s = http_query(rq, "page");
    if (!valid_category(category)) {
        resp_problem(rs, 400, "invalid-parameter", "Invalid parameter",
                     "category must be 1-32 characters of a-z, 0-9 and '-'");
        return;
    }
    int64_t page = 1;
    if (page_s && (!parse_id(page_s, &page, rs) || page > MAX_PAGE)) {
        resp_problem(rs, 400, "invalid-parameter", "Invalid parameter",
                     "page must be an integer from 1 to 1000");
        return;
    }
    char key[80], tag[48];
    snprintf(key, sizeof key, "products:%s:%d", category, (int)page);
    snprintf(tag, sizeof tag, "category:%s", category);
    serve(rs, key, tag,
          &(struct lookup){ .app = app, .kind = PRODUCT_LIST, .category = category,
                            .page = (int)page });
}

/* A failed invalidation is not an error for the client (SQLite has the
 * truth) but it is for the operator. */
static void invalidated(struct http_response *rs, rk_status st, const char *what)
{
    if (st == RK_OK || st == RK_MISS)
        return;
    log_msg(LOG_WARN, "cache invalidation of %s failed (%s); it expires with its TTL", what,
            rk_strerror(st));
    resp_header(rs, "X-Cache-Invalidation", "failed");
}

void h_user_put(struct app *app, const struct http_request *rq, struct http_response *rs,
                const char *arg)
{
    int64_t id;
    struct principal who;
    if (!parse_id(arg, &id, rs))
        return;
    int rc = auth_resolve(app, rq, &who, rs);
    if (rc < 0)
        return;
    if (rc > 0) {
        resp_problem(rs, 401, "unauthorized", "Unauthorized", "log in or send an API key");
        return;
    }
    if (who.user_id != id || !who.can_write) {
        resp_problem(rs, 403, "forbidden", "Forbidden", "you may only update your own profile");
        return;
    }
    json_t *body = parse_body(rq, rs);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || !*name || strlen(name) > 100) {
        json_decref(body);
        resp_problem(rs, 422, "invalid-field", "Invalid field", "name must be 1-100 characters");
        return;
    }
    rc = db_user_update_name(app->db, id, name);
    json_decref(body);
    if (rc != DB_OK) {
        resp_problem(rs, rc == DB_NOT_FOUND ? 404 : 500, rc == DB_NOT_FOUND ? "not-found" : "internal",
                     rc == DB_NOT_FOUND ? "Not found" : "Internal error", NULL);
        return;
    }
    if (app->cfg.cache_enabled) {
        char key[40];
        snprintf(key, sizeof key, "user:%lld", (long long)id);
        invalidated(rs, rk_cache_delete(app->cache, key), "a user");
    }
    json_t *user = NULL;
    rc = db_user_get(app->db, id, &user);
    if (rc == DB_OK)
        resp_json(rs, 200, user);
    else
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
}

void h_product_post(struct app *app, const struct http_request *rq, struct http_response *rs,
                    const char *arg)
{
    struct principal who;
    (void)arg;
    int rc = auth_resolve(app, rq, &who, rs);
    if (rc < 0)
        return;
    if (rc > 0) {
        resp_problem(rs, 401, "unauthorized", "Unauthorized", "send an API key with the write scope");
        return;
    }
    if (!who.via_key || !who.can_write) {
        resp_problem(rs, 403, "forbidden", "Forbidden", "this needs an API key with the write scope");
        return;
    }
    json_t *body = parse_body(rq, rs);
    if (!body)
        return;
    const char *category = json_string_value(json_object_get(body, "category"));
    const char *name = json_string_value(json_object_get(body, "name"));
    json_t *price = json_object_get(body, "price_cents");
    if (!valid_category(category) || !name || !*name || strlen(name) > 200 ||
        !json_is_integer(price) || json_integer_value(price) < 0 ||
        json_integer_value(price) > 1000000000) {
        json_decref(body);
        resp_problem(rs, 422, "invalid-field", "Invalid field",
                     "needs category (a-z, 0-9, '-'), name (1-200 characters) and "
                     "price_cents (0 to 1e9)");
        return;
    }
    int64_t id = 0;
    rc = db_product_insert(app->db, category, name, json_integer_value(price), &id);
    if (rc != DB_OK) {
        json_decref(body);
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
        return;
    }
    if (app->cfg.cache_enabled) {
        char tag[48];
        snprintf(tag, sizeof tag, "category:%s", category);
        invalidated(rs, rk_cache_invalidate_tag(app->cache, tag, NULL), "a category list");
    }
    json_decref(body);
    json_t *product = NULL;
    if (db_product_get(app->db, id, &product) != DB_OK) {
        resp_problem(rs, 500, "internal", "Internal error", "the database failed");
        return;
    }
    resp_header(rs, "Location", "/v1/products/%lld", (long long)id);
    resp_json(rs, 201, product);
}
