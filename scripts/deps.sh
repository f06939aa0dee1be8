#!/usr/bin/env bash
# Installs what weft's tests (deps.sh test) or benchmarks (deps.sh bench)
# need from Debian's packages, idempotently: nothing is installed when every
# command is already there. Go modules come through `go mod download`.
set -euo pipefail
what=${1:-test}

# command -> Debian package
declare -A test_pkgs=(
  [ip]=iproute2 [tc]=iproute2 [iptables]=iptables [dig]=dnsutils
  [nsenter]=util-linux [setpriv]=util-linux [unshare]=util-linux [mount]=mount [ping]=iputils-ping [curl]=curl
  [chromium]=chromium
  [promtool]=prometheus
  [qemu-system-x86_64]=qemu-system-x86 [busybox]=busybox-static
)
declare -A bench_pkgs=(
  [iperf3]=iperf3 [haproxy]=haproxy [wrk]=wrk [nsd]=nsd [dnsperf]=dnsperf
)

missing=()
check() {
  local -n table=$1
  for cmd in "${!table[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${table[$cmd]}")
  done
}
check test_pkgs
[ "$what" = bench ] && check bench_pkgs

if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "deps: missing Debian packages: $pkgs(install them, or run as root on Debian); tests that need them will skip" >&2
  else
    echo "deps: installing $pkgs" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # nsd must not start a system-wide server on port 53 when installed,
    # nor prometheus (wanted for promtool) a server on port 9090.
    if printf '%s\n' "${missing[@]}" | grep -qxE 'nsd|prometheus'; then
      mkdir -p /usr/sbin && printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fi
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
fi

# The kernel WireGuard tests (mesh/vmtest) boot Debian's own kernel under
# qemu: the package linux-image-amd64 points at is unpacked (dpkg -x) into
# $kdir, and busybox's depmod writes its modules.dep. It is not installed:
# that would touch this machine's /boot and boot loader.
kdir=${WEFT_VM_KERNEL_DIR:-/var/cache/weft/vmkernel}
if [ "$(uname -m)" = x86_64 ] && command -v apt-cache >/dev/null && command -v busybox >/dev/null; then
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  kver=${kpkg#linux-image-}
  if [ -n "$kpkg" ] && ! { [ -e "$kdir/boot/vmlinuz-$kver" ] && [ -e "$kdir/lib/modules/$kver/modules.dep" ]; }; then
    if [ "$(id -u)" != 0 ]; then
      echo "deps: no unpacked $kpkg in $kdir (run scripts/deps.sh as root); the kernel WireGuard VM test will skip" >&2
    else
      echo "deps: unpacking $kpkg into $kdir for the kernel WireGuard VM test" >&2
      tmp=$(mktemp -d)
      (cd "$tmp" && apt-get download -qq "$kpkg" 2>/dev/null) || { apt-get update -qq >/dev/null; (cd "$tmp" && apt-get download -qq "$kpkg"); }
      rm -rf "$kdir" && mkdir -p "$kdir"
      dpkg -x "$tmp"/"$kpkg"_*.deb "$kdir"
      busybox depmod -b "$kdir" "$kver"
      rm -rf "$tmp"
    fi
  fi
fi
go mod download
# make vet's pinned linters, built once into a cached GOBIN (scripts/tool.sh).
"$(dirname "$0")"/tool.sh staticcheck >/dev/null
"$(dirname "$0")"/tool.sh deadcode >/dev/null
