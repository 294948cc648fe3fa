#!/usr/bin/env bash
# A local Switchboard cluster in one command: a redis-server and three nodes on 127.0.0.1,
# all stopped on Ctrl-C. Nodes listen on 7710, 7720 and 7730; Redis on 6390 (not the default
# 6379, so it does not meet a Redis you already run).
#
#   ./scripts/cluster-demo.sh
#   cargo run --release -- chat --server http://127.0.0.1:7710 --user alice
#   cargo run --release -- chat --server http://127.0.0.1:7730 --user bob
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT="${REDIS_PORT:-6390}"
WORK="$(mktemp -d -t switchboard-cluster-XXXXXX)"
PIDS=()

cleanup() {
  echo
  echo "stopping the cluster"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v redis-server >/dev/null || { echo "cluster-demo: redis-server is required (apt-get install redis-server)" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/switchboard

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --save "" \
  --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

for n in 1 2 3; do
  port=$((7700 + n * 10))
  mkdir -p "$WORK/n$n"
  "$BIN" serve --node-id "n$n" --listen "127.0.0.1:$port" --tcp-listen off \
    --redis "redis://127.0.0.1:$REDIS_PORT/" --data-dir "$WORK/n$n" \
    --api-key demo-key >"$WORK/n$n.out" 2>"$WORK/n$n.log" &
  PIDS+=($!)
done
for n in 1 2 3; do
  for _ in $(seq 100); do
    grep -q "listening on" "$WORK/n$n.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$WORK/n$n.out" || { echo "node n$n did not start:"; cat "$WORK/n$n.log"; exit 1; }
done

cat <<TXT
cluster up: redis 127.0.0.1:$REDIS_PORT, nodes http://127.0.0.1:7710 7720 7730 (logs in $WORK)
try:
  cargo run --release -- chat --server http://127.0.0.1:7710 --user alice
  cargo run --release -- chat --server http://127.0.0.1:7730 --user bob
Ctrl-C stops everything.
TXT
wait
