/*
 * alloc.c — the single funnel for redkit's heap memory (see alloc.h and,
 * for the public side, include/redkit/alloc.h).
 *
 * One static rk_allocator, libc's by default, replaced by
 * rk_set_allocator(). It is a plain struct, not an atomic: the contract
 * is that it is set before any other redkit call, so every later read
 * happens after the write in the one thread that made it, or in threads
 * started after it. The indirection costs one call, and gives users and
 * the allocation-failure tests one place to hook.
 *
 * The wrappers normalise what the hook sees — never a zero size, never a
 * NULL free, never an overflowing calloc — so a user allocator need not
 * handle the corner cases on which C libraries differ, and a NULL return
 * always means failure. The member calls are parenthesised so that a
 * malloc() or free() macro from a debugging header cannot capture them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <redkit/alloc.h>

#include "alloc.h"
#include "error.h"

static void *libc_malloc(size_t size, void *user)
{
    (void)user;
    return malloc(size);
}

static void *libc_calloc(size_t n, size_t size, void *user)
{
    (void)user;
    return calloc(n, size);
}

static void *libc_realloc(void *ptr, size_t size, void *user)
{
    (void)user;
    return realloc(ptr, size);
}

static void libc_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

static const rk_allocator libc_allocator = {libc_malloc, libc_calloc, libc_realloc, libc_free, NULL};

static rk_allocator current = {libc_malloc, libc_calloc, libc_realloc, libc_free, NULL};

rk_status rk_set_allocator(const rk_allocator *a)
{
    if (!a) {
        current = libc_allocator;
        return RK_OK;
    }
    const char *missing = !a->malloc ? "malloc" : !a->calloc ? "calloc" : !a->realloc ? "realloc"
                        : !a->free ? "free" : NULL;
    if (missing) return rk__fail(RK_ERR_INVALID, "rk_set_allocator: the %s function is NULL", missing);
    current = *a;
    return RK_OK;
}

void *rk__malloc(size_t size) { return (current.malloc)(size ? size : 1, current.user); }

void *rk__calloc(size_t n, size_t size)
{
    if (!n) n = 1;
    if (!size) size = 1;
    if (size > SIZE_MAX / n) return NULL; /* a user calloc might not check */
    return (current.calloc)(n, size, current.user);
}

void *rk__realloc(void *ptr, size_t size) { return (current.realloc)(ptr, size ? size : 1, current.user); }

void rk__free(void *ptr)
{
    if (ptr) (current.free)(ptr, current.user);
}

char *rk__strndup(const char *s, size_t len)
{
    char *p = rk__malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *rk__strdup(const char *s) { return s ? rk__strndup(s, strlen(s)) : NULL; }

void rk__free_secret(char *s)
{
    if (!s) return;
    /* explicit_bzero survives dead-store elimination, unlike memset before
     * free: the password must not linger in freed heap memory. */
    explicit_bzero(s, strlen(s));
    rk__free(s);
}

void rk_free(void *ptr) { rk__free(ptr); }

void *rk_malloc(size_t size) { return rk__malloc(size); }

char *rk_strdup(const char *s) { return rk__strdup(s); }

char *rk_strndup(const char *s, size_t len)
{
    /* len + 1 must not wrap: no real string is half the address space. */
    return s && len < (size_t)PTRDIFF_MAX ? rk__strndup(s, len) : NULL;
}

const char *rk_version(void) { return RK_VERSION_STRING; }
