/*
 * registry.c — the module handles registered on a client (contract in
 * registry.h).
 *
 * The entries are kept grouped by kind (the ops pointer), kinds in the
 * order they first registered and handles in registration order within a
 * kind, in one array of handles beside one array of ops. A scrape then
 * hands each kind a contiguous slice of handles, with no allocation and
 * no sorting under the lock. Registration is rare (handles are made at
 * start-up), so inserting with memmove costs nothing that matters.
 *
 * The lock is the registry's own. Ordinary commands never take it; a
 * scrape holds it only while the modules copy counters into the sink.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "registry.h"
#include "registry_private.h"

struct rk__registry {
    pthread_mutex_t lock;
    void **handles;               /* grouped by kind, see above */
    const rk__module_ops **ops;   /* ops[i] describes handles[i] */
    size_t n, cap;
    bool orphaned;                /* rk_client_free() came while handles remained */
};

rk__registry *rk__registry_new(void)
{
    rk__registry *r = rk__calloc(1, sizeof *r);
    if (!r) return NULL;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        rk__free(r);
        return NULL;
    }
    return r;
}

void rk__registry_free(rk__registry *r)
{
    if (!r) return;
    pthread_mutex_destroy(&r->lock);
    rk__free(r->handles);
    rk__free(r->ops);
    rk__free(r);
}

bool rk__registry_client_released(rk__registry *r)
{
    pthread_mutex_lock(&r->lock);
    bool now = r->n == 0;
    if (!now) r->orphaned = true;
    pthread_mutex_unlock(&r->lock);
    return now;
}

static bool grow(rk__registry *r)
{
    if (r->n < r->cap) return true;
    size_t cap = r->cap ? r->cap * 2 : 8;
    void **handles = rk__realloc(r->handles, cap * sizeof *handles);
    if (!handles) return false;
    r->handles = handles;
    const rk__module_ops **ops = rk__realloc(r->ops, cap * sizeof *ops);
    if (!ops) return false; /* handles stays grown: harmless */
    r->ops = ops;
    r->cap = cap;
    return true;
}

rk_status rk__registry_add(rk_client *client, void *handle, const rk__module_ops *ops)
{
    if (!client || !handle || !ops) return rk__fail(RK_ERR_INVALID, "registry: NULL argument");
    rk__registry *r = rk__client_registry(client);
    pthread_mutex_lock(&r->lock);
    rk_status st = RK_OK;
    if (!grow(r)) {
        st = rk__fail(RK_ERR_NOMEM, "%s: out of memory", ops->kind);
    } else {
        /* After the last handle of the same kind, or at the end. */
        size_t at = r->n;
        for (size_t i = r->n; i > 0; i--)
            if (r->ops[i - 1] == ops) {
                at = i;
                break;
            }
        memmove(&r->handles[at + 1], &r->handles[at], (r->n - at) * sizeof *r->handles);
        memmove(&r->ops[at + 1], &r->ops[at], (r->n - at) * sizeof *r->ops);
        r->handles[at] = handle;
        r->ops[at] = ops;
        r->n++;
    }
    pthread_mutex_unlock(&r->lock);
    return st;
}

void rk__registry_remove(rk_client *client, void *handle)
{
    if (!client || !handle) return;
    rk__registry *r = rk__client_registry(client);
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        if (r->handles[i] != handle) continue;
        memmove(&r->handles[i], &r->handles[i + 1], (r->n - i - 1) * sizeof *r->handles);
        memmove(&r->ops[i], &r->ops[i + 1], (r->n - i - 1) * sizeof *r->ops);
        r->n--;
        break;
    }
    bool last = r->orphaned && r->n == 0;
    pthread_mutex_unlock(&r->lock);
    /* The caller's rk_client_free() came first: this was the reference
     * that kept the client alive. */
    if (last) rk__client_destroy(client);
}

size_t rk__registry_emit(rk_client *client, rk__sink *sink)
{
    rk__registry *r = rk__client_registry(client);
    pthread_mutex_lock(&r->lock);
    size_t n = r->n;
    for (size_t start = 0; start < r->n;) {
        size_t end = start + 1;
        while (end < r->n && r->ops[end] == r->ops[start]) end++;
        if (r->ops[start]->emit) r->ops[start]->emit(&r->handles[start], end - start, sink);
        start = end;
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

size_t rk__registry_count(rk_client *client, const char *kind)
{
    rk__registry *r = rk__client_registry(client);
    pthread_mutex_lock(&r->lock);
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->ops[i]->kind, kind) == 0) n++;
    pthread_mutex_unlock(&r->lock);
    return n;
}
