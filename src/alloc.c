/*
 * alloc.c — the single funnel for redkit's heap memory (see alloc.h).
 * Kept trivial on purpose: the indirection costs one call, and gives tests
 * and users one place to hook.
 */
#include <stdlib.h>
#include <string.h>

#include <redkit/common.h>

#include "alloc.h"

void *rk__malloc(size_t size) { return malloc(size ? size : 1); }

void *rk__calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }

void *rk__realloc(void *ptr, size_t size) { return realloc(ptr, size ? size : 1); }

void rk__free(void *ptr) { free(ptr); }

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

const char *rk_version(void) { return RK_VERSION_STRING; }
