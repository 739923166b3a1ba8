#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of inputs (a count, not a
# duration: a time-based -fuzztime can end in a spurious "context deadline
# exceeded" on a loaded machine). Their seeds are in the f.Add calls and in
# each package's testdata/fuzz; a failing input is saved there by go test, to
# be committed with the fix. Usage: hack/fuzz.sh [COUNT] (default 20000); a
# target that talks to the real services (PostgreSQL, S3) for every input runs
# a fixed, smaller count, so the whole step stays near a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20000}
targets=(
  "./internal/session FuzzParsePartNumber"
  "./internal/session FuzzSlug"
  "./internal/session FuzzPartSizing"
  "./internal/config FuzzParseBytes"
  "./internal/config FuzzDurationsAndRates"
  "./internal/config FuzzValidSettingsAreAccepted"
  "./internal/testenv/httpfile FuzzParse"
  "./webhook FuzzCORSOrigin"
  "./webhook FuzzJSONBodies"
  "./webhook FuzzValidCreateBodiesAreCreated 500"
)
for t in "${targets[@]}"; do
  read -r pkg name own <<<"$t"
  n=${own:-$count}
  ((n <= count)) || n=$count
  echo "fuzz: $pkg $name (${n} inputs)"
  go test -tags failpoints -run '^$' -fuzz "^${name}\$" -fuzztime "${n}x" "$pkg" >/tmp/fuzz-$$.log 2>&1 || {
    cat /tmp/fuzz-$$.log; rm -f /tmp/fuzz-$$.log; exit 1; }
  tail -1 /tmp/fuzz-$$.log
done
rm -f /tmp/fuzz-$$.log
