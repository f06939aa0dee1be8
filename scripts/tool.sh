#!/usr/bin/env bash
# Prints the path of a pinned Go tool that `make vet` runs, installing it
# first if it is not there yet: `go install MODULE@VERSION` into a GOBIN of
# its own under the cache directory, so the tool is built once per version
# and a new pin installs beside the old one. Idempotent.
#   scripts/tool.sh staticcheck|deadcode
set -euo pipefail

# name -> module path of the command, version (pinned: bump here)
declare -A module=(
  [staticcheck]=honnef.co/go/tools/cmd/staticcheck
  [deadcode]=golang.org/x/tools/cmd/deadcode
)
declare -A version=(
  [staticcheck]=v0.8.2
  [deadcode]=v0.52.0
)

name=${1:?usage: tool.sh staticcheck|deadcode}
[ -n "${module[$name]:-}" ] || { echo "tool.sh: unknown tool $name" >&2; exit 2; }
go=${GO:-go}
cache=${WEFT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/tools}
gobin="$cache/$name@${version[$name]}"
if [ ! -x "$gobin/$name" ]; then
  mkdir -p "$gobin"
  echo "tool.sh: installing $name ${version[$name]} into $gobin" >&2
  # Outside the module, so weft's go.mod neither constrains nor records it.
  (cd "$gobin" && GOFLAGS= GOBIN="$gobin" CGO_ENABLED=0 "$go" install "${module[$name]}@${version[$name]}")
fi
echo "$gobin/$name"
