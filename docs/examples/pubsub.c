/*
 * pubsub.c — subscribe to a channel and a pattern with rk_pubsub, publish
 * with rk_client_publish(), and hear the messages on the handle's thread
 * (docs/pubsub.md).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <threads.h>

#include <redkit/redkit.h>

static atomic_int received;

/* Runs on the handle's own thread, one message at a time. */
static void on_message(const char *channel, const char *pattern, const char *payload, size_t len, void *user)
{
    (void)user;
    printf("%s%s%s: %.*s\n", channel, pattern ? " via " : "", pattern ? pattern : "", (int)len, payload);
    atomic_fetch_add(&received, 1);
}

static void on_event(rk_pubsub_event event, void *user)
{
    (void)user;
    if (event == RK_PUBSUB_LOST) fprintf(stderr, "pub/sub connection lost: messages may be missed\n");
    if (event == RK_PUBSUB_RESUBSCRIBED) fprintf(stderr, "resubscribed: refresh what you derived from messages\n");
}

int main(void)
{
    rk_client *client = NULL;
    rk_pubsub *ps = NULL;
    rk_status st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st == RK_OK)
        st = rk_pubsub_new(client, &(rk_pubsub_options){.on_message = on_message, .on_event = on_event}, &ps);
    if (st == RK_OK) st = rk_pubsub_subscribe(ps, "orders");
    if (st == RK_OK) st = rk_pubsub_psubscribe(ps, "news.*");
    /* Optional: wait until Redis confirmed both, so nothing published
     * from here on is missed. */
    if (st == RK_OK) st = rk_pubsub_sync(ps, 2000);
    long long receivers = 0;
    if (st == RK_OK) st = rk_client_publish(client, "orders", "order 42 paid", 13, &receivers);
    if (st == RK_OK) st = rk_client_publish(client, "news.sport", "3-1", 3, NULL);
    /* Wait (at most 2 s) for both messages. */
    for (int i = 0; st == RK_OK && i < 200 && atomic_load(&received) < 2; i++)
        thrd_sleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    if (st != RK_OK) fprintf(stderr, "pubsub: %s: %s\n", rk_strerror(st), rk_last_error());
    else printf("%lld subscriber(s) got the order; %d message(s) heard here\n", receivers, atomic_load(&received));
    rk_pubsub_free(ps); /* joins the thread: no callback runs after this */
    rk_client_free(client);
    return st == RK_OK && atomic_load(&received) == 2 ? 0 : 1;
}
