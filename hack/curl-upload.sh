#!/usr/bin/env bash
# Uploads files to a running `make dev` with nothing but curl, in 5 MiB parts,
# and finalizes them into a MOC. Usage: hack/curl-upload.sh "Title" FILE...
# Shows the whole HTTP flow a service follows (see docs/api.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bin/dev/env"
title=$1; shift
part=$((5 * 1024 * 1024))
auth=(-H "Authorization: Bearer $DEV_USER_TOKEN")

ctype() { case "$1" in *.pdf) echo application/pdf;; *.png) echo image/png;; *.jpg|*.jpeg) echo image/jpeg;;
  *.zip) echo application/zip;; *.io) echo application/x-studio;; *.ldr|*.mpd) echo application/x-ldraw;;
  *) echo application/octet-stream;; esac; }

files=$(for f in "$@"; do printf '{"name":"%s","contentType":"%s","sizeBytes":%d}\n' \
  "$(basename "$f")" "$(ctype "$f")" "$(stat -c %s "$f")"; done | paste -sd, -)
session=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' \
  -d "{\"files\":[$files],\"partSizeBytes\":$part}" "$UPLOAD_API/api/mocs/uploads/sessions")
sid=$(sed -E 's/.*"sessionId":"([^"]+)".*/\1/' <<<"$session")
echo "session $sid" >&2
i=0
for f in "$@"; do
  fid=$(grep -o '"fileId":"[^"]*"' <<<"$session" | sed -n "$((i + 1))p" | cut -d'"' -f4)
  size=$(stat -c %s "$f"); n=$(( (size + part - 1) / part ))
  for p in $(seq 1 "$n"); do
    dd if="$f" bs=$part skip=$((p - 1)) count=1 status=none |
      curl -sf "${auth[@]}" -X PUT --data-binary @- \
        "$UPLOAD_API/api/mocs/uploads/sessions/$sid/files/$fid/parts/$p" >/dev/null
    echo "  $(basename "$f"): part $p/$n" >&2
  done
  i=$((i + 1))
done
curl -s "${auth[@]}" -H 'Content-Type: application/json' -w '\nHTTP %{http_code}\n' \
  -d "{\"uploadSessionId\":\"$sid\",\"title\":\"$title\"}" "$UPLOAD_API/api/mocs/uploads/finalize"
