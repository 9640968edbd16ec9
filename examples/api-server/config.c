/*
 * config.c — configuration from the environment, and the log.
 *
 * Twelve-factor style: every setting is an environment variable with a
 * default that works on a laptop (`make run` sets none of them). A value
 * that does not parse stops the start with a message naming the variable,
 * rather than running with a surprise.
 */
#include "app.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const plan_names[PLAN_COUNT] = { "free", "pro" };

static enum log_level current_level = LOG_INFO;

void log_set_level(enum log_level level)
{
    current_level = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    if (level < current_level)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* One fprintf per line: stdio locks the stream, so lines from the
     * HTTP threads never interleave. */
    fprintf(stderr, "%02d:%02d:%02d.%03ld %-5s %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, names[level], line);
}

/* An integer variable in [min, max]; def when unset. */
static int env_int(const char *name, int def, int min, int max, int *out)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < min || n > max) {
        fprintf(stderr, "api-server: %s must be an integer in [%d, %d]\n", name, min, max);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int config_load(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->redis_url = getenv("REDIS_URL");
    if (cfg->redis_url && !*cfg->redis_url)
        cfg->redis_url = NULL;
    cfg->database_path = getenv("DATABASE_PATH");
    if (!cfg->database_path || !*cfg->database_path)
        cfg->database_path = "api-server.db";

    const char *listen = getenv("LISTEN");
    if (!listen || !*listen)
        listen = "127.0.0.1:8080";
    const char *colon = strrchr(listen, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof cfg->listen_host ||
        *end || port < 1 || port > 65535) {
        fprintf(stderr, "api-server: LISTEN must be HOST:PORT, e.g. 127.0.0.1:8080\n");
        return -1;
    }
    memcpy(cfg->listen_host, listen, (size_t)(colon - listen));
    cfg->listen_port = (int)port;

    const char *level = getenv("LOG_LEVEL");
    cfg->log_level = LOG_INFO;
    if (level && *level) {
        static const char *const names[] = { "debug", "info", "warn", "error" };
        int i = 0;
        while (i < 4 && strcmp(level, names[i]) != 0)
            i++;
        if (i == 4) {
            fprintf(stderr, "api-server: LOG_LEVEL must be debug, info, warn or error\n");
            return -1;
        }
        cfg->log_level = (enum log_level)i;
    }
    const char *cache = getenv("CACHE");
    cfg->cache_enabled = !(cache && (strcmp(cache, "off") == 0 || strcmp(cache, "0") == 0));
    const char *secure = getenv("COOKIE_SECURE");
    cfg->cookie_secure = secure && (strcmp(secure, "on") == 0 || strcmp(secure, "1") == 0);
    const char *limit = getenv("RATE_LIMIT");
    cfg->rate_limit = !(limit && (strcmp(limit, "off") == 0 || strcmp(limit, "0") == 0));
    const char *near = getenv("NEAR_CACHE");
    cfg->near_cache = near && (strcmp(near, "on") == 0 || strcmp(near, "1") == 0);

    if (env_int("THREADS", 8, 1, 256, &cfg->threads) ||
        env_int("CONNECTION_TIMEOUT_S", 10, 1, 3600, &cfg->connection_timeout_s) ||
        env_int("CACHE_TTL_S", 60, 1, 86400, &cfg->cache_ttl_s) ||
        env_int("DB_LATENCY_US", 0, 0, 1000000, &cfg->db_latency_us) ||
        env_int("RATE_LIMIT_ANON_PER_MIN", 600, 1, 1000000, &cfg->limit_anon_per_min) ||
        env_int("RATE_LIMIT_KEY_PER_MIN", 1200, 1, 1000000, &cfg->limit_key_per_min[PLAN_FREE]) ||
        env_int("RATE_LIMIT_KEY_PRO_PER_MIN", 12000, 1, 1000000,
                &cfg->limit_key_per_min[PLAN_PRO]) ||
        env_int("RATE_LIMIT_LOGIN_IP_PER_MIN", 20, 1, 1000000, &cfg->limit_login_ip_per_min) ||
        env_int("RATE_LIMIT_LOGIN_EMAIL_PER_MIN", 5, 1, 1000000,
                &cfg->limit_login_email_per_min))
        return -1;
    return 0;
}
