/*
 * sessions.c — rk_sessions: login sessions in Redis (contract in
 * include/redkit/sessions.h, layout in src/sessions/scripts.h).
 *
 * Every operation on one session is one Lua script on one key: the
 * script reads the session, checks its absolute deadline on the server's
 * clock, changes what it was asked to and sets the TTL to min(idle, time
 * left), atomically. Attribute writes patch the stored map on the server,
 * so two requests that write different attributes never lose each other's
 * update, whatever they read before.
 *
 * A user's index lives in another hash slot than the user's sessions, so
 * the operations that touch both are two commands. The order is chosen so
 * that a crash between them never hides a live session from the index:
 * an id enters the index before its session exists (create pipelines the
 * index update first; regenerate indexes the new id before storing the
 * session under it) and leaves it after the session is gone (destroy,
 * destroy_user). What a crash can leave is an index entry without a
 * session, which list prunes and which the index's own scores expire.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/keys.h>
#include <redkit/sessions.h>

#include "alloc.h"
#include "clock.h"
#include "client.h"
#include "error.h"
#include "keys.h"
#include "number.h"
#include "registry.h"
#include "reply.h"
#include "script.h"
#include "scripts.h"
#include "sessions.h"
#include "sink.h"

/* How much later than a session's deadline its index entry's score is:
 * covers the few ms between the index script and the session script (and,
 * on a cluster, the clock difference of two nodes), so an entry never
 * goes before its session. */
#define INDEX_SLACK_MS 2000
/* The longest key: head (prefix, namespace, separators) + "#u:" + a user. */
#define KEY_MAX (2 * RK_MAX_NAMESPACE_BYTES + 8 + RK_SESSIONS_MAX_USER_BYTES)
#define COUNT_ROUNDS 100000
#define COUNT_BUDGET_NS ((int64_t)10 * 1000 * 1000 * 1000)

static rk__script create_script = RK__SCRIPT("sessions create", RK__SESS_LUA_CREATE);
static rk__script get_script = RK__SCRIPT("sessions get", RK__SESS_LUA_GET);
static rk__script touch_script = RK__SCRIPT("sessions touch", RK__SESS_LUA_TOUCH);
static rk__script write_script = RK__SCRIPT("sessions write", RK__SESS_LUA_WRITE);
static rk__script take_script = RK__SCRIPT("sessions take", RK__SESS_LUA_TAKE);
static rk__script put_script = RK__SCRIPT("sessions put", RK__SESS_LUA_PUT);
static rk__script index_script = RK__SCRIPT("sessions index", RK__SESS_LUA_INDEX);

typedef struct counters {
    _Atomic uint64_t created, destroyed, regenerated, expired, not_found, degraded, errors;
} counters;

struct rk_sessions {
    rk_client *client;
    char *ns;
    char *head; /* "<prefix>:<ns>:" */
    size_t head_len;
    int64_t idle_ms, absolute_ms, renewal_ms;
    size_t max_attrs, max_bytes, max_list;
    bool registered;
    counters c;
};

#define COUNT(s, field, n) atomic_fetch_add_explicit(&(s)->c.field, (uint64_t)(n), memory_order_relaxed)

/* ---- metrics --------------------------------------------------------------- */

static void emit(void *const *handles, size_t n, rk__sink *sink)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } families[] = {
        {"redkit_sessions_created_total", "Sessions created.", offsetof(counters, created)},
        {"redkit_sessions_destroyed_total", "Sessions destroyed (logout, revocation).", offsetof(counters, destroyed)},
        {"redkit_sessions_regenerated_total", "Session tokens rotated.", offsetof(counters, regenerated)},
        {"redkit_sessions_expired_total", "Sessions found past their deadline and destroyed by a read.",
         offsetof(counters, expired)},
        {"redkit_sessions_not_found_total", "Tokens that named no live session.", offsetof(counters, not_found)},
        {"redkit_sessions_degraded_total", "Session reads that could not ask Redis.", offsetof(counters, degraded)},
        {"redkit_sessions_errors_total", "Session calls that failed with an error.", offsetof(counters, errors)},
    };
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        rk__sink_family(sink, families[f].name, "counter", families[f].help);
        for (size_t i = 0; i < n; i++) {
            const rk_sessions *s = handles[i];
            const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)&s->c + families[f].off);
            rk__sink_u64(sink, families[f].name, s->ns, NULL, NULL, atomic_load_explicit(v, memory_order_relaxed));
        }
    }
}

static const rk__module_ops sessions_ops = {.kind = "sessions", .emit = emit};

rk_status rk_sessions_metrics_get(rk_sessions *s, rk_sessions_metrics *out)
{
    if (!s || !out) return rk__fail(RK_ERR_INVALID, "rk_sessions_metrics_get: NULL argument");
    out->created = atomic_load_explicit(&s->c.created, memory_order_relaxed);
    out->destroyed = atomic_load_explicit(&s->c.destroyed, memory_order_relaxed);
    out->regenerated = atomic_load_explicit(&s->c.regenerated, memory_order_relaxed);
    out->expired = atomic_load_explicit(&s->c.expired, memory_order_relaxed);
    out->not_found = atomic_load_explicit(&s->c.not_found, memory_order_relaxed);
    out->degraded = atomic_load_explicit(&s->c.degraded, memory_order_relaxed);
    out->errors = atomic_load_explicit(&s->c.errors, memory_order_relaxed);
    return RK_OK;
}

/* Count a public call's outcome and pass its status through. */
static rk_status done(rk_sessions *s, rk_status st)
{
    if (s && rk_status_is_error(st)) COUNT(s, errors, 1);
    return st;
}

/* ---- the handle ------------------------------------------------------------ */

