/*
 * client_options.c — a client configured from REDIS_URL plus a few fields
 * set in code, checked once at start-up (docs/client.md, docs/url.md).
 *
 * Run: REDIS_URL='redis://app:s3cret@localhost:6379/2' ./client_options
 */
#include <stdio.h>
#include <stdlib.h>

#include <redkit/redkit.h>

int main(void)
{
    const char *url = getenv("REDIS_URL");
    rk_client *client = NULL;

    /* Log where we connect without ever logging the password. */
    if (url != NULL) {
        char *printable = NULL;
        if (rk_url_redact(url, &printable) == RK_OK) {
            printf("redis: %s\n", printable); /* redis://app:***@localhost:6379/2 */
            rk_free(printable);
        } else {
            /* A URL that does not parse is never printed, not even redacted. */
            fprintf(stderr, "REDIS_URL: %s\n", rk_last_error());
            return 1;
        }
    }

    /* The URL gives address, credentials and db; every field set here
     * (non-NULL, non-zero) overrides what the URL says. */
    rk_status st = rk_client_new(&(rk_client_options){
                                     .url = url,
                                     .client_name = "billing-api",
                                     .key_prefix = "billing",
                                     .pool_size = 16,
                                     .command_timeout_ms = 250,
                                 },
                                 &client);
    if (st != RK_OK) {
        fprintf(stderr, "redis config: %s: %s\n", rk_strerror(st), rk_last_error());
        return 1;
    }

    /* rk_client_new() opens no connection; PING does. A service may also
     * start anyway and let calls fail (and reconnect) until Redis is up. */
    st = rk_client_ping(client);
    if (st != RK_OK)
        fprintf(stderr, "redis not ready: %s: %s%s\n", rk_strerror(st), rk_last_error(),
                rk_status_is_retryable(st) ? " (will retry on the next call)" : "");
    else
        printf("redis: PONG (keys start with \"%s:\")\n", rk_client_key_prefix(client));

    rk_client_free(client);
    return st == RK_OK ? 0 : 1;
}
