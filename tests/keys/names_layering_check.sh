#!/usr/bin/env bash
# names_layering_check.sh — the client and the transport do not need the
# keys layer (issue #16, item 7: "client <-> keys"). keys.c builds keys
# from a client's prefix, so it sits above the client; the client and the
# URL parser check a prefix with the name rule of src/keys/names.h, which
# depends on src/base only. This check keeps it so: no file of
# src/client/ or src/transport/ includes "keys.h", names.c includes no
# client or transport header, and no second copy of the name rule
# (a function named like rk__name_char) is defined outside names.c.
# Exits 1 and names the offending line.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
fail=0
for f in "$root"/src/client/*.[ch] "$root"/src/transport/*.[ch]; do
  [ -e "$f" ] || continue
  if grep -nE '^#include "keys\.h"' "$f"; then
    echo "layering: ${f#$root/} includes keys.h (use names.h for the name rule)"
    fail=1
  fi
done
for f in "$root"/src/keys/names.c "$root"/src/keys/names.h; do
  if grep -nE '^#include "(client|url|conn|tls|reply|registry[a-z_]*)\.h"' "$f"; then
    echo "layering: ${f#$root/} includes a client or transport header"
    fail=1
  fi
done
copies=$(grep -lE '^bool rk__name_(char|valid)\(' "$root"/src/*/*.c | grep -v '/src/keys/names\.c$' || true)
if [ -n "$copies" ]; then
  echo "layering: the name rule is defined outside src/keys/names.c: $copies"
  fail=1
fi
[ $fail -eq 0 ] && echo "layering: client and transport use src/keys/names.h only; one copy of the name rule"
exit $fail
