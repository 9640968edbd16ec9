/*
 * db.c — the service's SQLite database: schema, seed, queries.
 *
 * One connection per HTTP thread, checked out of a small pool for the
 * length of one query, each with every statement prepared once at open:
 * SQL text is never built from request data, so SQL metacharacters in a
 * parameter are just characters. WAL mode lets readers run while one
 * writer writes; busy_timeout makes a writer wait for another rather than
 * fail. Every statement run adds one to a counter, which /metrics exports
 * as api_sqlite_queries_total: the figure the cache is there to shrink.
 */
#include "app.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <argon2.h>
#include <sqlite3.h>

#include "auth.h"

const char *const db_categories[DB_CATEGORIES] = {
    "books", "music", "garden", "kitchen", "toys", "tools", "sports", "games", "office", "pets",
    "audio", "camera", "phones", "laptops", "shoes", "bags", "watches", "beauty", "health", "food",
};

enum stmt {
    S_USER_GET, S_USER_CREDENTIALS, S_USER_INSERT, S_USER_UPDATE_NAME, S_PRODUCT_GET,
    S_PRODUCT_LIST, S_PRODUCT_INSERT, S_KEY_INSERT, S_KEY_BY_HASH, S_KEY_LIST, S_KEY_HASH,
    S_KEY_REVOKE, S_COUNT
};

