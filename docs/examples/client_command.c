/*
 * client_command.c — running a command redkit has no function for
 * (HSET / HGETALL) with rk_client_command(), on a key built with
 * rk_key_build() so it sits in the application's namespace
 * (docs/client.md, docs/keys.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include <redkit/redkit.h>

static void print_reply(const rk_reply *r, int depth)
{
    printf("%*s", depth * 2, "");
    switch (r->type) {
    case RK_REPLY_STRING:
    case RK_REPLY_STATUS:
        printf("\"%.*s\"\n", (int)r->len, r->str);
        break;
    case RK_REPLY_ERROR:
        printf("(error) %s\n", r->str);
        break;
    case RK_REPLY_INTEGER:
        printf("(integer) %lld\n", r->integer);
        break;
    case RK_REPLY_NIL:
        printf("(nil)\n");
        break;
    case RK_REPLY_ARRAY:
        printf("(array of %zu)\n", r->elements);
        for (size_t i = 0; i < r->elements; i++)
            print_reply(r->element[i], depth + 1);
        break;
    }
}

int main(void)
{
    rk_client *client = NULL;
    rk_reply *reply = NULL;
    char key[256];
    size_t key_len;
    rk_status st;

    st = rk_client_new_url(getenv("REDIS_URL"), &client);
    /* "<prefix>:profile:user:123" — rk_client_command() adds no prefix. */
    if (st == RK_OK)
        st = rk_key_build(client, "profile", "user:123", key, sizeof key, &key_len);

    if (st == RK_OK) {
        const char *argv[] = { "HSET", key, "name", "Ada", "lang", "C" };
        st = rk_client_command(client, 6, argv, NULL, &reply);
        if (st == RK_OK)
            print_reply(reply, 0); /* (integer) 2 the first time */
        rk_reply_free(reply);
        reply = NULL;
    }
    if (st == RK_OK) {
        const char *argv[] = { "HGETALL", key };
        st = rk_client_command(client, 2, argv, NULL, &reply);
        if (st == RK_OK)
            print_reply(reply, 0);
        rk_reply_free(reply);
        reply = NULL;
    }
    if (st == RK_OK) {
        /* Binary-safe form: explicit lengths, so arguments may hold NULs. */
        const char *argv[] = { "UNLINK", key };
        const size_t lens[] = { 6, key_len };
        st = rk_client_command(client, 2, argv, lens, &reply);
        rk_reply_free(reply);
    }

    if (st != RK_OK)
        fprintf(stderr, "redis: %s: %s\n", rk_strerror(st), rk_last_error());
    rk_client_free(client);
    return st == RK_OK ? 0 : 1;
}
