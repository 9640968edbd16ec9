/*
 * apikey.c — API keys: creation, hashing, validation through the cache.
 *
 * A key is "rk_" followed by 32 random bytes in base64url. SQLite keeps
 * only its SHA-256 (a key is as strong as a 256-bit secret, so a fast hash
 * is enough; a password needs Argon2 because people choose weak ones).
 *
 * Validation is get-or-compute on the hash: the cache entry
 * "key:<sha256>" holds {"id","user_id","scopes"} of a live key, or {} for
 * an unknown one (cached too, briefly, so a client hammering with a bad
 * key does not reach SQLite each time). The entry carries no stale window
 * and therefore no copy in process memory: a revoked key must not be
 * served from anywhere once apikey_forget() has run. When Redis is down
 * every validation reads SQLite, which is always right.
 *
 * This file is the seam for redkit's own API-key module (rk_apikeys,
 * planned): apikey_validate() and apikey_forget() are all the service
 * calls, so swapping the implementation touches this file only.
 */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define UNKNOWN_TTL_MS 10000

void apikey_hash(const char *key, char *hash_hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(hash_hex + 2 * i, 3, "%02x", md[i]);
    hash_hex[APIKEY_HASH_HEX] = '\0';
}

int apikey_generate(char *key, char *hash_hex, char *display, size_t display_size)
{
    unsigned char raw[32];
    char b64[48];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)b64, raw, sizeof raw); /* 44 chars, one '=' */
    OPENSSL_cleanse(raw, sizeof raw);
    b64[43] = '\0';
    for (char *p = b64; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    memcpy(key, "rk_", 3);
    memcpy(key + 3, b64, 44); /* 43 characters and the NUL */
    OPENSSL_cleanse(b64, sizeof b64);
    apikey_hash(key, hash_hex);
    snprintf(display, display_size, "%.7s...", key);
    return 0;
}

/* A string that could be a key: cheap to check, and it keeps garbage of
 * any size away from the hash, the cache and the database. */
static bool well_formed(const char *key)
{
    if (strncmp(key, "rk_", 3) != 0 || strlen(key) != APIKEY_CHARS)
        return false;
    for (const char *p = key + 3; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    return true;
}

static rk_status compute_key(const char *cache_key, rk_cache_computed *out, void *ctx)
{
    struct app *app = ctx;
    json_t *row = NULL;
    int rc = db_apikey_by_hash(app->db, cache_key + 4 /* "key:" */, &row);
    if (rc == DB_ERROR)
        return RK_ERR_SYSTEM;
    if (rc == DB_NOT_FOUND) {
        rk_cache_computed_set_ttl_ms(out, UNKNOWN_TTL_MS);
        return rk_cache_computed_set(out, "{}", 2);
    }
    char *text = json_dumps(row, JSON_COMPACT);
    json_decref(row);
    if (!text)
        return RK_ERR_NOMEM;
    rk_status st = rk_cache_computed_set(out, text, strlen(text));
    free(text);
    return st;
}

int apikey_validate(struct app *app, const char *key, struct apikey_info *info)
{
    if (!well_formed(key))
        return 1;
    char cache_key[4 + APIKEY_HASH_HEX + 1];
    memcpy(cache_key, "key:", 4);
    apikey_hash(key, cache_key + 4);

    json_t *row = NULL;
    if (app->cfg.cache_enabled) {
        void *value = NULL;
        size_t len = 0;
        rk_status st = rk_cache_fetch(app->keycache, cache_key, compute_key, app,
                                      &(rk_cache_fetch_options){ .ttl_s = APIKEY_CACHE_TTL_S },
                                      &value, &len, NULL);
        if (st != RK_OK)
            return -1;
        row = json_loadb(value, len, 0, NULL);
        rk_free(value);
    } else {
        int rc = db_apikey_by_hash(app->db, cache_key + 4, &row);
        if (rc != DB_OK)
            return rc == DB_NOT_FOUND ? 1 : -1;
    }
    json_int_t id = 0, user_id = 0;
    const char *scopes = "";
    int rc = row && json_unpack(row, "{s:I, s:I, s:s}", "id", &id, "user_id", &user_id,
                                "scopes", &scopes) == 0
                 ? 0
                 : 1;
    if (rc == 0) {
        info->id = id;
        info->user_id = user_id;
        info->can_write = strstr(scopes, "write") != NULL;
    }
    json_decref(row);
    return rc;
}

int apikey_forget(struct app *app, const char *hash_hex)
{
    char cache_key[4 + APIKEY_HASH_HEX + 1];
    snprintf(cache_key, sizeof cache_key, "key:%s", hash_hex);
    rk_status st = rk_cache_delete(app->keycache, cache_key);
    return st == RK_OK || st == RK_MISS ? 0 : -1;
}
