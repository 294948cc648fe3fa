#!/usr/bin/env bash
# Switchboard against Socket.IO v4, side by side, in one go (idle, fan-out and DMs also against
# Switchboard's own /socket.io/ endpoint, spoken as Socket.IO): builds the release binaries,
# installs the Socket.IO peer's npm packages (bench/socketio, from package-lock.json), starts a
# private redis-server on a free port, then runs every scenario against a fresh Switchboard node
# and a fresh Socket.IO process (the cluster scenario against two Switchboard nodes in cluster
# mode and two Socket.IO processes with @socket.io/redis-adapter, on that Redis; cluster_sharded
# the same on a private 6-process Redis Cluster, against the adapter's sharded variant), and prints the
# tables: every run, the ratios, the targets. Everything is stopped on exit; all load stays on
# 127.0.0.x; a full run takes about 9 minutes of scenarios once the release build is done
# (4 of them cluster_sharded's three Redis Cluster runs).
#
#   bench/compare.sh                  # full run (the figures of docs/PERFORMANCE.md)
#   QUICK=1 bench/compare.sh          # the same with small numbers (about 3 minutes)
#   ONLY="fanout cluster" bench/compare.sh  # just these scenarios (idle storm fanout rooms dm
#                                     # pipeline dispatch cluster dm_cluster cluster_sharded)
#   OUT=dir bench/compare.sh          # where the JSON reports and logs go
#                                     # (default target/bench-results/<date-time>)
#
# Sizes can be changed through the environment variables read below (IDLE_CONNS, FANOUT_SUBS,
# FANOUT_RATE, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
  : "${IDLE_CONNS:=2000}" "${STORM_CONNS:=2000}" "${FANOUT_SUBS:=1000}" "${FANOUT_RATE:=20}"
  : "${ROOMS_CONNS:=1000}" "${ROOMS_RATE:=500}" "${DM_CONNS:=1000}" "${DM_RATE:=1000}"
  : "${CLUSTER_RATE:=500}" "${DURATION:=5}" "${CLUSTER_DURATION:=5}"
  : "${FANOUT_SMALL_SUBS:=200}" "${FANOUT_SMALL_RATE:=100}" "${PIPELINE_DM_CONNS:=200}"
  : "${DM_CLUSTER_RATE:=500}"
fi
IDLE_CONNS="${IDLE_CONNS:-15000}"        # idle connections (target: ≤ 8 KiB each at 15,000)
STORM_CONNS="${STORM_CONNS:-15000}"      # connections opened as fast as possible
STORM_CONCURRENCY="${STORM_CONCURRENCY:-64}" # connects in flight per worker
FANOUT_SUBS="${FANOUT_SUBS:-10000}"      # subscribers of the one room
FANOUT_RATE="${FANOUT_RATE:-10}"         # messages/s into it (10 x 10,000 = 100,000 deliveries/s)
FANOUT_SMALL_SUBS="${FANOUT_SMALL_SUBS:-1000}"  # the same delivery rate from a smaller room
FANOUT_SMALL_RATE="${FANOUT_SMALL_RATE:-100}"
ROOMS_CONNS="${ROOMS_CONNS:-10000}"      # connections in rooms of ROOM_SIZE
ROOM_SIZE="${ROOM_SIZE:-10}"
ROOMS_RATE="${ROOMS_RATE:-2000}"         # messages/s spread over the rooms
DM_CONNS="${DM_CONNS:-10000}"            # users, one connection each
DM_RATE="${DM_RATE:-5000}"               # direct messages/s, all senders together
# msg-floor (with rooms and dm): how long its synced variant lets a message wait for others to
# share one fdatasync (5 ms: as generous as a p99 target of 10 ms allows).
MSG_FLOOR_WINDOW_US="${MSG_FLOOR_WINDOW_US:-5000}"
# dm_cluster: the dm workload on two nodes of one cluster (users split between them) on one
# Redis, against two Socket.IO processes with the redis adapter; CPU of both nodes and Redis.
DM_CLUSTER_CONNS="${DM_CLUSTER_CONNS:-$DM_CONNS}"
DM_CLUSTER_RATE="${DM_CLUSTER_RATE:-2000}"
# pipeline: ONE connection keeping PIPELINE_IN_FLIGHT publishes outstanding, to a room of
# PIPELINE_ROOM_SIZE (publisher included) and as DMs to random users among PIPELINE_DM_CONNS;
# each as fast as answered, then at PIPELINE_RATE publishes/s (the latency target's rate).
PIPELINE_IN_FLIGHT="${PIPELINE_IN_FLIGHT:-64}"
PIPELINE_ROOM_SIZE="${PIPELINE_ROOM_SIZE:-10}"
PIPELINE_DM_CONNS="${PIPELINE_DM_CONNS:-1000}"
PIPELINE_RATE="${PIPELINE_RATE:-5000}"
CLUSTER_SUBS="${CLUSTER_SUBS:-100}"      # subscribers of the busy room, on node A
CLUSTER_IDLE="${CLUSTER_IDLE:-1000}"     # connections on node B, none in that room
CLUSTER_RATE="${CLUSTER_RATE:-2000}"     # messages/s into the busy room
# The cluster windows (quiet, then traffic) are one heartbeat period long (25 s on both
# servers), so each holds exactly one round of pings on the idle node and the two compare.
CLUSTER_DURATION="${CLUSTER_DURATION:-25}"
DISPATCH_CONNS="${DISPATCH_CONNS:-64}"   # keep-alive connections on GET /v1/dispatch
DURATION="${DURATION:-15}"               # seconds of publishing / sending / requests
WORKERS="${WORKERS:-2}"                  # client processes
OUT="${OUT:-target/bench-results/$(date +%Y%m%d-%H%M%S)}"