rk_status rk_sessions_new(rk_client *client, const rk_sessions_options *opts, rk_sessions **out)
{
    if (!out) return rk__fail(RK_ERR_INVALID, "rk_sessions_new: out is NULL");
    *out = NULL;
    if (!client) return rk__fail(RK_ERR_INVALID, "rk_sessions_new: client is NULL");
    static const rk_sessions_options defaults = {0};
    if (!opts) opts = &defaults;
    int64_t abs_ms = opts->absolute_ms ? opts->absolute_ms : RK_SESSIONS_DEFAULT_ABSOLUTE_MS;
    int64_t idle = opts->idle_ms ? opts->idle_ms : RK_SESSIONS_DEFAULT_IDLE_MS;
    if (abs_ms < 1 || abs_ms > RK_SESSIONS_MAX_ABSOLUTE_MS)
        return rk__fail(RK_ERR_INVALID, "absolute_ms: %lld is outside 1..%lld", (long long)abs_ms,
                        (long long)RK_SESSIONS_MAX_ABSOLUTE_MS);
    if (idle < 1 || idle > abs_ms)
        return rk__fail(RK_ERR_INVALID, "idle_ms: %lld is outside 1..absolute_ms (%lld)", (long long)idle,
                        (long long)abs_ms);
    if (opts->renewal_ms < 0 || opts->renewal_ms > abs_ms)
        return rk__fail(RK_ERR_INVALID, "renewal_ms: %lld is outside 0..absolute_ms", (long long)opts->renewal_ms);
    size_t max_bytes = opts->max_bytes ? opts->max_bytes : RK_SESSIONS_DEFAULT_MAX_BYTES;
    if (max_bytes < 64 || max_bytes > RK_SESSIONS_MAX_BYTES_LIMIT)
        return rk__fail(RK_ERR_INVALID, "max_bytes: %zu is outside 64..%u", max_bytes, RK_SESSIONS_MAX_BYTES_LIMIT);
    size_t max_attrs = opts->max_attrs ? opts->max_attrs : RK_SESSIONS_DEFAULT_MAX_ATTRS;
    size_t max_list = opts->max_list ? opts->max_list : RK_SESSIONS_DEFAULT_MAX_LIST;
    if (max_attrs > 100000 || max_list > 100000)
        return rk__fail(RK_ERR_INVALID, "max_attrs and max_list must be at most 100000");
    const char *ns = opts->ns ? opts->ns : RK_SESSIONS_DEFAULT_NAMESPACE;
    rk_status st = rk__key_check_name("namespace", ns);
    if (st != RK_OK) return st;

    rk_sessions *s = rk__calloc(1, sizeof *s);
    if (!s) return rk__fail(RK_ERR_NOMEM, "sessions: out of memory");
    s->client = client;
    s->idle_ms = idle;
    s->absolute_ms = abs_ms;
    s->renewal_ms = opts->renewal_ms;
    s->max_attrs = max_attrs;
    s->max_bytes = max_bytes;
    s->max_list = max_list;
    s->ns = rk__strdup(ns);
    if (!s->ns) st = rk__fail(RK_ERR_NOMEM, "sessions: out of memory");
    if (st == RK_OK) st = rk__key_head(client, ns, &s->head, &s->head_len);
    /* Keys are built in fixed buffers of KEY_MAX (the prefix and the
     * namespace are at most 64 bytes each today; stay safe if that grows). */
    if (st == RK_OK && s->head_len + 3 + RK_SESSIONS_MAX_USER_BYTES > KEY_MAX)
        st = rk__fail(RK_ERR_INVALID, "sessions: key prefix and namespace too long");
    if (st == RK_OK) {
        st = rk__registry_add(client, s, &sessions_ops);
        s->registered = st == RK_OK;
    }
    if (st != RK_OK) {
        rk_sessions_free(s);
        return st;
    }
    *out = s;
    return RK_OK;
}

void rk_sessions_free(rk_sessions *s)
{
    if (!s) return;
    if (s->registered) rk__registry_remove(s->client, s);
    rk__free(s->head);
    rk__free(s->ns);
    rk__free(s);
}

/* ---- keys and argument checks ---------------------------------------------- */

typedef struct skey {
    char str[KEY_MAX];
    size_t len;
} skey;

/* "<head>{<id>}" */
static void session_key(const rk_sessions *s, const char *id, skey *k)
{
    memcpy(k->str, s->head, s->head_len);
    k->str[s->head_len] = '{';
    memcpy(k->str + s->head_len + 1, id, RK_SESSION_ID_LEN);
    k->str[s->head_len + 1 + RK_SESSION_ID_LEN] = '}';
    k->len = s->head_len + RK_SESSION_ID_LEN + 2;
}

/* "<prefix>:<ns>#u:<user>" (the head's last ':' becomes '#'). */
static void index_key(const rk_sessions *s, const char *user, size_t ulen, skey *k)
{
    memcpy(k->str, s->head, s->head_len - 1);
    memcpy(k->str + s->head_len - 1, "#u:", 3);
    memcpy(k->str + s->head_len + 2, user, ulen);
    k->len = s->head_len + 2 + ulen;
}

/* A token given by the caller: checked locally (no round trip for
 * garbage), then turned into its session key. The message never repeats
 * the token. */
static rk_status token_key(const rk_sessions *s, const char *token, char id[RK_SESSION_ID_SIZE], skey *k)
{
    if (!s) return rk__fail(RK_ERR_INVALID, "sessions is NULL");
    if (!token) return rk__fail(RK_ERR_INVALID, "token is NULL");
    if (!rk__session_token_ok(token))
        return rk__fail(RK_ERR_INVALID, "malformed session token (want %d base64url characters)",
                        RK_SESSION_TOKEN_LEN);
    rk_status st = rk__session_id(token, id);
    if (st == RK_OK) session_key(s, id, k);
    return st;
}

/* A name or user id: 1..max bytes, NUL-terminated. *len its length. */
static rk_status check_text(const char *what, const char *t, size_t max, size_t *len)
{
    if (!t) return rk__fail(RK_ERR_INVALID, "%s is NULL", what);
    *len = strnlen(t, max + 1);
    if (*len == 0) return rk__fail(RK_ERR_INVALID, "%s is empty", what);
    if (*len > max) return rk__fail(RK_ERR_TOO_LARGE, "%s is longer than %zu bytes", what, max);
    return RK_OK;
}

static rk_status check_attrs(const rk_sessions *s, const rk_session_attr *a, size_t n)
{
    if (n && !a) return rk__fail(RK_ERR_INVALID, "attrs is NULL with %zu attributes", n);
    if (n > s->max_attrs) return rk__fail(RK_ERR_TOO_LARGE, "more than max_attrs (%zu) attributes", s->max_attrs);
    size_t total = 0, len = 0;
    for (size_t i = 0; i < n; i++) {
        rk_status st = check_text("attribute name", a[i].name, RK_SESSIONS_MAX_NAME_BYTES, &len);
        if (st != RK_OK) return st;
        if (!a[i].value && a[i].len) return rk__fail(RK_ERR_INVALID, "attribute %zu: value is NULL", i);
        if (a[i].len > s->max_bytes)
            return rk__fail(RK_ERR_TOO_LARGE, "attribute %zu: value over max_bytes (%zu)", i, s->max_bytes);
        total += len + a[i].len;
        if (total > s->max_bytes)
            return rk__fail(RK_ERR_TOO_LARGE, "attributes over max_bytes (%zu)", s->max_bytes);
    }
    return RK_OK;
}

