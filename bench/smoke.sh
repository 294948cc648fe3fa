#!/usr/bin/env bash
# A seconds-long smoke run of every benchmark scenario against Switchboard, so the suite never
# rots: small numbers (tens of connections, 2-second phases), `--strict` (any failed
# connection, lost delivery, error frame or server-ended session fails it), then the report
# tables. Exits non-zero on any failure. Needs redis-server for the cluster scenario.
#
#   bench/smoke.sh                              # target/debug/switchboard (built if missing)
#   bench/smoke.sh target/release/switchboard   # any switchboard binary
#
# The bench binary is taken from the same directory as the server binary, and built there
# (cargo build -p switchboard-bench, same profile) when that directory is a cargo profile
# directory of this workspace. All load stays on 127.0.0.x.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER="${1:-target/debug/switchboard}"
BIN_DIR="$(dirname "$SERVER")"
case "$(basename "$BIN_DIR")" in
  release) PROFILE=(--release) ;;
  *) PROFILE=() ;;
esac
if [ "$(cd "$BIN_DIR" 2>/dev/null && pwd)" = "$(pwd)/target/$(basename "$BIN_DIR")" ]; then
  [ -x "$SERVER" ] || cargo build --quiet "${PROFILE[@]}" -p switchboard-server
  cargo build --quiet "${PROFILE[@]}" -p switchboard-bench
fi
BENCH="${BENCH:-$BIN_DIR/switchboard-bench}"
[ -x "$SERVER" ] || { echo "smoke: no server binary at $SERVER" >&2; exit 1; }
[ -x "$BENCH" ] || { echo "smoke: no bench binary at $BENCH" >&2; exit 1; }

WORK="$(mktemp -d -t switchboard-smoke-XXXXXX)"
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'bench_cleanup; rm -rf "$WORK"' EXIT INT TERM

RESULTS="$WORK/results"
mkdir -p "$RESULTS"
# A source block of our own, so nothing from an earlier run is still in TIME_WAIT on it.
OCT=$((RANDOM % 200 + 20))
SRC="127.$OCT.0.1,127.$OCT.0.2"

run() {
  local name=$1
  shift
  echo "== smoke: $name"
  "$BENCH" "$@" --strict --json "$RESULTS/$name.json" --source-ips "$SRC"
}

start_switchboard node
COMMON=(--target "$SB_URL" --server-pid "$SB_PID")
run idle idle "${COMMON[@]}" --connections 50 --settle 0.5 --duration 0.5
run storm storm "${COMMON[@]}" --connections 100 --workers 2
run fanout fanout "${COMMON[@]}" --connections 50 --rate 20 --duration 2
run rooms rooms "${COMMON[@]}" --connections 50 --room-size 5 --rate 50 --duration 2
run dm dm "${COMMON[@]}" --connections 50 --rate 50 --duration 2 --workers 2
# One connection, 64 publishes in flight: answers in send order, seqs growing per
# conversation, every message delivered once to every subscriber (all checked by --strict).
run pipeline_room pipeline "${COMMON[@]}" --to room --room-size 10 --duration 2
run pipeline_dm pipeline "${COMMON[@]}" --to dm --connections 20 --duration 2 --workers 2
run pipeline_room_rate pipeline "${COMMON[@]}" --to room --rate 200 --duration 1
run dispatch dispatch "${COMMON[@]}" --connections 4 --duration 2
# The same workloads spoken as Socket.IO to Switchboard's /socket.io/ endpoint.
SIO=(--protocol switchboard-socketio)
run sio_idle idle "${COMMON[@]}" "${SIO[@]}" --connections 50 --settle 0.5 --duration 0.5
run sio_fanout fanout "${COMMON[@]}" "${SIO[@]}" --connections 50 --rate 20 --duration 2
run sio_dm dm "${COMMON[@]}" "${SIO[@]}" --connections 50 --rate 50 --duration 2 --workers 2
bench_stop "$SB_PID"
run floor floor --connections 50 --rate 20 --duration 1
run msg_floor_dm msg-floor --connections 50 --rate 100 --duration 1
mkdir -p "$WORK/msg-floor"
run msg_floor_rooms msg-floor --connections 50 --recipients 5 --rate 50 --duration 1 \
  --durable-dir "$WORK/msg-floor" --commit-window-us 2000

start_redis
start_switchboard node-a --redis "$REDIS_URL" --node-id smoke-a
A_URL=$SB_URL A_PID=$SB_PID
start_switchboard node-b --redis "$REDIS_URL" --node-id smoke-b
run cluster cluster --target "$A_URL" --server-pid "$A_PID" --other-target "$SB_URL" \
  --other-pid "$SB_PID" --redis-pid "$REDIS_PID" --connections 20 --idle-connections 20 \
  --rate 50 --duration 2
run dm_cluster dm --target "$A_URL" --server-pid "$A_PID" --other-target "$SB_URL" \
  --other-pid "$SB_PID" --redis-pid "$REDIS_PID" --connections 40 --rate 50 --duration 2

echo "== smoke: report"
"$BENCH" report "$RESULTS"
echo "smoke: every scenario ran"
