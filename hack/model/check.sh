#!/usr/bin/env bash
# Model-checks the finalize protocol with spin (Debian: spin, gcc), and shows
# that the check can fail:
#   - each model (finalize.pml, lifecycle.pml, register.pml) is searched
#     exhaustively and must end with no error; a search cut short (pan's "max
#     search depth too small", "Search not completed", a hash table out of
#     memory) is a failure, not a pass;
#   - vacuity: for each end a model's properties speak of, a REACH_<end> build
#     claims it is never reached, and spin must refute that;
#   - mutants: each -D<MUTANT> build breaks one rule of the protocol, and spin
#     must find the violation it names.
# One line per run: model, variant, states stored, depth reached, verdict.
# The result is cached in bin/model/ by the hash of the models, this script
# and `spin -V`: an unchanged model costs nothing; a changed one is checked in
# full. FORCE=1 checks regardless.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/bin/model"
mkdir -p "$out"
command -v spin >/dev/null || { echo "hack/model/check.sh: spin is required (apt-get install spin)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "hack/model/check.sh: gcc is required" >&2; exit 1; }

key=$( (cat "$root"/hack/model/*.pml "$0"; spin -V) | sha256sum | cut -c1-16)
if [[ -z ${FORCE:-} && -f "$out/ok-$key" ]]; then
  echo "hack/model/check.sh: models unchanged since a full check ($(cat "$out/ok-$key")); cached"
  exit 0
fi

failed=0
# run MODEL VARIANT EXPECT [spin -D flags]: EXPECT is "pass" (no error, a
# complete search) or the text a violated assertion must contain.
run() {
  local model=$1 variant=$2 expect=$3; shift 3
  local dir="$out/$model-$variant" depth=${DEPTH:-1000000} hash=24
  [[ $model == finalize ]] && hash=26
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$root/hack/model/$model.pml" "$dir/"
  (cd "$dir" && spin "$@" -a "$model.pml" >spin.txt 2>&1 && gcc -O2 -w -DSAFETY -DCOLLAPSE -o pan pan.c) ||
    { echo "  $model $variant: does not build"; cat "$dir/spin.txt"; failed=1; return; }
  # -E: end states are checked by the models' own quiescence assertions.
  (cd "$dir" && ./pan -E -m$depth -w$hash >report.txt 2>&1) || true
  local r="$dir/report.txt"
  local states depth_reached verdict
  states=$(grep -Eo '[0-9]+ states, stored' "$r" | head -1 | cut -d' ' -f1)
  depth_reached=$(grep -Eo 'depth reached [0-9]+' "$r" | head -1 | cut -d' ' -f3)
  if [[ $expect == cut ]]; then
    # The check of the checker: a search bounded too tightly must be caught.
    if grep -qE 'max search depth too small|Search not completed' "$r"; then
      verdict="ok: a search cut short is reported as such"
    else
      verdict="FAILED: a depth-limited search passed as complete"
      failed=1
    fi
  elif [[ $expect == pass ]]; then
    if grep -qE 'max search depth too small|Search not completed|out of memory' "$r"; then
      verdict="FAILED: the search was cut short ($(grep -Eo 'max search depth too small|Search not completed|out of memory' "$r" | head -1))"
      failed=1
    elif grep -q 'errors: 0' "$r"; then
      verdict="ok: no violation in a complete search"
    else
      verdict="FAILED: $(grep -o 'assertion violated.*' "$r" | head -1 | cut -c1-120) (replay: cd $dir && spin -t -p -g $model.pml)"
      failed=1
    fi
  else
    # A violation ends the search early ("Search not completed"): expected here.
    local found
    found=$(grep -o 'assertion violated.*' "$r" | head -1 || true)
    if [[ -n $found && $found == *"$expect"* ]]; then
      verdict="ok: found $(grep -Eo 'at depth [0-9]+' "$r" | head -1) — ${found:0:90}"
    else
      verdict="FAILED: expected a violation of '$expect', got '${found:-none}'"
      failed=1
    fi
  fi
  printf '  %-10s %-22s %10s states  depth %5s  %s\n' "$model" "$variant" "${states:-?}" "${depth_reached:-?}" "$verdict"
}

# finalize.pml: the lease, fenced completions and the commit; parts as sets of
# acknowledged versions; deletes and expiry racing all of it.
run finalize lease pass
run finalize REACH_FINALIZED 'status!=' -DREACH_FINALIZED
run finalize REACH_EXPIRED   'status!=' -DREACH_EXPIRED
run finalize REACH_DELETED   'status!=' -DREACH_DELETED
run finalize NO_RENEW        'lapsed' -DNO_RENEW
run finalize IGNORE_ACKED    'acked[p]' -DIGNORE_ACKED
run finalize COMMIT_NO_FENCE 'completed[0]' -DCOMMIT_NO_FENCE
run finalize SKIP_ABORT      'uploadOpen' -DSKIP_ABORT

# lifecycle.pml: the finer steps of a session's end.
run lifecycle all pass
DEPTH=100 run lifecycle depth-limited cut
run lifecycle REACH_FINALIZED  'status!=' -DREACH_FINALIZED
run lifecycle REACH_EXPIRED    'status!=' -DREACH_EXPIRED
run lifecycle REACH_FAILED     'status!=' -DREACH_FAILED
run lifecycle REACH_RECOGNISED 'recognised' -DREACH_RECOGNISED   # a completion whose record failed, finalized
run lifecycle REACH_IDLE_TX    'violated 0' -DREACH_IDLE_TX     # a transaction left idle mid-commit
run lifecycle CALLER_WINDOW      'clk-lastOK[1]' -DCALLER_WINDOW
run lifecycle REPLICA_CLOCK      'takenAt'     -DREPLICA_CLOCK
run lifecycle LIST_GONE_IS_EMPTY 'missing'     -DLIST_GONE_IS_EMPTY
run lifecycle NO_PENDING_REMOVAL 'uploadOpen'  -DNO_PENDING_REMOVAL
run lifecycle NO_IDLE_TIMEOUT    '(status==3)||(status==2)' -DNO_IDLE_TIMEOUT
run lifecycle EXPIRE_ACTIVE_ONLY '(status==3)||(status==2)' -DEXPIRE_ACTIVE_ONLY

# register.pml: a part as a register.
run register all pass
run register ONE_SLOT        's3[regSlot]' -DONE_SLOT
run register NO_REGISTRATION 's3[regSlot]' -DNO_REGISTRATION
run register NO_QUARANTINE   's3[regSlot]' -DNO_QUARANTINE

if ((failed)); then
  echo "hack/model/check.sh: FAILED (reports under $out)" >&2
  exit 1
fi
date -u +%Y-%m-%dT%H:%M:%SZ >"$out/ok-$key"
echo "hack/model/check.sh: every model holds, reaches its ends, and fails for every mutant"
