/*
 * fail_alloc.c — the allocator that fails the Nth allocation (see
 * fail_alloc.h).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fail_alloc.h"

/* The header in front of each block keeps what follows it aligned. */
typedef union block {
    max_align_t align;
    size_t size;
} block;

static struct {
    long calls, fail_at; /* fail_at 0 = never */
    bool hit;
    long live;           /* blocks handed out and not freed */
} inj;

/* The count is atomic: a handle's background thread (rk_pubsub's) may
 * allocate while the walking thread does, and each count must fail once. */
static bool fail_now(void)
{
    long at = __atomic_load_n(&inj.fail_at, __ATOMIC_RELAXED);
    if (at == 0 || __atomic_add_fetch(&inj.calls, 1, __ATOMIC_RELAXED) != at) return false;
    __atomic_store_n(&inj.hit, true, __ATOMIC_RELAXED);
    return true;
}

static void *inj_malloc(size_t size, void *user)
{
    (void)user;
    if (fail_now()) return NULL;
    block *b = malloc(sizeof *b + size);
    if (!b) return NULL;
    b->size = size;
    __atomic_add_fetch(&inj.live, 1, __ATOMIC_RELAXED);
    return b + 1;
}

static void *inj_calloc(size_t n, size_t size, void *user)
{
    void *p = inj_malloc(n * size, user); /* redkit checks n * size */
    if (p) memset(p, 0, n * size);
    return p;
}

static void *inj_realloc(void *ptr, size_t size, void *user)
{
    if (!ptr) return inj_malloc(size, user);
    if (fail_now()) return NULL;
    block *b = realloc((block *)ptr - 1, sizeof *b + size);
    if (!b) return NULL;
    b->size = size;
    return b + 1;
}

static void inj_free(void *ptr, void *user)
{
    (void)user;
    if (!ptr) return;
    __atomic_sub_fetch(&inj.live, 1, __ATOMIC_RELAXED);
    free((block *)ptr - 1);
}

const rk_allocator rk_test_fail_allocator = {inj_malloc, inj_calloc, inj_realloc, inj_free, NULL};

void rk_test_fail_arm(long fail_at)
{
    inj.calls = 0;
    inj.hit = false;
    inj.fail_at = fail_at;
}

void rk_test_fail_disarm(void) { __atomic_store_n(&inj.fail_at, 0, __ATOMIC_RELAXED); }

long rk_test_fail_at(void) { return inj.fail_at; }

bool rk_test_fail_hit(void) { return __atomic_load_n(&inj.hit, __ATOMIC_RELAXED); }

long rk_test_fail_live(void) { return __atomic_load_n(&inj.live, __ATOMIC_RELAXED); }
