/*
 * capture.c — event and log capture for tests (see capture.h).
 */
#include <stdio.h>
#include <string.h>

#include "capture.h"

void rk_test_events_record(const rk_event *e, void *user)
{
    rk_test_events *r = user;
    pthread_mutex_lock(&r->lock);
    if (r->n < RK_TEST_MAX_EVENTS) {
        r->ev[r->n] = *e;
        r->ev[r->n].message = NULL; /* only valid during the callback */
        r->n++;
    }
    pthread_mutex_unlock(&r->lock);
}

int rk_test_events_count(rk_test_events *r, rk_event_type type)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n; i++) n += r->ev[i].type == type;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void rk_test_log_capture(rk_log_level level, const char *message, void *user)
{
    rk_test_log *l = user;
    pthread_mutex_lock(&l->lock);
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%d %s\n", (int)level, message);
    l->lines++;
    pthread_mutex_unlock(&l->lock);
}
