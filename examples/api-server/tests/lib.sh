# lib.sh — shared by the api-server test scripts (sourced, not run).
#
# Starts a private redis-server and the service on free loopback ports in
# a temporary directory, with a real SQLite file there, and stops both on
# exit. Every wait is bounded.

tmp=$(mktemp -d "${TMPDIR:-/tmp}/api-server-test.XXXXXX")
redis_pid= service_pid= redis_port= service_port=
cleanup() {
  for p in $service_pid $redis_pid; do
    kill -TERM "$p" 2>/dev/null || true
    kill -CONT "$p" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=
    for p in $service_pid $redis_pid; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ -z $alive ]] && break
    sleep 0.1
  done
  for p in $service_pid $redis_pid; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- service log (tail)" >&2; tail -n 30 "$tmp/service.log" >&2 || true; exit 1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_in_use "$p" || { echo "$p"; return; }
  done
  fail "no free port"
}

# start_redis [PORT]: (re)start redis-server, on PORT if given, else on a
# free port (another one if someone takes it first). Waits at most 10 s.
start_redis() {
  local fixed=${1:-}
  for _attempt in 1 2 3 4 5; do
    redis_port=${fixed:-$(free_port)}
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
      --maxmemory 64mb --maxmemory-policy allkeys-lru \
      --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" </dev/null >/dev/null &
    redis_pid=$!
    for _ in $(seq 1 100); do
      [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && return
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    [[ -n $fixed ]] && sleep 0.5 # the same port: give its last owner time to go
  done
  fail "redis-server did not start (last port $redis_port): $(tail -n 3 "$tmp/redis.log" 2>/dev/null)"
}

kill_redis() {
  kill -KILL "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=
}

# start_service BINARY [ENV=VALUE ...]; $service_wrapper (an array, e.g.
# valgrind and its options) runs in front of BINARY; start_wait_s bounds
# the wait for its first answer.
service_wrapper=() start_wait_s=10
start_service() {
  local bin=$1; shift
  for _attempt in 1 2 3 4 5; do # another port if someone takes ours first
    service_port=$(free_port)
    env REDIS_URL="redis://127.0.0.1:$redis_port" DATABASE_PATH="$tmp/api.db" \
      LISTEN="127.0.0.1:$service_port" "$@" "${service_wrapper[@]}" "$bin" \
      >"$tmp/service.out" 2>"$tmp/service.log" &
    service_pid=$!
    base="http://127.0.0.1:$service_port"
    for _ in $(seq 1 $((start_wait_s * 10))); do
      curl -fs -m 2 "$base/healthz" >/dev/null 2>&1 && return
      kill -0 "$service_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$service_pid" 2>/dev/null && fail "api-server did not answer within $start_wait_s s"
    wait "$service_pid" 2>/dev/null || true
    service_pid=
    grep -q "Address already in use" "$tmp/service.log" || fail "api-server exited at start"
  done
  fail "api-server found no free port"
}

# req METHOD PATH [CURL ARGS...]: sets status, body, headers.
req() {
  local method=$1 path=$2; shift 2
  status=$(curl -s -m 10 -X "$method" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' "$@" "$base$path") \
    || status=000
  body=$(cat "$tmp/b" 2>/dev/null || true)
  headers=$(tr -d '\r' <"$tmp/h" 2>/dev/null || true)
}
header() { printf '%s\n' "$headers" | sed -n "s/^$1: //Ip" | tail -n 1; }
expect() { # expect STATUS WHAT
  [[ $status == "$1" ]] || fail "$2: status $status, expected $1; body: $body"
}
queries() { curl -s -m 5 "$base/metrics" | sed -n 's/^api_sqlite_queries_total //p'; }
json() { # json FIELD: a top-level field of $body (numbers and strings)
  printf '%s' "$body" | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}
