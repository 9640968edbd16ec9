/*
 * ratelimit.c — the rate limiter as docs/ratelimit.md shows it: two limits
 * on one key (10 a minute with GCRA, 1000 a day in a fixed window),
 * checked in one round trip; an IPv6 client keyed by its /56; the HTTP
 * headers of a refusal; a concurrency lease; reset.
 *
 * Run: REDIS_URL=redis://localhost:6379 ./ratelimit
 */
#include <stdio.h>
#include <stdlib.h>

#include <redkit/redkit.h>

int main(void)
{
    rk_client *client = NULL;
    rk_limiter *limiter = NULL, *inflight = NULL;
    rk_status st = rk_client_new_url(getenv("REDIS_URL"), &client);

    /* Per client IP: 10 a minute (all 10 at once if need be), 1000 a day. When Redis is
     * down, decide in process memory instead of letting everything through. */
    const rk_limit limits[] = {
        { .name = "minute", .limit = 10, .period_ms = 60000 },
        { .name = "day", .algorithm = RK_LIMIT_FIXED_WINDOW, .limit = 1000, .period_ms = 86400000 },
    };
    if (st == RK_OK)
        st = rk_limiter_new(client, &(rk_limiter_options){ .ns = "api", .limits = limits, .nlimits = 2,
                                                           .failure_policy = RK_LIMIT_FAIL_LOCAL,
                                                           .block_cache = true }, &limiter);

    /* Addresses in one /56 share a key: "ip6:2001:db8:abcd:1200::/56". */
    char key[64];
    if (st == RK_OK) st = rk_limiter_ip_key("2001:db8:abcd:12ff::7", 0, key, sizeof key);

    int allowed = 0;
    rk_limit_result r;
    for (int i = 0; i < 12 && st == RK_OK; i++) {
        st = rk_limiter_check(limiter, key, 1, &r);
        if (st == RK_OK && r.allowed) allowed++;
    }
    if (st == RK_OK) {
        printf("%s: %d of 12 allowed; the last one %s by \"%s\" (path %d)\n", key, allowed,
               r.allowed ? "allowed" : "refused", r.decided_name, (int)r.path);
        /* The response headers of that refusal (a 429). */
        char headers[512];
        st = rk_limit_headers(limiter, &r, 0, headers, sizeof headers, NULL);
        if (st == RK_OK) printf("HTTP/1.1 429 Too Many Requests\r\n%s\r\n", headers);
    }

    /* At most 2 requests of one user in flight; a lease that is never
     * returned expires after 30 s. */
    const rk_limit conc = { .name = "inflight", .algorithm = RK_LIMIT_CONCURRENCY, .limit = 2,
                            .period_ms = 30000 };
    if (st == RK_OK)
        st = rk_limiter_new(client, &(rk_limiter_options){ .ns = "api", .limits = &conc, .nlimits = 1 },
                            &inflight);
    if (st == RK_OK) st = rk_limiter_check(inflight, "user:42", 1, &r);
    if (st == RK_OK && r.allowed) {
        /* ... handle the request ... */
        st = rk_limiter_release(inflight, "user:42", r.lease);
    }

    /* An operator forgives the client. */
    if (st == RK_OK) st = rk_limiter_reset(limiter, key);
    if (st == RK_OK) st = rk_limiter_peek(limiter, key, &r);
    if (st == RK_OK) printf("after reset: %lld remaining\n", (long long)r.remaining);

    if (st != RK_OK) fprintf(stderr, "ratelimit: %s: %s\n", rk_strerror(st), rk_last_error());
    rk_limiter_free(inflight);
    rk_limiter_free(limiter);
    rk_client_free(client);
    /* With Redis up: exactly 10 of 12 pass, and the reset gives back all 10. */
    return st == RK_OK && allowed == 10 && r.remaining == 10 ? 0 : 1;
}
