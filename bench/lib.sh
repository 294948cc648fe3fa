# Helpers shared by bench/compare.sh and bench/smoke.sh (sourced, not run): start and stop
# Switchboard nodes, the Socket.IO peer and a private redis-server, all on 127.0.0.1 and free
# ports, and stop every one of them on exit.
#
# Callers set: BENCH (the switchboard-bench binary), SERVER (the switchboard binary), WORK (a
# scratch directory). Every process started here is recorded in BENCH_PIDS and stopped by
# bench_cleanup, which the caller installs with `trap bench_cleanup EXIT INT TERM`.

BENCH_PIDS=()
# The API key every Switchboard node of a run is started with (the bench's default too).
export SWITCHBOARD_BENCH_API_KEY="${SWITCHBOARD_BENCH_API_KEY:-bench-key}"

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    bench_wait_exit "$pid" 50 || kill -KILL "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
}

# bench_wait_exit PID TENTHS: waits up to TENTHS/10 s for PID to exit; fails if it did not.
bench_wait_exit() {
  local pid=$1 n=${2:-50}
  for _ in $(seq "$n"); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$pid" 2>/dev/null
}

# bench_stop PID: stops one process started here (TERM, then KILL after 10 s).
bench_stop() {
  local pid=$1 kept=() p
  kill -TERM "$pid" 2>/dev/null || true
  bench_wait_exit "$pid" 100 || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${BENCH_PIDS[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  BENCH_PIDS=("${kept[@]}")
}

# bench_wait_line FILE TEXT PID: waits (up to 30 s) until FILE contains TEXT; fails if PID dies.
bench_wait_line() {
  local file=$1 text=$2 pid=$3
  for _ in $(seq 300); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: a server did not start; its output:" >&2
  cat "$file" "$file.err" >&2 2>/dev/null || true
  return 1
}

# start_switchboard NAME [extra serve flags...]: starts a node; sets SB_PID and SB_URL.
start_switchboard() {
  local name=$1
  shift
  local port
  port=$("$BENCH" free-port)
  mkdir -p "$WORK/$name"
  RUST_LOG=warn "$SERVER" serve --listen "127.0.0.1:$port" --tcp-listen off \
    --data-dir "$WORK/$name" --api-key "$SWITCHBOARD_BENCH_API_KEY" \
    --publish-rate 0 --frame-rate 0 --max-connections 100000 --outbound-queue 4096 \
    --http-max-connections 0 --max-connections-per-ip 0 --dm-per-min 0 --rooms-per-min 0 \
    --drain-window-ms 200 --shutdown-timeout-ms 3000 --reconnect-jitter-ms 100 \
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.out.err" &
  SB_PID=$!
  BENCH_PIDS+=("$SB_PID")
  SB_URL="http://127.0.0.1:$port"
  bench_wait_line "$WORK/$name.out" "listening on" "$SB_PID"
}

# start_socketio NAME [--redis URL]: starts the Socket.IO peer; sets SIO_PID and SIO_URL.
start_socketio() {
  local name=$1
  shift
  local port
  port=$("$BENCH" free-port)
  node "$BENCH_DIR/socketio/server.js" --port "$port" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.out.err" &
  SIO_PID=$!
  BENCH_PIDS+=("$SIO_PID")
  SIO_URL="http://127.0.0.1:$port"
  bench_wait_line "$WORK/$name.out" "listening on" "$SIO_PID"
}

# start_redis: a private redis-server on a free port (never 6379); sets REDIS_PID, REDIS_URL.
start_redis() {
  local port
  port=$("$BENCH" free-port)
  command -v redis-server >/dev/null || { echo "bench: redis-server is required" >&2; return 1; }
  mkdir -p "$WORK/redis"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis" --save "" \
    --appendonly no --daemonize no >"$WORK/redis.out" 2>&1 &
  REDIS_PID=$!
  BENCH_PIDS+=("$REDIS_PID")
  REDIS_URL="redis://127.0.0.1:$port/"
  bench_wait_line "$WORK/redis.out" "Ready to accept connections" "$REDIS_PID"
}

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
