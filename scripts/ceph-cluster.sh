#!/usr/bin/env bash
# Throwaway single-node Ceph cluster (1 mon + 1 OSD on memstore or on a
# file-backed BlueStore, no mgr) for tests, benchmarks, the fault suite and
# the demo.
#
#   ceph-cluster.sh start --dir DIR --port PORT [--memstore-bytes N] [--pools p1,p2,...]
#                         [--objectstore memstore|bluestore] [--bluestore-bytes N]
#                         [--inject-delay-max SECONDS]
#   ceph-cluster.sh latency --dir DIR --pool POOL [--seconds N]
#   ceph-cluster.sh restart-osd --dir DIR [--signal TERM|KILL]
#   ceph-cluster.sh signal-osd --dir DIR --signal STOP|CONT
#   ceph-cluster.sh stop --dir DIR
#   ceph-cluster.sh create-user --dir DIR --name NAME --pool POOL
#   ceph-cluster.sh create-pool --dir DIR --pool POOL
#
# `start` prints only shell-evaluable lines on stdout:
#   CEPH_CONF=DIR/ceph.conf
#   CEPH_KEYRING=DIR/keyring
#   CEPH_MON_HOST=v2:127.0.0.1:PORT   (msgr2 spelled out: a bare address makes
#   librados also try v1, and a wrong key then ends in a timeout instead of
#   an immediate EACCES)
# Everything else (progress, errors) goes to stderr.
#
# Everything the cluster owns (conf, keys, mon/osd data, pid files, logs,
# admin sockets) lives under DIR, so several clusters can run side by side
# and `stop` can clean up by deleting DIR. Daemons are only ever killed by the
# pids recorded in DIR's own pid files, never by name, so a developer's other
# Ceph processes are never touched.
#
# Things worth knowing when using it:
# - Pick mon ports outside 6800-7300: OSDs of every cluster grab free ports
#   from that range.
# - memstore does not refuse writes past --memstore-bytes. The OSD notices a
#   few seconds later, marks itself full, and from then on writes (even
#   opening an image, which registers a watch) block until the client's
#   60 s `rados osd op timeout` and fail with ETIMEDOUT. Size it generously;
#   the data lives in RAM. memstore counts every snapshot clone at its
#   object's full size: the first small write to each object after a
#   snapshot adds a whole object (4 MiB by default) to the usage, so random
#   writes between snapshots fill it long before the data does.
# - memstore loses everything when the OSD process ends. Where a test
#   restarts the OSD (restart-osd), start it with --objectstore bluestore:
#   BlueStore on a sparse file DIR/osd.0.block of --bluestore-bytes
#   (default 4 GiB), which keeps its data across restarts.
# - --inject-delay-max S makes the cluster answer like a real one, not
#   like loopback: the OSD delays each message to a client by a random time
#   up to S seconds (Ceph's ms_inject_delay_type=client,
#   ms_inject_delay_probability=1, ms_inject_delay_max=S). Operations stay
#   concurrent (16 in flight take about as long as one), unlike
#   osd_debug_inject_dispatch_delay_*, which serialises the OSD. `latency`
#   measures what is delivered: `rados bench` writes and random reads at
#   queue depth 1 and 16, their average latency and throughput.
# - Tunables: CEPH_CLUSTER_CLI_TIMEOUT (s per CLI call, default 60),
#   CEPH_CLUSTER_START_DEADLINE (s per wait during start, default 120).
set -euo pipefail

# The caller's Ceph environment (a shell pointed at another cluster) must not
# reach anything started here: daemons and tools take CEPH_ARGS, CEPH_CONF
# and CEPH_KEYRING over what their own conf says (a daemon given another
# cluster's key fails to authenticate; ceph-authtool binds that cluster's
# admin socket). Everything below names its conf and keyring explicitly.
unset CEPH_ARGS CEPH_CONF CEPH_KEYRING

