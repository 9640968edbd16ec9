/*
 * capture.h — what a client reports, kept for a test to check: its events
 * (rk_client_options.on_event) and its log lines (rk_client_options.log).
 * Both are thread-safe: the client calls them from whichever thread runs
 * the request, while the test reads them.
 */
#ifndef RK_TEST_CAPTURE_H
#define RK_TEST_CAPTURE_H

#include <pthread.h>

#include <redkit/redkit.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RK_TEST_MAX_EVENTS 256

/*
 * The first RK_TEST_MAX_EVENTS events of a client, in order; later ones
 * are dropped. Each event's message is set to NULL (it is only valid
 * during the callback). Initialise with RK_TEST_EVENTS_INIT; the test owns
 * it and must keep it alive as long as the client. Read n and ev[] under
 * lock while the client may still report.
 */
typedef struct rk_test_events {
    pthread_mutex_t lock;
    int n;
    rk_event ev[RK_TEST_MAX_EVENTS];
} rk_test_events;

#define RK_TEST_EVENTS_INIT {.lock = PTHREAD_MUTEX_INITIALIZER}

/* The on_event callback: user is the rk_test_events to append to. */
void rk_test_events_record(const rk_event *e, void *user);

/* How many recorded events are of type (taking the lock). */
int rk_test_events_count(rk_test_events *r, rk_event_type type);

/*
 * Every log line of a client, "<level number> <message>\n" each,
 * concatenated; what does not fit in text is cut off (lines still counts
 * it). Initialise with RK_TEST_LOG_INIT; the test owns it and must keep it
 * alive as long as the client. Read it under lock while the client may
 * still log.
 */
typedef struct rk_test_log {
    pthread_mutex_t lock;
    char text[16384];
    int lines;
} rk_test_log;

#define RK_TEST_LOG_INIT {.lock = PTHREAD_MUTEX_INITIALIZER}

/* The log callback: user is the rk_test_log to append to. */
void rk_test_log_capture(rk_log_level level, const char *message, void *user);

#ifdef __cplusplus
}
#endif

#endif /* RK_TEST_CAPTURE_H */
