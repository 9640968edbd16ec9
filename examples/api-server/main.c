/*
 * main.c — the api-server example: an HTTP JSON API on SQLite that uses
 * redkit for its cache, its sessions, its rate limits and its API keys.
 *
 *     make run                     # builds, seeds, starts a private Redis
 *     REDIS_URL=redis://... DATABASE_PATH=/var/lib/api.db LISTEN=0.0.0.0:8080 api-server
 *
 * Start-up order matters for availability: the database must open (it is
 * the source of truth), Redis need not (redkit connects lazily and the
 * service runs degraded until it answers). Shutdown is graceful on
 * SIGINT/SIGTERM: stop accepting, let requests in flight finish, then free
 * every handle in reverse order.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "auth.h"
#include "http.h"
#include "limits.h"

#define DRAIN_MS 5000

/* redkit's own log lines (never a secret) go to ours. */
static void redkit_log(rk_log_level level, const char *message, void *user)
{
    (void)user;
    log_msg(level >= RK_LOG_ERROR ? LOG_ERROR : level >= RK_LOG_WARN ? LOG_WARN : LOG_DEBUG,
            "redkit: %s", message);
}

static int open_redis(struct app *app)
{
    rk_status st = rk_client_new(
        &(rk_client_options){
            .url = app->cfg.redis_url,
            .client_name = "api-server",
            .pool_size = app->cfg.threads,
            /* A cache must never make a request slower than the database
             * would: short deadlines, and the breaker fails fast while
             * Redis is down. */
            .connect_timeout_ms = 250,
            .command_timeout_ms = 250,
            .log = redkit_log,
            .log_level = RK_LOG_WARN,
        },
        &app->redis);
    if (st == RK_OK)
        st = rk_cache_new(app->redis,
                          &(rk_cache_options){ .ns = "api", .near_cache = app->cfg.near_cache },
                          &app->cache);
    if (st == RK_OK)
        st = apikeys_open(app);
    if (st == RK_OK)
        st = rk_sessions_new(app->redis, &(rk_sessions_options){ .ns = "sess" }, &app->sessions);
    if (st == RK_OK)
        st = limits_open(app);
    if (st != RK_OK) {
        log_msg(LOG_ERROR, "redis: %s: %s", rk_strerror(st), rk_last_error());
        return -1;
    }
    st = rk_client_ping(app->redis);
    if (st != RK_OK)
        log_msg(LOG_WARN, "redis: %s (%s); serving from SQLite until it answers", rk_strerror(st),
                rk_last_error());
    else {
        rk_memory_info mem; /* logs the eviction warning when it applies */
        rk_server_memory(app->redis, &mem);
    }
    return 0;
}

int main(void)
{
    static struct app app;
    struct http_server *server = NULL;
    int code = 1;
    bool seeded = false;

    if (config_load(&app.cfg) != 0)
        return 2;
    log_set_level(app.cfg.log_level);

    /* Block the stop signals before any thread starts, so that every
     * thread inherits the mask and only sigwait() below receives them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (db_open(app.cfg.database_path, app.cfg.threads, app.cfg.db_latency_us, &seeded, &app.db) != 0)
        goto out;
    if (open_redis(&app) != 0)
        goto out;
    if (stats_sampler_start(&app) != 0 || http_start(&app, &server) != 0)
        goto out;

    printf("api-server listening on http://%s:%d/  (cache %s%s, database %s)\n"
           "  curl http://%s:%d/v1/products/42 -i\n"
           "  curl 'http://%s:%d/v1/products?category=books&page=2'\n"
           "  curl -u alice@example.com:alice-demo-password http://%s:%d/v1/me\n"
           "  curl http://%s:%d/healthz\n"
           "Status page: http://%s:%d/   Ctrl-C stops.\n",
           app.cfg.listen_host, app.cfg.listen_port, app.cfg.cache_enabled ? "on" : "off",
           app.cfg.cache_enabled && app.cfg.near_cache ? " with near cache" : "",
           app.cfg.database_path, app.cfg.listen_host, app.cfg.listen_port, app.cfg.listen_host,
           app.cfg.listen_port, app.cfg.listen_host, app.cfg.listen_port, app.cfg.listen_host,
           app.cfg.listen_port, app.cfg.listen_host, app.cfg.listen_port);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    log_msg(LOG_INFO, "signal %d: finishing requests in flight", sig);
    code = 0;
out:
    http_stop(server, DRAIN_MS);
    stats_sampler_stop();
    limits_close(&app);
    rk_sessions_free(app.sessions);
    rk_apikeys_free(app.keys);
    rk_cache_free(app.cache);
    rk_client_free(app.redis);
    db_close(app.db);
    if (code == 0)
        log_msg(LOG_INFO, "stopped");
    return code;
}
