/*
 * script.h — Lua scripts run by SHA, with the NOSCRIPT fallback.
 *
 * A module that needs an atomic multi-step operation describes its Lua
 * script once, as a static rk__script, and runs it with rk__script_run().
 * The script travels as its 40-byte SHA-1 (EVALSHA) instead of its full
 * text; when the server does not know it (a restart, a failover, SCRIPT
 * FLUSH) the server answers NOSCRIPT and the call is repeated once with
 * EVAL, which runs the script and caches it for the next EVALSHA. No
 * SCRIPT LOAD at connect time is needed, and no state about which server
 * knows which script is kept anywhere: the server's answer is the truth.
 *
 * The SHA-1 is computed on first use (OpenSSL EVP), once, whichever
 * threads race to it; a script description is safe to share between
 * threads.
 */
#ifndef RK_SRC_SCRIPT_H
#define RK_SRC_SCRIPT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <redkit/client.h>

#define RK__SHA1_HEX 40

/* A script. Define it static with RK__SCRIPT and never write to it: the
 * library fills in the SHA itself. */
typedef struct rk__script {
    const char *name;       /* short, for messages ("cache tag store") */
    const char *source;     /* the Lua text */
    size_t source_len;
    _Atomic int state;      /* 0 = SHA not computed yet, 1 = ready,
                               2 = no SHA (digest unavailable: EVAL only) */
    char sha[RK__SHA1_HEX + 1];
} rk__script;

/* Static initialiser: `static rk__script s = RK__SCRIPT("name", "lua text");`
 * (source must be a string literal: its length is taken with sizeof). */
#define RK__SCRIPT(name_, source_) { .name = (name_), .source = (source_), .source_len = sizeof(source_) - 1 }

/* The script's SHA-1 as 40 lowercase hex digits, NUL-terminated, valid
 * as long as the script; NULL when no digest could be computed (then
 * rk__script_run sends EVAL every time). Thread-safe. */
const char *rk__script_sha(rk__script *script);

/*
 * rk__script_run — EVALSHA <sha> nkeys keys... args...; on a NOSCRIPT
 * error reply, the same with EVAL <source> (which also caches the script
 * on the server). keys[i] and args[i] are binary-safe with their lengths
 * in keylens / arglens (neither may be NULL when its count is > 0); they
 * are copied into the request. is_read as in rk__client_run: a script
 * that only reads may be retried once on a fresh connection.
 *
 * On RK_OK *reply is the script's reply, owned by the caller
 * (rk_reply_free); it is never an error reply. A script error (any error
 * reply other than NOSCRIPT) gives RK_ERR_SERVER (RK_ERR_AUTH for NOAUTH)
 * with the server's text, prefixed by the script's name; other failures
 * are the client's (RK_ERR_UNAVAILABLE, RK_ERR_TIMEOUT, RK_ERR_NOMEM, ...).
 * *reply is NULL on every failure. One deadline, command_timeout_ms from
 * the start of the call, covers both requests (RK_ERR_TIMEOUT when the
 * EVAL cannot be sent or answered within what is left of it).
 */
rk_status rk__script_run(rk_client *client, rk__script *script, int nkeys, const char *const *keys,
                         const size_t *keylens, int nargs, const char *const *args, const size_t *arglens,
                         bool is_read, rk_reply **reply);

/* Whether r is the NOSCRIPT error reply (for callers that pipeline
 * EVALSHA themselves and send the script in full, with EVAL of
 * script->source, to whatever the server refused). */
bool rk__script_is_noscript(const rk_reply *r);

#endif