PROG=${0##*/}
# Seconds any single ceph/rbd/rados CLI call may take. No mgr runs here, so a
# command that Ceph routes to the mgr would otherwise wait forever.
CLI_TIMEOUT=${CEPH_CLUSTER_CLI_TIMEOUT:-60}
# Overall budget for the "is it up yet?" polling loops during start.
START_DEADLINE=${CEPH_CLUSTER_START_DEADLINE:-120}
# Marker written first into DIR; `stop` refuses to rm -rf a directory without
# it, so a typo in --dir can never delete unrelated data.
MARKER=.ceph-cluster-dir
HOST_BUCKET=localhost-node
# Only used to read JSON. Prefer the system python the ceph CLI itself runs
# on (ceph-common depends on it) over whatever pyenv/venv is first in PATH.
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage:
  $PROG start --dir DIR --port PORT [--memstore-bytes N] [--pools p1,p2,...]
        [--objectstore memstore|bluestore] [--bluestore-bytes N] [--inject-delay-max SECONDS]
  $PROG latency --dir DIR --pool POOL [--seconds N]
  $PROG restart-osd --dir DIR [--signal TERM|KILL]
  $PROG signal-osd --dir DIR --signal STOP|CONT
  $PROG stop --dir DIR
  $PROG create-user --dir DIR --name NAME --pool POOL
  $PROG create-pool --dir DIR --pool POOL
EOF
  exit 2
}

# --- argument parsing ------------------------------------------------------

DIR='' PORT='' SIGNAL='' MEMSTORE_BYTES=2147483648 POOLS='' NAME='' POOL='' OBJECTSTORE=memstore BLUESTORE_BYTES=4294967296
INJECT_DELAY_MAX=0 SECONDS_EACH=5

parse_args() {
  while (($#)); do
    case $1 in
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --port) PORT=${2:?--port needs a value}; shift 2 ;;
      --memstore-bytes) MEMSTORE_BYTES=${2:?--memstore-bytes needs a value}; shift 2 ;;
      --pools) POOLS=${2?--pools needs a value}; shift 2 ;;
      --objectstore) OBJECTSTORE=${2:?--objectstore needs a value}; shift 2 ;;
      --bluestore-bytes) BLUESTORE_BYTES=${2:?--bluestore-bytes needs a value}; shift 2 ;;
      --signal) SIGNAL=${2:?--signal needs a value}; shift 2 ;;
      --name) NAME=${2:?--name needs a value}; shift 2 ;;
      --pool) POOL=${2:?--pool needs a value}; shift 2 ;;
      --inject-delay-max) INJECT_DELAY_MAX=${2:?--inject-delay-max needs a value}; shift 2 ;;
      --seconds) SECONDS_EACH=${2:?--seconds needs a value}; shift 2 ;;
      -h|--help) usage ;;
      *) log "unknown argument: $1"; usage ;;
    esac
  done
  [[ -n $DIR ]] || { log "--dir is required"; usage; }
  # Absolute, normalised path: it is baked into ceph.conf and the printed
  # env lines, which callers use from other working directories.
  DIR=$(realpath -m -- "$DIR")
  [[ $DIR != / ]] || die "refusing to use / as the cluster dir"
  # DIR ends up unquoted in ceph.conf and inside a comma-separated keyring
  # list, where whitespace, commas and '$' would be misparsed.
  [[ $DIR != *[[:space:],\$\;\#]* ]] || die "--dir must not contain whitespace, ',', '\$', ';' or '#': $DIR"
  CONF=$DIR/ceph.conf
  KEYRING=$DIR/keyring
}

# --- CLI wrappers ----------------------------------------------------------
# Every client call names this cluster's conf and admin keyring explicitly
# and is bounded by `timeout`, because librados
# otherwise retries unreachable mons/OSDs forever. -k: follow up with KILL if
# the tool ignores TERM while stuck in a C++ wait.

ceph_cli() {
  timeout -k 5 "$CLI_TIMEOUT" \
    ceph --conf "$CONF" --keyring "$KEYRING" --name client.admin \
    --connect-timeout "$CLI_TIMEOUT" "$@" </dev/null
}
rbd_cli() {
  timeout -k 5 "$CLI_TIMEOUT" \
    rbd --conf "$CONF" --keyring "$KEYRING" --id admin "$@" </dev/null
}

require_tools() {
  local missing=() t
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  ((${#missing[@]} == 0)) || die "missing Ceph tools: ${missing[*]} (install the Debian packages ceph-mon ceph-osd ceph-common uuid-runtime, e.g. via the project's install script)"
}

require_cluster() {
  [[ -f $CONF && -f $KEYRING ]] || die "no cluster in $DIR (missing ceph.conf or keyring)"
}

# --- daemon management -----------------------------------------------------

# Starts a daemon in the foreground mode (-f) in the background of this shell.
# stdin from /dev/null and stdout/stderr into a file in DIR: the daemon must
# never hold the caller's pipes open (a test runner reading our stdout would
# otherwise wait for the daemon to exit). setsid detaches it from the
# caller's terminal/process group so Ctrl-C in the caller does not kill the
# cluster behind `stop`'s back. In a non-interactive shell the background
# child is never a process-group leader, so setsid execs in place and $! is
# the daemon's real pid; we record it ourselves because the daemon writes its
# own pid file only once it is well into startup.
launch_daemon() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$DIR/log/$name.stdout" 2>&1 &
  echo $! >"$DIR/run/$name.launch.pid"
}

# A pid file can outlive its process and the pid can be reused by something
# unrelated, so only treat a pid as ours if its command line names this
# cluster's ceph.conf (every daemon is launched with --conf DIR/ceph.conf).
pid_is_ours() {
  local pid=$1 cmdline
  cmdline=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ $cmdline == *" $CONF "* || $cmdline == *" $CONF" ]]
}

# TERMs one daemon and waits ~10 s for it, then KILLs it.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    pid_is_ours "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid did not exit after TERM, sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_is_ours "$pid" || return 0
    sleep 0.1
  done
  log "warning: pid $pid still alive after KILL"
}

# OSDs before the mon: on TERM an OSD tells the mon it is going down and
# waits up to 5 s (osd_mon_shutdown_timeout) for the ack, so killing the mon
# first (or both at once) makes every stop take 5 s longer.
kill_cluster_daemons() {
  local pid f seen=" "
  shopt -s nullglob
  local files=("$DIR"/run/osd.*.pid "$DIR"/run/mon.*.pid "$DIR"/run/*.pid)
  shopt -u nullglob
  for f in "${files[@]}"; do
    { read -r pid <"$f"; } 2>/dev/null || continue
    [[ $pid =~ ^[0-9]+$ && $seen != *" $pid "* ]] || continue
    seen+="$pid "
    pid_is_ours "$pid" || continue
    log "stopping pid $pid (${f##*/})"
    stop_pid "$pid"
  done
}

