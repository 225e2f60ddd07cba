#!/usr/bin/env bash
# Makes this checkout ready to run: installs the system packages it needs
# when they are missing (Debian 12, as root), the npm dependencies, and
# builds the native addon and the TypeScript. Safe to run again; the two
# README commands run it first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# ceph-mon/ceph-osd/ceph-common run the throwaway test clusters (and give the
# rbd CLI that tests and benchmarks compare against); the -dev packages are
# what the addon compiles and links against; gdb prints the stacks of a test
# child that crashed (test/support/child.ts).
packages=(ceph-mon ceph-osd ceph-common librados-dev librbd-dev libxxhash-dev libzstd-dev libbz2-dev uuid-runtime python3 make g++ gdb)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing system packages: ${missing[*]}; run this script as root to install them"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund >&2
fi

log "building the native addon"
if [[ ! -f build/Makefile ]]; then
  npx --no-install node-gyp configure >&2
fi
npx --no-install node-gyp build >&2

log "compiling TypeScript"
npx --no-install tsc -p tsconfig.json >&2
