/*
 * script.c — Lua scripts by SHA with a NOSCRIPT fallback (see script.h).
 *
 * Why EVALSHA first and EVAL only on NOSCRIPT, rather than SCRIPT LOAD on
 * every new connection: the server may lose its script cache at any time
 * (restart, failover to a replica that never saw the script, SCRIPT
 * FLUSH), so a client has to handle NOSCRIPT anyway; once it does, loading
 * at connect time buys nothing. EVAL both runs and caches the script, so
 * the fallback costs one extra round trip, once per server.
 *
 * The request goes through rk__client_pipeline_until() with one command,
 * not rk__client_run(): the pipeline hands error replies back as replies,
 * so NOSCRIPT is recognised from the reply itself rather than from the
 * text of an error message; and it takes an absolute deadline, so that
 * the EVALSHA and the EVAL after it share the call's one deadline.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "alloc.h"
#include "client.h"
#include "error.h"
#include "reply.h"
#include "script.h"

enum { SHA_PENDING = 0, SHA_READY = 1, SHA_NONE = 2 };

/* One lock for every script: it is taken only the first time a script's
 * SHA is needed, so there is nothing to gain from finer locks. */
static pthread_mutex_t sha_lock = PTHREAD_MUTEX_INITIALIZER;

static bool compute_sha(const rk__script *s, char hex[RK__SHA1_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* EVP_Digest can fail only when no SHA-1 implementation is available
     * (a restricted provider configuration); EVAL still works then. */
    if (EVP_Digest(s->source, s->source_len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen * 2 != RK__SHA1_HEX)
        return false;
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[RK__SHA1_HEX] = '\0';
    return true;
}

const char *rk__script_sha(rk__script *s)
{
    /* Double-checked: the acquire load pairs with the release store below,
     * so a thread that sees SHA_READY also sees the digits. */
    int state = atomic_load_explicit(&s->state, memory_order_acquire);
    if (state == SHA_PENDING) {
        pthread_mutex_lock(&sha_lock);
        state = atomic_load_explicit(&s->state, memory_order_relaxed);
        if (state == SHA_PENDING) {
            state = compute_sha(s, s->sha) ? SHA_READY : SHA_NONE;
            atomic_store_explicit(&s->state, state, memory_order_release);
        }
        pthread_mutex_unlock(&sha_lock);
    }
    return state == SHA_READY ? s->sha : NULL;
}

bool rk__script_is_noscript(const rk_reply *r)
{
    return r && r->type == RK_REPLY_ERROR && r->str && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

/* One request whose error reply, if any, comes back as the reply. */
static rk_status request(rk_client *client, int argc, const char **argv, const size_t *lens, bool is_read,
                         int64_t deadline_ns, rk_reply **reply)
{
    rk__cmd cmd = {.argc = argc, .argv = argv, .argvlen = lens};
    return rk__client_pipeline_until(client, 1, &cmd, is_read, reply, deadline_ns);
}

#define SMALL_ARGC 32

rk_status rk__script_run(rk_client *client, rk__script *script, int nkeys, const char *const *keys,
                         const size_t *keylens, int nargs, const char *const *args, const size_t *arglens,
                         bool is_read, rk_reply **reply)
{
    *reply = NULL;
    if (!client || !script) return rk__fail(RK_ERR_INVALID, "script: NULL client or script");
    if (nkeys < 0 || nargs < 0 || nkeys > INT_MAX / 2 - 3 || nargs > INT_MAX / 2 - 3 ||
        (nkeys && (!keys || !keylens)) || (nargs && (!args || !arglens)))
        return rk__fail(RK_ERR_INVALID, "%s: bad key or argument list", script->name);

    int argc = 3 + nkeys + nargs;
    const char *small_argv[SMALL_ARGC];
    size_t small_lens[SMALL_ARGC];
    const char **argv = small_argv;
    size_t *lens = small_lens;
    if (argc > SMALL_ARGC) {
        argv = rk__malloc((size_t)argc * sizeof *argv);
        lens = rk__malloc((size_t)argc * sizeof *lens);
        if (!argv || !lens) {
            rk__free(argv);
            rk__free(lens);
            return rk__fail(RK_ERR_NOMEM, "%s: out of memory", script->name);
        }
    }
    char numkeys[16];
    argv[2] = numkeys;
    lens[2] = (size_t)snprintf(numkeys, sizeof numkeys, "%d", nkeys);
    for (int i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        lens[3 + i] = keylens[i];
    }
    for (int i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        lens[3 + nkeys + i] = arglens[i];
    }

    rk_status st = RK_OK;
    int64_t deadline_ns = rk__client_deadline(client);
    const char *sha = rk__script_sha(script);
    bool by_source = sha == NULL;
    if (sha) {
        argv[0] = "EVALSHA";
        lens[0] = 7;
        argv[1] = sha;
        lens[1] = RK__SHA1_HEX;
        st = request(client, argc, argv, lens, is_read, deadline_ns, reply);
        if (st == RK_OK && rk__script_is_noscript(*reply)) {
            /* The server lost (or never had) the script: NOSCRIPT means
             * nothing ran, so sending it in full is safe even for a
             * script that writes. */
            rk_reply_free(*reply);
            *reply = NULL;
            by_source = true;
        }
    }
    if (by_source) {
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = script->source;
        lens[1] = script->source_len;
        st = request(client, argc, argv, lens, is_read, deadline_ns, reply);
    }
    if (st == RK_OK && (*reply)->type == RK_REPLY_ERROR) {
        st = rk__reply_fail(*reply, script->name);
        *reply = NULL;
    }
    if (argv != small_argv) {
        rk__free(argv);
        rk__free(lens);
    }
    return st;
}
