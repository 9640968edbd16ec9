/*
 * sink.h — how a module writes its metrics into the Prometheus text
 * without knowing the format (src/metrics/metrics.c owns the sink).
 *
 * A module's emit operation (src/client/registry.h) announces each family
 * once, then writes its samples:
 *
 *     rk__sink_family(s, "redkit_sessions_created_total", "counter",
 *                     "Sessions created.");
 *     for each handle:
 *         rk__sink_u64(s, "redkit_sessions_created_total", ns, NULL, NULL, n);
 *
 * Every sample is labelled ns="<ns>" (the handle's namespace), plus
 * at most one more label (label_key="label_value", both NULL for none;
 * the value is escaped here). No sample may carry a key, an IP address, a
 * session token or an API key in a label.
 */
#ifndef RK_SRC_METRICS_SINK_H
#define RK_SRC_METRICS_SINK_H

#include <stdint.h>

#include "registry.h" /* rk__sink */

/* "# HELP name help" and "# TYPE name type" (type: "counter", "gauge"). */
void rk__sink_family(rk__sink *s, const char *name, const char *type, const char *help);

/* One sample line: name{namespace="ns"[,label_key="label_value"]} value. */
void rk__sink_u64(rk__sink *s, const char *name, const char *ns, const char *label_key,
                  const char *label_value, uint64_t value);
void rk__sink_f64(rk__sink *s, const char *name, const char *ns, const char *label_key,
                  const char *label_value, double value);

#endif
