#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of inputs (a count, not a
# duration: a time-based -fuzztime can end in a spurious "context deadline
# exceeded" on a loaded machine). Their seeds are in the f.Add calls and in
# each package's testdata/fuzz; a failing input is saved there by go test, to
# be committed with the fix. Usage: hack/fuzz.sh [COUNT] (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20000}
targets=(
  "./internal/session FuzzParsePartNumber"
  "./internal/session FuzzSlug"
  "./internal/session FuzzPartSizing"
  "./internal/config FuzzParseBytes"
  "./internal/config FuzzDurationsAndRates"
  "./internal/httpfile FuzzParse"
  "./webhook FuzzCORSOrigin"
  "./webhook FuzzJSONBodies"
)
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "fuzz: $pkg $name (${count} inputs)"
  go test -tags failpoints -run '^$' -fuzz "^${name}\$" -fuzztime "${count}x" "$pkg" >/tmp/fuzz-$$.log 2>&1 || {
    cat /tmp/fuzz-$$.log; rm -f /tmp/fuzz-$$.log; exit 1; }
  tail -1 /tmp/fuzz-$$.log
done
rm -f /tmp/fuzz-$$.log