static rk_status check_names(const char *const *names, size_t n)
{
    if (n && !names) return rk__fail(RK_ERR_INVALID, "names is NULL with n %zu", n);
    if (n > 100000) return rk__fail(RK_ERR_TOO_LARGE, "too many names");
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        rk_status st = check_text("attribute name", names[i], RK_SESSIONS_MAX_NAME_BYTES, &len);
        if (st != RK_OK) return st;
    }
    return RK_OK;
}

/* An argument vector: on the stack when small (the common case: one
 * session, a few attributes), on the heap beyond. */
#define SMALL_ARGS 24
typedef struct argbuf {
    const char **args;
    size_t *lens;
    const char *small_args[SMALL_ARGS];
    size_t small_lens[SMALL_ARGS];
} argbuf;

static rk_status argbuf_init(argbuf *a, size_t n)
{
    a->args = a->small_args;
    a->lens = a->small_lens;
    if (n <= SMALL_ARGS) return RK_OK;
    a->args = rk__malloc(n * sizeof *a->args);
    a->lens = rk__malloc(n * sizeof *a->lens);
    if (a->args && a->lens) return RK_OK;
    rk__free(a->args);
    rk__free(a->lens);
    a->args = NULL;
    a->lens = NULL;
    return rk__fail(RK_ERR_NOMEM, "sessions: out of memory");
}

static void argbuf_release(argbuf *a)
{
    if (a->args != a->small_args) rk__free(a->args);
    if (a->lens != a->small_lens) rk__free(a->lens);
}

/* ---- running scripts ------------------------------------------------------- */

/* One script call of a pipeline: argv after "EVALSHA sha 1 key". */
typedef struct call {
    rk__script *script;
    const char *key;
    size_t keylen;
    int nargs;
    const char *const *args;
    const size_t *lens;
} call;

/* Run n script calls in one pipeline (one round trip), in order, under the
 * absolute deadline; calls the server answered NOSCRIPT are sent again in
 * full (EVAL), in their order, in one more pipeline. On RK_OK every
 * replies[i] is a script's array reply (owned by the caller); an error
 * reply or another shape fails the whole call (the replies are freed). */
static rk_status run(rk_sessions *s, size_t n, const call *calls, int64_t deadline_ns, rk_reply **replies)
{
    enum { SMALL_CALLS = 3 };
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += 4 + (size_t)calls[i].nargs;
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (n > SMALL_CALLS) return rk__fail(RK_ERR_INVALID, "sessions: more than %d calls in a pipeline", SMALL_CALLS);
    rk__cmd cmds[SMALL_CALLS];
    size_t todo[SMALL_CALLS];
    rk_reply *got[SMALL_CALLS] = {NULL, NULL, NULL};
    argbuf ab;
    rk_status st = argbuf_init(&ab, total);
    if (st != RK_OK) return st;
    const char **argv = ab.args;
    size_t *lens = ab.lens;
    size_t ntodo = n;
    for (size_t i = 0; i < n; i++) todo[i] = i;
    for (int round = 0; round < 2 && ntodo && st == RK_OK; round++) {
        size_t at = 0;
        for (size_t j = 0; j < ntodo; j++) {
            const call *c = &calls[todo[j]];
            const char *sha = round == 0 ? rk__script_sha(c->script) : NULL;
            cmds[j].argc = 4 + c->nargs;
            cmds[j].argv = argv + at;
            cmds[j].argvlen = lens + at;
            argv[at] = sha ? "EVALSHA" : "EVAL";
            lens[at++] = sha ? 7 : 4;
            argv[at] = sha ? sha : c->script->source;
            lens[at++] = sha ? RK__SHA1_HEX : c->script->source_len;
            argv[at] = "1";
            lens[at++] = 1;
            argv[at] = c->key;
            lens[at++] = c->keylen;
            for (int a = 0; a < c->nargs; a++) {
                argv[at] = c->args[a];
                lens[at++] = c->lens[a];
            }
        }
        st = rk__client_pipeline_until(s->client, ntodo, cmds, false, got, deadline_ns);
        if (st != RK_OK) break;
        size_t again = 0;
        for (size_t j = 0; j < ntodo; j++) {
            if (round == 0 && rk__script_is_noscript(got[j])) {
                rk_reply_free(got[j]);
                todo[again++] = todo[j];
            } else {
                replies[todo[j]] = got[j];
            }
            got[j] = NULL;
        }
        ntodo = again;
    }
    for (size_t i = 0; i < n && st == RK_OK; i++) {
        rk_reply *r = replies[i];
        if (r && r->type == RK_REPLY_ERROR) {
            char what[64];
            snprintf(what, sizeof what, "%s", calls[i].script->name);
            replies[i] = NULL;
            st = rk__reply_fail(r, what);
        } else if (!r || (calls[i].script != &index_script &&
                          (r->type != RK_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != RK_REPLY_INTEGER))) {
            st = rk__fail(RK_ERR_PROTOCOL, "%s: unexpected reply", calls[i].script->name);
        }
    }
    if (st != RK_OK)
        for (size_t i = 0; i < n; i++) {
            rk_reply_free(replies[i]);
            replies[i] = NULL;
        }
    argbuf_release(&ab);
    return st;
}

static rk_status run1(rk_sessions *s, const call *c, rk_reply **reply)
{
    return run(s, 1, c, rk__client_deadline(s->client), reply);
}

/* A script's code (element 0) as a status for a call on one session. */
static rk_status code_status(rk_sessions *s, long long code)
{
    switch (code) {
    case 1:
        return RK_OK;
    case 0:
        COUNT(s, not_found, 1);
        return rk__fail(RK_MISS, "no such session");
    case 2:
        COUNT(s, expired, 1);
        COUNT(s, not_found, 1);
        return rk__fail(RK_MISS, "session passed its absolute deadline (destroyed now)");
    case 3:
        return rk__fail(RK_ERR_TOO_LARGE, "session over max_bytes (%zu) or max_attrs (%zu): nothing changed",
                        s->max_bytes, s->max_attrs);
    case 4:
        return rk__fail(RK_ERR_SYSTEM, "session id collision (the CSPRNG repeats itself?)");
    default:
        return rk__fail(RK_ERR_TYPE, "the session's key holds something that is not a session");
    }
}

