/*
 * apikey.c — API keys, on redkit's rk_apikeys with SQLite as the lookup.
 *
 * The library makes the keys (rk_apikeys_generate: a checksum, 256 random
 * bits), gives their SHA-256 (stored in SQLite, never the key) and their
 * display form (stored too, for GET /v1/api-keys), and verifies them:
 * checksum (garbage costs nothing), this process's memory, Redis, and only
 * then lookup() below — one SQLite query per key per positive TTL however
 * many threads ask. The owner record the lookup hands back is the key's
 * row as JSON: id, user id, scopes and plan, all a request needs, so a
 * busy key costs no SQLite query at all.
 *
 * Revocation is SQLite first (the truth, and what a lookup reads after
 * the tombstone expires), then rk_apikeys_revoke_hash: a tombstone in
 * Redis that no verify in flight can overwrite, this process's memory of
 * the key dropped, an invalidation published for other processes. A key
 * revoked in SQLite comes back from the lookup with its revocation time
 * as its expiry, so every layer refuses it even where the tombstone never
 * arrived (Redis down at the moment of the revoke).
 *
 * With Redis down, rk_apikeys asks the lookup directly (or serves what
 * this process already knew, flagged degraded): keys keep working.
 */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/* A "valid" answer lives in Redis this long. It bounds how long a key
 * revoked while Redis was unreachable (no tombstone written) can still be
 * accepted by another process that reads Redis's answer. */
#define POSITIVE_TTL_MS 60000

static rk_status lookup(const char *hash_hex, rk_apikeys_record *record, void *user)
{
    struct app *app = user;
    json_t *owner = NULL;
    int64_t revoked_ms = 0;
    int rc = db_apikey_by_hash(app->db, hash_hex, &owner, &revoked_ms);
    if (rc == DB_NOT_FOUND)
        return RK_MISS; /* cached as "not found": a client hammering a made-up key stays off SQLite */
    if (rc != DB_OK)
        return RK_ERR_UNAVAILABLE; /* never cached */
    char *text = json_dumps(owner, JSON_COMPACT);
    json_decref(owner);
    if (!text)
        return RK_ERR_NOMEM;
    /* A revoked key exists, with its revocation as its expiry: answered
     * "expired" from every layer, whatever happened to the tombstone. */
    rk_status st = rk_apikeys_record_set(record, text, strlen(text), revoked_ms);
    free(text);
    return st;
}

rk_status apikeys_open(struct app *app)
{
    return rk_apikeys_new(app->redis,
                          &(rk_apikeys_options){ .lookup = lookup,
                                                 .lookup_user = app,
                                                 .positive_ttl_ms = POSITIVE_TTL_MS },
                          &app->keys);
}

static enum plan plan_from(const char *name)
{
    for (int p = 0; p < PLAN_COUNT; p++)
        if (name && strcmp(name, plan_names[p]) == 0)
            return (enum plan)p;
    return PLAN_FREE;
}

/* The owner record (our JSON) into info; false if it is not ours. */
static bool parse_owner(const void *owner, size_t len, struct apikey_info *info)
{
    json_t *row = json_loadb(owner, len, 0, NULL);
    json_int_t id = 0, user_id = 0;
    const char *scopes = NULL, *plan = NULL;
    bool ok = row && json_unpack(row, "{s:I, s:I, s:s, s:s}", "id", &id, "user_id", &user_id,
                                 "scopes", &scopes, "plan", &plan) == 0;
    if (ok) {
        info->id = id;
        info->user_id = user_id;
        info->can_write = strstr(scopes, "write") != NULL;
        info->plan = plan_from(plan);
    }
    json_decref(row);
    return ok;
}

static int verify(struct app *app, const char *key, struct apikey_info *info)
{
    rk_apikey_result r;
    rk_status st = rk_apikeys_verify(app->keys, key, &r);
    int rc = 2;
    if (st != RK_OK) {
        /* rk_last_error() never quotes the key. */
        log_msg(LOG_ERROR, "api key: %s: %s", rk_strerror(st), rk_last_error());
        rc = -1;
    } else if (r.verdict == RK_APIKEY_VALID && parse_owner(r.owner, r.owner_len, info)) {
        rc = 0;
    } else if (r.verdict != RK_APIKEY_MALFORMED) {
        char display[RK_APIKEYS_DISPLAY_BUF];
        if (rk_apikeys_display(key, display) == RK_OK)
            log_msg(LOG_DEBUG, "api key %s refused: %s (from %s)", display,
                    rk_apikeys_verdict_name(r.verdict),
                    r.layer == RK_APIKEY_LAYER_PROCESS ? "memory"
                    : r.layer == RK_APIKEY_LAYER_REDIS ? "redis"
                                                       : "sqlite");
    }
    rk_apikeys_result_clear(&r);
    return rc;
}

int apikey_verify(struct app *app, const struct http_request *rq, const struct apikey_info **info)
{
    struct apikey_memo *memo = rq->apikey;
    if (!memo->done) {
        const char *authz = http_header(rq, "Authorization");
        memo->rc = authz && strncasecmp(authz, "Bearer ", 7) == 0
                       ? verify(app, authz + 7, &memo->info)
                       : 1;
        memo->done = true;
    }
    *info = &memo->info;
    return memo->rc;
}

int apikey_create(struct app *app, int64_t user_id, const char *name, const char *scopes,
                  enum plan plan, char *key, char *display, int64_t *id)
{
    char hash[RK_APIKEYS_HASH_BUF];
    if (rk_apikeys_generate(app->keys, key, hash) != RK_OK ||
        rk_apikeys_display(key, display) != RK_OK) {
        log_msg(LOG_ERROR, "api key: %s", rk_last_error());
        return DB_ERROR;
    }
    return db_apikey_insert(app->db, user_id, name, hash, display, scopes, plan_names[plan], id);
}

int apikey_revoke(struct app *app, int64_t user_id, int64_t id, bool *tombstone)
{
    char *hash = NULL;
    int rc = db_apikey_revoke(app->db, user_id, id, &hash);
    *tombstone = false;
    if (rc != DB_OK)
        return rc;
    rk_status st = rk_apikeys_revoke_hash(app->keys, hash);
    free(hash);
    *tombstone = st == RK_OK;
    if (!*tombstone)
        log_msg(LOG_WARN,
                "revoked key %lld: no tombstone in Redis (%s); SQLite and this process refuse "
                "it now, a copy of its old answer in Redis lives at most %d s",
                (long long)id, rk_strerror(st), POSITIVE_TTL_MS / 1000);
    return DB_OK;
}
