/*
 * quickstart.cpp — the README quickstart from C++ (docs/cpp.md): the same
 * C API, with what C++ needs instead of C's compound literals, and
 * std::unique_ptr deleters so that every handle and value is freed by the
 * right function whatever path the code leaves by.
 *
 * Compiled and run by scripts/install-check against an installed redkit:
 *     c++ -std=c++17 -Wall -Wextra -Werror quickstart.cpp $(pkg-config --cflags --libs redkit)
 */
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <redkit/redkit.h> // extern "C" inside: no wrapper needed

namespace {

struct client_free {
    void operator()(rk_client *c) const { rk_client_free(c); }
};
struct cache_free {
    void operator()(rk_cache *c) const { rk_cache_free(c); }
};
struct value_free { // values redkit returns are freed with rk_free()
    void operator()(void *p) const { rk_free(p); }
};

using client_ptr = std::unique_ptr<rk_client, client_free>;
using cache_ptr = std::unique_ptr<rk_cache, cache_free>;

int fail(const char *what, rk_status st)
{
    // rk_strerror() does not touch rk_last_error(): both in one call is fine.
    std::fprintf(stderr, "%s: %s: %s\n", what, rk_strerror(st), rk_last_error());
    return 1;
}

} // namespace

int main()
{
    rk_client *c = nullptr;
    rk_status st = rk_client_new_url(std::getenv("REDIS_URL"), &c);
    client_ptr client(c); // declared first, so destroyed after the cache
    if (st != RK_OK)
        return fail("client", st);

    rk_cache *k = nullptr;
    st = rk_cache_new(client.get(), nullptr, &k);
    cache_ptr cache(k);
    if (st != RK_OK)
        return fail("cache", st);

    // C writes &(rk_cache_set_options){ .ttl_s = 300 }; C++ has no compound
    // literals. A value-initialised struct is all zeros (= the defaults),
    // then set the fields. (C++20 also accepts
    // rk_cache_set_options set{ .ttl_s = 300 }; with fields in order.)
    rk_cache_set_options set{};
    set.ttl_s = 300;
    st = rk_cache_set_str(cache.get(), "user:123", R"({"id":123,"name":"Ada"})", &set);
    if (st != RK_OK)
        return fail("set", st);

    char *raw = nullptr;
    st = rk_cache_get_str(cache.get(), "user:123", &raw);
    std::unique_ptr<char, value_free> user(raw);
    if (st != RK_OK)
        return fail("get", st);
    std::string copy(user.get());
    std::printf("user:123 = %s\n", copy.c_str());

    // Idempotent: RK_OK whether or not the key was there.
    bool existed = false;
    st = rk_cache_delete_ex(cache.get(), "user:123", &existed);
    if (st != RK_OK)
        return fail("delete", st);
    std::printf("deleted (existed: %s)\n", existed ? "yes" : "no");
    return copy == R"({"id":123,"name":"Ada"})" && existed ? 0 : 1;
}
