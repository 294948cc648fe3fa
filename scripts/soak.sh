#!/usr/bin/env bash
# The chaos soak (issue 17): a Redis and three nodes on 127.0.0.1, many Rust SDK clients
# (switchboard-soak: WebSocket, long-poll and TCP in turn, in rooms and direct messages), and
# chaos while they talk: a random gateway SIGKILLed and restarted every 30 s, one drained
# (SIGTERM: reconnect frames, then exit) and restarted every 2 minutes, Redis SIGKILLed and
# restarted every 5 minutes. Then publishing stops, every acknowledged message must reach every
# recipient, and the figures are printed as `name: value` lines. Exits non-zero when a message
# was lost, duplicated or out of order, or (see below) a node's memory grew. See docs/SECURITY.md.
#
#   scripts/soak.sh                  # 10 minutes, 1,000 clients, release build
#   scripts/soak.sh --minutes 60     # the hour-long soak
#   scripts/soak.sh --minutes 1 --clients 60 --kill-every 15 --drain-every 30 --redis-every 45 \
#       --bin-dir target/debug       # what scripts/test.sh runs
#
# Options (defaults in brackets):
#   --minutes N        publishing time [10]
#   --clients N        SDK clients [1000]
#   --rate N           messages per second over all clients, 30% direct messages [50]
#   --kill-every S     SIGKILL + restart of a random killable node every S seconds [30]
#   --drain-every S    SIGTERM drain + restart of a killable node every S seconds [120]
#   --redis-every S    SIGKILL + restart of Redis (same port and directory) every S seconds [300]
#   --settle S         longest wait after publishing for everything to arrive [90]
#   --bin-dir DIR      where `switchboard` and `switchboard-soak` are [build target/release]
#   --rss-check / --no-rss-check
#                      fail when the witness node's RSS trend exceeds 10% [on from 10 minutes]
#   --logs DIR         keep the nodes', Redis's and the clients' logs in DIR
#
# Memory (RSS): n1 and n2 take the kills and drains; n3 is the witness, never killed nor
# drained, so it lives the whole run. It is also the one dispatcher with `--rebalance-band 0.1`,
# which moves clients back onto restarted gateways, though not enough to even them out: the
# witness collects the clients that flee the others. Its RSS and connections are read after a
# warm-up (a twelfth of the run, 10 s at least, just before a kill), every 10 s, and at the
# end, after a quiet last sixth of the run (30 s at most) and the settle, with the clients still
# connected. Printed: `rss_witness_growth_pct` (end against start), and a least-squares fit of
# RSS = a + b * connections + c * time: `rss_witness_per_connection_kb` (b) and
# `rss_witness_trend_pct` (c over the sampled time, against the start RSS: growth the
# connections do not explain, which is what a leak looks like). The check fails when the trend
# exceeds 10%. n1's and n2's RSS at the start and end are printed too, but they are different
# processes by then (restarted every few kills), so they are information, not a check.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=10 CLIENTS=1000 RATE=50 KILL_EVERY=30 DRAIN_EVERY=120 REDIS_EVERY=300 SETTLE=90
BIN_DIR="" RSS_CHECK="" LOGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --kill-every) KILL_EVERY="$2"; shift 2 ;;
    --drain-every) DRAIN_EVERY="$2"; shift 2 ;;
    --redis-every) REDIS_EVERY="$2"; shift 2 ;;
    --settle) SETTLE="$2"; shift 2 ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --rss-check) RSS_CHECK=1; shift ;;
    --no-rss-check) RSS_CHECK=0; shift ;;
    --logs) LOGS="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
DURATION=$((MINUTES * 60))
[ -n "$RSS_CHECK" ] || { [ "$MINUTES" -ge 10 ] && RSS_CHECK=1 || RSS_CHECK=0; }
WARMUP=$((DURATION / 12)); [ "$WARMUP" -ge 10 ] || WARMUP=10

command -v redis-server >/dev/null || { echo "soak: redis-server is required (apt-get install redis-server)" >&2; exit 1; }
if [ -z "$BIN_DIR" ]; then
  cargo build --release --quiet -p switchboard-server -p switchboard-soak
  BIN_DIR=target/release
fi
SB="$BIN_DIR/switchboard"
SOAK="$BIN_DIR/switchboard-soak"
[ -x "$SB" ] && [ -x "$SOAK" ] || { echo "soak: $SB and $SOAK are needed" >&2; exit 1; }