static long long element_int(const rk_reply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == RK_REPLY_INTEGER ? r->element[i]->integer : -1;
}

static const rk_reply *element_str(const rk_reply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == RK_REPLY_STRING ? r->element[i] : NULL;
}

/* Decimal text of v into buf (NUM bytes). */
#define NUM (RK__NUMBER_TEXT_MAX + 1)
static size_t num(int64_t v, char *buf) { return rk__i64_to_text(v, buf); }

/* ---- the user index -------------------------------------------------------- */

/* The index call: mode and its arguments, ids each RK_SESSION_ID_LEN. */
typedef struct index_args {
    const char **args;
    size_t *lens;
    char arg2[NUM];
} index_args;

static rk_status index_call(call *c, index_args *ia, const skey *k, char mode, const char *arg2,
                            const char *const *ids, size_t nids)
{
    ia->args = rk__malloc((nids + 2) * sizeof *ia->args);
    ia->lens = rk__malloc((nids + 2) * sizeof *ia->lens);
    if (!ia->args || !ia->lens) {
        rk__free(ia->args);
        rk__free(ia->lens);
        ia->args = NULL;
        ia->lens = NULL;
        return rk__fail(RK_ERR_NOMEM, "sessions: out of memory");
    }
    static const char modes[] = "arl";
    const char *m = strchr(modes, mode);
    int at = 0;
    ia->args[at] = m;
    ia->lens[at++] = 1;
    if (arg2) {
        snprintf(ia->arg2, sizeof ia->arg2, "%s", arg2);
        ia->args[at] = ia->arg2;
        ia->lens[at++] = strlen(ia->arg2);
    }
    for (size_t i = 0; i < nids; i++) {
        ia->args[at] = ids[i];
        ia->lens[at++] = RK_SESSION_ID_LEN;
    }
    *c = (call){&index_script, k->str, k->len, at, ia->args, ia->lens};
    return RK_OK;
}

static void index_args_release(index_args *ia)
{
    rk__free(ia->args);
    rk__free(ia->lens);
}

/* ---- create ---------------------------------------------------------------- */

rk_status rk_sessions_create(rk_sessions *s, const rk_session_create_options *opts,
                             char token[RK_SESSION_TOKEN_SIZE])
{
    if (!s) return rk__fail(RK_ERR_INVALID, "sessions is NULL");
    if (!token) return done(s, rk__fail(RK_ERR_INVALID, "token buffer is NULL"));
    static const rk_session_create_options none = {0};
    if (!opts) opts = &none;
    size_t ulen = 0;
    rk_status st = RK_OK;
    if (opts->user) st = check_text("user", opts->user, RK_SESSIONS_MAX_USER_BYTES, &ulen);
    if (st == RK_OK) st = check_attrs(s, opts->attrs, opts->nattrs);
    if (st != RK_OK) return done(s, st);

    char tok[RK_SESSION_TOKEN_SIZE], id[RK_SESSION_ID_SIZE];
    skey k, ik;
    if ((st = rk__session_token_new(tok)) != RK_OK || (st = rk__session_id(tok, id)) != RK_OK) return done(s, st);
    session_key(s, id, &k);

    int nargs = 4 + 2 * (int)opts->nattrs;
    argbuf ab;
    char idle[NUM], abs_ms[NUM], maxb[NUM];
    index_args ia = {0};
    call calls[2];
    size_t ncalls = 0;
    if ((st = argbuf_init(&ab, (size_t)nargs)) != RK_OK) goto out;
    const char **args = ab.args;
    size_t *lens = ab.lens;
    args[0] = idle;
    lens[0] = num(s->idle_ms, idle);
    args[1] = abs_ms;
    lens[1] = num(s->absolute_ms, abs_ms);
    args[2] = maxb;
    lens[2] = num((int64_t)s->max_bytes, maxb);
    args[3] = opts->user ? opts->user : "";
    lens[3] = ulen;
    for (size_t i = 0; i < opts->nattrs; i++) {
        args[4 + 2 * i] = opts->attrs[i].name;
        lens[4 + 2 * i] = strlen(opts->attrs[i].name);
        args[5 + 2 * i] = opts->attrs[i].len ? opts->attrs[i].value : "";
        lens[5 + 2 * i] = opts->attrs[i].len;
    }
    if (opts->user) {
        /* The index first: its entry exists before the session does. */
        index_key(s, opts->user, ulen, &ik);
        char ttl[NUM];
        num(s->absolute_ms + INDEX_SLACK_MS, ttl);
        const char *ids[1] = {id};
        if ((st = index_call(&calls[ncalls++], &ia, &ik, 'a', ttl, ids, 1)) != RK_OK) goto out;
    }
    calls[ncalls++] = (call){&create_script, k.str, k.len, nargs, args, lens};
    rk_reply *replies[2] = {NULL, NULL};
    st = run(s, ncalls, calls, rk__client_deadline(s->client), replies);
    if (st == RK_OK) {
        st = code_status(s, element_int(replies[ncalls - 1], 0));
        if (st == RK_MISS) st = rk__fail(RK_ERR_PROTOCOL, "sessions create: unexpected reply");
    }
    for (size_t i = 0; i < ncalls; i++) rk_reply_free(replies[i]);
    if (st == RK_OK) {
        memcpy(token, tok, sizeof tok);
        COUNT(s, created, 1);
    }
    argbuf_release(&ab);
out:
    memset(tok, 0, sizeof tok);
    index_args_release(&ia);
    return done(s, st);
}

/* ---- get ------------------------------------------------------------------- */

static int attr_cmp(const void *a, const void *b)
{
    return strcmp(((const rk_session_attr *)a)->name, ((const rk_session_attr *)b)->name);
}

/* Build the caller's rk_session from the get script's reply, in one block:
 * the struct, the attribute array, then each name and value with a NUL. */
