/*
 * redkit/sessions.h — login sessions stored in Redis: 256-bit tokens that
 * Redis never sees, idle and absolute timeouts enforced on the server,
 * attribute-level writes, regeneration, and per-user listing and revocation.
 *
 *     rk_sessions *sessions;
 *     rk_sessions_new(client, NULL, &sessions);      // namespace "sess"
 *     char token[RK_SESSION_TOKEN_SIZE];
 *     rk_sessions_create(sessions, &(rk_session_create_options){ .user = "u42" }, token);
 *     rk_sessions_set_str(sessions, token, "cart", "[1,2,3]");
 *     rk_session *s;
 *     if (rk_sessions_get(sessions, token, NULL, 0, &s) == RK_OK) { ...; rk_session_free(s); }
 *     rk_sessions_destroy(sessions, token);
 *
 * Tokens. A token is 32 bytes from the OS CSPRNG (getrandom), written as 43
 * characters of base64url without padding; it is what the caller puts in
 * a cookie. Redis holds only a digest of it: the session's key is
 * "<prefix>:<ns>:{<id>}", id being the first 128 bits of SHA-256(token) in
 * base64url (22 characters), so a dump, MONITOR or a replica of Redis
 * reveals no usable session. A token that is not 43 base64url characters
 * in canonical form is refused locally (RK_ERR_INVALID) before anything is
 * sent. A token never appears in an error message, a log line or a metric.
 *
 * Timeouts. Every session has an idle timeout (it dies when unused that
 * long; each get, touch or write slides it) and an absolute deadline (it
 * dies then, however active). The Redis TTL of a session is always
 * min(idle timeout, time left to the deadline), set by the same Lua script
 * that touches it, on the server's clock (TIME): no host's clock can make
 * a session outlive its deadline.
 *
 * Round trips. create, get, set, unset, touch and destroy are one round
 * trip each (one script by SHA; create with a user pipelines the index
 * update before it). Operations that touch a session and its user's index
 * — two keys in two hash slots — send two commands, the index first when
 * adding and the session first when removing, so that a crash between them
 * never leaves a session the index cannot find: regenerate and destroy of a
 * session with a user take two round trips, list and destroy_user two or
 * three. See docs/sessions.md.
 *
 * When Redis is unavailable (down, circuit open, timed out): rk_sessions_get
 * returns RK_DEGRADED — "could not ask": the caller decides whether to treat
 * the user as logged out — and every other call returns RK_ERR_UNAVAILABLE
 * or RK_ERR_TIMEOUT within the client's command timeout. No session data is
 * ever kept in process memory, so a destroyed session dies everywhere at
 * once.
 *
 * Thread safety: a handle may be used from any number of threads at once.
 * Everything it returns (rk_session, rk_session_list) is owned by the
 * caller and freed with its own _free function.
 */
#ifndef REDKIT_SESSIONS_H
#define REDKIT_SESSIONS_H

#include "common.h"
#include "status.h"
#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rk_sessions rk_sessions;

/* A token: 43 base64url characters; buffers for it hold the NUL too. */
#define RK_SESSION_TOKEN_LEN 43
#define RK_SESSION_TOKEN_SIZE (RK_SESSION_TOKEN_LEN + 1)
/* A session's id as listed (base64url of the digest, not a token). */
#define RK_SESSION_ID_LEN 22
#define RK_SESSION_ID_SIZE (RK_SESSION_ID_LEN + 1)

/* Defaults for a zeroed field of rk_sessions_options. */
#define RK_SESSIONS_DEFAULT_NAMESPACE "sess"
#define RK_SESSIONS_DEFAULT_IDLE_MS 1800000           /* 30 minutes */
#define RK_SESSIONS_DEFAULT_ABSOLUTE_MS 43200000      /* 12 hours */
#define RK_SESSIONS_DEFAULT_MAX_ATTRS 64
#define RK_SESSIONS_DEFAULT_MAX_BYTES 65536           /* 64 KiB */
#define RK_SESSIONS_DEFAULT_MAX_LIST 1000
/* Limits. The absolute lifetime is stored as a 32-bit millisecond delta. */
#define RK_SESSIONS_MAX_ABSOLUTE_MS 4233600000LL      /* 49 days */
#define RK_SESSIONS_MAX_BYTES_LIMIT (64u << 20)       /* 64 MiB */
#define RK_SESSIONS_MAX_NAME_BYTES 255                /* attribute names */
#define RK_SESSIONS_MAX_USER_BYTES 255                /* user ids */