echo "== building (release)"
cargo build --release --quiet -p switchboard-server -p switchboard-bench
SERVER=target/release/switchboard
BENCH=target/release/switchboard-bench
command -v node >/dev/null || { echo "compare: Node.js is required" >&2; exit 1; }
if [ ! -d bench/socketio/node_modules ]; then
  echo "== npm ci (bench/socketio)"
  (cd bench/socketio && npm ci --no-audit --no-fund --silent)
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$OUT/logs"
mkdir -p "$WORK"
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap bench_cleanup EXIT INT TERM

{
  echo "date: $(date -Is)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB; open files per process: $(ulimit -n)"
  echo "kernel: $(uname -r); node: $(node --version); redis: $(redis-server --version | awk '{print $3}')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine distorts the figures)"
  echo "socket.io: $(node -p 'require("./bench/socketio/node_modules/socket.io/package.json").version'); redis-adapter: $(node -p 'require("./bench/socketio/node_modules/@socket.io/redis-adapter/package.json").version')"
} | tee "$OUT/machine.txt"

# Every run gets a /24 of source addresses of its own (127.X.Y.1-4), so no 4-tuple of an
# earlier run can still be in TIME_WAIT.
OCT=$((RANDOM % 150 + 100))
RUN=0
next_srcs() {
  RUN=$((RUN + 1))
  SRCS="127.$OCT.$RUN.1,127.$OCT.$RUN.2,127.$OCT.$RUN.3,127.$OCT.$RUN.4"
}

# Other heavy work on this 2-core machine (a cargo build, say) distorts every figure: wait for
# it before starting, and note any that shows up during a run.
others() {
  ps -eo comm= | grep -cxE 'rustc|cargo|clippy-driver|cc1|cc1plus|ld|collect2' || true
}
QUIET_WAIT="${QUIET_WAIT:-600}"
for _ in $(seq "$QUIET_WAIT"); do
  [ "$(others)" = 0 ] && break
  [ "${WARNED:-}" ] || { echo "== waiting (up to ${QUIET_WAIT} s) for other builds on this machine to end"; WARNED=1; }
  sleep 1
done

# A watcher notes, every second, the run during which other builds were running.
: >"$WORK/interference"
(
  while sleep 1; do
    [ "$(others)" = 0 ] || echo "$(date +%T) $(cat "$WORK/current" 2>/dev/null)" >>"$WORK/interference"
  done
) &
BENCH_PIDS+=("$!")

# bench_run NAME SERVER_LABEL PROTOCOL URL PID SCENARIO ARGS...
bench_run() {
  local name=$1 label=$2 proto=$3 url=$4 pid=$5 scenario=$6
  shift 6
  echo "== $scenario against $label"
  echo "$name" >"$WORK/current"
  next_srcs
  "$BENCH" "$scenario" --protocol "$proto" --target "$url" --server-pid "$pid" \
    --label "$label" --workers "$WORKERS" --source-ips "$SRCS" \
    --json "$OUT/$name.json" "$@" 2>>"$WORK/bench.log" || echo "($scenario against $label reported failures; see $WORK/bench.log)"
  echo "-" >"$WORK/current"
  if grep -q " $name\$" "$WORK/interference"; then
    echo "WARNING: other builds ran during $name; its figures are distorted" | tee -a "$OUT/machine.txt"
  fi
}

