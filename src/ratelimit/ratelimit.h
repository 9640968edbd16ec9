/*
 * ratelimit.h — the inside of an rk_limiter, shared by the files that
 * implement it (contract in include/redkit/ratelimit.h):
 *
 *   limiter.c   the handle, the one Lua script every call runs, the
 *               failure policy, the block cache and the counters
 *   local.c     the same algorithms in C, for the local limiter (pure
 *               arithmetic with the time passed in), and the small bounded
 *               table that both the local limiter and the block cache use
 *   headers.c   HTTP header rendering and IP-address keys (pure)
 *
 * All times inside are microseconds, the resolution of Redis's TIME.
 */
#ifndef RK_SRC_RATELIMIT_H
#define RK_SRC_RATELIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <redkit/ratelimit.h>

/* One limit as the scripts and the local limiter see it. */
typedef struct rk__limit_cfg {
    char name[RK_LIMIT_MAX_NAME_BYTES + 1];
    size_t name_len;
    rk_limit_algorithm algo;
    int64_t limit;      /* per period; in flight for concurrency */
    int64_t period_us;
    int64_t p1;         /* GCRA: T (emission interval, us); bucket: capacity;
                           fixed window: 1 = aligned */
    int64_t p2;         /* GCRA: tau (tolerance, us) */
    int64_t quota;      /* the limit as reported: burst + 1 (GCRA),
                           capacity (bucket), else limit */
    char args[4][24];   /* limit, period_us, p1, p2 as the script's ARGV,
                           formatted once */
    size_t args_len[4];
} rk__limit_cfg;

/* Operations of the script and of the local limiter. */
enum {
    RK__OP_CHECK = 'c',   /* consume cost if every limit allows it */
    RK__OP_PEEK = 'p',    /* decide for cost 1, consume nothing */
    RK__OP_PENALTY = '+', /* consume cost unconditionally */
    RK__OP_REWARD = '-',  /* give cost back */
    RK__OP_RELEASE = 'r', /* return a concurrency lease */
    RK__OP_DRY = 'd'      /* decide for cost, consume nothing (phase one of
                             a check, local limiter only) */
};

/* The local state of one limit of one key (meaning per algorithm, as the
 * Redis value: GCRA a = TAT; sliding a = window index, b = current, c =
 * previous; fixed a = window start, b = count; bucket a = tokens, b =
 * time of a; concurrency a = leases in flight, b = when the last one
 * taken expires). */
typedef struct rk__rl_cell {
    bool set;
    double a, b, c;
} rk__rl_cell;

/*
 * Evaluate one limit for op with cost at now_us on *cell, as the script
 * does in Redis. out receives the limit's state (limit field included);
 * *next the state to store if the whole check goes ahead. Returns whether
 * this limit allows the request. Pure.
 */
bool rk__rl_eval(const rk__limit_cfg *cfg, const rk__rl_cell *cell, int op, int64_t cost, int64_t now_us,
                 rk_limit_state *out, rk__rl_cell *next);

/* A bounded table of keys with a fixed-size value each (the local
 * limiter's cells, the block cache's deadlines): at most `max` keys; a key
 * that finds no room evicts the least recently used of the few slots it
 * may live in. Not locked: the caller holds mu. */
typedef struct rk__rl_table {
    pthread_mutex_t mu;
    size_t max;       /* capacity asked for */
    size_t cap;       /* slots, a power of two >= max (allocated lazily) */
    size_t vsize;
    size_t stride;
    unsigned char *slots;
    uint64_t tick;
    size_t count;
} rk__rl_table;

rk_status rk__rl_table_init(rk__rl_table *t, size_t max, size_t vsize);
void rk__rl_table_destroy(rk__rl_table *t);
/* The value of key, or NULL; with create, a new zeroed value is made when
 * absent (NULL only on no memory; *created says whether it is new). */
void *rk__rl_table_get(rk__rl_table *t, const char *key, size_t klen, bool create, bool *created);
void rk__rl_table_remove(rk__rl_table *t, const char *key, size_t klen);

/* Counters (relaxed atomics). */
typedef struct rk__limiter_counters {
    _Atomic uint64_t allowed, limited, near_limit, shadow_limited, fail_open, fail_closed, local_decisions,
        block_cache_hits, errors;
} rk__limiter_counters;

