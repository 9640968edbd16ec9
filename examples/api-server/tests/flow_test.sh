#!/usr/bin/env bash
# flow_test.sh API_SERVER — the example service end to end, with curl,
# against a real redis-server and a real SQLite file.
#
# Cache miss then hit (X-Cache and the SQLite query counter), invalidation
# on update, signup, API keys (rk_apikeys) created/listed/used/revoked,
# bad input refused with the right 4xx and no change, login/logout/sessions
# with cookies, rate limits (headers, 429 + Retry-After for logins and an
# API key's plan), no secret in the log; then Redis killed: every endpoint
# still answers, a revoke still holds, /healthz says down and the circuit
# opens; Redis restarted: the service recovers without a restart; Redis
# paused: /healthz says degraded. Exit 77 (skip) without curl or
# redis-server.
set -euo pipefail
bin=${1:?usage: flow_test.sh API_SERVER}
for tool in curl redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
source "$(dirname "$0")/lib.sh"

start_redis
start_service "$bin" CONNECTION_TIMEOUT_S=2 LOG_LEVEL=debug RATE_LIMIT_KEY_PER_MIN=40 \
  RATE_LIMIT_KEY_PRO_PER_MIN=90
grep -q "alice@example.com" "$tmp/service.out" || fail "demo users not printed at first start"

echo "== cache: miss, then hit, and the SQLite counter"
q0=$(queries)
req GET /v1/products/7; expect 200 "product 7"
[[ $(header X-Cache) == miss ]] || fail "first read X-Cache=$(header X-Cache), expected miss"
[[ $(json id) == 7 ]] || fail "product body: $body"
q1=$(queries)
((q1 == q0 + 1)) || fail "a miss ran $((q1 - q0)) queries, expected 1"
req GET /v1/products/7; expect 200 "product 7 again"
[[ $(header X-Cache) == hit ]] || fail "second read X-Cache=$(header X-Cache), expected hit"
(($(queries) == q1)) || fail "a hit ran a query"
req GET "/v1/products?category=books&page=1"; expect 200 "list"
[[ $(header X-Cache) == miss ]] || fail "list X-Cache=$(header X-Cache)"
req GET "/v1/products?category=books&page=1"; [[ $(header X-Cache) == hit ]] || fail "list not cached"
req GET /v1/products/999999; expect 404 "absent product"
[[ $(header Content-Type) == application/problem+json ]] || fail "404 is not problem+json"

echo "== accounts"
req GET /v1/me; expect 401 "me without credentials"
[[ $(header Content-Type) == application/problem+json ]] || fail "401 is not problem+json"
req GET /v1/me -u alice@example.com:alice-demo-password; expect 200 "me (alice)"
alice=$(json id)
req GET /v1/me -u alice@example.com:wrong-password; expect 401 "wrong password"
req POST /v1/signup -d '{"email":"carol@example.com","password":"carol-secret-pw","name":"Carol"}'
expect 201 "signup"; carol=$(json id)
req POST /v1/signup -d '{"email":"carol@example.com","password":"carol-secret-pw","name":"C"}'
expect 409 "duplicate email"
req POST /v1/signup -d '{"email":"dave@example.com","password":"short","name":"Dave"}'
expect 422 "weak password"
[[ $body == *'"type":"/problems/weak-password"'* ]] || fail "weak password type: $body"

