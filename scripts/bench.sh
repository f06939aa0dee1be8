#!/usr/bin/env bash
# Runs every benchmark under bench/ one after the other (never two at once,
# so their figures do not overlap), then writes the one report: a table of
# figure, weft, peer, ratio, target and whether it was met, as
# bench/out/report.md and bench/out/report.json. Benches print table rows as
# `ROW {json}` lines (bench/internal/benchkit.Row) and one SUMMARY line.
#   scripts/bench.sh [-only a,b] [flags passed to every bench]
set -uo pipefail
cd "$(dirname "$0")/.."
only=""
if [ "${1:-}" = "-only" ]; then only=",$2,"; shift 2; fi
mkdir -p bench/out
collected=$(mktemp)
trap 'rm -f "$collected"' EXIT
for dir in bench/*/; do
  name=$(basename "$dir")
  [ -n "$(ls "$dir"/*.go 2>/dev/null)" ] || continue
  [ "$name" = internal ] && continue
  if [ -n "$only" ] && [[ "$only" != *",$name,"* ]]; then continue; fi
  echo "=== bench/$name"
  out=$(mktemp)
  go run "./bench/$name" "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  grep -E '^(ROW |SUMMARY)' "$out" | sed "s/^/$name\t/" >> "$collected"
  printf '%s\tEXIT %s\n' "$name" "$rc" >> "$collected"
  rm -f "$out"
done
echo
echo "=== report"
go run ./bench/internal/report -in "$collected" -out bench/out
