/*
 * sessions.h — the inside of an rk_sessions, shared by the files that
 * implement it (contract in include/redkit/sessions.h):
 *
 *   token.c      tokens: generation, the local format check, the digest
 *                that names a session in Redis (pure, no I/O)
 *   sessions.c   the handle, the Lua scripts and every operation
 *   cookie.c     Set-Cookie / Cookie helpers (pure)
 *
 * Keys: a session lives under "<prefix>:<ns>:{<id>}", id = base64url of
 * the first 128 bits of SHA-256(token); a user's index (a sorted set of
 * ids scored by a bound on their deadline) under "<prefix>:<ns>#u:<user>":
 * '#' never appears in a namespace, so no session key and no other
 * namespace can ever name an index, and a SCAN for "<head>{*" sees
 * sessions only.
 */
#ifndef RK_SRC_SESSIONS_H
#define RK_SRC_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/sessions.h>

/* Bytes of randomness in a token, and of the digest in a session id. */
#define RK__SESSION_TOKEN_BYTES 32
#define RK__SESSION_ID_BYTES 16

/* The stored value (scripts.h). Format 2: MessagePack of the user id and
 * of each attribute's name and value, then a 10-byte trailer: deadline ms
 * (6), deadline − issued (4), big-endian. Format 1 (still read): byte 1,
 * issued ms (6), deadline − issued (4), last access − issued (4), then
 * MessagePack of the user id and the attribute map. */
#define RK__SESSION_HEADER 15
#define RK__SESSION_VERSION 1
#define RK__SESSION_TRAILER 10

/* A new token from the OS CSPRNG into tok (NUL-terminated). RK_OK or
 * RK_ERR_SYSTEM. */
rk_status rk__session_token_new(char tok[RK_SESSION_TOKEN_SIZE]);

/* Whether t is a well-formed token: exactly 43 characters of the base64url
 * alphabet, the last one canonical (its two unused bits zero), then NUL.
 * Reads at most 44 bytes of t. Pure. */
bool rk__session_token_ok(const char *t);

/* The session id of a well-formed token (base64url of the first 128 bits
 * of its SHA-256), NUL-terminated. RK_OK or RK_ERR_SYSTEM (no digest). */
rk_status rk__session_id(const char *tok, char id[RK_SESSION_ID_SIZE]);

/* base64url without padding of n bytes into out (room for 4n/3 + 2). */
size_t rk__base64url(const unsigned char *in, size_t n, char *out);

/* The times in a stored value's header (len bytes at v); false when v is
 * not a session value (too short, other version). Pure. */
typedef struct rk__session_head {
    int64_t issued_ms;
    int64_t deadline_ms;
    int64_t last_access_ms; /* -1 in format 2: derive it from the expiry */
} rk__session_head;
bool rk__session_parse_head(const char *v, size_t len, rk__session_head *h);

#endif
