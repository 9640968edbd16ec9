#!/usr/bin/env bash
# cli_test.sh — the redkit CLI end to end: every command, its exit status
# (0 ok, 1 miss, 2 error), and that a password never reaches the output.
# Run by CTest as: scripts/with-redis tests/tools/cli_test.sh path/to/redkit
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
# ttl and del answer as redis-cli does, exit 0: -1 no expiry, -2 absent;
# del prints how many keys existed (set -e scripts survive a second del).
expect 0 -1 -- ttl forever
expect 0 1 -- del greeting
expect 1 "" -- get greeting
expect 0 0 -- del greeting
expect 0 -2 -- ttl greeting
expect 0 1 -- del forever greeting
expect 0 OK -- --ns other set k v
expect 1 "" -- get k
expect 0 v -- --ns other get k
# A miss prints nothing on stdout, so v=$(redkit get k) stays empty.
v=$("$redkit" get absent-key 2>/dev/null); st=$?
if [ "$st" = 1 ] && [ -z "$v" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: get miss: $st '$v'"; fi
# Values written by redis-cli read with or without --raw (docs/cache.md).
redis-cli -u "$REDIS_URL" SET cache:plain "from redis-cli" >/dev/null
expect 0 "from redis-cli" -- --raw get plain
expect 0 "from redis-cli" -- get plain
redis-cli -u "$REDIS_URL" SET cache:count 41 >/dev/null
expect 0 42 -- incr count
expect 0 42 -- get count
# exists, mget, incr
expect 0 2 -- exists plain count absent-key
expect 0 0 -- exists absent-key
expect 0 "$(printf 'from redis-cli\n\n42')" -- mget plain absent-key count
expect 0 OK -- set n 42                  # a typed string, as `redkit set` stores it
expect 0 43 -- incr n
expect 0 33 -- incr n -10
expect 0 33 -- get n
expect 0 5 -- incr fresh 5 --ttl 100
expect 0 "$(printf '5\n\n33')" -- mget fresh absent-key n   # a typed int64 prints as a number
t=$("$redkit" ttl fresh)
if [ "$t" -ge 1 ] && [ "$t" -le 100 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: incr ttl $t"; fi
expect 0 1 -- incr fresh2
t=$("$redkit" ttl fresh2)
if [ "$t" -ge 250 ] && [ "$t" -le 300 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: incr default ttl $t"; fi
expect 2 "" -- incr greeting-text 1x
"$redkit" set words "two words" >/dev/null
expect 2 "" -- incr words
expect 0 "two words" -- get words
expect 0 OK -- --raw set rawn 7
expect 0 8 -- incr rawn
[ "$(redis-cli -u "$REDIS_URL" GET cache:rawn)" = 8 ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: raw incr"; }
# -x: the value from stdin, binary-safe; raw into a pipe, escaped on a terminal.
printf 'a\000b\n' | "$redkit" -x set bin >/dev/null
[ "$("$redkit" get bin | od -An -c | tr -s ' ')" = " a \0 b \n \n" ] && passed=$((passed + 1)) ||
    { failed=$((failed + 1)); echo "FAIL: -x / binary get"; "$redkit" get bin | od -c; }
tty_out=$(script -qec "$redkit get bin" /dev/null </dev/null | tr -d '\r')
[ "$tty_out" = '"a\x00b\n"' ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: tty get: $tty_out"; }
tty_out=$(script -qec "$redkit del absent-key" /dev/null </dev/null | tr -d '\r')
[ "$tty_out" = "(integer) 0" ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: tty del: $tty_out"; }
expect 2 "" -- -x get bin
expect 2 "" -- -x set k v
# scan, invalidate, clear: the namespace's keys only.
redis-cli -u "$REDIS_URL" SET outside v >/dev/null
redis-cli -u "$REDIS_URL" SET 'cache:{star}*' v >/dev/null
expect 0 OK -- -x set bin2 </dev/null
listed=$("$redkit" scan | sort | tr '\n' ' ')
[ "$listed" = "bin bin2 count fresh fresh2 n plain rawn words {star}* " ] && passed=$((passed + 1)) ||
    { failed=$((failed + 1)); echo "FAIL: scan: $listed"; }
[ "$("$redkit" scan 'bin*' | sort | tr '\n' ' ')" = "bin bin2 " ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: scan bin*"; }
expect 0 "" -- --ns nothing-here scan
expect 0 10 -- clear
expect 0 "" -- scan
expect 0 0 -- clear
[ "$(redis-cli -u "$REDIS_URL" GET outside)" = v ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: clear left its namespace"; }
expect 0 0 -- invalidate no-such-tag
# Connection options as redis-cli's: -h HOST -p PORT -n DB, --user, -a.
hostport=${REDIS_URL#redis://}; port=${hostport##*:}; port=${port%%/*}
expect 0 PONG -- --url redis://127.0.0.1:1 -h 127.0.0.1 -p "$port" ping
expect 0 OK -- -p "$port" -n 3 set in-db3 v
[ "$(redis-cli -u "$REDIS_URL" -n 3 GET cache:in-db3)" != "" ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: -n 3"; }
expect 1 "" -- get in-db3
expect 2 "" -- -p 99999 ping
expect 2 "" -- -n x ping
redis-cli -u "$REDIS_URL" ACL SETUSER cliuser on '>cli-pw-1' '~*' '+@all' >/dev/null
expect 0 PONG -- --user cliuser -a cli-pw-1 ping
expect 2 "" -- --user cliuser -a wrong-pw ping
REDISCLI_AUTH=cli-pw-1 "$redkit" --user cliuser ping >/dev/null && passed=$((passed + 1)) ||
    { failed=$((failed + 1)); echo "FAIL: REDISCLI_AUTH"; }
redis-cli -u "$REDIS_URL" ACL DELUSER cliuser >/dev/null
expect 2 "" -- --tls -p "$port" -h 127.0.0.1 ping   # TLS to a plain server: an error, not a hang
# Command groups get the same connection options (tools/cli.h).
v=$(env -u REDIS_URL "$redkit" -h 127.0.0.1 -p "$port" sessions count 2>/dev/null); st=$?
if [ "$st" = 0 ] && [ "$v" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: group with -h/-p: $st '$v'"; fi
expect 2 "" -- --url "$REDIS_URL" -p 1 sessions count   # -p overrides the URL's port for groups too
# Usage and connection errors: on stderr, exit 2, nothing on stdout; help
# only with --help (-h is the host, as in redis-cli).
expect 0 "*" -- --help
expect 2 "" -- -h
v=$("$redkit" -h 127.0.0.1 -p "$port" get absent-key 2>/dev/null)
[ -z "$v" ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: -h HOST get printed '$v'"; }
err=$("$redkit" nosuchcommand 2>&1 >/dev/null)
case $err in "redkit: unknown command"*) passed=$((passed + 1)) ;; *) failed=$((failed + 1)); echo "FAIL: usage on stderr: $err" ;; esac
expect 2 "" -- nosuchcommand
expect 2 "" -- get
expect 2 "" -- set k v --ttl -5
expect 2 "" -- get k --ttl 5
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

# ---- Security: a password never reaches the CLI's output -------------------
# (Blocks are appended below one another; each ends by printing the running
# totals and exiting on them, so the last one decides the script's status.)
# The private server's default user stays passwordless for the other blocks:
# this block adds an ACL user with a password, runs the CLI with that
# password in --url and in REDIS_URL — commands that succeed, miss and fail,
# a wrong password, an unreachable port, a malformed URL, and the URL given
# by mistake where the command belongs — and checks that neither password
# appears, whole or in part, in stdout or stderr. The user is removed after.
sec_pw='Cl1-S3cr3t-pW-7731'
sec_wrong='Wr0ng-Cl1-pW-4409'
sec_hostport=${REDIS_URL#redis://}
sec_hostport=${sec_hostport%%/*}
sec_hostport=${sec_hostport%%\?*}
sec_url="redis://clisec:$sec_pw@$sec_hostport"
sec_url_wrong="redis://clisec:$sec_wrong@$sec_hostport"
sec_out=/tmp/redkit-cli-sec-out.$$ sec_err=/tmp/redkit-cli-sec-err.$$
redis-cli -u "$REDIS_URL" ACL SETUSER clisec on ">$sec_pw" '~*' '+@all' >/dev/null
redis-cli -u "$REDIS_URL" DEL cache:seclist >/dev/null
redis-cli -u "$REDIS_URL" LPUSH cache:seclist x >/dev/null

# sec_expect STATUS ENV_URL -- ARGS...: run redkit (with REDIS_URL=ENV_URL,
# or unset when ENV_URL is empty) and check its exit status and that no
# password shows in its output.
sec_expect() {
    local want_status=$1 env_url=$2 status; shift 3
    if [ -n "$env_url" ]; then
        REDIS_URL=$env_url "$redkit" "$@" >"$sec_out" 2>"$sec_err"; status=$?
    else
        env -u REDIS_URL "$redkit" "$@" >"$sec_out" 2>"$sec_err"; status=$?
    fi
    if [ "$status" != "$want_status" ]; then
        failed=$((failed + 1))
        echo "FAIL (security): exit status $status, want $want_status (arguments withheld: they hold a password)"
    elif grep -q -F -e "$sec_pw" -e "$sec_wrong" -e "S3cr3t" -e "Wr0ng-Cl1" "$sec_out" "$sec_err"; then
        failed=$((failed + 1))
        echo "FAIL (security): a password reached the CLI's output (exit $status; output withheld)"
    else
        passed=$((passed + 1))
    fi
}

sec_expect 0 "" -- --url "$sec_url" ping
sec_expect 0 "" -- --url="$sec_url" set secret-test-key v
sec_expect 0 "" -- --url "$sec_url" get secret-test-key
sec_expect 1 "" -- --url "$sec_url" get no-such-key
sec_expect 2 "" -- --url "$sec_url" get seclist                  # WRONGTYPE
sec_expect 2 "" -- --url "$sec_url" set k v --ttl -1             # usage error
sec_expect 2 "" -- --url "$sec_url_wrong" ping                   # WRONGPASS
sec_expect 2 "" -- --url "$sec_url_wrong" get secret-test-key
sec_expect 2 "" -- --url "redis://clisec:$sec_pw@127.0.0.1:1" ping     # refused
sec_expect 2 "" -- --url "redis://clisec:$sec_pw@127.0.0.1:99999" ping # malformed
sec_expect 2 "" -- --url "redis://clisec:$sec_pw#x@$sec_hostport" ping # malformed
sec_expect 0 "$sec_url" -- ping
sec_expect 0 "$sec_url" -- del secret-test-key
sec_expect 2 "$sec_url" -- get seclist
sec_expect 2 "$sec_url_wrong" -- ping
sec_expect 2 "$sec_url_wrong" -- get k
sec_expect 2 "" -- "$sec_url" ping                               # the URL where the command goes
# redis-cli's options: -a PASSWORD, glued by mistake (-aPASSWORD), and
# $REDISCLI_AUTH; right and wrong.
sec_port=${sec_hostport##*:}
sec_expect 0 "" -- -p "$sec_port" --user clisec -a "$sec_pw" ping
sec_expect 2 "" -- -p "$sec_port" --user clisec -a "$sec_wrong" ping
sec_expect 2 "" -- -p "$sec_port" --user clisec "-a$sec_pw" ping
sec_expect 2 "" -- -p "$sec_port" --user clisec "--pass=$sec_wrong" get k
sec_expect 2 "" -- -p "$sec_port" --user clisec -a "$sec_wrong" --url "redis://127.0.0.1:1" ping
REDISCLI_AUTH=$sec_wrong "$redkit" -p "$sec_port" --user clisec ping >"$sec_out" 2>"$sec_err"
if [ $? = 2 ] && ! grep -q -F -e "$sec_wrong" -e "Wr0ng-Cl1" "$sec_out" "$sec_err"; then passed=$((passed + 1));
else failed=$((failed + 1)); echo "FAIL (security): REDISCLI_AUTH with a wrong password (output withheld)"; fi
redis-cli -u "$REDIS_URL" DEL cache:seclist cache:secret-test-key >/dev/null
redis-cli -u "$REDIS_URL" ACL DELUSER clisec >/dev/null
rm -f "$sec_out" "$sec_err"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

# ---- Monitoring: stats, memory, slowlog --------------------------------------
# stats and memory read the server's figures (rk_server_memory); on the
# private server's defaults (maxmemory 0, noeviction) they warn on stderr,
# and stop warning once the server is set up for a cache. slowlog prints
# SLOWLOG GET with long arguments cut. Keys go to db 5, away from the other
# blocks; the server's settings are put back at the end. Ends, like the
# blocks above, by printing the running totals and testing them.
mon_out=/tmp/redkit-cli-mon-out.$$ mon_err=/tmp/redkit-cli-mon-err.$$
mon_url="$REDIS_URL/5"
mon_cli() { redis-cli -u "$REDIS_URL" "$@" >/dev/null; }
mon_run() { "$redkit" "$@" >"$mon_out" 2>"$mon_err"; mon_status=$?; }
# mon_ok DESCRIPTION CHECK [ARGS...]: count whether CHECK succeeds on the
# last run; on failure show what the run printed.
mon_ok() {
    local what=$1; shift
    if "$@"; then passed=$((passed + 1)); else
        failed=$((failed + 1)); echo "FAIL (monitoring): $what (exit $mon_status)"
        sed 's/^/  stdout: /' "$mon_out"; sed 's/^/  stderr: /' "$mon_err"
    fi
}
exited() { [ "$mon_status" = "$1" ]; }
out_has() { grep -Eq -- "$1" "$mon_out"; }
out_lacks() { ! grep -Eq -- "$1" "$mon_out"; }
err_has() { grep -Eq -- "$1" "$mon_err"; }
quiet() { [ "$mon_status" = 0 ] && [ ! -s "$mon_err" ]; }
warns_only_noeviction() { err_has 'noeviction' && ! err_has 'maxmemory is 0'; }
no_password() { ! grep -q 'Mon-Pw' "$mon_out" "$mon_err"; }

mon_cli CONFIG SET maxmemory 0
mon_cli CONFIG SET maxmemory-policy noeviction
mon_cli -n 5 FLUSHDB
for k in a b c; do "$redkit" --url "$mon_url" set "mon-$k" v >/dev/null; done
"$redkit" --url "$mon_url" get mon-a >/dev/null

mon_run --url "$mon_url" stats
mon_ok "stats exits 0" exited 0
mon_ok "stats: version" out_has '^redis_version +[0-9]+\.[0-9]+'
mon_ok "stats: clients" out_has '^connected_clients +[1-9][0-9]*$'
mon_ok "stats: ops" out_has '^ops_per_sec +[0-9]+$'
mon_ok "stats: hit ratio" out_has '^hit_ratio +[0-9]+\.[0-9]%$'
mon_ok "stats: memory" out_has '^used_memory +[0-9.]+ (B|KiB|MiB|GiB)$'
mon_ok "stats: no limit" out_has '^maxmemory +0 \(no limit\)$'
mon_ok "stats: policy" out_has '^maxmemory_policy +noeviction$'
mon_ok "stats: evictions" out_has '^evicted_keys +0$'
mon_ok "stats: keys of db 5" out_has '^keys +3 \(db 5, 3 with a TTL\)$'
mon_ok "stats: ping" out_has '^ping_us +[0-9]+ '
mon_ok "stats warns: no maxmemory" err_has '^redkit: warning: maxmemory is 0'
mon_ok "stats warns: noeviction" err_has '^redkit: warning: maxmemory-policy is noeviction'

mon_run --url "$mon_url" memory
mon_ok "memory exits 0" exited 0
for f in used_memory used_memory_rss used_memory_peak; do
    mon_ok "memory: $f" out_has "^$f +[1-9][0-9]* \\([0-9.]+ (B|KiB|MiB|GiB)\\)\$"
done
mon_ok "memory: fragmentation" out_has '^mem_fragmentation_ratio +[0-9]+\.[0-9]{2}$'
mon_ok "memory: policy" out_has '^maxmemory_policy +noeviction$'
mon_ok "memory: expired" out_has '^expired_keys +[0-9]+$'
mon_ok "memory warns" err_has 'warning: maxmemory is 0'

# Set up for a cache: a limit and an LRU policy, and no warning.
mon_cli CONFIG SET maxmemory 104857600
mon_cli CONFIG SET maxmemory-policy allkeys-lru
mon_run --url "$mon_url" stats
mon_ok "stats with a limit: no warning" quiet
mon_ok "stats: the limit" out_has '^maxmemory +104857600 \(100\.00 MiB, [0-9.]+% used\)$'
mon_ok "stats: lru" out_has '^maxmemory_policy +allkeys-lru$'
mon_run memory
mon_ok "memory with a limit: no warning" quiet
mon_cli CONFIG SET maxmemory-policy noeviction
mon_run memory
mon_ok "noeviction alone warns alone" warns_only_noeviction
mon_cli CONFIG SET maxmemory 0

# slowlog: log everything, then read it back.
mon_cli CONFIG SET slowlog-log-slower-than 0
mon_cli SLOWLOG RESET
long_value=$(printf 'y%.0s' $(seq 1 200))
"$redkit" --url "$mon_url" set mon-long "$long_value" >/dev/null
mon_run slowlog 3
mon_ok "slowlog exits 0" exited 0
mon_ok "slowlog: header" out_has '^id +time \(UTC\) +duration_us +command$'
mon_ok "slowlog: the SET" out_has '^[0-9]+ +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +[0-9]+  SET cache:mon-long '
mon_ok "slowlog: long argument cut" out_has 'yyy\.\.\.'
mon_ok "slowlog: never the whole value" out_lacks 'y{41}'
mon_ok "slowlog: at most 3 entries" [ "$(wc -l <"$mon_out")" -le 4 ]
mon_run slowlog
mon_ok "slowlog without N exits 0" exited 0
mon_cli CONFIG SET slowlog-log-slower-than -1
mon_cli SLOWLOG RESET
mon_run slowlog 5
mon_ok "empty slowlog" out_has '^\(no slow commands logged\)$'
mon_cli CONFIG SET slowlog-log-slower-than 10000
for bad in 0 -1 x 100001 1.5; do
    mon_run slowlog -- "$bad"
    mon_ok "slowlog $bad is a usage error" exited 2
done
mon_run slowlog 1 2
mon_ok "slowlog takes one argument" exited 2
mon_run stats extra
mon_ok "stats takes none" exited 2

# Redis unreachable: exit 2, and a password in the URL never shows.
for cmd in stats memory slowlog; do
    mon_run --url "redis://:Mon-Pw-5512@127.0.0.1:1" "$cmd"
    mon_ok "$cmd unreachable exits 2" exited 2
    mon_ok "$cmd unreachable: no password" no_password
done
# redkit limit: check until refused (exit 1), peek consumes nothing, reset.
lim_specs="minute:gcra:2:60000 day:fixed:100:86400000"
mon_run limit check cli-user $lim_specs
mon_ok "limit check allowed" exited 0
mon_run limit check cli-user $lim_specs
mon_run limit check cli-user $lim_specs
mon_ok "limit check refused exits 1" exited 1
mon_ok "limit check says which limit" out_has '^refused \(decided by minute, path redis\)$'
mon_ok "limit check prints Retry-After" out_has '^Retry-After: [0-9]+'
mon_run limit peek cli-user $lim_specs
mon_ok "limit peek: refused state, nothing consumed" out_has 'day +fixed +ok +limit=100 remaining=98 '
mon_run limit reset cli-user $lim_specs
mon_ok "limit reset" out_has '^reset$'
mon_run limit peek cli-user $lim_specs
mon_ok "limit peek after reset" exited 0
mon_ok "limit peek after reset: full" out_has 'minute +gcra +ok +limit=2 remaining=2 '
mon_run limit peek cli-user minute:nope:2:60000
mon_ok "limit: bad algorithm is a usage error" exited 2
mon_run limit peek cli-user
mon_ok "limit: no limit is a usage error" exited 2
mon_run --url "redis://:Mon-Pw-5512@127.0.0.1:1" limit check cli-user $lim_specs
mon_ok "limit unreachable exits 2" exited 2
mon_ok "limit unreachable: no password" no_password
mon_cli -n 5 FLUSHDB
# apikey: hash and check need no Redis; revoke writes a tombstone under the
# key's hash; no command prints the key. (A made-up key with a valid
# checksum, not a secret.)
ak=rk_TestKeyForTheCliOnlyNotASecret0123456789abc3AQFvY
ak_hash=dc01e9767985bbd073f4c2e04977f935777ed270371837a7b36cef016b250776
expect 0 "$ak_hash" -- apikey hash "$ak"
expect 0 "ok rk_Test...QFvY" -- apikey check "$ak"
expect 1 malformed -- apikey check "${ak%?}x"
expect 0 "revoked rk_Test...QFvY" -- apikey revoke "$ak"
if [ "$(redis-cli -u "$REDIS_URL" GET "apikey:{$ak_hash}")" = R ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: apikey tombstone"; fi
expect 0 "revoked ${ak_hash:0:16}..." -- apikey revoke "$ak_hash"
expect 2 "" -- apikey revoke not-a-key
expect 2 "" -- apikey frobnicate x
expect 2 "" -- apikey hash
if redis-cli -u "$REDIS_URL" --scan | grep -q "$ak"; then failed=$((failed + 1)); echo "FAIL: the API key is in Redis"; else passed=$((passed + 1)); fi
redis-cli -u "$REDIS_URL" DEL "apikey:{$ak_hash}" >/dev/null
rm -f "$mon_out" "$mon_err" /tmp/redkit-cli-err.$$ /tmp/redkit-cli-out.$$
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

# ---- Sessions: list, revoke-user, count --------------------------------------
# Sessions are planted with redis-cli in the documented layout
# (docs/sessions.md) — format 1, which is still read: the value's 15-byte
# header, then MessagePack user and attributes — under "sess:{<id>}", and
# the user's index "sess#u:<user>".
# The tool shows ids and times only: it has no token to show.
sess_plant() { # sess_plant ID USER [NAMESPACE]
    local ns=${3:-sess}
    redis-cli -u "$REDIS_URL" EVAL "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = struct.pack('>BI6I4I4', 1, now, 3600000, 0) .. cmsgpack.pack(ARGV[2], {})
redis.call('SET', KEYS[1], v, 'PX', 1800000)
redis.call('ZADD', KEYS[2], now + 3602000, ARGV[1])" 2 "$ns:{$1}" "$ns#u:$2" "$1" "$2" >/dev/null
}
sess_plant AAAAAAAAAAAAAAAAAAAAAA alice
sess_plant BBBBBBBBBBBBBBBBBBBBBA alice
sess_plant CCCCCCCCCCCCCCCCCCCCCA alice
sess_plant DDDDDDDDDDDDDDDDDDDDDA bob
expect 0 4 -- sessions count
sess_lines=$("$redkit" sessions list alice | grep -cE '^[A-Za-z0-9_-]{22} issued=[0-9T:-]+Z last_access=[0-9T:-]+Z expires=[0-9T:-]+Z deadline=[0-9T:-]+Z$')
if [ "$sess_lines" = 3 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: sessions list alice: $sess_lines lines"; fi
expect 0 3 -- sessions revoke-user alice
expect 0 "" -- sessions list alice
expect 0 0 -- sessions revoke-user alice
expect 0 1 -- sessions count
expect 0 1 -- sessions revoke-user bob
expect 0 0 -- sessions count
expect 2 "" -- sessions
expect 2 "" -- sessions list
expect 2 "" -- sessions frob x
expect 2 "" -- sessions count extra
expect 2 "" -- sessions list ""

# ---- --ns: every group works in the namespace it is given ---------------------
# (anywhere on the line, as the other global options)
sess_plant EEEEEEEEEEEEEEEEEEEEEA carol tenant
expect 0 0 -- sessions count
expect 0 1 -- --ns tenant sessions count
expect 0 1 -- sessions count --ns tenant
ns_lines=$("$redkit" sessions list carol --ns tenant | grep -c '^EEEEEEEEEEEEEEEEEEEEEA issued=')
if [ "$ns_lines" = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: sessions list --ns: $ns_lines"; fi
expect 0 0 -- sessions revoke-user carol
expect 0 1 -- sessions revoke-user carol --ns tenant
expect 0 0 -- --ns tenant sessions count
expect 2 "" -- --ns 'no space' sessions count
expect 0 "*" -- limit check ns-user minute:gcra:2:60000 --ns tenant-rl
if [ "$(redis-cli -u "$REDIS_URL" EXISTS "tenant-rl:{ns-user}:minute")" = 1 ] &&
   [ "$(redis-cli -u "$REDIS_URL" EXISTS "rl:{ns-user}:minute")" = 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: limit --ns: the limit's key is not in the namespace"; fi
expect 0 "*" -- limit check ns-user minute:gcra:2:60000 ns=tenant-rl --ns tenant-rl
expect 1 "*" -- --ns tenant-rl limit check ns-user minute:gcra:2:60000
expect 2 "" -- limit check ns-user minute:gcra:2:60000 ns=other --ns tenant-rl
expect 0 reset -- limit reset ns-user minute:gcra:2:60000 --ns tenant-rl
expect 0 "revoked rk_Test...QFvY" -- --ns tenant-keys apikey revoke "$ak"
if [ "$(redis-cli -u "$REDIS_URL" GET "tenant-keys:{$ak_hash}")" = R ] &&
   [ "$(redis-cli -u "$REDIS_URL" EXISTS "apikey:{$ak_hash}")" = 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: apikey revoke --ns"; fi
redis-cli -u "$REDIS_URL" DEL "tenant-keys:{$ak_hash}" >/dev/null
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