static rk_status build_session(const rk_sessions *s, const rk_reply *r, rk_session **out)
{
    const rk_reply *user = element_str(r, 5);
    if (r->elements < 6 || !user || (r->elements - 6) % 2)
        return rk__fail(RK_ERR_PROTOCOL, "sessions get: unexpected reply");
    size_t nattrs = (r->elements - 6) / 2;
    size_t bytes = sizeof(rk_session) + nattrs * sizeof(rk_session_attr) + user->len + 1;
    for (size_t i = 6; i < r->elements; i++) {
        if (r->element[i]->type != RK_REPLY_STRING) return rk__fail(RK_ERR_PROTOCOL, "sessions get: unexpected reply");
        bytes += r->element[i]->len + 1;
    }
    char *block = rk__malloc(bytes);
    if (!block) return rk__fail(RK_ERR_NOMEM, "sessions get: out of memory");
    rk_session *out_s = (rk_session *)(void *)block;
    memset(out_s, 0, sizeof *out_s);
    out_s->attrs = (rk_session_attr *)(void *)(block + sizeof *out_s);
    out_s->nattrs = nattrs;
    char *p = (char *)(out_s->attrs + nattrs);
    out_s->issued_ms = element_int(r, 1);
    out_s->last_access_ms = element_int(r, 2);
    out_s->deadline_ms = element_int(r, 3);
    out_s->expires_ms = out_s->last_access_ms + element_int(r, 4);
    out_s->renewal_due = s->renewal_ms > 0 && out_s->last_access_ms - out_s->issued_ms >= s->renewal_ms;
    if (user->len) {
        memcpy(p, user->str, user->len);
        p[user->len] = '\0';
        out_s->user = p;
        p += user->len + 1;
    }
    for (size_t i = 0; i < nattrs; i++) {
        const rk_reply *n = r->element[6 + 2 * i], *v = r->element[7 + 2 * i];
        memcpy(p, n->str, n->len);
        p[n->len] = '\0';
        out_s->attrs[i].name = p;
        p += n->len + 1;
        memcpy(p, v->str, v->len);
        p[v->len] = '\0';
        out_s->attrs[i].value = p;
        out_s->attrs[i].len = v->len;
        p += v->len + 1;
    }
    qsort(out_s->attrs, nattrs, sizeof *out_s->attrs, attr_cmp);
    *out = out_s;
    return RK_OK;
}

rk_status rk_sessions_get(rk_sessions *s, const char *token, const char *const *names, size_t n, rk_session **out)
{
    if (!out) return done(s, rk__fail(RK_ERR_INVALID, "rk_sessions_get: out is NULL"));
    *out = NULL;
    char id[RK_SESSION_ID_SIZE];
    skey k;
    rk_status st = token_key(s, token, id, &k);
    if (st == RK_OK) st = check_names(names, n);
    if (st != RK_OK) return done(s, st);
    argbuf ab;
    char idle[NUM];
    if ((st = argbuf_init(&ab, n + 1)) == RK_OK) {
        const char **args = ab.args;
        size_t *lens = ab.lens;
        args[0] = idle;
        lens[0] = num(s->idle_ms, idle);
        for (size_t i = 0; i < n; i++) {
            args[1 + i] = names[i];
            lens[1 + i] = strlen(names[i]);
        }
        call c = {&get_script, k.str, k.len, (int)n + 1, args, lens};
        rk_reply *r;
        st = run1(s, &c, &r);
        if (st == RK_OK) {
            st = code_status(s, element_int(r, 0));
            if (st == RK_OK) st = build_session(s, r, out);
            rk_reply_free(r);
        } else if (st == RK_ERR_UNAVAILABLE || st == RK_ERR_TIMEOUT) {
            /* "Could not ask" is not "logged out": the caller decides. */
            char why[RK__ERRMSG_MAX];
            snprintf(why, sizeof why, "%s", rk_last_error());
            COUNT(s, degraded, 1);
            st = rk__fail(RK_DEGRADED, "session not read (%s): %s", rk_strerror(st), why);
        }
        argbuf_release(&ab);
    }
    return done(s, st);
}

void rk_session_free(rk_session *session) { rk__free(session); }

const rk_session_attr *rk_session_find(const rk_session *s, const char *name)
{
    if (!s || !name) return NULL;
    rk_session_attr key = {.name = name};
    return bsearch(&key, s->attrs, s->nattrs, sizeof *s->attrs, attr_cmp);
}

/* ---- writes ---------------------------------------------------------------- */

/* The write script: mode 's' with n attributes, or 'u' with n names. */
static rk_status write_attrs(rk_sessions *s, const char *token, char mode, const rk_session_attr *attrs,
                             const char *const *names, size_t n)
{
    char id[RK_SESSION_ID_SIZE];
    skey k;
    rk_status st = token_key(s, token, id, &k);
    if (st == RK_OK) st = mode == 's' ? check_attrs(s, attrs, n) : check_names(names, n);
    if (st != RK_OK) return st;
    size_t nargs = 4 + (mode == 's' ? 2 * n : n);
    argbuf ab;
    char idle[NUM], maxb[NUM], maxa[NUM];
    if ((st = argbuf_init(&ab, nargs)) == RK_OK) {
        const char **args = ab.args;
        size_t *lens = ab.lens;
        args[0] = idle;
        lens[0] = num(s->idle_ms, idle);
        args[1] = maxb;
        lens[1] = num((int64_t)s->max_bytes, maxb);
        args[2] = maxa;
        lens[2] = num((int64_t)s->max_attrs, maxa);
        args[3] = mode == 's' ? "s" : "u";
        lens[3] = 1;
        for (size_t i = 0; i < n; i++) {
            if (mode == 's') {
                args[4 + 2 * i] = attrs[i].name;
                lens[4 + 2 * i] = strlen(attrs[i].name);
                args[5 + 2 * i] = attrs[i].len ? attrs[i].value : "";
                lens[5 + 2 * i] = attrs[i].len;
            } else {
                args[4 + i] = names[i];
                lens[4 + i] = strlen(names[i]);
            }
        }
        call c = {&write_script, k.str, k.len, (int)nargs, args, lens};
        rk_reply *r;
        st = run1(s, &c, &r);
        if (st == RK_OK) {
            st = code_status(s, element_int(r, 0));
            rk_reply_free(r);
        }
        argbuf_release(&ab);
    }
    return st;
}

