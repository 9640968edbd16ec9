#!/usr/bin/env bash
# readme_screenshot.sh API_SERVER OUT.png — how docs/img/status-page.png is
# made (not a test: run it by hand when the page changes).
#
# About 80 s of gentle mixed traffic from curl (product reads over 300 ids,
# so misses turn into hits; category lists; a login now and then, so there
# are live sessions; at 60 s a burst of wrong passwords for one email, so
# some logins are refused with 429), Redis killed at 30 s and restarted at
# 45 s, then a screenshot of the status page in headless Chromium.
set -euo pipefail
bin=${1:?usage: readme_screenshot.sh API_SERVER OUT.png}
shot=${2:?usage: readme_screenshot.sh API_SERVER OUT.png}
chromium=$(command -v chromium || command -v chromium-browser) || { echo "chromium not installed"; exit 1; }
source "$(dirname "$0")/lib.sh"

start_redis
start_service "$bin" LOG_LEVEL=warn
categories=(books music garden kitchen toys)
start=$SECONDS n=0 killed= back= guessed=
while ((SECONDS - start < 80)); do
  n=$((n + 1))
  curl -s -o /dev/null -m 5 "$base/v1/products/$((RANDOM % 300 + 1))"
  ((n % 7 == 0)) && curl -s -o /dev/null -m 5 "$base/v1/products?category=${categories[RANDOM % 5]}&page=$((RANDOM % 3 + 1))"
  ((n % 150 == 0)) && curl -s -o /dev/null -m 5 -d '{"email":"alice@example.com","password":"alice-demo-password"}' "$base/v1/login"
  if [[ -z $killed ]] && ((SECONDS - start >= 30)); then kill_redis; killed=1; fi
  if [[ -z $back ]] && ((SECONDS - start >= 45)); then start_redis "$redis_port"; back=1; fi
  if [[ -z $guessed ]] && ((SECONDS - start >= 60)); then
    for _ in $(seq 1 12); do
      curl -s -o /dev/null -m 5 -d '{"email":"bob@example.com","password":"guess"}' "$base/v1/login"
    done
    guessed=1
  fi
  sleep 0.02
done
sleep 2 # one more sample after the last requests
timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage \
  --user-data-dir="$(mktemp -d "$tmp/chrome.XXXXXX")" --virtual-time-budget=5000 \
  --screenshot="$shot" --window-size=1100,720 --hide-scrollbars "$base/" 2>/dev/null
[[ -s $shot ]] || fail "no screenshot written"
echo "screenshot: $shot ($n requests)"
