#!/usr/bin/env bash
# Runs every benchmark under bench/ that exists, one after the other, and
# collects their one-line summaries at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
summaries=()
for dir in bench/*/; do
  name=$(basename "$dir")
  [ -n "$(ls "$dir"/*.go 2>/dev/null)" ] || continue
  echo "=== bench/$name"
  out=$(mktemp)
  go run "./bench/$name" "$@" 2>&1 | tee "$out"
  line=$(grep -E '^SUMMARY' "$out" | tail -1)
  summaries+=("$name: ${line:-no summary (see above)}")
  rm -f "$out"
done
echo
echo "=== summaries"
printf '%s\n' "${summaries[@]}"
