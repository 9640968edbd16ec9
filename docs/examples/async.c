/*
 * async.c — many commands in flight from one thread with futures
 * (docs/async.md): 100 SETs sent at once, then 100 GETs, each waited
 * for in turn. All of them travel in a few writes and reads instead of
 * 200 round trips.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redkit/redkit.h>

#define N 100

int main(void)
{
    rk_client *client = NULL;
    rk_status st = rk_client_new_url(getenv("REDIS_URL"), &client);
    if (st != RK_OK) {
        fprintf(stderr, "rk_client_new_url: %s: %s\n", rk_strerror(st), rk_last_error());
        return 1;
    }
    rk_future *f[N];
    char key[N][32], value[N][32];
    int failed = 0;

    /* Send every SET, then wait for every reply. */
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof key[i], "example:async:%d", i);
        snprintf(value[i], sizeof value[i], "value %d", i);
        const char *argv[] = { "SET", key[i], value[i], "EX", "60" };
        if (rk_client_send(client, 5, argv, NULL, &f[i]) != RK_OK)
            f[i] = NULL, failed++;
    }
    for (int i = 0; i < N; i++) {
        rk_reply *r = NULL;
        if (f[i] != NULL && rk_future_wait(f[i], &r) != RK_OK)
            failed++;
        rk_reply_free(r);
    }

    /* The same for GET; each reply is the caller's to free. */
    for (int i = 0; i < N; i++) {
        const char *argv[] = { "GET", key[i] };
        if (rk_client_send(client, 2, argv, NULL, &f[i]) != RK_OK)
            f[i] = NULL, failed++;
    }
    int right = 0;
    for (int i = 0; i < N; i++) {
        rk_reply *r = NULL;
        if (f[i] == NULL)
            continue;
        st = rk_future_wait(f[i], &r);
        if (st != RK_OK) {
            fprintf(stderr, "GET %s: %s: %s\n", key[i], rk_strerror(st), rk_last_error());
            failed++;
        } else if (r->type == RK_REPLY_STRING && r->len == strlen(value[i]) &&
                   memcmp(r->str, value[i], r->len) == 0) {
            right++;
        }
        rk_reply_free(r);
    }
    printf("%d of %d values read back right, %d failures\n", right, N, failed);
    rk_client_free(client);
    return right == N && failed == 0 ? 0 : 1;
}
