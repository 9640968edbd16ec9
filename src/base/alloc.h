/*
 * alloc.h — every allocation redkit makes goes through these wrappers, so
 * that one place routes them to the user's allocator (rk_set_allocator)
 * and a test can fail the Nth one. Memory returned to callers is released with rk_free(),
 * which is rk__free().
 */
#ifndef RK_SRC_ALLOC_H
#define RK_SRC_ALLOC_H

#include <stddef.h>

void *rk__malloc(size_t size);
void *rk__calloc(size_t n, size_t size);
void *rk__realloc(void *ptr, size_t size);
void rk__free(void *ptr);
/* Copy of s (NULL gives NULL); NULL on allocation failure. */
char *rk__strdup(const char *s);
/* Copy of len bytes of s plus a NUL. */
char *rk__strndup(const char *s, size_t len);
/* Overwrite then free a string that held a secret. NULL is a no-op. */
void rk__free_secret(char *s);

#endif