static const char *const sql[S_COUNT] = {
    [S_USER_GET] = "SELECT id, email, name, created_at FROM users WHERE id = ?1",
    [S_USER_CREDENTIALS] = "SELECT id, password_hash FROM users WHERE email = ?1",
    [S_USER_INSERT] = "INSERT INTO users(email, name, password_hash, created_at) "
                      "VALUES (?1, ?2, ?3, ?4)",
    [S_USER_UPDATE_NAME] = "UPDATE users SET name = ?2 WHERE id = ?1",
    [S_PRODUCT_GET] = "SELECT id, category, name, price_cents FROM products WHERE id = ?1",
    [S_PRODUCT_LIST] = "SELECT id, category, name, price_cents FROM products "
                       "WHERE category = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
    [S_PRODUCT_INSERT] = "INSERT INTO products(category, name, price_cents) VALUES (?1, ?2, ?3)",
    [S_KEY_INSERT] = "INSERT INTO api_keys(user_id, name, hash, display, scopes, plan, "
                     "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_KEY_BY_HASH] = "SELECT id, user_id, scopes, plan, revoked_at FROM api_keys WHERE hash = ?1",
    [S_KEY_LIST] = "SELECT id, name, display, scopes, plan, created_at, revoked_at FROM api_keys "
                   "WHERE user_id = ?1 ORDER BY id",
    [S_KEY_HASH] = "SELECT hash FROM api_keys WHERE id = ?1 AND user_id = ?2 "
                   "AND revoked_at IS NULL",
    [S_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
};

static const char schema[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE IF NOT EXISTS users ("
    "  id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
    "  password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS products ("
    "  id INTEGER PRIMARY KEY, category TEXT NOT NULL, name TEXT NOT NULL,"
    "  price_cents INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS products_by_category ON products(category, id);"
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, display TEXT NOT NULL,"
    "  scopes TEXT NOT NULL, plan TEXT NOT NULL DEFAULT 'free',"
    "  created_at INTEGER NOT NULL, revoked_at INTEGER);";

/* A database made before keys had plans gains the column (its old keys,
 * from before rk_apikeys' format, are refused as malformed anyway). */
static int migrate(sqlite3 *db)
{
    sqlite3_stmt *probe = NULL;
    if (sqlite3_prepare_v2(db, "SELECT plan FROM api_keys LIMIT 0", -1, &probe, NULL) == SQLITE_OK) {
        sqlite3_finalize(probe);
        return 0;
    }
    return sqlite3_exec(db, "ALTER TABLE api_keys ADD COLUMN plan TEXT NOT NULL DEFAULT 'free'",
                        NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : -1;
}

struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    bool busy;
};

struct db {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct conn *conns;
    int nconns;
    int latency_us;
    atomic_uint_least64_t queries;
};

uint64_t db_queries(const struct db *db)
{
    return atomic_load(&((struct db *)db)->queries);
}

/* A free connection, or NULL after ACQUIRE_WAIT_S (the caller answers
 * 500). Each HTTP thread runs one query at a time and there is one
 * connection per thread, so waiting happens only if THREADS is raised
 * past the pool without a restart — never, today; the bound is there so
 * that a mistake shows up as errors rather than as a hang. */
#define ACQUIRE_WAIT_S 5
static struct conn *acquire(struct db *db)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ACQUIRE_WAIT_S;
    pthread_mutex_lock(&db->lock);
    for (;;) {
        for (int i = 0; i < db->nconns; i++) {
            if (!db->conns[i].busy) {
                db->conns[i].busy = true;
                pthread_mutex_unlock(&db->lock);
                return &db->conns[i];
            }
        }
        if (pthread_cond_timedwait(&db->freed, &db->lock, &until) != 0) {
            pthread_mutex_unlock(&db->lock);
            log_msg(LOG_ERROR, "sqlite: no free connection in %d s", ACQUIRE_WAIT_S);
            return NULL;
        }
    }
}

static void release(struct db *db, struct conn *c)
{
    pthread_mutex_lock(&db->lock);
    c->busy = false;
    pthread_cond_signal(&db->freed);
    pthread_mutex_unlock(&db->lock);
}

/* A prepared statement ready to bind: reset, counted. */
static sqlite3_stmt *stmt(struct db *db, struct conn *c, enum stmt s)
{
    sqlite3_stmt *st = c->stmt[s];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    atomic_fetch_add(&db->queries, 1);
    if (db->latency_us > 0)
        usleep((useconds_t)db->latency_us);
    return st;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static int step_done(struct conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return DB_OK;
    if (rc == SQLITE_CONSTRAINT)
        return DB_CONFLICT;
    log_msg(LOG_ERROR, "sqlite: %s", sqlite3_errmsg(c->db));
    return DB_ERROR;
}

/* ---- open, schema, seed ------------------------------------------------- */

static int open_conn(const char *path, struct conn *c)
{
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        log_msg(LOG_ERROR, "sqlite: cannot open %s: %s", path,
                c->db ? sqlite3_errmsg(c->db) : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout(c->db, 5000);
    if (sqlite3_exec(c->db, schema, NULL, NULL, NULL) != SQLITE_OK || migrate(c->db) != 0) {
        log_msg(LOG_ERROR, "sqlite: schema: %s", sqlite3_errmsg(c->db));
        return -1;
    }
    for (int s = 0; s < S_COUNT; s++) {
        if (sqlite3_prepare_v3(c->db, sql[s], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[s], NULL) !=
            SQLITE_OK) {
            log_msg(LOG_ERROR, "sqlite: prepare: %s", sqlite3_errmsg(c->db));
            return -1;
        }
    }
    return 0;
}

static void close_conn(struct conn *c)
{
    for (int s = 0; s < S_COUNT; s++)
        sqlite3_finalize(c->stmt[s]);
    sqlite3_close(c->db);
}

/* Demo users, printed once when the database is created. */
static const struct { const char *email, *name, *password; } demo_users[] = {
    { "alice@example.com", "Alice", "alice-demo-password" },
    { "bob@example.com", "Bob", "bob-demo-password" },
};

/* 10,000 products in 20 categories, in one transaction (a second). */
static int seed(struct db *db, struct conn *c)
{
    int rc = DB_OK;
    static const char *const adjectives[] = { "Red", "Small", "Classic", "Smart", "Eco",
                                              "Deluxe", "Travel", "Pro" };
    if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    for (int i = 0; i < 10000 && rc == DB_OK; i++) {
        const char *category = db_categories[i % DB_CATEGORIES];
        char name[96];
        snprintf(name, sizeof name, "%s %s item %d", adjectives[(i / DB_CATEGORIES) % 8],
                 category, i + 1);
        sqlite3_stmt *st = stmt(db, c, S_PRODUCT_INSERT);
        sqlite3_bind_text(st, 1, category, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, 199 + (int64_t)((i * 7919) % 20000));
        rc = step_done(c, st);
    }
    for (size_t u = 0; u < sizeof demo_users / sizeof demo_users[0] && rc == DB_OK; u++) {
        char hash[AUTH_HASH_MAX];
        if (auth_hash_password(demo_users[u].password, hash, sizeof hash) != 0) {
            rc = DB_ERROR;
            break;
        }
        sqlite3_stmt *st = stmt(db, c, S_USER_INSERT);
        sqlite3_bind_text(st, 1, demo_users[u].email, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, demo_users[u].name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, hash, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (int64_t)time(NULL));
        rc = step_done(c, st);
    }
    if (sqlite3_exec(c->db, rc == DB_OK ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
        rc = DB_ERROR;
    if (rc != DB_OK)
        return -1;
    /* The one place a password is ever printed: demo accounts, at creation. */
    printf("Created the database with 10000 products in %d categories and demo users:\n",
           DB_CATEGORIES);
    for (size_t u = 0; u < sizeof demo_users / sizeof demo_users[0]; u++)
        printf("  %-18s password %s\n", demo_users[u].email, demo_users[u].password);
    fflush(stdout);
    return 0;
}

int db_open(const char *path, int connections, int latency_us, bool *seeded, struct db **out)
{
    struct db *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    db->conns = calloc((size_t)connections, sizeof *db->conns);
    if (!db->conns) {
        free(db);
        return -1;
    }
    pthread_mutex_init(&db->lock, NULL);
    pthread_cond_init(&db->freed, NULL);
    *seeded = false;
    for (int i = 0; i < connections; i++) {
        db->nconns = i + 1;
        if (open_conn(path, &db->conns[i]) != 0) {
            db_close(db);
            return -1;
        }
    }
    sqlite3_stmt *count;
    int empty = 0;
    if (sqlite3_prepare_v2(db->conns[0].db, "SELECT count(*) FROM products", -1, &count, NULL) ==
        SQLITE_OK) {
        empty = sqlite3_step(count) == SQLITE_ROW && sqlite3_column_int64(count, 0) == 0;
        sqlite3_finalize(count);
    }
    if (empty) {
        if (seed(db, &db->conns[0]) != 0) {
            log_msg(LOG_ERROR, "sqlite: seeding %s failed", path);
            db_close(db);
            return -1;
        }
        *seeded = true;
    }
    atomic_store(&db->queries, 0);
    db->latency_us = latency_us; /* after the seed, which it would slow down */
    *out = db;
    return 0;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    for (int i = 0; i < db->nconns; i++)
        close_conn(&db->conns[i]);
    pthread_mutex_destroy(&db->lock);
    pthread_cond_destroy(&db->freed);
    free(db->conns);
    free(db);
}

/* ---- queries -------------------------------------------------------------- */

int db_user_get(struct db *db, int64_t id, json_t **out)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_USER_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int result = DB_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        *out = json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                         "email", col_text(st, 1), "name", col_text(st, 2), "created_at",
                         (json_int_t)sqlite3_column_int64(st, 3));
        result = *out ? DB_OK : DB_ERROR;
    } else if (rc != SQLITE_DONE) {
        log_msg(LOG_ERROR, "sqlite: %s", sqlite3_errmsg(c->db));
        result = DB_ERROR;
    }
    sqlite3_reset(st);
    release(db, c);
    return result;
}

int db_user_update_name(struct db *db, int64_t id, const char *name)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_USER_UPDATE_NAME);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    int rc = step_done(c, st);
    if (rc == DB_OK && sqlite3_changes(c->db) == 0)
        rc = DB_NOT_FOUND;
    sqlite3_reset(st);
    release(db, c);
    return rc;
}

int db_user_insert(struct db *db, const char *email, const char *name, const char *password_hash,
                   int64_t *id)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_USER_INSERT);
    sqlite3_bind_text(st, 1, email, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, password_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (int64_t)time(NULL));
    int rc = step_done(c, st);
    if (rc == DB_OK)
        *id = sqlite3_last_insert_rowid(c->db);
    sqlite3_reset(st);
    release(db, c);
    return rc;
}

