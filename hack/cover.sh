#!/usr/bin/env bash
# Coverage of every test together: the unit, envtest and integration tests of
# each package, plus the end-to-end tests' manager and CLI processes (built
# with -cover, writing into GOCOVERDIR on a clean exit). Prints one figure per
# package and the total of the product's code: the test harness packages
# (internal/testenv/..., failpoint) and the dev tools
# under cmd/ (abuse, bench, devenv, evidence, soak) are listed but not counted in it.
# bin/cover/cover.html shows the lines.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/bin/cover
rm -rf "$out" && mkdir -p "$out/unit" "$out/e2e"
# No race detector here: coverage, not races, is what this run is for.
E2E_RACE=0 E2E_COVERDIR="$out/e2e" go test -tags failpoints -count=1 -timeout 30m \
  -cover -coverpkg=github.com/mocs-dev/upload-operator/... ./... -args -test.gocoverdir="$out/unit" >"$out/test.log" 2>&1 ||
  { tail -50 "$out/test.log"; exit 1; }
go tool covdata percent -i="$out/unit,$out/e2e" | sed 's#github.com/mocs-dev/upload-operator/##' | sort | tee "$out/packages.txt"
go tool covdata textfmt -i="$out/unit,$out/e2e" -o "$out/all.out"
harness='/(internal/(testenv|failpoint)|cmd/(abuse|bench|devenv|evidence|soak))/'
grep -vE "$harness" "$out/all.out" >"$out/cover.out"
go tool cover -html="$out/cover.out" -o "$out/cover.html"
echo "total (product code): $(go tool cover -func="$out/cover.out" | tail -1 | awk '{print $NF}') of statements;" \
  "with the test harness and dev tools: $(go tool cover -func="$out/all.out" | tail -1 | awk '{print $NF}')"