echo "== sessions: login, me, list, logout, logout everywhere"
sid() { awk '$6 == "sid" { print $7 }' "$1"; }
req POST /v1/login -c "$tmp/jar1" -d '{"email":"carol@example.com","password":"carol-secret-pw"}'
expect 200 "login"
[[ $(header Set-Cookie) == sid=*HttpOnly* ]] || fail "login cookie: $(header Set-Cookie)"
token1=$(sid "$tmp/jar1"); [[ ${#token1} == 43 ]] || fail "session token: $token1"
req POST /v1/login -d '{"email":"carol@example.com","password":"not-her-password"}'; expect 401 "wrong login"
req GET /v1/me -b "$tmp/jar1"; expect 200 "me by session"; [[ $(json id) == "$carol" ]] || fail "me: $body"
# Logging in again with the cookie regenerates it: new token, old one dead.
req POST /v1/login -b "$tmp/jar1" -c "$tmp/jar1" -d '{"email":"carol@example.com","password":"carol-secret-pw"}'
expect 200 "login again"
old_token=$token1; token1=$(sid "$tmp/jar1")
[[ $token1 != "$old_token" ]] || fail "login did not regenerate the token"
req GET /v1/me -H "Cookie: sid=$old_token"; expect 401 "the pre-login token"
req POST /v1/login -c "$tmp/jar2" -d '{"email":"carol@example.com","password":"carol-secret-pw"}'
expect 200 "second device"; token2=$(sid "$tmp/jar2")
req GET /v1/sessions -b "$tmp/jar1"; expect 200 "my sessions"
(($(grep -o '"issued_ms"' <<<"$body" | wc -l) == 2)) || fail "expected 2 sessions: $body"
[[ $body != *"$token1"* && $body != *"$token2"* ]] || fail "the session list shows a token"
req GET /v1/me -H "Cookie: sid=${token1:0:42}$([[ ${token1:42} == A ]] && echo B || echo A)"
expect 401 "tampered cookie"
req GET /v1/me -H "Cookie: sid=not-a-token"; expect 401 "garbage cookie"
req POST /v1/logout -H "Cookie: sid=$token2"; expect 204 "logout"
[[ $(header Set-Cookie) == sid=\;* || $(header Set-Cookie) == *Max-Age=0* ]] || fail "logout cookie: $(header Set-Cookie)"
req GET /v1/me -H "Cookie: sid=$token2"; expect 401 "logged-out token"
req POST /v1/login -c "$tmp/jar2" -d '{"email":"carol@example.com","password":"carol-secret-pw"}'
token2=$(sid "$tmp/jar2")
req DELETE /v1/sessions -H "Cookie: sid=$token1"; expect 200 "logout everywhere"
req GET /v1/me -H "Cookie: sid=$token1"; expect 401 "session 1 after logout everywhere"
req GET /v1/me -H "Cookie: sid=$token2"; expect 401 "session 2 after logout everywhere"
req POST /v1/login -c "$tmp/jar3" -d '{"email":"alice@example.com","password":"alice-demo-password"}'
expect 200 "alice logs in"; token3=$(sid "$tmp/jar3")

echo "== invalidation on update"
req GET "/v1/users/$carol"; expect 200 "user"; [[ $(header X-Cache) == miss ]] || fail "user miss"
req GET "/v1/users/$carol"; [[ $(header X-Cache) == hit ]] || fail "user hit"
req PUT "/v1/users/$carol" -u carol@example.com:carol-secret-pw -d '{"name":"Carol Two"}'
expect 200 "update own profile"
req GET "/v1/users/$carol"; [[ $(header X-Cache) == miss ]] || fail "user not invalidated"
[[ $(json name) == "Carol Two" ]] || fail "updated name not served: $body"
req PUT "/v1/users/$alice" -u carol@example.com:carol-secret-pw -d '{"name":"x"}'
expect 403 "update someone else"
req GET "/v1/users/$alice"; [[ $(json name) == Alice ]] || fail "someone else's profile changed"

echo "== API keys (rk_apikeys, SQLite as the lookup)"
req POST /v1/api-keys -u carol@example.com:carol-secret-pw -d '{"name":"ci","scopes":["read","write"]}'
expect 201 "create key"; key=$(json key); key_id=$(json id)
# redkit's format: prefix, 43 random base62 characters, 6 of checksum.
[[ $key =~ ^rk_[0-9A-Za-z]{49}$ ]] || fail "key format: $key"
[[ $(json plan) == free ]] || fail "default plan: $body"
display="${key:0:7}...${key: -4}" # rk_apikeys_display()
[[ $(json display) == "$display" ]] || fail "display form: $body"
req GET /v1/api-keys -u carol@example.com:carol-secret-pw; expect 200 "list keys"
[[ $body != *"$key"* ]] || fail "the key list shows the whole key"
[[ $body == *"\"key\":\"$display\""* ]] || fail "the key list lacks the display form: $body"
req POST /v1/api-keys -u carol@example.com:carol-secret-pw -d '{"name":"x","scopes":["read"],"plan":"gold"}'
expect 422 "unknown plan"
q0=$(queries)
req GET /v1/me -H "Authorization: Bearer $key"; expect 200 "me by key"
# One lookup of the key (its row, the owner record) and one of the user.
(($(queries) == q0 + 2)) || fail "first use of a key ran $(($(queries) - q0)) queries, expected 2"
qa=$(queries)
req GET /v1/me -H "Authorization: Bearer $key"; expect 200 "me by key again"
(($(queries) == qa + 1)) || fail "key validation was not cached (queries $qa -> $(queries))"
# A typo breaks the checksum: refused with no lookup at all.
typo=${key:0:10}$([[ ${key:10:1} == A ]] && echo B || echo A)${key:11}
qa=$(queries)
req GET /v1/me -H "Authorization: Bearer $typo"; expect 401 "key with a typo"
(($(queries) == qa)) || fail "a malformed key reached SQLite"
if command -v python3 >/dev/null; then
  # A well-formed key (valid checksum) that SQLite does not know: one
  # lookup, then remembered as "not found".
  unknown=$(python3 -c '
import secrets, zlib
b = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
k = "rk_" + "".join(secrets.choice(b) for _ in range(43))
c = zlib.crc32(k.encode()); s = ""
for _ in range(6): s = b[c % 62] + s; c //= 62
print(k + s)')
  qa=$(queries)
  req GET /v1/me -H "Authorization: Bearer $unknown"; expect 401 "unknown well-formed key"
  req GET /v1/me -H "Authorization: Bearer $unknown"; expect 401 "unknown well-formed key again"
  (($(queries) == qa + 1)) || fail "an unknown key cost $(($(queries) - qa)) lookups, expected 1"
fi
req GET "/v1/products?category=books&page=1"; [[ $(header X-Cache) == hit ]] || fail "list not hit"
req POST /v1/products -H "Authorization: Bearer $key" \
  -d '{"category":"books","name":"New book","price_cents":1234}'
expect 201 "create product"; new_product=$(json id)
req GET "/v1/products?category=books&page=1"; [[ $(header X-Cache) == miss ]] || fail "tag not invalidated"
req GET "/v1/products?category=music&page=1"; [[ $(header X-Cache) == miss ]] || fail "music list"
req GET "/v1/products?category=music&page=1"; [[ $(header X-Cache) == hit ]] || fail "music list hit"
req GET "/v1/products?category=books&page=26"; expect 200 "last page"
[[ $body == *"New book"* ]] || fail "new product not listed: $body"
req POST /v1/api-keys -u carol@example.com:carol-secret-pw -d '{"name":"ro","scopes":["read"]}'
ro_key=$(json key)
req POST /v1/products -H "Authorization: Bearer $ro_key" -d '{"category":"books","name":"x","price_cents":1}'
expect 403 "read-only key writes"
req DELETE "/v1/api-keys/$key_id" -u carol@example.com:carol-secret-pw; expect 204 "revoke"
[[ -z $(header X-Cache-Invalidation) ]] || fail "revoke with Redis up: tombstone not written"
req GET /v1/me -H "Authorization: Bearer $key"; expect 401 "revoked key refused at once"
[[ -n $(redis-cli -p "$redis_port" --scan --pattern '*apikey*' | head -n 1) ]] || fail "no rk_apikeys entry in Redis"
req DELETE "/v1/api-keys/$key_id" -u carol@example.com:carol-secret-pw; expect 404 "revoke twice"
req POST /v1/api-keys -u carol@example.com:carol-secret-pw -d '{"name":"spare","scopes":["read"]}'
key2=$(json key)
req POST /v1/api-keys -u carol@example.com:carol-secret-pw -d '{"name":"spare2","scopes":["read"]}'
key3=$(json key); key3_id=$(json id)
req POST /v1/api-keys -u carol@example.com:carol-secret-pw -d '{"name":"big","scopes":["read"],"plan":"pro"}'
expect 201 "pro key"; pro_key=$(json key); [[ $(json plan) == pro ]] || fail "pro plan: $body"

echo "== rate limits: headers, 429 with Retry-After"
req GET /v1/products/7; expect 200 "anonymous request"
[[ $(header RateLimit-Policy) == *'"ip";q=600;w=60'* ]] || fail "RateLimit-Policy: $(header RateLimit-Policy)"
[[ $(header RateLimit) == '"ip";r='* ]] || fail "RateLimit: $(header RateLimit)"
for _ in 1 2 3 4 5; do
  req POST /v1/login -d '{"email":"Bob@example.com","password":"guessing-again"}'; expect 401 "failed login"
done
req POST /v1/login -d '{"email":"bob@example.com","password":"bob-demo-password"}'
expect 429 "login after 5 failures for the email"
[[ $(header Retry-After) =~ ^[0-9]+$ && $(header Retry-After) -ge 1 ]] || fail "Retry-After: $(header Retry-After)"
[[ $(header RateLimit-Policy) == *login-email* ]] || fail "login 429 policy: $(header RateLimit-Policy)"
[[ $body == *'"type":"/problems/rate-limited"'* ]] || fail "429 type: $body"
req POST /v1/login -d '{"email":"alice@example.com","password":"alice-demo-password"}'
expect 200 "another email from the same IP still logs in"
limited=
for _ in $(seq 1 60); do # the key's plan here: 40 per minute
  req GET /v1/me -H "Authorization: Bearer $ro_key"
  [[ $status == 429 ]] && { limited=1; break; }
  expect 200 "API-key request under its limit"
done
[[ -n $limited ]] || fail "the API key was never limited"
[[ -n $(header Retry-After) && $(header RateLimit-Policy) == *'"key-free";q=40'* ]] ||
  fail "key 429 headers: $(header RateLimit-Policy)"
req GET /v1/me -H "Authorization: Bearer $pro_key"; expect 200 "a pro key has its own quota"
[[ $(header RateLimit-Policy) == *'"key-pro";q=90'* ]] || fail "pro key policy: $(header RateLimit-Policy)"
req GET /v1/products/7; expect 200 "anonymous requests are limited apart from the key"

echo "== bad input changes nothing"
req GET /v1/products/7; product7=$body
req GET /v1/nothing; expect 404 "unknown route"
req PATCH /v1/products/7; expect 405 "wrong method"; [[ -n $(header Allow) ]] || fail "405 without Allow"
req GET /v1/products/abc; expect 400 "non-numeric id"
req GET /v1/products/-1; expect 400 "negative id"
req GET "/v1/products/7%20OR%201=1"; expect 400 "SQL in an id"
req GET "/v1/products?category=books%27%3B%20DROP%20TABLE%20products%3B--"; expect 400 "SQL in a category"
req GET "/v1/products?category=books&page=1%20OR%201"; expect 400 "SQL in a page"
req GET "/v1/users/1%3B%20DELETE%20FROM%20users"; expect 400 "SQL in a user id"
req DELETE "/v1/api-keys/1%20OR%201=1" -u carol@example.com:carol-secret-pw; expect 400 "SQL in a key id"
req POST /v1/login -d '{"email":"x'"'"' OR '"'"'1'"'"'='"'"'1","password":"'"'"' OR 1=1 --"}'
expect 401 "SQL in login fields"
req GET /v1/me -H "Authorization: Bearer ' OR 1=1 --"; expect 401 "SQL as an API key"
req POST /v1/signup -d '{"email":"x@example.com","password":"aaaaaaaaaaaa","name":"'"'"'; DROP TABLE users;--"}'
expect 201 "SQL in a name is only text"
req POST /v1/signup -d '{"email": "e@example.com", "password": '; expect 400 "malformed JSON"
req POST /v1/signup -d '[1,2]'; expect 400 "JSON that is not an object"
head -c 20000 /dev/zero | tr '\0' '{' >"$tmp/big"
req POST /v1/signup --data-binary "@$tmp/big"; expect 413 "oversized body"
req GET /healthz -H "X-Padding: $(head -c 40000 /dev/zero | tr '\0' a)"; expect 431 "huge header"
[[ $(header Content-Type) == application/problem+json && $body == *headers-too-large* ]] ||
  fail "431 is not our problem: $(header Content-Type) $body"
# Beyond the connection's memory (64 KiB) libmicrohttpd answers by itself,
# before the service sees the request: the status is still right.
req GET /healthz -H "X-Padding: $(head -c 100000 /dev/zero | tr '\0' a)"; expect 431 "header over 64 KiB"
req GET /v1/me -H "Authorization: Bearer rk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; expect 401 "short key"
req GET /v1/me -H "Authorization: Bearer ${ro_key%?}!"; expect 401 "tampered key"
req GET /v1/me -H "Authorization: Basic !!!notbase64"; expect 401 "garbage basic"
req GET /v1/products/7; expect 200 "data intact"; [[ $body == "$product7" ]] || fail "product 7 changed: $body"
req GET "/v1/users/$alice"; [[ $(json name) == Alice ]] || fail "alice changed"
# A slowloris client: half a request line, then silence; the server must
# hang up after CONNECTION_TIMEOUT_S (2 s here), well before our 8 s.
exec 5<>"/dev/tcp/127.0.0.1/$service_port"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&5
if timeout 8 cat <&5 >/dev/null; then :; else fail "slowloris connection still open after 8 s"; fi
exec 5<&-

echo "== no secret in the log"
for secret in alice-demo-password carol-secret-pw wrong-password not-her-password guessing-again \
  bob-demo-password "$key" "$ro_key" "$key2" "$key3" "$pro_key" \
  "$token1" "$token2" "$token3"; do
  ! grep -qF -- "$secret" "$tmp/service.log" || fail "a secret is in the service log"
done

echo "== Redis killed: every endpoint still answers"
kill_redis
for path in /v1/products/7 /v1/products/8 "/v1/products?category=books&page=1" "/v1/users/$alice"; do
  req GET "$path"; expect 200 "GET $path without Redis"
  [[ $(header X-Cache) == degraded ]] || fail "GET $path: X-Cache=$(header X-Cache), expected degraded"
done
req GET /healthz; expect 200 "healthz without Redis"
[[ $(json redis) == down ]] || fail "healthz does not say down: $body"
req GET /v1/me -u alice@example.com:alice-demo-password; expect 200 "me (Basic) without Redis"
req GET /v1/me -H "Cookie: sid=$token3"; expect 503 "me (session) without Redis: documented 503"
[[ $body == *session-store-unavailable* ]] || fail "503 type: $body"
req GET /v1/me -H "Authorization: Bearer $key2"; expect 200 "API key without Redis"
req GET /v1/me -H "Authorization: Bearer $key"; expect 401 "revoked key without Redis"
req GET /v1/me -H "Authorization: Bearer $key3"; expect 200 "another key without Redis"
req DELETE "/v1/api-keys/$key3_id" -u carol@example.com:carol-secret-pw; expect 204 "revoke without Redis"
[[ $(header X-Cache-Invalidation) == failed ]] || fail "revoke without Redis: no X-Cache-Invalidation"
req GET /v1/me -H "Authorization: Bearer $key3"; expect 401 "key revoked without Redis, refused at once"
closed=1
for _ in $(seq 1 20); do # the breaker opens after 5 failures in a row
  req GET /healthz
  [[ $(json circuit) == closed ]] || { closed=; break; }
  req GET /v1/products/11
done
[[ -z $closed ]] || fail "the circuit stayed closed with Redis dead: $body"
req POST /v1/signup -d '{"email":"erin@example.com","password":"erin-secret-pw","name":"Erin"}'
expect 201 "signup without Redis"
req POST /v1/login -d '{"email":"erin@example.com","password":"erin-secret-pw"}'
expect 503 "login without Redis: sessions live there (documented 503)"
req GET "/v1/users/$carol"; expect 200 "carol, degraded"
req PUT "/v1/users/$carol" -u carol@example.com:carol-secret-pw -d '{"name":"Carol Three"}'
expect 200 "a write without Redis"
[[ $(header X-Cache-Invalidation) == failed ]] || fail "write without Redis: no X-Cache-Invalidation"
req GET "/v1/users/$carol"; expect 200 "carol after the write"
[[ $(json name) == "Carol Three" ]] || fail "a write without Redis is not read back: $body"
req GET /metrics; expect 200 "metrics without Redis"
[[ $body == *'api_requests_total{route="/v1/products/{id}",status="200"}'* ]] || fail "metrics: no requests by route"
[[ $body == *redkit_apikeys_verifies_total* && $body == *api_sqlite_queries_total* ]] ||
  fail "metrics: no rk_apikeys or SQLite counters"
req GET /v1/status; expect 200 "status without Redis"
req GET /; expect 200 "status page without Redis"

echo "== Redis back: recovery without a restart"
start_redis "$redis_port"
up=
for _ in $(seq 1 100); do # the breaker probes within its backoff (<= 5 s)
  req GET /healthz
  [[ $(json redis) == up ]] && { up=1; break; }
  sleep 0.1
done
[[ -n $up ]] || fail "healthz still says $(json redis) 10 s after Redis came back"
req GET /v1/products/9; [[ $(header X-Cache) == miss ]] || fail "after recovery: X-Cache=$(header X-Cache)"
# This Redis kept nothing (no persistence): the old session is gone, a new login works.
req GET /v1/me -H "Cookie: sid=$token3"; expect 401 "session lost with Redis's memory"
req POST /v1/login -d '{"email":"alice@example.com","password":"alice-demo-password"}'; expect 200 "login after recovery"
req GET /v1/products/9; [[ $(header X-Cache) == hit ]] || fail "after recovery, no hit"

echo "== Redis paused: /healthz says degraded, reads still answer"
kill -STOP "$redis_pid"
req GET /healthz; expect 200 "healthz with Redis paused"
[[ $(json redis) == degraded ]] || fail "healthz with Redis paused: $body"
req GET /v1/products/7; expect 200 "a read with Redis paused"
kill -CONT "$redis_pid"
up=
for _ in $(seq 1 100); do
  req GET /healthz
  [[ $(json redis) == up ]] && { up=1; break; }
  sleep 0.1
done
[[ -n $up ]] || fail "healthz still says $(json redis) 10 s after Redis resumed"

echo "== graceful stop"
kill -TERM "$service_pid"
for _ in $(seq 1 100); do kill -0 "$service_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$service_pid" 2>/dev/null && fail "api-server still running 10 s after SIGTERM"
wait "$service_pid" || fail "api-server exited with $?"
service_pid=
echo "PASS"
