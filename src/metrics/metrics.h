/*
 * metrics.h — the pure parts of src/metrics/metrics.c, for the unit tests: reading
 * an INFO reply and naming statuses for labels. No I/O here.
 */
#ifndef RK_SRC_METRICS_H
#define RK_SRC_METRICS_H

#include <stddef.h>

#include <redkit/metrics.h>

/* Fill *out (zeroed first) from the text of an INFO reply; db picks the
 * "db<N>:" line of the keyspace section. Computes hit_ratio and the
 * warning bits (only from fields present in the text). Unknown lines and
 * malformed values are skipped: a field the server did not send, or sent
 * in a form we do not read, stays 0. Never fails, never allocates. */
void rk__info_parse(const char *text, size_t len, int db, rk_memory_info *out);

/* The label value of an error status ("timeout", "too_large", ...), or
 * NULL for a status that is never counted as an error. */
const char *rk__metrics_status_label(int status);

#endif
