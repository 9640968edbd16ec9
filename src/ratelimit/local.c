/*
 * local.c — the rate-limiting algorithms in C, and a small bounded table.
 *
 * rk__rl_eval() is the arithmetic of the Lua script in limiter.c, one
 * limit at a time, with the time passed in: the local limiter (the
 * failure policy RK_LIMIT_FAIL_LOCAL) runs it on cells kept in process
 * memory, and the unit tests run it with a hand-moved clock. Keeping the
 * two in the same shape (same state, same order of tests, same rounding)
 * is what lets a limiter switch to local decisions and mean the same
 * limits; docs/ratelimit.md gives the formulas.
 *
 * The table is deliberately simple: a power-of-two array of slots, each
 * key confined to a window of RK__PROBE consecutive slots from its hash;
 * a key that finds neither itself nor a free slot there evicts the least
 * recently used slot of its window. Memory is fixed by the capacity, a
 * lookup touches at most RK__PROBE slots, and nothing ever needs a
 * rehash — the right trade for a cache whose entries can all be rebuilt.
 */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "ratelimit.h"

#define RK__PROBE 8
/* Absorbs the rounding of fractional tokens so that n refills of 1/n
 * token add up to a whole one. */
#define RK__EPS 1e-9

static int64_t ceil_us(double x)
{
    return (int64_t)ceil(x);
}

bool rk__rl_eval(const rk__limit_cfg *cfg, const rk__rl_cell *cell, int op, int64_t cost, int64_t now_us,
                 rk_limit_state *out, rk__rl_cell *next)
{
    const double now = (double)now_us;
    const double limit = (double)cfg->limit, period = (double)cfg->period_us;
    const bool peek = op == RK__OP_PEEK, consume = op == RK__OP_CHECK;
    const bool decide = consume || peek || op == RK__OP_DRY;
    const double c = peek ? 1.0 : (double)cost;
    bool ok = true;
    double rem = 0, reset = 0, retry = 0, used = 0;
    *next = *cell;
    next->set = true;
    memset(out, 0, sizeof *out);

    switch (cfg->algo) {
    case RK_LIMIT_GCRA: {
        const double T = (double)cfg->p1, tau = (double)cfg->p2;
        double tat = cell->set ? cell->a : now;
        if (tat < now) tat = now;
        double cur = tat;
        if (op == RK__OP_PENALTY) {
            cur = tat + T * c;
        } else if (op == RK__OP_REWARD) {
            cur = tat - T * c;
            if (cur < now) cur = now;
        } else if (decide) {
            double nt = tat + T * c;
            if (nt - tau <= now) {
                if (consume) cur = nt;
            } else {
                ok = false;
                retry = T * c > tau ? -1 : nt - tau - now;
            }
        }
        next->a = cur;
        rem = floor((tau - (cur - now)) / T);
        used = (cur - now) / T;
        reset = cur - now;
        break;
    }
    case RK_LIMIT_SLIDING_WINDOW: {
        double win = floor(now / period), el = now - win * period;
        double cur = 0, prev = 0;
        if (cell->set && cell->a == win) {
            cur = cell->b;
            prev = cell->c;
        } else if (cell->set && cell->a == win - 1) {
            prev = cell->b;
        }
        double wt = prev * (period - el) / period;
        if (op == RK__OP_PENALTY) {
            cur += c;
        } else if (op == RK__OP_REWARD) {
            cur = cur - c < 0 ? 0 : cur - c;
        } else if (decide) {
            if (wt + cur + c <= limit) {
                if (consume) cur += c;
            } else {
                ok = false;
                double need = limit - c;
                if (need < 0) {
                    retry = -1;
                } else if (cur <= need && prev > 0) {
                    retry = ceil((period - el) - (need - cur) * period / prev);
                } else {
                    double e2 = period - need * period / cur;
                    if (e2 < 0) e2 = 0;
                    retry = (period - el) + ceil(e2);
                }
                if (retry == 0) retry = 1;
            }
        }
        next->a = win;
        next->b = cur;
        next->c = prev;
        double est = wt + cur;
        rem = floor(limit - est);
        used = est;
        reset = cur > 0 ? (period - el) + period : prev > 0 ? period - el : 0;
        break;
    }
    case RK_LIMIT_FIXED_WINDOW: {
        double st = cell->a, cnt = cell->b;
        if (!cell->set || now >= st + period) {
            st = cfg->p1 ? floor(now / period) * period : now;
            cnt = 0;
        }
        if (op == RK__OP_PENALTY) {
            cnt += c;
        } else if (op == RK__OP_REWARD) {
            cnt = cnt - c < 0 ? 0 : cnt - c;
        } else if (decide) {
            if (cnt + c <= limit) {
                if (consume) cnt += c;
            } else {
                ok = false;
                retry = c > limit ? -1 : st + period - now;
            }
        }
        next->a = st;
        next->b = cnt;
        rem = limit - cnt;
        used = cnt;
        reset = st + period - now;
        break;
    }
    case RK_LIMIT_TOKEN_BUCKET: {
        const double cap = (double)cfg->p1;
        double tok = cell->set ? cell->a : cap, ts = cell->set ? cell->b : now;
        if (now > ts) {
            tok += (now - ts) * limit / period;
            if (tok > cap) tok = cap;
        }
        if (op == RK__OP_PENALTY) {
            tok -= c;
        } else if (op == RK__OP_REWARD) {
            tok = tok + c > cap ? cap : tok + c;
        } else if (decide) {
            if (tok + RK__EPS >= c) {
                if (consume) tok -= c;
            } else {
                ok = false;
                retry = c > cap ? -1 : ceil((c - tok) * period / limit);
            }
        }
        next->a = tok;
        next->b = now > ts ? now : ts;
        rem = floor(tok + RK__EPS);
        used = cap - tok;
        reset = ceil((cap - tok) * period / limit);
        if (reset < 0) reset = 0;
        break;
    }
    case RK_LIMIT_CONCURRENCY: {
        /* In process memory a lease is a count, not a member: the count
         * empties when the last lease taken would have expired. */
        double cnt = cell->set && now < cell->b ? cell->a : 0, until = cell->set ? cell->b : 0;
        if (op == RK__OP_RELEASE) {
            cnt = cnt > 0 ? cnt - 1 : 0;
        } else if (decide) {
            if (cnt + c <= limit) {
                if (consume && c > 0) {
                    cnt += 1;
                    until = now + period;
                }
            } else {
                ok = false;
                retry = c > limit ? -1 : (until - now > 1 ? until - now : 1);
            }
        }
        next->a = cnt;
        next->b = until;
        rem = limit - cnt;
        used = cnt;
        reset = cnt > 0 ? until - now : 0;
        break;
    }
    }
    if (rem < 0) rem = 0;
    out->allowed = ok;
    out->limit = cfg->quota;
    out->remaining = (int64_t)rem;
    out->reset_ms = (ceil_us(reset) + 999) / 1000;
    out->retry_after_ms = ok ? 0 : retry < 0 ? -1 : (ceil_us(retry) + 999) / 1000;
    out->used = used;
    return ok;
}

