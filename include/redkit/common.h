/*
 * redkit/common.h — version, export macro and memory ownership helpers
 * shared by every redkit header.
 *
 * Everything redkit hands to the caller as heap memory (values read from
 * the cache, replies, redacted URLs) is released with rk_free(), never with
 * the caller's own free(): redkit's memory comes from the allocator set
 * with rk_set_allocator() (redkit/alloc.h), libc's by default.
 */
#ifndef REDKIT_COMMON_H
#define REDKIT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library version. The shared library's SOVERSION follows the ABI
 * policy (README, "ABI policy"): while the major version is 0 it is
 * MAJOR.MINOR (libredkit.so.0.2), since a minor release may change the
 * API and the structs the library writes into; from 1.0 on, MAJOR. */
#define RK_VERSION_MAJOR 0
#define RK_VERSION_MINOR 2
#define RK_VERSION_PATCH 0
#define RK_VERSION_STRING "0.2.0"

/* RK_EXPORT marks the public symbols; the library is built with hidden
 * visibility so that internal (rk__) functions never leak into the ABI. */
#if defined(RK_BUILDING_LIBRARY) && defined(__GNUC__)
#define RK_EXPORT __attribute__((visibility("default")))
#else
#define RK_EXPORT
#endif

/*
 * rk_version — the version of the library actually linked, as
 * "MAJOR.MINOR.PATCH". Compare it with RK_VERSION_STRING to detect a
 * header/library mismatch. The string is static; never free it.
 */
RK_EXPORT const char *rk_version(void);

/*
 * rk_free — release memory that a redkit function returned to the caller
 * (a value from rk_cache_get(), a string from rk_url_redact(), ...),
 * through the free function of the allocator in use (see rk_set_allocator()
 * in redkit/alloc.h). rk_free(NULL) does nothing. Do not use it on memory
 * you allocated.
 */
RK_EXPORT void rk_free(void *ptr);

/*
 * rk_malloc, rk_strdup, rk_strndup — allocate memory that is freed with
 * rk_free(), through the same allocator as every buffer redkit returns.
 * With them a program can give all of its cached-or-computed values one
 * owner rule: "always rk_free()", whether a value came from the cache or
 * from its own source (see docs/examples/resilience.c).
 *
 * rk_malloc(size): at least size bytes (size 0 gives a unique pointer),
 * aligned for any type, or NULL when out of memory. rk_strdup(s): a copy
 * of the NUL-terminated s, or NULL (s NULL, or out of memory).
 * rk_strndup(s, len): a copy of the first len bytes of s (which may hold
 * NUL bytes) followed by a NUL, or NULL (s NULL, or out of memory).
 * Thread-safe as the allocator is (see rk_set_allocator()).
 */
RK_EXPORT void *rk_malloc(size_t size);
RK_EXPORT char *rk_strdup(const char *s);
RK_EXPORT char *rk_strndup(const char *s, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* REDKIT_COMMON_H */
