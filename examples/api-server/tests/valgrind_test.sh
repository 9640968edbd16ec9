#!/usr/bin/env bash
# valgrind_test.sh API_SERVER — the service under valgrind: a few requests
# of every kind (cache miss and hit, a list, a login, an API key created,
# used and revoked, a huge header, metrics, the status page), then
# SIGTERM; the graceful shutdown must leave no memory error and no leak
# (exit 0, not valgrind's 99). Exit 77 without valgrind.
set -euo pipefail
bin=${1:?usage: valgrind_test.sh API_SERVER}
for tool in valgrind curl redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
source "$(dirname "$0")/lib.sh"

start_redis
service_wrapper=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect)
start_wait_s=60
start_service "$bin" THREADS=2
req GET /v1/products/1; expect 200 "product (miss)"
req GET /v1/products/1; expect 200 "product (hit)"
req GET "/v1/products?category=toys"; expect 200 "list"
req POST /v1/login -c "$tmp/jar" -d '{"email":"alice@example.com","password":"alice-demo-password"}'
expect 200 "login (a session)"
req POST /v1/api-keys -b "$tmp/jar" -d '{"name":"k","scopes":["read"]}'
expect 201 "api key"; key=$(json key); key_id=$(json id)
req GET /v1/me -H "Authorization: Bearer $key"; expect 200 "me by key"
req DELETE "/v1/api-keys/$key_id" -b "$tmp/jar"; expect 204 "revoke"
req GET /v1/me -H "Authorization: Bearer $key"; expect 401 "revoked key"
req GET /healthz -H "X-Padding: $(head -c 20000 /dev/zero | tr '\0' a)"; expect 431 "huge header"
req GET /metrics; expect 200 "metrics"
req GET /; expect 200 "status page"
req GET /nope; expect 404 "unknown route"
kill -TERM "$service_pid"
code=0
wait "$service_pid" || code=$?
service_pid=
grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$tmp/service.log" || true
((code == 0)) || fail "api-server under valgrind exited with $code"
echo "PASS"