/* ---- the bounded table ------------------------------------------------------ */

typedef struct slot {
    uint64_t hash;
    uint64_t last_used; /* 0 = free */
    char *key;
    size_t klen;
} slot;

static uint64_t hash_key(const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < klen; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h;
}

rk_status rk__rl_table_init(rk__rl_table *t, size_t max, size_t vsize)
{
    memset(t, 0, sizeof *t);
    if (pthread_mutex_init(&t->mu, NULL) != 0) return rk__fail(RK_ERR_SYSTEM, "limiter: mutex init failed");
    t->max = max;
    size_t cap = RK__PROBE;
    while (cap < max && cap < ((size_t)1 << 30)) cap <<= 1;
    t->cap = cap;
    t->vsize = vsize;
    t->stride = sizeof(slot) + ((vsize + 7) & ~(size_t)7);
    return RK_OK;
}

void rk__rl_table_destroy(rk__rl_table *t)
{
    if (t->slots) {
        for (size_t i = 0; i < t->cap; i++) rk__free(((slot *)(t->slots + i * t->stride))->key);
        rk__free(t->slots);
    }
    t->slots = NULL;
    pthread_mutex_destroy(&t->mu);
}

static slot *slot_at(rk__rl_table *t, size_t i)
{
    return (slot *)(t->slots + (i & (t->cap - 1)) * t->stride);
}

void *rk__rl_table_get(rk__rl_table *t, const char *key, size_t klen, bool create, bool *created)
{
    if (created) *created = false;
    if (!t->slots) {
        if (!create) return NULL;
        /* Allocated on first use: a limiter whose Redis never fails never
         * pays for its local limiter. */
        t->slots = rk__calloc(t->cap, t->stride);
        if (!t->slots) return NULL;
    }
    uint64_t h = hash_key(key, klen);
    slot *victim = NULL;
    for (size_t i = 0; i < RK__PROBE; i++) {
        slot *s = slot_at(t, (size_t)h + i);
        if (s->last_used && s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
            s->last_used = ++t->tick;
            return s + 1;
        }
        if (!victim || s->last_used < victim->last_used) victim = s;
    }
    if (!create) return NULL;
    /* Keep the count at most max even though cap may be larger. */
    if (!victim->last_used && t->count >= t->max) {
        slot *oldest = NULL;
        for (size_t i = 0; i < RK__PROBE; i++) {
            slot *s = slot_at(t, (size_t)h + i);
            if (s->last_used && (!oldest || s->last_used < oldest->last_used)) oldest = s;
        }
        if (oldest) victim = oldest;
    }
    char *copy = rk__malloc(klen ? klen : 1);
    if (!copy) return NULL;
    memcpy(copy, key, klen);
    if (victim->last_used) {
        rk__free(victim->key);
        t->count--;
    }
    memset(victim, 0, t->stride);
    victim->hash = h;
    victim->key = copy;
    victim->klen = klen;
    victim->last_used = ++t->tick;
    t->count++;
    if (created) *created = true;
    return victim + 1;
}

void rk__rl_table_remove(rk__rl_table *t, const char *key, size_t klen)
{
    if (!t->slots) return;
    uint64_t h = hash_key(key, klen);
    for (size_t i = 0; i < RK__PROBE; i++) {
        slot *s = slot_at(t, (size_t)h + i);
        if (s->last_used && s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
            rk__free(s->key);
            memset(s, 0, t->stride);
            t->count--;
            return;
        }
    }
}
