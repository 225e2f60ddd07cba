#!/usr/bin/env bash
# The whole test suite: set-up, two throwaway Ceph clusters (the second for
# cross-cluster tests), node's test runner over every test, the clusters
# stopped again whatever happens, then the tests that need a cluster of their
# own (an OSD to restart) and the fault suite's bounded subset (npm run
# faults -- --ci), which start clusters of their own, one at a time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

work=$(mktemp -d /tmp/rbd-backup-test.XXXXXX)
stop_clusters() {
  bash scripts/ceph-cluster.sh stop --dir "$work/a" >&2 || true
  bash scripts/ceph-cluster.sh stop --dir "$work/b" >&2 || true
  rm -rf "$work"
}
trap stop_clusters EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_cluster() { # name memstore-bytes
  local dir=$work/$1 port
  # OSDs take their ports from 6800-7300; a monitor port there could collide.
  until port=$(free_port) && ((port < 6800 || port > 7300)); do :; done
  local out
  out=$(bash scripts/ceph-cluster.sh start --dir "$dir" --port "$port" \
    --memstore-bytes "$2" --pools rbd,backups)
  eval "$out"
  local prefix
  prefix=RBD_TEST_$(echo "$1" | tr a-z A-Z)
  export "${prefix}_DIR=$dir" "${prefix}_CONF=$CEPH_CONF" "${prefix}_KEYRING=$CEPH_KEYRING" \
    "${prefix}_MON_HOST=$CEPH_MON_HOST"
}

start_cluster a $((6 << 30))
start_cluster b $((3 << 30))

# Only *.test.js: node's runner would also run every other file under a
# directory named test (the fixtures that tests start as child processes).
# Tests under test/own-cluster start clusters of their own: they run after
# the shared clusters are stopped, so that no more than two run at once.
mapfile -t tests < <(find dist/test -name '*.test.js' -not -path 'dist/test/own-cluster/*' | sort)
status=0
node --test --test-concurrency=1 "${tests[@]}" || status=$?

# The fault suite restarts, pauses and fills OSDs: on clusters of its own,
# one at a time, so the test clusters go first.
stop_clusters
mapfile -t own < <(find dist/test/own-cluster -name '*.test.js' | sort)
node --test --test-concurrency=1 "${own[@]}" || status=$?
node dist/faults/run.js --ci || status=$?
exit "$status"