remove_dir() {
  [[ -d $DIR ]] || return 0
  if [[ ! -e $DIR/$MARKER ]]; then
    # Only an empty dir is safe to remove without our marker.
    rmdir -- "$DIR" 2>/dev/null || log "warning: $DIR is not a ceph-cluster.sh dir; not removing it"
    return 0
  fi
  rm -rf -- "$DIR"
}

# *.stdout holds what a daemon printed before/besides its log (mkfs errors,
# bind failures, asserts), *.log the daemon log proper.
dump_logs() {
  local f
  shopt -s nullglob
  for f in "$DIR"/log/*.stdout "$DIR"/log/*.log; do
    [[ -s $f ]] || continue
    log "----- last lines of $f -----"
    grep -v '^[[:space:]]*$' -- "$f" | tail -n 25 >&2 || true
  done
  shopt -u nullglob
}

# Fails fast (instead of after the mon's 3 x 5 s bind retries) when
# something already listens on the port, e.g. a cluster that was never
# stopped.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- start -----------------------------------------------------------------

STARTED=0
on_start_exit() {
  local rc=$?
  ((rc != 0 && STARTED == 0)) || return 0
  log "start failed (exit $rc); cleaning up $DIR"
  dump_logs
  kill_cluster_daemons
  remove_dir
  exit "$rc"
}

# Polls "$@" every 0.5 s until it succeeds or the deadline passes.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + START_DEADLINE))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${START_DEADLINE}s waiting for $what"
    # A daemon that died will never satisfy the condition: fail fast.
    local n
    for n in mon.a osd.0; do
      [[ -f $DIR/run/$n.launch.pid ]] || continue
      pid_is_ours "$(<"$DIR/run/$n.launch.pid")" || die "$n exited while waiting for $what"
    done
    sleep 0.5
  done
}

mon_responds() { CLI_TIMEOUT=10 ceph_cli mon stat; }

osd_up_and_in() {
  local out
  out=$(CLI_TIMEOUT=10 ceph_cli osd dump --format json) || return 1
  "$PYTHON" - "$out" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
ok = any(o["osd"] == 0 and o["up"] == 1 and o["in"] == 1 for o in d["osds"])
sys.exit(0 if ok else 1)
EOF
}

# The OSD's store: memstore (RAM, the default) or BlueStore on a sparse
# file, for tests that restart the OSD and need its data back.
objectstore_conf() {
  if [[ $OBJECTSTORE == memstore ]]; then
    printf 'osd objectstore = memstore\nmemstore device bytes = %s\n' "$MEMSTORE_BYTES"
    return
  fi
  cat <<EOF
osd objectstore = bluestore
# One sparse file holds data, RocksDB and its WAL; mkfs creates it (outside
# osd data, where mkfs links it in as osd data/block).
bluestore block path = $DIR/osd.\$id.block
bluestore block create = true
bluestore block size = $BLUESTORE_BYTES
bluestore block db create = false
bluestore block wal create = false
# A 2-core machine shared with other clusters: a small fixed cache instead
# of the 4 GiB memory target, and no fsck at mount.
bluestore cache autotune = false
bluestore cache size = 268435456
osd memory target = 939524096
bluestore fsck on mount = false
EOF
}

write_conf() {
  cat >"$CONF" <<EOF
# Generated by $PROG for a throwaway test cluster. Do not reuse.
[global]
fsid = $FSID
# The mon speaks msgr2 only, on PORT. Spelled out as v2 here so tools using
# this file go straight to it; a client given the bare "127.0.0.1:PORT" (as
# printed by start) also works: for a port that is neither 3300 nor 6789
# librados tries v2 and v1 on it in parallel and keeps the one that answers.
mon host = [v2:127.0.0.1:$PORT]
# Admin keyring for everyone, but a client.NAME made by create-user finds its
# own DIR/client.NAME.keyring first (first existing file in the list wins).
keyring = $DIR/\$name.keyring,$KEYRING

auth cluster required = cephx
auth service required = cephx
auth client required = cephx

# Clients must never hang forever on a sick cluster.
rados osd op timeout = 60
rados mon op timeout = 60
client mount timeout = 30

# Keep all runtime state inside DIR (nothing in /var/run, /var/log,
# /var/lib/ceph), so clusters never collide and rm -rf DIR cleans up.
run dir = $DIR/run
crash dir = $DIR/crash

# One OSD: size-1 pools, and CRUSH must pick OSDs, not hosts.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
mon allow pool delete = true
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon warn on pool no redundancy = false
# A PG's read lease is renewed by its peers; with one OSD there are none,
# so after the OSD was stopped (the fault suite's SIGSTOP) its reads wait
# out the whole lease (0.8 x the 20 s heartbeat grace) while writes go on.
osd pool default read lease ratio = 0.05
mon warn on insecure global id reclaim allowed = false

[mon]
mon data = $DIR/mon.\$id
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
# The mon shuts itself down when its disk is nearly full (default 5% free);
# a throwaway cluster on a busy CI disk should not die for that.
mon data avail crit = 0
mon data avail warn = 1
# Every osdmap change (osd create, crush add, pool create, every RBD
# snapshot's id) waits for a paxos proposal; the 1 s default makes start
# ~4x slower and each snapshot ~100 ms for nothing on a one-mon cluster.
paxos propose interval = 0.01
paxos min wait = 0.01

[osd]
# Loopback only; the OSD picks free ports in ms_bind_port_min..max
# (6800-7300) itself, so several clusters' OSDs never collide (keep mon
# ports outside that range).
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd data = $DIR/osd.\$id
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
$(objectstore_conf)
# We place the OSD in CRUSH ourselves; don't let it move itself on boot.
osd crush update on start = false
# The fault suite marks the OSD down again and again; by default an OSD
# marked down 5 times in 10 minutes shuts itself down for good.
osd max markdown count = 1000
$(delay_conf)
EOF
}

# The per-message delay of --inject-delay-max, on the OSD's messages to clients.
delay_conf() {
  [[ $INJECT_DELAY_MAX != 0 ]] || return 0
  printf '%s\n' '# Real-cluster latency (--inject-delay-max): each message to a client waits' \
    '# a random time up to the maximum; operations stay concurrent.' \
    'ms inject delay type = client' 'ms inject delay probability = 1' \
    "ms inject delay max = $INJECT_DELAY_MAX"
}

cmd_start() {
  [[ -n $PORT ]] || { log "--port is required"; usage; }
  if ! [[ $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then die "bad --port: $PORT"; fi
  [[ $MEMSTORE_BYTES =~ ^[0-9]+$ ]] || die "bad --memstore-bytes: $MEMSTORE_BYTES"
  [[ $OBJECTSTORE == memstore || $OBJECTSTORE == bluestore ]] || die "bad --objectstore: $OBJECTSTORE (memstore or bluestore)"
  [[ $BLUESTORE_BYTES =~ ^[0-9]+$ ]] || die "bad --bluestore-bytes: $BLUESTORE_BYTES"
  [[ $INJECT_DELAY_MAX =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad --inject-delay-max: $INJECT_DELAY_MAX (seconds, e.g. 0.002)"
  require_tools ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd uuidgen timeout setsid
  ! port_in_use "$PORT" || die "127.0.0.1:$PORT is already in use (another cluster still running?)"

  # A cluster dir that already has content is either a running cluster or
  # someone's data: never touch it (and never remove it on failure).
  if [[ -e $DIR ]]; then
    [[ -d $DIR ]] || die "$DIR exists and is not a directory"
    [[ -z $(ls -A -- "$DIR") ]] || die "$DIR already exists and is not empty (stop the old cluster first)"
  fi
  mkdir -p -- "$DIR"
  : >"$DIR/$MARKER"
  trap on_start_exit EXIT
  # A caller's Ctrl-C or timeout must still tear down the half-made cluster.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  mkdir -p "$DIR"/{run,log,crash,mon.a,osd.0}

  local t0=$SECONDS
  FSID=$(uuidgen)
  local osd_uuid
  osd_uuid=$(uuidgen)
  write_conf

  log "creating keys"
  # mon., client.admin and osd.0 all go into one keyring before mkfs: the
  # mon imports every entry (with caps) into its auth database at mkfs time,
  # so the OSD can authenticate without a separate bootstrap step.
  ceph-authtool --create-keyring "$KEYRING" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$KEYRING" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  chmod 600 "$KEYRING"

  log "creating monitor at v2:127.0.0.1:$PORT"
  # msgr2 only, not v1: clients given the ambiguous bare 127.0.0.1:PORT try
  # both protocols, and a v2 client hitting a v1-only mon logs a scary
  # "_handle_peer_banner ... is using msgr V1 protocol" error on every
  # connect, while a v1 attempt against a v2 mon fails silently.
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" "$DIR/monmap" >/dev/null 2>&1 ||
    die "monmaptool failed"
  ceph-mon --conf "$CONF" --cluster ceph -i a --mkfs --monmap "$DIR/monmap" --keyring "$KEYRING" \
    </dev/null >>"$DIR/log/mon.a.stdout" 2>&1 || die "ceph-mon --mkfs failed"
  launch_daemon mon.a ceph-mon --conf "$CONF" -i a -f
  wait_for "the monitor to answer" mon_responds
  log "monitor up after $((SECONDS - t0))s"

  if [[ $OBJECTSTORE == memstore ]]; then
    log "creating osd.0 (memstore, $MEMSTORE_BYTES bytes)"
  else
    log "creating osd.0 (bluestore on a file, $BLUESTORE_BYTES bytes)"
  fi
  local id
  id=$(ceph_cli osd create "$osd_uuid")
  [[ $id == 0 ]] || die "expected osd id 0, got '$id'"
  ceph-osd --conf "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" --keyring "$KEYRING" \
    </dev/null >>"$DIR/log/osd.0.stdout" 2>&1 || die "ceph-osd --mkfs failed"
  # One command creates the host bucket under root=default and puts osd.0
  # in it; each osdmap change costs a paxos round, so fewer is faster.
  ceph_cli osd crush add osd.0 1.0 host="$HOST_BUCKET" root=default >&2
  launch_daemon osd.0 ceph-osd --conf "$CONF" -i 0 -f
  wait_for "osd.0 to be up and in" osd_up_and_in
  log "osd.0 up after $((SECONDS - t0))s"

  local p
  IFS=, read -ra pools <<<"$POOLS"
  for p in "${pools[@]}"; do
    [[ -n $p ]] || continue
    create_pool "$p"
  done

  STARTED=1
  trap - EXIT INT TERM HUP
  log "cluster ready in $((SECONDS - t0))s"
  printf 'CEPH_CONF=%s\nCEPH_KEYRING=%s\nCEPH_MON_HOST=%s\n' "$CONF" "$KEYRING" "v2:127.0.0.1:$PORT"
}

# --- pools and users -------------------------------------------------------

create_pool() {
  local pool=$1
  log "creating pool $pool"
  ceph_cli osd pool create "$pool" 8 8 replicated >&2 || die "could not create pool $pool"
  rbd_cli pool init "$pool" >&2 || die "rbd pool init $pool failed"
  wait_for "all PGs of pool $pool to be active" pool_pgs_active "$pool"
}

# `ceph pg stat`/`pg dump`/`osd pool stats` are served by the mgr in
# pacific, and there is no mgr, so ask the OSD itself over its admin socket:
# dump_pgstate_history lists every PG it hosts with its current state.
pool_pgs_active() {
  local pool=$1 osdmap pgs
  osdmap=$(CLI_TIMEOUT=10 ceph_cli osd dump --format json) || return 1
  pgs=$(timeout -k 2 10 ceph --conf "$CONF" --admin-daemon "$DIR/run/osd.0.asok" \
    dump_pgstate_history </dev/null) || return 1
  "$PYTHON" - "$pool" "$osdmap" "$pgs" <<'EOF'
import json, sys
name, osdmap, pgs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pool = next(p for p in osdmap["pools"] if p["pool_name"] == name)
state = {p["pg"]: p.get("currently", "") for p in pgs["pgs"]}
want = ["%d.%x" % (pool["pool"], i) for i in range(pool["pg_num"])]
sys.exit(0 if all("/Active" in state.get(pg, "") for pg in want) else 1)
EOF
}

cmd_create_pool() {
  [[ -n $POOL ]] || { log "--pool is required"; usage; }
  require_tools ceph rbd timeout
  require_cluster
  create_pool "$POOL"
}

cmd_create_user() {
  [[ -n $NAME ]] || { log "--name is required"; usage; }
  [[ -n $POOL ]] || { log "--pool is required"; usage; }
  require_tools ceph timeout
  require_cluster
  local out=$DIR/client.$NAME.keyring
  ceph_cli auth get-or-create "client.$NAME" mon 'profile rbd' osd "profile rbd pool=$POOL" \
    -o "$out" >&2 || die "could not create client.$NAME"
  chmod 600 "$out"
  echo "$out"
}

# The OSD's pid, from its pid files, only if it is this cluster's.
osd_pid() {
  local f pid
  for f in "$DIR/run/osd.0.pid" "$DIR/run/osd.0.launch.pid"; do
    { read -r pid <"$f"; } 2>/dev/null || continue
    [[ $pid =~ ^[0-9]+$ ]] && pid_is_ours "$pid" && { echo "$pid"; return 0; }
  done
  return 1
}

osd_active() {
  timeout -k 2 10 ceph --conf "$CONF" --admin-daemon "$DIR/run/osd.0.asok" status </dev/null 2>/dev/null |
    grep -q '"state": "active"'
}

# Ends the OSD (--signal TERM, a clean restart, or KILL, a crash) and starts
# it again; returns once it serves I/O. Meant for --objectstore bluestore:
# a memstore OSD comes back empty.
cmd_restart_osd() {
  require_cluster
  local pid i
  pid=$(osd_pid) || die "osd.0 of $DIR is not running"
  log "restarting osd.0 (pid $pid, SIG$SIGNAL)"
  kill -"$SIGNAL" "$pid"
  for ((i = 0; i < 300; i++)); do
    pid_is_ours "$pid" || break
    sleep 0.1
  done
  ! pid_is_ours "$pid" || die "osd.0 (pid $pid) did not exit after SIG$SIGNAL"
  rm -f "$DIR/run/osd.0.pid"
  launch_daemon osd.0 ceph-osd --conf "$CONF" -i 0 -f
  wait_for "osd.0 to be active again" osd_active
  wait_for "osd.0 to be up and in" osd_up_and_in
}

# Pauses (SIGSTOP) or resumes (SIGCONT) the OSD: it keeps its connections
# but answers nothing meanwhile.
cmd_signal_osd() {
  require_cluster
  local pid
  pid=$(osd_pid) || die "osd.0 of $DIR is not running"
  kill -"$SIGNAL" "$pid"
}

cmd_stop() {
  kill_cluster_daemons
  remove_dir
}

rados_cli() {
  timeout -k 5 "$((CLI_TIMEOUT + SECONDS_EACH))" \
    rados --conf "$CONF" --keyring "$KEYRING" --id admin "$@" </dev/null
}

# One `rados bench` run; prints "<average latency ms> <MB/s>" from its summary.
bench_once() {
  local out
  out=$(rados_cli -p "$POOL" bench "$@" 2>&1) || { log "rados bench $*: $out"; return 1; }
  awk '/^Average Latency\(s\):/ { lat = $3 * 1000 } /^Bandwidth \(MB\/sec\):/ { bw = $3 }
       END { if (lat == "") exit 1; printf "%.2f %.1f\n", lat, bw }' <<<"$out"
}

# What the cluster delivers: 4 KiB writes, then random reads of them, at
# queue depth 1 and 16 (stdout: one line each).
cmd_latency() {
  [[ -n $POOL ]] || { log "--pool is required"; usage; }
  [[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || die "bad --seconds: $SECONDS_EACH"
  require_tools rados timeout
  require_cluster
  local depth result latency mbs
  for depth in 1 16; do
    result=$(bench_once "$SECONDS_EACH" write -t "$depth" -b 4096 --no-cleanup --run-name "latency-$depth") ||
      die "rados bench write failed"
    read -r latency mbs <<<"$result"
    printf 'write qd%-2s avg latency %s ms, %s MB/s\n' "$depth" "$latency" "$mbs"
    result=$(bench_once "$SECONDS_EACH" rand -t "$depth" --run-name "latency-$depth") || die "rados bench rand failed"
    read -r latency mbs <<<"$result"
    printf 'read  qd%-2s avg latency %s ms, %s MB/s\n' "$depth" "$latency" "$mbs"
    rados_cli -p "$POOL" cleanup --run-name "latency-$depth" >/dev/null 2>&1 || log "rados cleanup of latency-$depth failed"
  done
}

(($# >= 1)) || usage
cmd=$1; shift
case $cmd in
  start) parse_args "$@"; cmd_start ;;
  stop) parse_args "$@"; cmd_stop ;;
  create-user) parse_args "$@"; cmd_create_user ;;
  create-pool) parse_args "$@"; cmd_create_pool ;;
  latency) parse_args "$@"; cmd_latency ;;
  restart-osd)
    parse_args "$@"; SIGNAL=${SIGNAL:-TERM}
    [[ $SIGNAL == TERM || $SIGNAL == KILL ]] || die "restart-osd: --signal TERM or KILL"
    cmd_restart_osd ;;
  signal-osd)
    parse_args "$@"
    [[ $SIGNAL == STOP || $SIGNAL == CONT ]] || die "signal-osd: --signal STOP or CONT"
    cmd_signal_osd ;;
  -h|--help|help) usage ;;
  *) log "unknown command: $cmd"; usage ;;
esac