typedef struct rk_sessions_options {
    const char *ns;           /* namespace; default "sess" */
    int64_t idle_ms;          /* idle timeout; default 30 min; 1..absolute */
    int64_t absolute_ms;      /* absolute lifetime from create; default
                                 12 h; at most RK_SESSIONS_MAX_ABSOLUTE_MS */
    int64_t renewal_ms;       /* rotate the token this long after it was
                                 issued: rk_session.renewal_due turns true
                                 and the caller regenerates; 0 = never */
    size_t max_attrs;         /* most attributes per session; default 64 */
    size_t max_bytes;         /* largest stored session (attributes, user
                                 and 10 bytes of metadata); default 64 KiB,
                                 at most RK_SESSIONS_MAX_BYTES_LIMIT */
    size_t max_list;          /* most sessions rk_sessions_list and
                                 rk_sessions_destroy_user handle per user;
                                 default 1000 */
} rk_sessions_options;

/* One attribute: a name (NUL-terminated, 1..RK_SESSIONS_MAX_NAME_BYTES
 * bytes) and a value of len bytes (binary; len 0 allowed). */
typedef struct rk_session_attr {
    const char *name;
    const void *value;
    size_t len;
} rk_session_attr;

/* rk_sessions_create's options; NULL = anonymous, no attributes. */
typedef struct rk_session_create_options {
    const char *user;               /* the user id, for listing and
                                       revocation (1..RK_SESSIONS_MAX_USER_BYTES
                                       bytes, no NUL); NULL = anonymous */
    const rk_session_attr *attrs;   /* initial attributes; copied */
    size_t nattrs;
} rk_session_create_options;

/*
 * A session read by rk_sessions_get. Times are Unix milliseconds on the
 * Redis server's clock. attrs are sorted by name (bytewise); each value is
 * followed by a NUL that len does not count, so text can be used directly.
 * Owned by the caller: rk_session_free().
 */
typedef struct rk_session {
    char *user;              /* NULL for an anonymous session */
    int64_t issued_ms;       /* when the current token was issued (create
                                or the last regenerate) */
    int64_t last_access_ms;  /* this access (get slides it) */
    int64_t deadline_ms;     /* the absolute deadline; never moves */
    int64_t expires_ms;      /* when it dies unless used again:
                                min(last access + idle, deadline) */
    bool renewal_due;        /* renewal_ms set and passed since issued_ms */
    size_t nattrs;
    rk_session_attr *attrs;
} rk_session;

/* One entry of rk_sessions_list. */
typedef struct rk_session_info {
    char id[RK_SESSION_ID_SIZE]; /* the digest's base64url: not a token,
                                    it cannot be used to act as the user */
    int64_t issued_ms;
    int64_t last_access_ms;      /* derived from the key's expiry: expiry −
                                    the listing handle's idle_ms (in the
                                    last idle period before the deadline:
                                    deadline − idle_ms, the earliest it can
                                    have been); docs/sessions.md */
    int64_t deadline_ms;
    int64_t expires_ms;          /* when Redis drops the session (its key's
                                    expiry) */
} rk_session_info;

typedef struct rk_session_list {
    size_t n;
    rk_session_info *sessions;   /* sorted by issued_ms, oldest first */
} rk_session_list;

/* What one handle did since it was created (relaxed counters). */
typedef struct rk_sessions_metrics {
    uint64_t created;       /* sessions created */
    uint64_t destroyed;     /* destroyed by destroy / destroy_user */
    uint64_t regenerated;   /* tokens rotated */
    uint64_t expired;       /* found past their deadline by a read, and
                               destroyed by it */
    uint64_t not_found;     /* a token that named no live session */
    uint64_t degraded;      /* gets that could not ask Redis */
    uint64_t errors;        /* calls that failed with an error status */
} rk_sessions_metrics;

/*
 * rk_sessions_new — create a session store on client. opts may be NULL
 * (defaults); it and its strings are copied. The client must outlive the
 * handle. On RK_OK *out is the handle (rk_sessions_free()); otherwise NULL.
 * Returns RK_OK, RK_ERR_INVALID (NULL client or out, bad namespace, an
 * option out of range, idle_ms > absolute_ms) or RK_ERR_NOMEM. No network
 * traffic.
 */
RK_EXPORT rk_status rk_sessions_new(rk_client *client, const rk_sessions_options *opts, rk_sessions **out);

/* rk_sessions_free — release the handle (stored sessions stay).
 * rk_sessions_free(NULL) does nothing. */
