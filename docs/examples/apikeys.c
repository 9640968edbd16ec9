/*
 * apikeys.c — API-key validation with rk_apikeys (docs/apikeys.md).
 *
 * Run: REDIS_URL=redis://localhost:6379 ./apikeys
 *
 * The "database" is a table of SHA-256 hashes with an owner record and an
 * expiry each: the service never stores a key itself. The program issues
 * a key, verifies it (the database is asked once, then this process and
 * Redis answer), refuses a mistyped key without asking anyone, rotates the
 * key (the old one keeps working for a grace period, then expires), and
 * revokes the new one. Exits 0 when every verdict was the expected one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redkit/redkit.h>

typedef struct row {
    char hash[RK_APIKEYS_HASH_BUF];
    const char *owner; /* the service's own encoding: user, scopes, plan */
    int64_t expires_at_ms;
} row;

static row db[4];
static int db_rows, db_queries;

static int64_t now_ms(void) { return (int64_t)time(NULL) * 1000; }

/* The lookup callback: SELECT owner, expires FROM api_keys WHERE sha256 = ? */
static rk_status lookup(const char *hash_hex, rk_apikeys_record *record, void *user)
{
    (void)user;
    db_queries++;
    for (int i = 0; i < db_rows; i++)
        if (strcmp(db[i].hash, hash_hex) == 0)
            return rk_apikeys_record_set(record, db[i].owner, strlen(db[i].owner), db[i].expires_at_ms);
    return RK_MISS; /* cached as "not found" for negative_ttl_ms */
}

/* Issue a key: only its hash goes to the database; the key goes to its
 * owner, once. */
static int issue(rk_apikeys *keys, const char *owner, char key[RK_APIKEYS_KEY_BUF])
{
    row *r = &db[db_rows++];
    r->owner = owner;
    return rk_apikeys_generate(keys, key, r->hash) == RK_OK ? db_rows - 1 : -1;
}

static rk_apikey_verdict check(rk_apikeys *keys, const char *key, const char *what)
{
    rk_apikey_result res;
    rk_status st = rk_apikeys_verify(keys, key, &res);
    if (st != RK_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, rk_strerror(st), rk_last_error());
        return 0;
    }
    static const char *const layer[] = {"checksum", "this process", "redis", "database"};
    char shown[RK_APIKEYS_DISPLAY_BUF];
    if (rk_apikeys_display(key, shown) != RK_OK) /* never log the key itself */
        snprintf(shown, sizeof shown, "(malformed)");
    printf("%-28s %-20s %-9s from %s%s%s%s\n", what, shown, rk_apikeys_verdict_name(res.verdict),
           layer[res.layer], res.degraded ? " (degraded)" : "", res.owner ? ", owner " : "",
           res.owner ? (const char *)res.owner : "");
    rk_apikey_verdict v = res.verdict;
    rk_apikeys_result_clear(&res);
    return v;
}

int main(void)
{
    rk_client *client = NULL;
    rk_apikeys *keys = NULL;
    rk_status st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_apikeys_new(client, &(rk_apikeys_options){.lookup = lookup, .key_prefix = "demo"}, &keys);
    if (st != RK_OK) {
        fprintf(stderr, "setup: %s: %s\n", rk_strerror(st), rk_last_error());
        return 1;
    }
    char key[RK_APIKEYS_KEY_BUF], next[RK_APIKEYS_KEY_BUF];
    int row_of_key = issue(keys, "user=42 scopes=read,write plan=pro", key);
    if (row_of_key < 0) return 1;

    int bad = 0;
    bad |= check(keys, key, "first verify") != RK_APIKEY_VALID;  /* the database */
    bad |= check(keys, key, "second verify") != RK_APIKEY_VALID; /* this process */

    char typo[RK_APIKEYS_KEY_BUF];
    snprintf(typo, sizeof typo, "%s", key);
    typo[10] = typo[10] == 'x' ? 'y' : 'x';
    bad |= check(keys, typo, "mistyped key") != RK_APIKEY_MALFORMED; /* nobody asked */

    /* Rotation: a new key for the same owner; the old one expires after a
     * grace period (here: already over), which verify honours. */
    if (issue(keys, "user=42 scopes=read,write plan=pro", next) < 0) return 1;
    bad |= check(keys, next, "new key") != RK_APIKEY_VALID;
    db[row_of_key].expires_at_ms = now_ms() + 3600 * 1000; /* grace: one hour */
    rk_apikeys_forget(keys, key);                          /* caches re-read the record */
    bad |= check(keys, key, "old key, in its grace") != RK_APIKEY_VALID;
    db[row_of_key].expires_at_ms = now_ms() - 1; /* (the grace period is over) */
    rk_apikeys_forget(keys, key);
    bad |= check(keys, key, "old key, after its grace") != RK_APIKEY_EXPIRED;

    /* Revocation: the new key leaked. Every process refuses it from now on. */
    if (rk_apikeys_revoke(keys, next) != RK_OK) bad = 1;
    bad |= check(keys, next, "after revoke") != RK_APIKEY_REVOKED;

    rk_apikeys_metrics m;
    rk_apikeys_metrics_get(keys, &m);
    printf("%llu verifies, %llu database queries, %llu answered from memory\n", (unsigned long long)m.verifies,
           (unsigned long long)m.lookups, (unsigned long long)m.process_hits);
    rk_apikeys_free(keys);
    rk_client_free(client);
    return bad || db_queries != 4 ? 1 : 0;
}
