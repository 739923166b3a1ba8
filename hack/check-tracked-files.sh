#!/usr/bin/env bash
# Fails when a file tracked by git is a compiled executable (ELF, Mach-O, PE),
# is executable without being a script (#!), or is larger than 2 MiB: built
# binaries belong in bin/ (git-ignored), not in the repository. Run by
# `make lint`, with --self-test first: a repository with a planted binary and
# a planted large file must fail the check, and a clean one pass.
# Usage: hack/check-tracked-files.sh [--self-test] [DIR]
set -euo pipefail
limit=$((2 * 1024 * 1024))
allowed=() # paths allowed to break a rule, with the reason in a comment

check() {
  local dir=$1 bad=0 path size magic mode
  while IFS= read -r -d '' entry; do
    mode=${entry%% *}; path=${entry#*$'\t'}
    for a in "${allowed[@]}"; do [[ $path == "$a" ]] && continue 2; done
    [[ -f "$dir/$path" ]] || continue
    size=$(stat -c %s "$dir/$path")
    magic=$(head -c 4 "$dir/$path" | od -An -tx1 | tr -d ' \n')
    if ((size > limit)); then
      echo "  $path: $((size / 1048576)) MiB, over the 2 MiB limit"; bad=1
    elif [[ $magic == 7f454c46 || $magic == cffaedfe || $magic == cefaedfe || $magic == cafebabe || $magic == 4d5a* ]]; then
      echo "  $path: a compiled executable"; bad=1
    elif [[ $mode == 100755 && $(head -c 2 "$dir/$path") != '#!' ]]; then
      echo "  $path: executable but not a script"; bad=1
    fi
  done < <(git -C "$dir" ls-files -s -z)
  return $bad
}

if [[ ${1:-} == --self-test ]]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  git -C "$tmp" init -q && git -C "$tmp" config user.email t@t && git -C "$tmp" config user.name t
  printf '#!/bin/sh\necho ok\n' >"$tmp/run.sh" && chmod +x "$tmp/run.sh"
  echo text >"$tmp/a.txt"
  git -C "$tmp" add -A && git -C "$tmp" commit -qm clean
  check "$tmp" >/dev/null || { echo "check-tracked-files: self-test: a clean repository failed" >&2; exit 1; }
  for plant in binary large; do
    case $plant in
      binary) cp "$(type -P true)" "$tmp/tool" ;;
      large) head -c $((limit + 1)) /dev/zero >"$tmp/tool" ;;
    esac
    git -C "$tmp" add -A
    if check "$tmp" >/dev/null; then
      echo "check-tracked-files: self-test: a planted $plant file passed the check" >&2; exit 1
    fi
    git -C "$tmp" rm -q --cached tool && rm "$tmp/tool"
  done
  echo "check-tracked-files: self-test ok (a planted binary and a planted large file are caught)"
  shift
fi

dir=${1:-$(git rev-parse --show-toplevel)}
if ! out=$(check "$dir"); then
  echo "check-tracked-files: tracked files that must not be in git (remove them, extend .gitignore):" >&2
  echo "$out" >&2
  exit 1
fi
echo "check-tracked-files: no binaries or large files tracked"
