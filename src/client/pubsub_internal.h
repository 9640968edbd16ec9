/*
 * pubsub_internal.h — what other modules use of rk_pubsub
 * (src/client/pubsub.c): a handle whose metrics carry a label of the
 * module's choosing.
 */
#ifndef RK_SRC_CLIENT_PUBSUB_INTERNAL_H
#define RK_SRC_CLIENT_PUBSUB_INTERNAL_H

#include <redkit/pubsub.h>

/* rk_pubsub_new() whose redkit_pubsub_* samples are labelled ns="label"
 * (copied) instead of ns="pubsub": the API-key module labels its
 * subscriber with its namespace. */
rk_status rk__pubsub_new_labelled(rk_client *client, const rk_pubsub_options *opts, const char *label,
                                  rk_pubsub **out);

#endif