# named NAME SCENARIO ARGS...: the scenario against a fresh Switchboard node, then a fresh
# Socket.IO, with reports NAME-switchboard.json and NAME-socketio.json.
named() {
  local name=$1 scenario=$2
  shift 2
  start_switchboard "sb-$name"
  bench_run "$name-switchboard" switchboard switchboard "$SB_URL" "$SB_PID" "$scenario" "$@"
  bench_stop "$SB_PID"
  start_socketio "sio-$name"
  bench_run "$name-socketio" socketio socketio "$SIO_URL" "$SIO_PID" "$scenario" "$@"
  bench_stop "$SIO_PID"
}

# three SCENARIO ARGS...: `both`, then the same Socket.IO workload against a fresh
# Switchboard node's /socket.io/ endpoint (report SCENARIO-switchboard-socketio.json).
three() {
  local scenario=$1
  both "$@"
  shift
  start_switchboard "sbsio-$scenario"
  bench_run "$scenario-switchboard-socketio" switchboard-socketio switchboard-socketio \
    "$SB_URL" "$SB_PID" "$scenario" "$@"
  bench_stop "$SB_PID"
}

# both SCENARIO ARGS...: `named` with the scenario's own name.
both() {
  named "$1" "$@"
}

# want SCENARIO: whether this run includes it (all of them unless ONLY names some).
want() {
  [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]
}

START=$(date +%s)
want idle && three idle --connections "$IDLE_CONNS"
want storm && both storm --connections "$STORM_CONNS" --connect-concurrency "$STORM_CONCURRENCY"
if want fanout; then
  # The kernel's own cost of one delivery-sized write, no server: the floor under fan-out CPU.
  echo "== floor (kernel only)"
  next_srcs
  "$BENCH" floor --connections "$FANOUT_SUBS" --rate "$FANOUT_RATE" --duration "$DURATION" \
    --source-ips "$SRCS" --json "$OUT/floor-kernel.json" 2>>"$WORK/bench.log" || true
fi
want fanout && three fanout --connections "$FANOUT_SUBS" --rate "$FANOUT_RATE" --duration "$DURATION"
# The same 100,000 deliveries/s from a smaller room and ten times the messages: the latency
# target names a delivery rate, and one message to 10,000 subscribers alone takes longer to
# write out than 10 ms on these two cores.
want fanout && named fanout_small fanout --connections "$FANOUT_SMALL_SUBS" \
  --rate "$FANOUT_SMALL_RATE" --duration "$DURATION"
# msg_floor NAME ARGS...: the `msg-floor` run (no server): the socket work of each message
# alone, then the same synced to disk in groups of up to MSG_FLOOR_WINDOW_US.
msg_floor() {
  local name=$1
  shift
  echo "== $name floor (no server: the socket work alone, then synced to disk)"
  mkdir -p "$WORK/msg-floor"
  next_srcs
  "$BENCH" msg-floor "$@" --duration "$DURATION" --source-ips "$SRCS" \
    --json "$OUT/msg-floor-$name.json" 2>>"$WORK/bench.log" || true
  next_srcs
  "$BENCH" msg-floor "$@" --duration "$DURATION" --source-ips "$SRCS" \
    --durable-dir "$WORK/msg-floor" --commit-window-us "$MSG_FLOOR_WINDOW_US" \
    --json "$OUT/msg-floor-$name-durable.json" 2>>"$WORK/bench.log" || true
}
want rooms && msg_floor rooms --connections "$ROOMS_CONNS" --recipients "$ROOM_SIZE" --rate "$ROOMS_RATE"
want rooms && both rooms --connections "$ROOMS_CONNS" --room-size "$ROOM_SIZE" --rate "$ROOMS_RATE" --duration "$DURATION"
want dm && msg_floor dm --connections "$DM_CONNS" --recipients 1 --rate "$DM_RATE"
want dm && three dm --connections "$DM_CONNS" --rate "$DM_RATE" --duration "$DURATION"
if want pipeline; then
  PIPELINE_ARGS=(--in-flight "$PIPELINE_IN_FLIGHT" --room-size "$PIPELINE_ROOM_SIZE"
    --connections "$PIPELINE_DM_CONNS" --duration "$DURATION")
  for to in room dm; do
    named "pipeline_$to" pipeline --to "$to" "${PIPELINE_ARGS[@]}"
    named "pipeline_${to}_rate" pipeline --to "$to" --rate "$PIPELINE_RATE" "${PIPELINE_ARGS[@]}"
  done
fi

# Dispatch: Switchboard only (Socket.IO has no dispatcher).
if want dispatch; then
  start_switchboard sb-dispatch
  bench_run dispatch-switchboard switchboard switchboard "$SB_URL" "$SB_PID" dispatch \
    --connections "$DISPATCH_CONNS" --duration "$DURATION"
  bench_stop "$SB_PID"
fi

