#!/usr/bin/env bash
# Model-checks the finalize protocol (hack/model/finalize.pml) with spin,
# exhaustively within the model's bounds, and shows that the check can fail:
# the same model without lease renewal (-DNO_RENEW) must violate "a live holder
# is never overtaken". Exits non-zero on a violation of the real model, or if
# the broken model passes. Needs spin and gcc (Debian: spin, gcc).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/bin/model"
mkdir -p "$out"
command -v spin >/dev/null || { echo "hack/model/check.sh: spin is required (apt-get install spin)" >&2; exit 1; }

# build VARIANT [spin -D flags]: generate and compile the verifier into $out/VARIANT/pan.
build() {
  local variant=$1; shift
  local dir="$out/$variant"
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$root/hack/model/finalize.pml" "$dir/"
  (cd "$dir" && spin "$@" -a finalize.pml && gcc -O2 -w -DSAFETY -DCOLLAPSE -o pan pan.c)
}

# -E: end states are checked by the model's own Quiescence assertions (a dead
# replica may stop anywhere); -w26: the state space needs a large hash table.
build lease
(cd "$out/lease" && ./pan -E -m100000 -w26 >report.txt 2>&1) || true
grep -E 'errors:|states, stored|states, matched|total actual memory|elapsed time' "$out/lease/report.txt" | sed 's/^/  lease model: /'
if ! grep -q 'errors: 0' "$out/lease/report.txt" || grep -q 'Search not completed' "$out/lease/report.txt"; then
  echo "hack/model/check.sh: the finalize model has a violation (or the search did not complete):" >&2
  grep -E 'assertion violated|error' "$out/lease/report.txt" >&2 || true
  echo "replay it with: cd $out/lease && spin -t -p -g finalize.pml" >&2
  exit 1
fi

build norenew -DNO_RENEW
(cd "$out/norenew" && ./pan -E -m100000 -w26 >report.txt 2>&1) || true
if ! grep -q 'assertion violated.*lapsed' "$out/norenew/report.txt"; then
  echo "hack/model/check.sh: without renewal the model should let a live holder be overtaken, and it did not:" >&2
  cat "$out/norenew/report.txt" >&2
  exit 1
fi
echo "  without renewal: $(grep -o 'assertion violated.*' "$out/norenew/report.txt" | cut -c1-60)… found after $(grep -Eo '[0-9]+ states, stored' "$out/norenew/report.txt")"
echo "hack/model/check.sh: finalize protocol model OK"