struct rk_limiter {
    rk_client *client;
    char *ns;
    char *head; /* "<prefix>:<ns>:" */
    size_t head_len;
    size_t n;
    rk__limit_cfg cfg[RK_LIMITER_MAX_LIMITS];
    bool has_concurrency;
    rk_limit_failure_policy policy;
    int timeout_ms;
    bool block_cache;
    bool shadow;
    size_t max_key;
    rk__rl_table blocks; /* key -> rk__rl_block */
    rk__rl_table local;  /* key -> rk__rl_cell[n] */
    bool local_ready, blocks_ready, registered;
    /* Test hooks (rk__limiter_test_clock): the scripts use fixed_now_us
     * instead of TIME when it is not 0, then add offset_us. */
    _Atomic int64_t fixed_now_us, offset_us;
    /* The clock of the local limiter and the block cache (us); NULL =
     * the monotonic clock. */
    int64_t (*local_now)(void *ctx);
    void *local_ctx;
    rk__limiter_counters counters;
};

/* The one script every call runs (for bench/ratelimit_bench.c, which runs
 * it through bare hiredis as the baseline). Its KEYS are the limits' keys
 * in order; its ARGV: op, cost, fixed now (0 = TIME), offset (us), lease,
 * then per limit: algorithm letter (g s f t c), limit, period_us, p1, p2. */
struct rk__script *rk__limiter_script(void);
extern const char rk__limiter_algo_code[5];

/* ---- one check inside a larger script ------------------------------------
 *
 * A call is begun (validated, its keys and ARGV built, or answered by the
 * block cache), run — alone by rk_limiter_check(), or embedded in another
 * module's script (apikeys' verify_limit.c checks an API key and
 * consumes from its limits in one script, embedding limiter_lua.h) — and
 * ended (the reply parsed and decided, or the failure policy applied;
 * counted). */

#define RK__LIMIT_MAX_ARGS (5 + 5 * RK_LIMITER_MAX_LIMITS)
#define RK__LIMIT_PRE_MAX 4 /* keys or args another script puts first */

typedef struct rk__limit_call {
    rk_limiter *l;
    bool answered;         /* begin: the block cache answered (res is final) */
    const char *key;       /* the caller's; must outlive the call */
    size_t klen;
    int op;
    int64_t cost;
    char lease[RK_LEASE_ID_BYTES + 1];
    const char *keys[RK_LIMITER_MAX_LIMITS]; /* KEYS, in limit order */
    size_t keylens[RK_LIMITER_MAX_LIMITS];
    size_t nargs;                            /* ARGV */
    const char *args[RK__LIMIT_MAX_ARGS];
    size_t arglens[RK__LIMIT_MAX_ARGS];
    char opc;
    char nums[3 * 24];
    char *heap;                              /* keys that did not fit stack */
    char stack[1024];
} rk__limit_call;

/* Begin op (RK__OP_*) on key for cost: on RK_OK either c->answered (the
 * block cache refused; *res is final and counted) or c is ready to run
 * and must be ended with rk__limiter_end(). On an error nothing is to be
 * ended (the error is counted). c points into itself: do not copy it. */
rk_status rk__limiter_begin(rk_limiter *l, const char *key, int op, int64_t cost, const char *lease_in,
                            rk_limit_result *res, rk__limit_call *c);

/* Run c by itself (script = the limiter's) or inside script, whose KEYS
 * are pre_keys then c's keys and whose ARGV are pre_args then c's args,
 * within the limiter's deadline, by SHA with the NOSCRIPT fallback. On
 * RK_OK *reply is the script's reply (never an error reply; the caller
 * frees it). */
rk_status rk__limiter_run(rk__limit_call *c, struct rk__script *script, size_t npre_keys,
                          const char *const *pre_keys, const size_t *pre_keylens, size_t npre_args,
                          const char *const *pre_args, const size_t *pre_arglens, rk_reply **reply);

/* End c: st is how its round trip went, r (when st is RK_OK) the limiter
 * script's part of the reply (not taken). Fills *res — from r, or by the
 * failure policy when Redis did not answer — counts it, releases c.
 * Returns RK_OK with a decision, or the error (counted). */
rk_status rk__limiter_end(rk__limit_call *c, rk_status st, const rk_reply *r, rk_limit_result *res);

/* Release a begun c without a decision (nothing is counted). */
void rk__limiter_cancel(rk__limit_call *c);

/* The deadline of one check (absolute, rk__now_ns() nanoseconds). */
int64_t rk__limiter_deadline(const rk_limiter *l);

/* Test hooks. */
void rk__limiter_test_clock(rk_limiter *l, int64_t fixed_now_us, int64_t offset_us);
void rk__limiter_local_clock(rk_limiter *l, int64_t (*now_us)(void *ctx), void *ctx);

#endif