rk_status rk_sessions_set(rk_sessions *s, const char *token, const rk_session_attr *attrs, size_t n)
{
    return done(s, write_attrs(s, token, 's', attrs, NULL, n));
}

rk_status rk_sessions_set_str(rk_sessions *s, const char *token, const char *name, const char *value)
{
    if (!value) return done(s, rk__fail(RK_ERR_INVALID, "value is NULL"));
    rk_session_attr a = {name, value, strlen(value)};
    return done(s, write_attrs(s, token, 's', &a, NULL, 1));
}

rk_status rk_sessions_unset(rk_sessions *s, const char *token, const char *const *names, size_t n)
{
    return done(s, write_attrs(s, token, 'u', NULL, names, n));
}

rk_status rk_sessions_touch(rk_sessions *s, const char *token)
{
    char id[RK_SESSION_ID_SIZE];
    skey k;
    rk_status st = token_key(s, token, id, &k);
    if (st != RK_OK) return done(s, st);
    char idle[NUM];
    const char *args[1] = {idle};
    size_t lens[1] = {num(s->idle_ms, idle)};
    call c = {&touch_script, k.str, k.len, 1, args, lens};
    rk_reply *r;
    st = run1(s, &c, &r);
    if (st == RK_OK) {
        st = code_status(s, element_int(r, 0));
        rk_reply_free(r);
    }
    return done(s, st);
}

/* ---- destroy and regenerate ------------------------------------------------ */

/* Remove ids from user's index (the second command of a destroy). */
static rk_status index_remove(rk_sessions *s, const char *user, size_t ulen, const char *const *ids, size_t n,
                              int64_t deadline_ns)
{
    skey ik;
    index_key(s, user, ulen, &ik);
    call c;
    index_args ia = {0};
    rk_status st = index_call(&c, &ia, &ik, 'r', NULL, ids, n);
    if (st == RK_OK) {
        rk_reply *r;
        st = run(s, 1, &c, deadline_ns, &r);
        rk_reply_free(r);
    }
    index_args_release(&ia);
    return st;
}

rk_status rk_sessions_destroy(rk_sessions *s, const char *token)
{
    char id[RK_SESSION_ID_SIZE];
    skey k;
    rk_status st = token_key(s, token, id, &k);
    if (st != RK_OK) return done(s, st);
    int64_t deadline = rk__client_deadline(s->client);
    const char *args[1] = {"d"};
    size_t lens[1] = {1};
    call c = {&take_script, k.str, k.len, 1, args, lens};
    rk_reply *r;
    st = run(s, 1, &c, deadline, &r);
    if (st != RK_OK) return done(s, st);
    st = code_status(s, element_int(r, 0));
    const rk_reply *user = element_str(r, 1);
    if (st == RK_OK) {
        COUNT(s, destroyed, 1);
        /* The session is gone; now its index entry (a failure here leaves
         * an entry that list prunes: the destroy itself succeeded). */
        if (user && user->len && user->len <= RK_SESSIONS_MAX_USER_BYTES) {
            const char *ids[1] = {id};
            char keep[RK__ERRMSG_MAX];
            snprintf(keep, sizeof keep, "%s", rk_last_error());
            if (index_remove(s, user->str, user->len, ids, 1, deadline) != RK_OK) rk__fail_str(RK_OK, keep);
        }
    }
    rk_reply_free(r);
    return done(s, st);
}

