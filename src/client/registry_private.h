/*
 * registry_private.h — the registry as the client itself sees it: made
 * and freed with the client, and asked by rk_client_free() whether the
 * client may go now (registry.h is what modules and metrics see).
 */
#ifndef RK_SRC_CLIENT_REGISTRY_PRIVATE_H
#define RK_SRC_CLIENT_REGISTRY_PRIVATE_H

#include <stdbool.h>

#include "registry.h"

typedef struct rk__registry rk__registry;

/* A new, empty registry; NULL when out of memory. */
rk__registry *rk__registry_new(void);

/* Free an empty registry (NULL is a no-op). */
void rk__registry_free(rk__registry *r);

/* rk_client_free() was called: true when no handle is registered, so the
 * client is destroyed now; false when handles remain, and the removal of
 * the last one destroys the client (rk__client_destroy). */
bool rk__registry_client_released(rk__registry *r);

/* The client's registry (client.c). */
rk__registry *rk__client_registry(rk_client *client);

/* Free the client and everything it owns, its registry included (client.c):
 * what rk_client_free() does once no handle holds the client. */
void rk__client_destroy(rk_client *client);

#endif
