#!/usr/bin/env bash
# cli_test.sh — the redkit CLI end to end: every command, its exit status
# (0 ok, 1 miss, 2 error), and that a password never reaches the output.
# Run by CTest as: scripts/with-redis tests/cli_test.sh path/to/redkit
set -u
redkit=${1:?usage: cli_test.sh path/to/redkit}
: "${REDIS_URL:?REDIS_URL must point at a private redis-server}"
passed=0 failed=0

# expect STATUS WANT_STDOUT -- ARGS...: run redkit, check status and stdout.
expect() {
    local want_status=$1 want_out=$2; shift 3
    local out status
    out=$("$redkit" "$@" 2>/tmp/redkit-cli-err.$$); status=$?
    if [ "$status" = "$want_status" ] && { [ "$want_out" = "*" ] || [ "$out" = "$want_out" ]; }; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: redkit $* -> status $status (want $want_status), stdout '$out' (want '$want_out')"
        cat /tmp/redkit-cli-err.$$
    fi
}

expect 0 PONG -- ping
expect 0 OK -- set greeting "hello world" --ttl 60
expect 0 "hello world" -- get greeting
expect 0 "*" -- ttl greeting
ttl=$("$redkit" ttl greeting)
if [ "$ttl" -ge 1 ] && [ "$ttl" -le 60 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: ttl $ttl"; fi
expect 0 OK -- set forever x --ttl none
expect 0 none -- ttl forever
expect 0 OK -- del greeting
expect 1 "" -- get greeting
expect 1 "" -- del greeting
expect 1 "" -- ttl greeting
expect 0 OK -- --ns other set k v
expect 1 "" -- get k
expect 0 v -- --ns other get k
# Raw mode reads what redis-cli wrote.
redis-cli -u "$REDIS_URL" SET cache:plain "from redis-cli" >/dev/null
expect 0 "from redis-cli" -- --raw get plain
expect 2 "" -- get plain
# Usage and connection errors.
expect 0 "*" -- --help
expect 2 "" -- nosuchcommand
expect 2 "" -- get
expect 2 "" -- set k v --ttl -5
expect 2 "" -- --url "http://nope" ping
# A password in the URL never shows, whatever fails.
for url in "redis://:Sekr3tPw@127.0.0.1:1" "redis://user:Sekr3tPw@127.0.0.1:99999" "redis://:Sekr3tPw@[::1"; do
    "$redkit" --url "$url" ping >/tmp/redkit-cli-out.$$ 2>&1
    if [ $? = 2 ] && ! grep -q Sekr3tPw /tmp/redkit-cli-out.$$; then passed=$((passed + 1));
    else failed=$((failed + 1)); echo "FAIL: $url"; cat /tmp/redkit-cli-out.$$; fi
done
rm -f /tmp/redkit-cli-err.$$ /tmp/redkit-cli-out.$$
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