int db_user_credentials(struct db *db, const char *email, int64_t *id, char **hash)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_USER_CREDENTIALS);
    sqlite3_bind_text(st, 1, email, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int result = DB_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        *hash = strdup(col_text(st, 1));
        result = *hash ? DB_OK : DB_ERROR;
    } else if (rc != SQLITE_DONE) {
        result = DB_ERROR;
    }
    sqlite3_reset(st);
    release(db, c);
    return result;
}

static json_t *product_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                     "category", col_text(st, 1), "name", col_text(st, 2), "price_cents",
                     (json_int_t)sqlite3_column_int64(st, 3));
}

int db_product_get(struct db *db, int64_t id, json_t **out)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_PRODUCT_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_DONE ? DB_NOT_FOUND : DB_ERROR;
    if (rc == SQLITE_ROW) {
        *out = product_json(st);
        result = *out ? DB_OK : DB_ERROR;
    }
    sqlite3_reset(st);
    release(db, c);
    return result;
}

int db_product_list(struct db *db, const char *category, int page, int per_page, json_t **out)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    json_t *items = json_array();
    if (!items) {
        release(db, c);
        return DB_ERROR;
    }
    sqlite3_stmt *st = stmt(db, c, S_PRODUCT_LIST);
    sqlite3_bind_text(st, 1, category, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, per_page);
    sqlite3_bind_int64(st, 3, (int64_t)(page - 1) * per_page);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(items, product_json(st));
    sqlite3_reset(st);
    release(db, c);
    if (rc != SQLITE_DONE) {
        json_decref(items);
        return DB_ERROR;
    }
    *out = json_pack("{s:s, s:i, s:i, s:o}", "category", category, "page", page, "per_page",
                     per_page, "items", items);
    return *out ? DB_OK : DB_ERROR;
}

