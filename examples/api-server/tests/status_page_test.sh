#!/usr/bin/env bash
# status_page_test.sh API_SERVER SCREENSHOT — the status page in headless
# Chromium: after some traffic (two logins, cache misses then hits, and
# requests over the per-IP limit), its charts must have rendered (the DOM
# Chromium dumps after running the page's script has data-rendered="yes"
# and a non-empty polyline per chart) and it must show what the issue
# asks for: hit ratio, SQLite queries saved, rate-limited requests, live
# sessions, Redis memory and eviction policy, circuit state. A screenshot
# is saved to SCREENSHOT as an artifact. Exit 77 (skip) only when chromium
# is absent.
set -euo pipefail
bin=${1:?usage: status_page_test.sh API_SERVER SCREENSHOT}
shot=${2:?usage: status_page_test.sh API_SERVER SCREENSHOT}
chromium=$(command -v chromium || command -v chromium-browser || true)
[[ -n $chromium ]] || { echo "SKIP: chromium not installed"; exit 77; }
for tool in curl redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
source "$(dirname "$0")/lib.sh"

start_redis
# 30 anonymous requests per minute per IP: the traffic below goes over.
start_service "$bin" RATE_LIMIT_ANON_PER_MIN=30
# Two live sessions (logins count against the per-IP limit: first).
req POST /v1/login -d '{"email":"alice@example.com","password":"alice-demo-password"}'; expect 200 "login"
req POST /v1/login -d '{"email":"bob@example.com","password":"bob-demo-password"}'; expect 200 "login"
# 10 misses, then hits, so that the hit-ratio chart has a value; 60
# requests in all, so that the last ones are refused (429), for the
# rate-limited chart (unless they took over 45 s: then the limit refilled).
limited=0
for pass in 1 2 3 4 5 6; do
  for id in $(seq 1 10); do
    req GET "/v1/products/$id"
    [[ $status == 429 ]] && limited=$((limited + 1))
  done
done
((limited > 0)) || fail "62 requests at 30 per minute: none refused"
# The charts need two samples of the service's history (taken every 2 s),
# the last one taken after the logins (its live-session count is >= 1).
for _ in $(seq 1 100); do
  req GET /v1/status
  [[ $body =~ \"history\":\[\[.*\],\[.*,[1-9][0-9]*\]\]\}$ ]] && break
  sleep 0.1
done

# The page polls /v1/status every 2 s; virtual time lets Chromium run the
# first polls without waiting for them in real time.
run_chromium() {
  timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$(mktemp -d "$tmp/chrome.XXXXXX")" \
    --virtual-time-budget=5000 "$@" "$base/" 2>>"$tmp/chromium.log"
}
run_chromium --dump-dom >"$tmp/dom.html" || fail "chromium --dump-dom failed: $(tail -5 "$tmp/chromium.log")"
grep -q 'data-rendered="yes"' "$tmp/dom.html" || fail "the page's script did not render (no data-rendered)"
for chart in hit saved queries limited mem; do
  grep -Eq "id=\"chart-$chart\"[^>]*data-samples=\"[1-9]" "$tmp/dom.html" ||
    fail "chart $chart has no samples"
done
grep -Eq '<polyline[^>]*points="[0-9.]+,[0-9.]+ [0-9.]+,[0-9.]+' "$tmp/dom.html" ||
  fail "no chart has points"
shows() { # shows ID REGEX WHAT: the element's text matches
  grep -Eq "id=\"$1\"[^>]*>$2<" "$tmp/dom.html" ||
    fail "$3 not shown: $(grep -Eo "id=\"$1\"[^<]*<" "$tmp/dom.html")"
}
shows v-redis up "Redis up"
shows v-hit "[0-9.]+ %" "the hit ratio"
shows v-saved "[1-9][0-9]*" "SQLite queries saved"
shows v-limited "[1-9][0-9]*" "rate-limited requests"
shows v-sessions "[1-9][0-9]*" "live sessions"
shows v-mem "[0-9.]+ MiB" "Redis memory"
shows v-policy "maxmemory 64.0 MiB, policy allkeys-lru, evicted [0-9]+" "the eviction policy"
shows v-circuit closed "the circuit state"
rm -f "$shot"
run_chromium --screenshot="$shot" --window-size=1100,720 --hide-scrollbars >/dev/null ||
  fail "chromium --screenshot failed"
[[ -s $shot ]] || fail "no screenshot written"
echo "screenshot: $shot"
echo "PASS"
