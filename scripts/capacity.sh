#!/usr/bin/env bash
# The capacity model's arithmetic (docs/CAPACITY.md): gateway nodes and Redis Cluster shards for
# a number of connections under a stated traffic, from measured per-unit costs. Every input is
# an environment variable with the measured default; the output says which resource needs the
# most machines (the first wall).
#
#   scripts/capacity.sh                      # 1M and 10M connections, the default traffic
#   CONNECTIONS=3000000 DM_PER_CONN_MIN=2 scripts/capacity.sh
set -euo pipefail

# --- traffic (stated, not measured) ---
: "${ROOM_MSGS_PER_CONN_MIN:=1}"   # room messages published per connection per minute
: "${ROOM_FANOUT:=20}"             # subscribers per room message (room size online)
: "${DM_PER_CONN_MIN:=1}"          # direct messages sent per connection per minute
: "${DM_DEVICES:=1.5}"             # live connections per recipient (and per sender, for the copy)

# --- measured costs (docs/CAPACITY.md says where each comes from) ---
: "${RSS_KIB_PER_CONN:=2.7}"       # idle WebSocket connection, server RSS (PERFORMANCE: idle)
: "${CPU_US_PER_ROOM_DELIVERY:=18.5}" # node CPU per room delivery, publish included (PERFORMANCE: rooms of 10)
: "${CPU_US_PER_DM:=99.6}"         # node CPU per direct message, both copies delivered (PERFORMANCE: dm)
: "${CPU_US_PER_CONN_IDLE_S:=1}"   # node CPU per connection per second when idle (heartbeats)
: "${REDIS_US_PER_ROOM_MSG:=80}"   # Redis master CPU per room message, WAIT 1 (CAPACITY.md: 71-87)
: "${REDIS_US_PER_DM:=170}"        # Redis master CPU per direct message, two appends (145-197)
: "${REDIS_US_PER_RECEIVING_NODE:=4.2}" # Redis CPU per message per node subscribed to it

# --- machines ---
: "${NODE_CORES:=8}"               # cores per gateway node
: "${NODE_RAM_GIB:=32}"            # RAM per gateway node
: "${NODE_MAX_CONNS:=200000}"     # connections one node is allowed (fds, kernel socket memory, blast radius)
: "${NODE_HEADROOM:=0.5}"          # share of a node's CPU and RAM planned for (room for spikes)
: "${SHARD_HEADROOM:=0.5}"         # share of a Redis master's one core planned for

model() {
  local conns=$1
  awk -v n="$conns" \
    -v room_min="$ROOM_MSGS_PER_CONN_MIN" -v fan="$ROOM_FANOUT" \
    -v dm_min="$DM_PER_CONN_MIN" -v dev="$DM_DEVICES" \
    -v kib="$RSS_KIB_PER_CONN" -v deliv="$CPU_US_PER_ROOM_DELIVERY" -v dmcpu="$CPU_US_PER_DM" \
    -v idle="$CPU_US_PER_CONN_IDLE_S" -v rroom="$REDIS_US_PER_ROOM_MSG" -v rdm="$REDIS_US_PER_DM" \
    -v rnode="$REDIS_US_PER_RECEIVING_NODE" \
    -v cores="$NODE_CORES" -v ram="$NODE_RAM_GIB" -v nh="$NODE_HEADROOM" -v sh="$SHARD_HEADROOM" \
    -v maxc="$NODE_MAX_CONNS" '
    function ceil(x) { return (x == int(x)) ? x : int(x) + 1 }
    BEGIN {
      room_pub = n * room_min / 60                 # room messages/s
      dm_pub = n * dm_min / 60                     # direct messages/s
      deliveries = room_pub * fan + dm_pub * 2 * dev   # recipient devices + sender devices
      # Gateways: CPU (publishes + deliveries + idle upkeep) and memory.
      cpu_s = room_pub * fan * deliv / 1e6 + dm_pub * dmcpu / 1e6 + n * idle / 1e6
      nodes_cpu = ceil(cpu_s / (cores * nh))
      nodes_ram = ceil(n * kib / 1048576 / (ram * nh))
      # Redis Cluster: one core per master; conversations spread over slots.
      # Each message also goes to every node holding one of its subscribers (a room of fan
      # members spreads over up to fan nodes; a DM reaches recipient and sender devices).
      room_nodes = fan; dm_nodes = 2 * dev
      redis_s = room_pub * (rroom + rnode * room_nodes) / 1e6 + dm_pub * (rdm + rnode * dm_nodes) / 1e6
      shards = ceil(redis_s / sh)
      nodes_conn = ceil(n / maxc)
      nodes = nodes_cpu; wall = "gateway CPU (deliveries)"
      if (nodes_ram > nodes) { nodes = nodes_ram; wall = "gateway memory" }
      if (nodes_conn > nodes) { nodes = nodes_conn; wall = "connections per node (NODE_MAX_CONNS)" }
      hot_room = sh * 1e6 / (rroom + rnode * room_nodes) # one room is one slot: one master core
      printf "%d connections: %.0f room msg/s, %.0f DM/s, %.0f deliveries/s\n", n, room_pub, dm_pub, deliveries
      printf "  gateways: %d nodes of %d cores / %d GiB (CPU needs %d, memory %d, connection cap %d): %.1f cores busy\n", nodes, cores, ram, nodes_cpu, nodes_ram, nodes_conn, cpu_s
      printf "  Redis Cluster: %d masters (+ as many replicas): %.2f cores of Redis busy\n", shards, redis_s
      printf "  one room (one slot) tops out near %.0f messages/s on its master\n", hot_room
      printf "  first wall: %s\n", wall
    }'
}

if [ -n "${CONNECTIONS:-}" ]; then
  model "$CONNECTIONS"
else
  model 1000000
  model 10000000
fi
