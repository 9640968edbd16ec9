/*
 * app.h — the pieces of the example service and how they meet.
 *
 * The service is split by concern, one file each: config.c reads the
 * environment, db.c owns SQLite (schema, seed, prepared statements, the
 * query counter), http.c adapts libmicrohttpd to a plain request/response
 * pair, routes.c maps method + path to a handler, handlers_*.c do the work,
 * apikey.c puts API keys on redkit's rk_apikeys, stats.c keeps the
 * service's own metrics. main.c wires them together. Everything the
 * handlers share lives in one struct app, created once in main() and
 * read-only afterwards (its counters are atomics), so handlers running on
 * the HTTP thread pool need no locks of their own.
 */
#ifndef API_SERVER_APP_H
#define API_SERVER_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <redkit/redkit.h>

/* ---- config.c ----------------------------------------------------------- */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

struct config {
    const char *redis_url;     /* REDIS_URL; NULL = 127.0.0.1:6379 */
    const char *database_path; /* DATABASE_PATH; default "api-server.db" */
    char listen_host[64];      /* LISTEN host part; default 127.0.0.1 */
    int listen_port;           /* LISTEN port part; default 8080 */
    enum log_level log_level;  /* LOG_LEVEL=debug|info|warn|error; info */
    bool cache_enabled;        /* CACHE=off turns the cache off (load test) */
    bool near_cache;           /* NEAR_CACHE=on: hot responses also in
                                  process memory, kept coherent by Redis */
    int threads;               /* THREADS: HTTP pool = SQLite connections; 8 */
    int connection_timeout_s;  /* CONNECTION_TIMEOUT_S: idle connection; 10 */
    int cache_ttl_s;           /* CACHE_TTL_S: fresh lifetime of a response; 60 */
    bool cookie_secure;        /* COOKIE_SECURE=on: behind TLS, "__Host-sid" */
    bool rate_limit;           /* RATE_LIMIT=off: no limits (load test) */
    int limit_anon_per_min;    /* RATE_LIMIT_ANON_PER_MIN: per IP; 600 */
    int limit_key_per_min[2];  /* per API key, by plan (enum plan):
                                  RATE_LIMIT_KEY_PER_MIN (free) 1200,
                                  RATE_LIMIT_KEY_PRO_PER_MIN 12000 */
    int limit_login_ip_per_min;    /* failed logins per IP; 20 */
    int limit_login_email_per_min; /* failed logins per email; 5 */
    int db_latency_us;         /* DB_LATENCY_US: added to every query, to
                                  play a database across a network (load
                                  test); 0 */
};

/* An API key's plan: what its rate limit is (a real service would take
 * it from billing; here the key's creator picks it). */
enum plan { PLAN_FREE, PLAN_PRO, PLAN_COUNT };
extern const char *const plan_names[PLAN_COUNT]; /* "free", "pro" */

/* Fill cfg from the environment; prints the reason and returns -1 on a bad
 * value. */
int config_load(struct config *cfg);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_set_level(enum log_level level);

/* ---- db.c --------------------------------------------------------------- */

enum db_result { DB_OK = 0, DB_NOT_FOUND = 1, DB_CONFLICT = 2, DB_ERROR = -1 };

struct db;

/* Open (creating and seeding on first start) the database at path with one
 * connection per HTTP thread. seeded is set when this start created it. */
int db_open(const char *path, int connections, int latency_us, bool *seeded, struct db **out);
void db_close(struct db *db);
/* SQL statements run since start: the number caching is meant to shrink. */
uint64_t db_queries(const struct db *db);

/* Each returns DB_OK with *out a new JSON object/array (json_decref it),
 * DB_NOT_FOUND, DB_CONFLICT or DB_ERROR. */
int db_user_get(struct db *db, int64_t id, json_t **out);
int db_user_update_name(struct db *db, int64_t id, const char *name);
int db_user_insert(struct db *db, const char *email, const char *name,
                   const char *password_hash, int64_t *id);
/* The user id and password hash of email (hash: caller frees). */
int db_user_credentials(struct db *db, const char *email, int64_t *id, char **hash);
int db_product_get(struct db *db, int64_t id, json_t **out);
int db_product_list(struct db *db, const char *category, int page, int per_page,
                    json_t **out);
int db_product_insert(struct db *db, const char *category, const char *name,
                      int64_t price_cents, int64_t *id);
int db_apikey_insert(struct db *db, int64_t user_id, const char *name, const char *hash_hex,
                     const char *display, const char *scopes, const char *plan, int64_t *id);
/* The key with this hash, revoked or not: {"id", "user_id", "scopes",
 * "plan"} in *owner, and its revocation time (Unix ms; 0 = live). */
int db_apikey_by_hash(struct db *db, const char *hash_hex, json_t **owner, int64_t *revoked_ms);
int db_apikey_list(struct db *db, int64_t user_id, json_t **out);
/* Revoke key id of user_id; *hash_hex (caller frees) is its hash, for
 * rk_apikeys_revoke_hash(). */
int db_apikey_revoke(struct db *db, int64_t user_id, int64_t id, char **hash_hex);

/* Categories of the seeded catalogue. */
#define DB_CATEGORIES 20
extern const char *const db_categories[DB_CATEGORIES];

/* ---- stats.c ------------------------------------------------------------ */

/* The routes, as metric labels ("route" of api_requests_total). */
enum route_id {
    R_INDEX, R_STATUS, R_HEALTHZ, R_METRICS, R_SIGNUP, R_LOGIN, R_LOGOUT, R_ME,
    R_SESSIONS, R_USER, R_PRODUCT, R_PRODUCTS, R_APIKEYS, R_APIKEY, R_UNMATCHED,
    R_COUNT
};
extern const char *const route_names[R_COUNT];

void stats_request(enum route_id route, unsigned status, uint64_t elapsed_us);
void stats_rate_limited(void);
uint64_t stats_rate_limited_total(void);
uint64_t stats_requests_total(void);
struct app;
/* Lookups answered without SQLite (response cache and API keys together)
 * and lookups that reached it: the status page's hit ratio. */
void stats_cache_totals(struct app *app, uint64_t *hits, uint64_t *misses, uint64_t *degraded);
/* Append the service's Prometheus families to buf (see http.h's buffer). */
struct buf;
void stats_prometheus(struct buf *out, uint64_t sqlite_queries);

/* The status page's history: a thread samples the counters every 2 s. */
int stats_sampler_start(struct app *app);
void stats_sampler_stop(void);
/* [[t_ms, hits, misses, sqlite queries, rate limited, redis used_memory,
 *   redis up, live sessions or -1], ...], oldest first (json_decref it). */
json_t *stats_history_json(void);

/* ---- the service ---------------------------------------------------------- */

struct app {
    struct config cfg;
    struct db *db;
    rk_client *redis;
    rk_cache *cache;       /* API responses: users, products, lists */
    rk_apikeys *keys;      /* API-key verification (apikey.c) */
    rk_sessions *sessions; /* login sessions (handlers_session.c) */
    rk_limiter *rl_anon, *rl_key[PLAN_COUNT], *rl_login_ip, *rl_login_email; /* limits.c */
    atomic_int in_flight;  /* requests being handled, for shutdown */
};

#endif