WORK="$(mktemp -d -t switchboard-soak-XXXXXX)"
KEY="soak-key-$$"
declare -a NODE_PID HTTP TCP
REDIS_PID="" CLIENT_PID="" TAIL_PID=""
KILLS=0 DRAINS=0 DRAINS_FORCED=0 REDIS_RESTARTS=0

cleanup() {
  local pids=()
  for pid in "$CLIENT_PID" "${NODE_PID[@]:-}" "$REDIS_PID" "$TAIL_PID"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null && pids+=("$pid")
  done
  # Only what was just killed: waiting on every child could hang on something unknown.
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$LOGS" ]; then mkdir -p "$LOGS" && cp -r "$WORK"/*.log "$WORK"/*.out "$LOGS"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "soak: $(date +%H:%M:%S) $*" >&2; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Live connections on node n (its /v1/server/stats), to read its RSS against.
conns() {
  curl -s -m 2 -H "x-api-key: $KEY" "http://127.0.0.1:${HTTP[$1]}/v1/server/stats" |
    sed -n 's/.*"connections":\([0-9]*\).*/\1/p'
}

mapfile -t PORTS < <("$SOAK" ports 7)
REDIS_PORT="${PORTS[0]}"
HTTP=("" "${PORTS[1]}" "${PORTS[2]}" "${PORTS[3]}")
TCP=("" "${PORTS[4]}" "${PORTS[5]}" "${PORTS[6]}")
NODE_PID=("" "" "" "")

start_redis() {
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save "" \
    --appendonly yes --appendfsync always --protected-mode no --daemonize no \
    >>"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "soak: redis did not start" >&2; tail "$WORK/redis.log" >&2; exit 1
}

start_node() {
  local n=$1
  # The witness (n3), never killed, is the one dispatcher that moves clients back onto the
  # restarted gateways, so connections stay about even and its RSS can be compared.
  local rebalance=0
  [ "$n" = 3 ] && rebalance=0.1
  mkdir -p "$WORK/n$n"
  "$SB" serve --rebalance-band "$rebalance" --node-id "n$n" --listen "127.0.0.1:${HTTP[$n]}" --tcp-listen "127.0.0.1:${TCP[$n]}" \
    --redis "redis://127.0.0.1:$REDIS_PORT/" --data-dir "$WORK/n$n" --api-key "$KEY" \
    --lease-ms 3000 --probe-interval-ms 500 --drain-window-ms 2000 --reconnect-jitter-ms 1000 \
    --shutdown-timeout-ms 8000 --max-connections-per-ip 0 --rooms-per-min 0 --publish-rate 0 \
    --dm-per-min 0 >>"$WORK/n$n.out" 2>>"$WORK/n$n.log" &
  NODE_PID[$n]=$!
  for _ in $(seq 200); do
    # Only our child will do: an old process still on the port would answer too.
    kill -0 "${NODE_PID[$n]}" 2>/dev/null || break
    curl -sf -m 1 -o /dev/null "http://127.0.0.1:${HTTP[$n]}/v1/node" && return 0
    sleep 0.1
  done
  echo "soak: node n$n did not start" >&2; tail "$WORK/n$n.log" >&2; exit 1
}

# SIGKILL node n (a crash) and start it again at once.
kill_node() {
  local n=$1
  kill -KILL "${NODE_PID[$n]}" 2>/dev/null || true
  wait "${NODE_PID[$n]}" 2>/dev/null || true
  start_node "$n"
  KILLS=$((KILLS + 1))
}

# SIGTERM node n (drain: reconnect frames over the drain window, then exit), then start it.
drain_node() {
  local n=$1
  local pid=${NODE_PID[$n]}
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "n$n still up 30 s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    DRAINS_FORCED=$((DRAINS_FORCED + 1))
  fi
  wait "$pid" 2>/dev/null || true
  start_node "$n"
  DRAINS=$((DRAINS + 1))
}

# SIGKILL Redis (a crash: with appendfsync always every acknowledged write is in the AOF) and
# start it on the same port and directory.
restart_redis() {
  kill -KILL "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  start_redis
  REDIS_RESTARTS=$((REDIS_RESTARTS + 1))
}

start_redis
for n in 1 2 3; do start_node "$n"; done
log "redis :$REDIS_PORT, nodes :${HTTP[1]} :${HTTP[2]} :${HTTP[3]} (tcp :${TCP[1]} :${TCP[2]} :${TCP[3]}); $CLIENTS clients, $MINUTES min"

NODES="http://127.0.0.1:${HTTP[1]},http://127.0.0.1:${HTTP[2]},http://127.0.0.1:${HTTP[3]}"
ulimit -n 20000 2>/dev/null || true
"$SOAK" run --nodes "$NODES" --api-key "$KEY" --clients "$CLIENTS" --rate "$RATE" \
  --seconds "$DURATION" --settle-seconds "$SETTLE" >"$WORK/soak.out" 2>"$WORK/soak.log" &
CLIENT_PID=$!
touch "$WORK/soak.log"
tail -n +1 -f "$WORK/soak.log" --pid "$CLIENT_PID" >&2 &
TAIL_PID=$!

# Setup (users, rooms, connecting) is bounded: 5 minutes.
for _ in $(seq 3000); do
  grep -q "publishing for" "$WORK/soak.log" && break
  kill -0 "$CLIENT_PID" 2>/dev/null || break
  sleep 0.1
done
grep -q "publishing for" "$WORK/soak.log" || { echo "soak: the clients did not start" >&2; exit 1; }

# The chaos, while the clients publish, but for the last sixth of the time (30 s at most): a
# quiet end lets the witness even out the connections before the end RSS reading.
QUIET=$((DURATION / 6)); [ "$QUIET" -le 30 ] || QUIET=30
START=$SECONDS
NEXT_KILL=$KILL_EVERY NEXT_DRAIN=$DRAIN_EVERY NEXT_REDIS=$REDIS_EVERY RSS_START_DONE=0
declare -a RSS_START
while [ $((SECONDS - START)) -lt "$DURATION" ] && kill -0 "$CLIENT_PID" 2>/dev/null; do
  sleep 1
  t=$((SECONDS - START))
  [ "$t" -lt $((DURATION - QUIET)) ] || continue
  # The start reading: after the warm-up, just before a kill (the longest since the last
  # event, so the witness has moved clients back).
  if [ "$RSS_START_DONE" = 0 ] && [ "$t" -ge "$WARMUP" ] && [ "$t" -ge $((NEXT_KILL - 2)) ]; then
    for n in 1 2 3; do RSS_START[$n]=$(rss_kb "${NODE_PID[$n]}"); done
    WITNESS_PID_START=${NODE_PID[3]}
    WITNESS_CONNS_START=$(conns 3)
    RSS_START_DONE=1
    log "RSS after warm-up: n1 ${RSS_START[1]} kB, n2 ${RSS_START[2]} kB, n3 ${RSS_START[3]} kB"
  fi
  # The witness every 10 s from then on: seconds, RSS (kB), connections.
  if [ "$RSS_START_DONE" = 1 ] && [ $((t % 10)) = 0 ]; then
    echo "$t $(rss_kb "${NODE_PID[3]}") $(conns 3)" >>"$WORK/witness.tsv"
  fi
  if [ "$t" -ge "$NEXT_KILL" ]; then
    victim=$((RANDOM % 2 + 1))
    kill_node "$victim"
    log "t=${t}s SIGKILL n$victim, restarted (kill $KILLS)"
    NEXT_KILL=$((NEXT_KILL + KILL_EVERY))
  fi
  if [ "$t" -ge "$NEXT_DRAIN" ]; then
    victim=$((DRAINS % 2 + 1))
    drain_node "$victim"
    log "t=${t}s drained n$victim, restarted (drain $DRAINS)"
    NEXT_DRAIN=$((NEXT_DRAIN + DRAIN_EVERY))
  fi
  if [ "$t" -ge "$NEXT_REDIS" ]; then
    restart_redis
    log "t=${t}s SIGKILL redis, restarted (restart $REDIS_RESTARTS)"
    NEXT_REDIS=$((NEXT_REDIS + REDIS_EVERY))
  fi
done

# Publishing stopped: the clients settle and print their figures (bounded). The end RSS is
# read as soon as the figures are out, while the clients are still connected.
CLIENT_RC=0
declare -a RSS_END
for _ in $(seq $(((SETTLE + 60) * 10))); do
  grep -q "^settle_ms:" "$WORK/soak.out" && break
  kill -0 "$CLIENT_PID" 2>/dev/null || break
  sleep 0.1
done
for n in 1 2 3; do RSS_END[$n]=$(rss_kb "${NODE_PID[$n]}"); done
WITNESS_CONNS_END=$(conns 3)
echo "$((SECONDS - START)) ${RSS_END[3]} $WITNESS_CONNS_END" >>"$WORK/witness.tsv"
for _ in $(seq 300); do
  kill -0 "$CLIENT_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$CLIENT_PID" 2>/dev/null; then
  echo "soak: the clients did not finish in time" >&2
  kill -KILL "$CLIENT_PID" 2>/dev/null || true
fi
wait "$CLIENT_PID" || CLIENT_RC=$?
CLIENT_PID=""

cat "$WORK/soak.out"
for n in 1 2 3; do
  echo "rss_n${n}_start_kb: ${RSS_START[$n]:-0}"
  echo "rss_n${n}_end_kb: ${RSS_END[$n]}"
done
echo "witness_connections_start: ${WITNESS_CONNS_START:-unknown}"
echo "witness_connections_end: ${WITNESS_CONNS_END:-unknown}"
# The witness's samples fitted as RSS = a + b * connections + c * time (least squares): b is
# what a connection costs, c the growth that the connections do not explain, a leak's
# signature. The check fails when c over the sampled time exceeds 10% of the start RSS.
RSS_FAIL=0 RSS_VERDICT=off
if [ "${WITNESS_PID_START:-}" = "${NODE_PID[3]}" ] && [ "${RSS_START[3]:-0}" -gt 0 ]; then
  GROWTH=$(((RSS_END[3] - RSS_START[3]) * 1000 / RSS_START[3]))
  SIGN=""; [ "$GROWTH" -lt 0 ] && SIGN="-"
  ABS=$((GROWTH < 0 ? -GROWTH : GROWTH))
  echo "rss_witness_growth_pct: $SIGN$((ABS / 10)).$((ABS % 10))"
  read -r PER_CONN TREND_PCT < <(awk -v base="${RSS_START[3]}" '
    NF == 3 && $2 > 0 && $3 != "" {
      n++; t = $1 / 3600; c = $3; r = $2
      st += t; sc += c; sr += r; stt += t * t; scc += c * c; stc += t * c
      str += t * r; scr += c * r; t0 = (n == 1 ? t : t0); t1 = t
    }
    function det(a, b, c, d, e, f, g, h, i) { return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) }
    END {
      if (n < 3) { print "unknown unknown"; exit }
      D = det(n, sc, st, sc, scc, stc, st, stc, stt)
      if (D * D < 1e-9) {                      # connections constant: RSS = a + c * time
        Dt = n * stt - st * st
        b = 0; ct = (Dt == 0 ? 0 : (n * str - st * sr) / Dt)
      } else {
        b = det(n, sr, st, sc, scr, stc, st, str, stt) / D
        ct = det(n, sc, sr, sc, scc, scr, st, stc, str) / D
      }
      printf "%.1f %.1f\n", b, ct * (t1 - t0) * 100 / base
    }' "$WORK/witness.tsv")
  echo "rss_witness_per_connection_kb: $PER_CONN"
  echo "rss_witness_trend_pct: $TREND_PCT"
  if [ "$RSS_CHECK" = 1 ]; then
    if [ "$TREND_PCT" = unknown ]; then
      RSS_VERDICT="inconclusive (too few samples)"
    elif awk -v x="$TREND_PCT" 'BEGIN { exit !(x > 10) }'; then
      RSS_VERDICT="failed (grew more than 10% beyond what its connections explain)"
      RSS_FAIL=1
    else
      RSS_VERDICT="passed (within 10% once its connections are accounted for)"
    fi
  fi
else
  echo "rss_witness_growth_pct: unknown"
  [ "$RSS_CHECK" = 1 ] && RSS_VERDICT="inconclusive (no reading)"
fi
echo "rss_check: $RSS_VERDICT"
echo "kills: $KILLS"
echo "drains: $DRAINS"
echo "drains_forced: $DRAINS_FORCED"
echo "redis_restarts: $REDIS_RESTARTS"
echo "minutes: $MINUTES"
echo "clients: $CLIENTS"

if [ "$CLIENT_RC" != 0 ]; then
  echo "soak: FAILED (clients exit $CLIENT_RC: lost, duplicated or out-of-order messages, or no figures)" >&2
  exit 1
fi
if [ "$RSS_FAIL" = 1 ]; then
  echo "soak: FAILED (memory)" >&2
  exit 1
fi
echo "soak: passed" >&2
