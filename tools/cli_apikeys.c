/*
 * cli_apikeys.c — the "apikey" command group of the redkit tool: what an
 * operator needs from a shell when a key leaks or a customer says "my key
 * does not work".
 *
 *     redkit apikey hash KEY       the SHA-256 to look for in the database
 *     redkit apikey check KEY      checksum only: no Redis, no database
 *     redkit apikey revoke KEY|HASH   tombstone + invalidation (namespace
 *                                  --ns NS, default "apikey"), one round trip
 *
 * Nothing here prints a key: only its hash and its display form
 * ("rk_AbCd...wxyz"), as cli.h asks of every group.
 */
#include <stdio.h>
#include <string.h>

#include <redkit/redkit.h>

#include "cli.h"

/* revoke needs a handle, and a handle a lookup; revoke never calls it. */
static rk_status no_lookup(const char *hash_hex, rk_apikeys_record *record, void *user)
{
    (void)hash_hex;
    (void)record;
    (void)user;
    return RK_ERR_UNAVAILABLE;
}

static bool is_hash(const char *s)
{
    if (strlen(s) != RK_APIKEYS_HASH_HEX) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) return false;
    return true;
}

static int revoke(rk_client *client, const char *ns, const char *what)
{
    rk_apikeys *keys;
    rk_status st = rk_apikeys_new(client, &(rk_apikeys_options){.ns = ns, .lookup = no_lookup, .no_subscribe = true}, &keys);
    if (st != RK_OK) return rk_cli_report(st);
    char shown[RK_APIKEYS_DISPLAY_BUF];
    if (is_hash(what)) {
        st = rk_apikeys_revoke_hash(keys, what);
        snprintf(shown, sizeof shown, "%.16s...", what);
    } else {
        st = rk_apikeys_revoke(keys, what);
        if (st == RK_OK) rk_apikeys_display(what, shown);
    }
    rk_apikeys_free(keys);
    if (st != RK_OK) return rk_cli_report(st);
    printf("revoked %s\n", shown);
    return RK_CLI_OK;
}

static int run(rk_client *client, const char *ns, int argc, char **argv)
{
    if (argc != 2) return rk_cli_usage_error("apikey: expected 'hash KEY', 'check KEY' or 'revoke KEY|HASH'");
    const char *sub = argv[0], *arg = argv[1];
    if (strcmp(sub, "hash") == 0) {
        char hash[RK_APIKEYS_HASH_BUF];
        rk_status st = rk_apikeys_hash(arg, hash);
        if (st != RK_OK) return rk_cli_report(st);
        printf("%s\n", hash);
        return RK_CLI_OK;
    }
    if (strcmp(sub, "check") == 0) {
        char shown[RK_APIKEYS_DISPLAY_BUF];
        if (rk_apikeys_display(arg, shown) != RK_OK) {
            printf("malformed\n");
            fprintf(stderr, "redkit: %s\n", rk_last_error());
            return RK_CLI_MISS;
        }
        printf("ok %s\n", shown);
        return RK_CLI_OK;
    }
    if (strcmp(sub, "revoke") == 0) return revoke(client, ns, arg);
    return rk_cli_usage_error("apikey: unknown subcommand (hash, check, revoke)");
}

const rk_cli_group rk_cli_apikeys = {
    .name = "apikey",
    .usage = "  apikey hash KEY               SHA-256 of an API key (what the database stores)\n"
             "  apikey check KEY              checksum only: ok + display form, or malformed (1)\n"
             "  apikey revoke KEY|HASH        revoke everywhere (tombstone + invalidation)\n"
             "      (--ns NS: the API keys' namespace, default \"apikey\")\n",
    .run = run,
};