int db_product_insert(struct db *db, const char *category, const char *name, int64_t price_cents,
                      int64_t *id)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_PRODUCT_INSERT);
    sqlite3_bind_text(st, 1, category, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, price_cents);
    int rc = step_done(c, st);
    if (rc == DB_OK)
        *id = sqlite3_last_insert_rowid(c->db);
    sqlite3_reset(st);
    release(db, c);
    return rc;
}

int db_apikey_insert(struct db *db, int64_t user_id, const char *name, const char *hash_hex,
                     const char *display, const char *scopes, const char *plan, int64_t *id)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_KEY_INSERT);
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, hash_hex, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, display, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, scopes, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, plan, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, (int64_t)time(NULL));
    int rc = step_done(c, st);
    if (rc == DB_OK)
        *id = sqlite3_last_insert_rowid(c->db);
    sqlite3_reset(st);
    release(db, c);
    return rc;
}

int db_apikey_by_hash(struct db *db, const char *hash_hex, json_t **out, int64_t *revoked_ms)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_KEY_BY_HASH);
    sqlite3_bind_text(st, 1, hash_hex, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_DONE ? DB_NOT_FOUND : DB_ERROR;
    if (rc == SQLITE_ROW) {
        *out = json_pack("{s:I, s:I, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                         "user_id", (json_int_t)sqlite3_column_int64(st, 1), "scopes",
                         col_text(st, 2), "plan", col_text(st, 3));
        *revoked_ms = sqlite3_column_int64(st, 4) * 1000; /* NULL reads as 0: live */
        result = *out ? DB_OK : DB_ERROR;
    }
    sqlite3_reset(st);
    release(db, c);
    return result;
}

int db_apikey_list(struct db *db, int64_t user_id, json_t **out)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    json_t *items = json_array();
    if (!items) {
        release(db, c);
        return DB_ERROR;
    }
    sqlite3_stmt *st = stmt(db, c, S_KEY_LIST);
    sqlite3_bind_int64(st, 1, user_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *k = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I}", "id",
                              (json_int_t)sqlite3_column_int64(st, 0), "name", col_text(st, 1),
                              "key", col_text(st, 2), "scopes", col_text(st, 3), "plan",
                              col_text(st, 4), "created_at",
                              (json_int_t)sqlite3_column_int64(st, 5));
        if (k && sqlite3_column_type(st, 6) != SQLITE_NULL)
            json_object_set_new(k, "revoked_at", json_integer(sqlite3_column_int64(st, 6)));
        json_array_append_new(items, k);
    }
    sqlite3_reset(st);
    release(db, c);
    if (rc != SQLITE_DONE) {
        json_decref(items);
        return DB_ERROR;
    }
    *out = items;
    return DB_OK;
}

int db_apikey_revoke(struct db *db, int64_t user_id, int64_t id, char **hash_hex)
{
    struct conn *c = acquire(db);
    if (!c)
        return DB_ERROR;
    sqlite3_stmt *st = stmt(db, c, S_KEY_HASH);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, user_id);
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_DONE ? DB_NOT_FOUND : DB_ERROR;
    if (rc == SQLITE_ROW) {
        *hash_hex = strdup(col_text(st, 0));
        result = *hash_hex ? DB_OK : DB_ERROR;
    }
    sqlite3_reset(st);
    if (result == DB_OK) {
        st = stmt(db, c, S_KEY_REVOKE);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
        result = step_done(c, st);
        sqlite3_reset(st);
        if (result != DB_OK) {
            free(*hash_hex);
            *hash_hex = NULL;
        }
    }
    release(db, c);
    return result;
}