RK_EXPORT void rk_sessions_free(rk_sessions *sessions);

/*
 * rk_sessions_create — create a session, optionally for a user and with
 * attributes, and write its new token to token (RK_SESSION_TOKEN_SIZE
 * bytes, NUL-terminated; untouched on failure). With a user, the user's
 * index is updated first, in the same round trip.
 * Returns RK_OK; RK_ERR_INVALID (NULL, bad user or attribute name; of a
 * name given twice the last wins); RK_ERR_TOO_LARGE (over max_attrs or
 * max_bytes, or a user or name too long);
 * RK_ERR_SYSTEM (the CSPRNG failed); or the client's errors.
 */
RK_EXPORT rk_status rk_sessions_create(rk_sessions *sessions, const rk_session_create_options *opts,
                                       char token[RK_SESSION_TOKEN_SIZE]);

/*
 * rk_sessions_get — read the session of token and slide its idle expiry.
 * names (n of them) selects attributes; names NULL (n 0) means all. On
 * RK_OK *out is the session (rk_session_free()); else *out is NULL.
 * Returns RK_OK; RK_MISS (no such session, or it had passed its deadline
 * and was destroyed now); RK_DEGRADED (Redis unavailable: the caller
 * decides); RK_ERR_INVALID (malformed token — nothing sent — or bad
 * names); RK_ERR_TYPE (the key holds something that is not a session); or
 * the client's other errors.
 */
RK_EXPORT rk_status rk_sessions_get(rk_sessions *sessions, const char *token, const char *const *names,
                                    size_t n, rk_session **out);

/* rk_session_free — release a session from rk_sessions_get. NULL: no-op. */
RK_EXPORT void rk_session_free(rk_session *session);

/* rk_session_find — the attribute called name in s, or NULL. The pointer
 * lives as long as s. */
RK_EXPORT const rk_session_attr *rk_session_find(const rk_session *s, const char *name);

/*
 * rk_sessions_set — set attributes of the session (n of them, in one
 * atomic step), leaving every other attribute as it is: two callers that
 * set different attributes concurrently never lose each other's write.
 * Slides the idle expiry. Values are copied into the request.
 * Returns RK_OK; RK_MISS (no such session: nothing is created);
 * RK_ERR_INVALID; RK_ERR_TOO_LARGE (over max_attrs or max_bytes: nothing
 * changed); RK_ERR_TYPE; or the client's errors.
 */
RK_EXPORT rk_status rk_sessions_set(rk_sessions *sessions, const char *token, const rk_session_attr *attrs,
                                    size_t n);

/* rk_sessions_set_str — rk_sessions_set of one attribute whose value is a
 * NUL-terminated string (stored without its NUL). */
RK_EXPORT rk_status rk_sessions_set_str(rk_sessions *sessions, const char *token, const char *name,
                                        const char *value);

/*
 * rk_sessions_unset — delete attributes (n names) of the session; names
 * not present are ignored. Slides the idle expiry. Returns RK_OK, RK_MISS,
 * RK_ERR_INVALID, RK_ERR_TYPE or the client's errors.
 */
RK_EXPORT rk_status rk_sessions_unset(rk_sessions *sessions, const char *token, const char *const *names,
                                      size_t n);

/* rk_sessions_touch — slide the idle expiry without reading anything.
 * Returns RK_OK, RK_MISS, RK_ERR_INVALID, RK_ERR_TYPE or the client's
 * errors. */
RK_EXPORT rk_status rk_sessions_touch(rk_sessions *sessions, const char *token);

/*
 * rk_sessions_destroy — delete the session (logout), then remove it from
 * its user's index. Returns RK_OK, RK_MISS (there was none), RK_ERR_INVALID
 * or the client's errors (the session may then still exist). Clear the
 * cookie too: rk_sessions_cookie_clear().
 */
RK_EXPORT rk_status rk_sessions_destroy(rk_sessions *sessions, const char *token);

/*
 * rk_sessions_regenerate — give the session a new token (written to
 * new_token), keeping its attributes and absolute deadline; the old token
 * stops working at once. Call it at login and after every privilege
 * change (session fixation): user, when not NULL, becomes the session's
 * user (an anonymous session logging in), and the indexes follow; NULL
 * keeps the user it has. Two round trips: the first takes the session
 * away from the old token, the second indexes the new id, stores the
 * session under it and drops the old id from the old user's index. When
 * the second fails, the session is lost and the user must log in again —
 * never does the old token keep working.
 * Returns RK_OK, RK_MISS, RK_ERR_INVALID (malformed token, bad user),
 * RK_ERR_TOO_LARGE (user too long), RK_ERR_SYSTEM, RK_ERR_TYPE or the
 * client's errors.
 */