rk_status rk_sessions_regenerate(rk_sessions *s, const char *token, const char *user,
                                 char new_token[RK_SESSION_TOKEN_SIZE])
{
    char id[RK_SESSION_ID_SIZE], nid[RK_SESSION_ID_SIZE], ntok[RK_SESSION_TOKEN_SIZE];
    skey k, nk, new_ik, old_ik;
    size_t new_ulen = 0;
    rk_status st = token_key(s, token, id, &k);
    if (st == RK_OK && !new_token) st = rk__fail(RK_ERR_INVALID, "new_token is NULL");
    if (st == RK_OK && user) st = check_text("user", user, RK_SESSIONS_MAX_USER_BYTES, &new_ulen);
    if (st != RK_OK) return done(s, st);
    if ((st = rk__session_token_new(ntok)) != RK_OK || (st = rk__session_id(ntok, nid)) != RK_OK)
        return done(s, st);
    session_key(s, nid, &nk);
    int64_t deadline = rk__client_deadline(s->client);

    /* Round trip 1: take the session away from the old token. From here
     * on the old token names nothing. */
    const char *targs[1] = {"t"};
    size_t tlens[1] = {1};
    call tc = {&take_script, k.str, k.len, 1, targs, tlens};
    rk_reply *taken;
    st = run(s, 1, &tc, deadline, &taken);
    if (st != RK_OK) goto out;
    st = code_status(s, element_int(taken, 0));
    const rk_reply *value = element_str(taken, 2), *old_user = element_str(taken, 3);
    if (st == RK_OK && (!value || !old_user || old_user->len > RK_SESSIONS_MAX_USER_BYTES))
        st = rk__fail(RK_ERR_PROTOCOL, "sessions take: unexpected reply");
    if (st != RK_OK) {
        rk_reply_free(taken);
        goto out;
    }
    if (!user) {
        user = old_user->str;
        new_ulen = old_user->len;
    }

    /* Round trip 2: index the new id (when the session has a user), store
     * the session under it (with its new user, if one was given), then
     * drop the old id from the old user's index. */
    char idle[NUM], maxb[NUM], ttl[NUM];
    const char *pargs[4] = {value->str, idle, maxb, user};
    size_t plens[4] = {value->len, num(s->idle_ms, idle), num((int64_t)s->max_bytes, maxb), new_ulen};
    call calls[3];
    size_t ncalls = 0, put_at = 0;
    index_args add = {0}, rem = {0};
    if (new_ulen) {
        index_key(s, user, new_ulen, &new_ik);
        long long left = element_int(taken, 4) - element_int(taken, 1);
        num((int64_t)(left > 0 ? left : 0) + INDEX_SLACK_MS, ttl);
        const char *nids[1] = {nid};
        st = index_call(&calls[ncalls++], &add, &new_ik, 'a', ttl, nids, 1);
    }
    put_at = ncalls;
    calls[ncalls++] = (call){&put_script, nk.str, nk.len, 4, pargs, plens};
    if (st == RK_OK && old_user->len) {
        index_key(s, old_user->str, old_user->len, &old_ik);
        const char *ids[1] = {id};
        st = index_call(&calls[ncalls++], &rem, &old_ik, 'r', NULL, ids, 1);
    }
    rk_reply *replies[3] = {NULL, NULL, NULL};
    if (st == RK_OK) st = run(s, ncalls, calls, deadline, replies);
    if (st == RK_OK) st = code_status(s, element_int(replies[put_at], 0));
    for (size_t i = 0; i < ncalls; i++) rk_reply_free(replies[i]);
    index_args_release(&add);
    index_args_release(&rem);
    rk_reply_free(taken);
    if (st == RK_OK) {
        memcpy(new_token, ntok, sizeof ntok);
        COUNT(s, regenerated, 1);
    } else if (st != RK_MISS && st != RK_ERR_INVALID) {
        char why[RK__ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", rk_last_error());
        rk__fail(st, "regenerate: the session was taken from its old token but not stored under the new one "
                     "(it is lost; the user must log in again): %s", why);
    }
out:
    memset(ntok, 0, sizeof ntok);
    return done(s, st);
}

/* ---- per-user listing and revocation --------------------------------------- */

/* Round trip 1 of list and destroy_user: prune the index, read its ids.
 * On RK_OK *r is the reply whose elements are the ids. */
static rk_status index_read(rk_sessions *s, const char *user, int64_t deadline, rk_reply **r)
{
    size_t ulen = 0;
    rk_status st = check_text("user", user, RK_SESSIONS_MAX_USER_BYTES, &ulen);
    if (st != RK_OK) return st;
    skey ik;
    index_key(s, user, ulen, &ik);
    char max[NUM];
    num((int64_t)s->max_list, max);
    const char *args[2] = {"l", max};
    size_t lens[2] = {1, strlen(max)};
    call c = {&index_script, ik.str, ik.len, 2, args, lens};
    /* The index answers an array of ids (not a code): checked here. */
    rk_reply *reply;
    st = run(s, 1, &c, deadline, &reply);
    if (st != RK_OK) return st;
    if (reply->type != RK_REPLY_ARRAY) {
        rk_reply_free(reply);
        return rk__fail(RK_ERR_PROTOCOL, "sessions index: unexpected reply");
    }
    for (size_t i = 0; i < reply->elements; i++)
        if (!element_str(reply, i) || reply->element[i]->len != RK_SESSION_ID_LEN) {
            rk_reply_free(reply);
            return rk__fail(RK_ERR_PROTOCOL, "sessions index: unexpected member");
        }
    *r = reply;
    return RK_OK;
}

static int info_cmp(const void *a, const void *b)
{
    const rk_session_info *x = a, *y = b;
    return x->issued_ms < y->issued_ms ? -1 : x->issued_ms > y->issued_ms;
}

/* A listed session's last access and expiry. The key expires at
 * min(last access + idle, deadline) (every script that touches a session
 * sets it so), so while the idle timeout governs, the last access is the
 * expiry (at, PEXPIRETIME; -1 if unknown) minus idle_ms; in a session's
 * last idle period before its deadline it is only known to be after
 * deadline − idle_ms, which is what is reported. Format 1 stored it. */
static void derive_access(const rk_sessions *s, const rk__session_head *h, int64_t at, rk_session_info *info)
{
    int64_t idle_end = h->last_access_ms >= 0 ? h->last_access_ms + s->idle_ms : at;
    if (idle_end < 0 || idle_end > h->deadline_ms) idle_end = h->deadline_ms;
    info->expires_ms = at > 0 ? at : idle_end;
    info->last_access_ms = h->last_access_ms >= 0 ? h->last_access_ms : idle_end - s->idle_ms;
    if (info->last_access_ms < h->issued_ms) info->last_access_ms = h->issued_ms;
}

rk_status rk_sessions_list(rk_sessions *s, const char *user, rk_session_list **out)
{
    if (!out) return done(s, rk__fail(RK_ERR_INVALID, "rk_sessions_list: out is NULL"));
    *out = NULL;
    if (!s) return rk__fail(RK_ERR_INVALID, "sessions is NULL");
    int64_t deadline = rk__client_deadline(s->client);
    rk_reply *ids = NULL;
    rk_status st = index_read(s, user, deadline, &ids);
    if (st != RK_OK) return done(s, st);
    size_t n = ids->elements;
    rk_session_list *list = rk__calloc(1, sizeof *list);
    rk_session_info *infos = rk__calloc(n ? n : 1, sizeof *infos);
    skey *keys = rk__malloc((n ? n : 1) * sizeof *keys);
    rk__cmd *cmds = rk__malloc((n ? n : 1) * 2 * sizeof *cmds);
    const char **argv = rk__malloc((n ? n : 1) * 4 * sizeof *argv);
    size_t *lens = rk__malloc((n ? n : 1) * 4 * sizeof *lens);
    rk_reply **got = rk__calloc(n ? n : 1, 2 * sizeof *got);
    const char **gone = rk__malloc((n ? n : 1) * sizeof *gone);
    if (!list || !infos || !keys || !cmds || !argv || !lens || !got || !gone) {
        st = rk__fail(RK_ERR_NOMEM, "sessions list: out of memory");
        goto out;
    }
    /* Round trip 2: read each session and its expiry (GET, PEXPIRETIME:
     * no sliding, no write). The expiry gives the last access, which
     * format 2 does not store. */
    for (size_t i = 0; i < n; i++) {
        session_key(s, ids->element[i]->str, &keys[i]);
        argv[4 * i] = "GET";
        lens[4 * i] = 3;
        argv[4 * i + 2] = "PEXPIRETIME";
        lens[4 * i + 2] = 11;
        argv[4 * i + 1] = argv[4 * i + 3] = keys[i].str;
        lens[4 * i + 1] = lens[4 * i + 3] = keys[i].len;
        cmds[2 * i] = (rk__cmd){2, argv + 4 * i, lens + 4 * i};
        cmds[2 * i + 1] = (rk__cmd){2, argv + 4 * i + 2, lens + 4 * i + 2};
    }
    if (n) st = rk__client_pipeline_until(s->client, 2 * n, cmds, true, got, deadline);
    size_t live = 0, ngone = 0;
    for (size_t i = 0; i < n && st == RK_OK; i++) {
        rk__session_head h;
        const rk_reply *v = got[2 * i], *e = got[2 * i + 1];
        if (v->type == RK_REPLY_STRING && rk__session_parse_head(v->str, v->len, &h)) {
            rk_session_info *info = &infos[live++];
            memcpy(info->id, ids->element[i]->str, RK_SESSION_ID_LEN);
            info->id[RK_SESSION_ID_LEN] = '\0';
            info->issued_ms = h.issued_ms;
            info->deadline_ms = h.deadline_ms;
            int64_t at = e->type == RK_REPLY_INTEGER && e->integer > 0 ? e->integer : -1;
            derive_access(s, &h, at, info);
        } else if (v->type == RK_REPLY_NIL) {
            gone[ngone++] = ids->element[i]->str;
        }
    }
    /* Round trip 3, when some are gone (idle expiry, a crash mid-destroy):
     * prune their ids, so the index never leaks. */
    if (st == RK_OK && ngone) {
        size_t ulen = strlen(user);
        st = index_remove(s, user, ulen, gone, ngone, deadline);
    }
    if (st == RK_OK) {
        qsort(infos, live, sizeof *infos, info_cmp);
        list->n = live;
        list->sessions = infos;
        infos = NULL;
        *out = list;
        list = NULL;
    }
out:
    for (size_t i = 0; got && i < 2 * n; i++) rk_reply_free(got[i]);
    rk_reply_free(ids);
    rk__free(list);
    rk__free(infos);
    rk__free(keys);
    rk__free(cmds);
    rk__free(argv);
    rk__free(lens);
    rk__free(got);
    rk__free(gone);
    return done(s, st);
}

void rk_session_list_free(rk_session_list *list)
{
    if (!list) return;
    rk__free(list->sessions);
    rk__free(list);
}

rk_status rk_sessions_destroy_user(rk_sessions *s, const char *user, const char *except_token, size_t *destroyed)
{
    if (destroyed) *destroyed = 0;
    if (!s) return rk__fail(RK_ERR_INVALID, "sessions is NULL");
    char keep[RK_SESSION_ID_SIZE] = "";
    if (except_token) {
        skey unused;
        rk_status st = token_key(s, except_token, keep, &unused);
        if (st != RK_OK) return done(s, st);
    }
    int64_t deadline = rk__client_deadline(s->client);
    rk_reply *ids = NULL;
    rk_status st = index_read(s, user, deadline, &ids);
    if (st != RK_OK) return done(s, st);
    size_t n = ids->elements, m = 1 + (n ? n : 1);
    skey *keys = rk__malloc(m * sizeof *keys);
    rk__cmd *cmds = rk__malloc(m * sizeof *cmds);
    const char **argv = rk__malloc(m * 2 * sizeof *argv);
    size_t *lens = rk__malloc(m * 2 * sizeof *lens);
    rk_reply **got = rk__calloc(m, sizeof *got);
    const char **victims = rk__malloc(m * sizeof *victims);
    size_t nv = 0;
    if (!keys || !cmds || !argv || !lens || !got || !victims) {
        st = rk__fail(RK_ERR_NOMEM, "sessions destroy_user: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *id = ids->element[i]->str;
        if (keep[0] && memcmp(id, keep, RK_SESSION_ID_LEN) == 0) continue;
        session_key(s, id, &keys[nv]);
        argv[2 * nv] = "UNLINK";
        lens[2 * nv] = 6;
        argv[2 * nv + 1] = keys[nv].str;
        lens[2 * nv + 1] = keys[nv].len;
        cmds[nv] = (rk__cmd){2, argv + 2 * nv, lens + 2 * nv};
        victims[nv++] = id;
    }
    /* Round trip 2: the sessions first, then (separately, so that the index
     * entries go only once their sessions have) the ids. */
    if (nv) st = rk__client_pipeline_until(s->client, nv, cmds, false, got, deadline);
    size_t count = 0;
    for (size_t i = 0; i < nv && st == RK_OK; i++) {
        if (got[i]->type != RK_REPLY_INTEGER) st = rk__fail(RK_ERR_PROTOCOL, "UNLINK: unexpected reply");
        else count += (size_t)(got[i]->integer > 0);
    }
    if (st == RK_OK && nv) st = index_remove(s, user, strlen(user), victims, nv, deadline);
    COUNT(s, destroyed, count);
    if (destroyed) *destroyed = count;
out:
    for (size_t i = 0; got && i < nv; i++) rk_reply_free(got[i]);
    rk_reply_free(ids);
    rk__free(keys);
    rk__free(cmds);
    rk__free(argv);
    rk__free(lens);
    rk__free(got);
    rk__free(victims);
    return done(s, st);
}

/* ---- count ----------------------------------------------------------------- */

rk_status rk_sessions_count(rk_sessions *s, uint64_t *count)
{
    if (!s || !count) return rk__fail(RK_ERR_INVALID, "rk_sessions_count: NULL argument");
    *count = 0;
    /* MATCH "<head>{*", the head glob-escaped (a prefix is plain text). */
    char pattern[2 * KEY_MAX + 3];
    size_t plen = rk__key_glob_escape(s->head, s->head_len, pattern, sizeof pattern - 3);
    memcpy(pattern + plen, "{*", 3);
    plen += 2;
    char cursor[32] = "0";
    int64_t stop = rk__now_ns() + COUNT_BUDGET_NS;
    uint64_t total = 0;
    rk_status st = RK_OK;
    for (int round = 0;; round++) {
        if (round >= COUNT_ROUNDS || rk__now_ns() > stop) {
            st = rk__fail(RK_ERR_TIMEOUT, "sessions count: gave up after %d SCAN rounds", round);
            break;
        }
        const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        size_t lens[6] = {4, strlen(cursor), 5, plen, 5, 4};
        rk_reply *r;
        st = rk__client_run(s->client, 6, argv, lens, true, &r);
        if (st != RK_OK) break;
        if (r->type != RK_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != RK_REPLY_STRING ||
            r->element[0]->len >= sizeof cursor || r->element[1]->type != RK_REPLY_ARRAY) {
            rk_reply_free(r);
            st = rk__fail(RK_ERR_PROTOCOL, "SCAN: unexpected reply");
            break;
        }
        total += r->element[1]->elements;
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = '\0';
        rk_reply_free(r);
        if (strcmp(cursor, "0") == 0) break;
    }
    if (st == RK_OK) *count = total;
    return done(s, st);
}
