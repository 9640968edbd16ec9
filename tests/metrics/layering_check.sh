#!/usr/bin/env bash
# layering_check.sh — metrics knows no module (issue: "one registry of
# module handles; metrics knows no module"). src/metrics/ may include the
# headers of the layers below the modules and its own; the public
# metrics.h may include no module header. Each module plugs in through
# src/client/registry.h instead. Exits 1 and names the offending line.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
fail=0
modules='cache|sessions|ratelimit|apikeys'
# Private headers of the module folders, by file name.
module_headers=$(cd "$root/src" && ls $(ls -d */ | grep -E "^($modules)/") 2>/dev/null | grep '\.h$' | sort -u)
for f in "$root"/src/metrics/*.c "$root"/src/metrics/*.h; do
  [ -e "$f" ] || continue
  while IFS= read -r line; do
    h=$(printf '%s' "$line" | sed -n 's/^#include "\([^"]*\)".*/\1/p')
    [ -n "$h" ] || continue
    if printf '%s\n' $module_headers | grep -qx "$h"; then
      echo "layering: ${f#$root/} includes a module's private header: $line"
      fail=1
    fi
  done < "$f"
  if grep -nE "#include <redkit/($modules)\.h>" "$f"; then
    echo "layering: ${f#$root/} includes a module's public header"
    fail=1
  fi
done
if grep -nE "#include [<\"](redkit/)?($modules)\.h[>\"]" "$root/include/redkit/metrics.h"; then
  echo "layering: include/redkit/metrics.h includes a module header"
  fail=1
fi
[ $fail -eq 0 ] && echo "layering: src/metrics/ and metrics.h include no module header"
exit $fail