RK_EXPORT rk_status rk_sessions_regenerate(rk_sessions *sessions, const char *token, const char *user,
                                           char new_token[RK_SESSION_TOKEN_SIZE]);

/*
 * rk_sessions_list — the live sessions of user (at most max_list), oldest
 * first. Prunes index entries of sessions that are gone. Reading a
 * session here does not slide its expiry. On RK_OK *out is the list
 * (rk_session_list_free(); n may be 0); else NULL. Returns RK_OK,
 * RK_ERR_INVALID or the client's errors.
 */
RK_EXPORT rk_status rk_sessions_list(rk_sessions *sessions, const char *user, rk_session_list **out);

/* rk_session_list_free — release a list. NULL: no-op. */
RK_EXPORT void rk_session_list_free(rk_session_list *list);

/*
 * rk_sessions_destroy_user — destroy every session of user (at most
 * max_list per call), except the one of except_token when it is not NULL
 * ("log out my other devices"). *destroyed (may be NULL) receives how many
 * were destroyed. Sessions are deleted first, then their index entries.
 * A session created for the user while this runs may survive.
 * Returns RK_OK, RK_ERR_INVALID or the client's errors.
 */
RK_EXPORT rk_status rk_sessions_destroy_user(rk_sessions *sessions, const char *user,
                                             const char *except_token, size_t *destroyed);

/*
 * rk_sessions_count — how many sessions the namespace holds (a SCAN of
 * the namespace, for operators: O(keys), bounded to 10 s and 100,000
 * rounds; RK_ERR_TIMEOUT past that). Returns RK_OK, RK_ERR_INVALID or the
 * client's errors.
 */
RK_EXPORT rk_status rk_sessions_count(rk_sessions *sessions, uint64_t *count);

/* rk_sessions_metrics_get — copy the handle's counters into *out. RK_OK or
 * RK_ERR_INVALID (NULL). No network traffic. */
RK_EXPORT rk_status rk_sessions_metrics_get(rk_sessions *sessions, rk_sessions_metrics *out);

/* ---- Cookies ------------------------------------------------------------ */

/* rk_session_cookie_options: zero = the defaults shown. */
typedef struct rk_session_cookie_options {
    const char *name;        /* default "__Host-session"; must start with
                                "__Host-" unless domain or a path other
                                than "/" is set (the prefix forbids them) */
    const char *domain;      /* Domain=; NULL = none (host-only) */
    const char *path;        /* Path=; default "/" */
    const char *same_site;   /* "Lax" (default), "Strict" or "None" */
    bool insecure;           /* omit Secure (plain-HTTP development only;
                                not allowed with a "__Host-" name) */
} rk_session_cookie_options;

/*
 * rk_sessions_cookie_format — write the value of a Set-Cookie header for
 * token into buf (size bytes, NUL-terminated): "NAME=TOKEN; Path=/;
 * Max-Age=N; Secure; HttpOnly; SameSite=Lax", N = max_age_ms rounded down
 * to seconds (pass expires_ms − now of the session, or its idle timeout).
 * opts may be NULL. Returns RK_OK, RK_ERR_INVALID (malformed token, bad
 * option, negative max_age_ms) or RK_ERR_TOO_LARGE (buf too small). Pure.
 */
RK_EXPORT rk_status rk_sessions_cookie_format(const char *token, int64_t max_age_ms,
                                              const rk_session_cookie_options *opts, char *buf, size_t size);

/* rk_sessions_cookie_clear — the Set-Cookie value that deletes the cookie
 * in the browser (empty value, Max-Age=0), same rules as _format. */
RK_EXPORT rk_status rk_sessions_cookie_clear(const rk_session_cookie_options *opts, char *buf, size_t size);

/*
 * rk_sessions_cookie_token — find the cookie called name (NULL = the
 * default name) in the value of a Cookie request header ("a=1; b=2") and
 * copy its value to token when it is a well-formed token. Returns RK_OK,
 * RK_MISS (no such cookie, or its value is not a token) or RK_ERR_INVALID
 * (NULL argument). Pure.
 */
RK_EXPORT rk_status rk_sessions_cookie_token(const char *cookie_header, const char *name,
                                             char token[RK_SESSION_TOKEN_SIZE]);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_SESSIONS_H */
