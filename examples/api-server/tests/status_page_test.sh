#!/usr/bin/env bash
# status_page_test.sh API_SERVER SCREENSHOT — the status page in headless
# Chromium: after some traffic, its charts must have rendered (the DOM
# Chromium dumps after running the page's script has data-rendered="yes"
# and a non-empty polyline per chart), and a screenshot is saved to
# SCREENSHOT as an artifact. Exit 77 (skip) only when chromium is absent.
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
start_service "$bin"
# Traffic: misses, then hits, so that the hit-ratio chart has a value.
for id in $(seq 1 30); do curl -s -o /dev/null "$base/v1/products/$id"; done
for id in $(seq 1 30); do curl -s -o /dev/null "$base/v1/products/$id"; done
# The charts need two samples of the service's history (taken every 2 s).
for _ in $(seq 1 100); do
  req GET /v1/status
  [[ $body == *'"history":[['*'],['*'],['* ]] && break
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
grep -Eq "id=\"v-redis\"[^>]*>up<" "$tmp/dom.html" || { grep -o "id=\"v-redis\"[^<]*<" "$tmp/dom.html" >&2; fail "Redis not shown as up"; }
rm -f "$shot"
run_chromium --screenshot="$shot" --window-size=1100,720 --hide-scrollbars >/dev/null ||
  fail "chromium --screenshot failed"
[[ -s $shot ]] || fail "no screenshot written"
echo "screenshot: $shot"
echo "PASS"