# two_nodes NAME SCENARIO ARGS...: the scenario against two Switchboard nodes in cluster mode on
# a fresh private Redis, then two Socket.IO processes with @socket.io/redis-adapter on it; node A
# is the target, node B is passed as --other-target, Redis's pid as --redis-pid.
two_nodes() {
  local name=$1 scenario=$2 a_url a_pid
  shift 2
  start_redis
  start_switchboard "sb-$name-a" --redis "$REDIS_URL" --node-id "$name-a"
  a_url=$SB_URL a_pid=$SB_PID
  start_switchboard "sb-$name-b" --redis "$REDIS_URL" --node-id "$name-b"
  bench_run "$name-switchboard" switchboard-cluster switchboard "$a_url" "$a_pid" "$scenario" \
    --other-target "$SB_URL" --other-pid "$SB_PID" --redis-pid "$REDIS_PID" "$@"
  bench_stop "$a_pid"
  bench_stop "$SB_PID"
  start_socketio "sio-$name-a" --redis "$REDIS_URL"
  a_url=$SIO_URL a_pid=$SIO_PID
  start_socketio "sio-$name-b" --redis "$REDIS_URL"
  bench_run "$name-socketio" socketio-redis socketio "$a_url" "$a_pid" "$scenario" \
    --other-target "$SIO_URL" --other-pid "$SIO_PID" --redis-pid "$REDIS_PID" "$@"
  bench_stop "$a_pid"
  bench_stop "$SIO_PID"
  bench_stop "$REDIS_PID"
}

# Cluster routing cost: two nodes on one Redis; B holds connections, none in the busy room.
want cluster && two_nodes cluster cluster --connections "$CLUSTER_SUBS" \
  --idle-connections "$CLUSTER_IDLE" --rate "$CLUSTER_RATE" --duration "$CLUSTER_DURATION"

# DMs across two nodes on one Redis: Switchboard in cluster mode (each DM stored in both users'
# streams in Redis, routed to the recipient's node only) against Socket.IO with the redis
# adapter (stores nothing, every node gets every DM); the figure counts both nodes and Redis.
want dm_cluster && two_nodes dm_cluster dm --connections "$DM_CLUSTER_CONNS" \
  --rate "$DM_CLUSTER_RATE" --duration "$DURATION"

# The same cluster workload on a Redis Cluster (3 masters, 3 replicas, a fresh one per run):
# two Switchboard nodes with --redis-cluster, answering a publish once WAIT saw one replica
# (the cluster default) and again with --redis-wait-replicas 0 (the cost of replication
# apart), then two Socket.IO processes with the sharded redis adapter (SPUBLISH, stores nothing).
# Redis CPU is the sum over the cluster's six redis-server processes.
if want cluster_sharded; then
  # sharded_run NAME LABEL PROTOCOL [switchboard serve flags...]: PROTOCOL is switchboard or
  # socketio; reports NAME.json.
  sharded_run() {
    local name=$1 label=$2 proto=$3 a_url a_pid b_url b_pid
    shift 3
    echo "== Redis Cluster for $name"
    start_redis_cluster
    if [ "$proto" = switchboard ]; then
      start_switchboard "$name-a" --redis-cluster "$RCLUSTER_URLS" --node-id "$name-a" "$@"
      a_url=$SB_URL a_pid=$SB_PID
      start_switchboard "$name-b" --redis-cluster "$RCLUSTER_URLS" --node-id "$name-b" "$@"
      b_url=$SB_URL b_pid=$SB_PID
    else
      start_socketio "$name-a" --redis-cluster "$RCLUSTER_URLS"
      a_url=$SIO_URL a_pid=$SIO_PID
      start_socketio "$name-b" --redis-cluster "$RCLUSTER_URLS"
      b_url=$SIO_URL b_pid=$SIO_PID
    fi
    bench_run "$name" "$label" "$proto" "$a_url" "$a_pid" cluster --other-target "$b_url" \
      --other-pid "$b_pid" --connections "$CLUSTER_SUBS" --idle-connections "$CLUSTER_IDLE" \
      --rate "$CLUSTER_RATE" --duration "$CLUSTER_DURATION" --redis-pid "$RCLUSTER_PIDS"
    bench_stop "$a_pid"
    bench_stop "$b_pid"
    stop_redis_cluster
  }
  sharded_run cluster_sharded-switchboard switchboard-rcluster-wait1 switchboard
  sharded_run cluster_sharded-nowait-switchboard switchboard-rcluster-wait0 switchboard \
    --redis-wait-replicas 0
  sharded_run cluster_sharded-socketio socketio-sharded-adapter socketio
fi

echo
echo "== results ($(($(date +%s) - START)) s of scenarios; JSON and logs in $OUT)"
echo
"$BENCH" report "$OUT" | tee "$OUT/report.md"
