# Helpers shared by bench/compare.sh and bench/smoke.sh (sourced, not run): start and stop
# Switchboard nodes, the Socket.IO peer, a private redis-server and a private Redis Cluster, all
# on 127.0.0.1 and free ports, and stop every one of them on exit.
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

# bench_port_pair: a free port p with p + 10000 (a cluster node's bus port) free too.
bench_port_pair() {
  local p
  for _ in $(seq 100); do
    p=$("$BENCH" free-port)
    if [ "$p" -lt 55000 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# start_redis_cluster: a private Redis Cluster of 6 redis-server processes (3 masters, 3
# replicas; no persistence; cluster-require-full-coverage no) on free ports, made with
# `redis-cli --cluster create`; waits until every node says cluster_state:ok and every master
# has its replica online. Sets RCLUSTER_URLS and RCLUSTER_PIDS (comma-separated); every
# process is in BENCH_PIDS, so bench_cleanup stops them even on failure; stop_redis_cluster
# stops them earlier.
start_redis_cluster() {
  local i port dir ports=() pids=() addrs=() urls=()
  command -v redis-cli >/dev/null || { echo "bench: redis-cli is required" >&2; return 1; }
  RCLUSTER_N=$((${RCLUSTER_N:-0} + 1))
  for i in 0 1 2 3 4 5; do
    port=$(bench_port_pair) || { echo "bench: no free port pair" >&2; return 1; }
    dir="$WORK/rcluster$RCLUSTER_N/n$i"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
      --daemonize no --cluster-enabled yes --cluster-require-full-coverage no \
      --cluster-node-timeout 5000 >"$dir/redis.out" 2>&1 &
    pids+=("$!")
    BENCH_PIDS+=("$!")
    ports+=("$port")
    addrs+=("127.0.0.1:$port")
    urls+=("redis://127.0.0.1:$port")
  done
  for i in 0 1 2 3 4 5; do
    bench_wait_line "$WORK/rcluster$RCLUSTER_N/n$i/redis.out" "Ready to accept connections" \
      "${pids[$i]}" || return 1
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$WORK/rcluster$RCLUSTER_N/create.out" 2>&1 ||
    { echo "bench: redis-cli --cluster create failed:" >&2; cat "$WORK/rcluster$RCLUSTER_N/create.out" >&2; return 1; }
  RCLUSTER_URLS=$(IFS=,; echo "${urls[*]}")
  RCLUSTER_PIDS=$(IFS=,; echo "${pids[*]}")
  local ok
  for _ in $(seq 300); do
    ok=1
    for port in "${ports[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
      if redis-cli -p "$port" info replication 2>/dev/null | grep -q '^role:master'; then
        redis-cli -p "$port" info replication | grep -q '^slave0:.*state=online' || ok=0
      fi
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  echo "bench: the Redis Cluster did not become ready in 30 s" >&2
  return 1
}

# stop_redis_cluster: stops the processes of the last start_redis_cluster.
stop_redis_cluster() {
  local pid
  for pid in ${RCLUSTER_PIDS//,/ }; do
    bench_stop "$pid"
  done
}

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
