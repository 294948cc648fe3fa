// Measures one node (not part of CI): memory per idle connection and server CPU per delivery,
// Socket.IO (websocket transport) against the native WebSocket protocol, on the same node.
// Run against a release build:
//
//   cargo build --release -p switchboard-server
//   SWITCHBOARD_BIN=$PWD/target/release/switchboard node tests/socketio/measure/measure.js
//
// Each figure is measured on a fresh node: RSS of the server process before and after N idle
// connections, and its CPU time (utime + stime from /proc) over a run of messages to a room of
// M subscribers. Every message is checked to have reached every subscriber.
//
// UPGRADE=1 connects the Socket.IO clients with socket.io-client's default transports
// (long-polling, then the upgrade) instead of the websocket transport alone. SETTLE_MS (1500 by
// default) is how long the idle half waits before it reads the RSS: past the first heartbeat
// (`pingInterval`, 25 s) it also counts what a heartbeat leaves behind.
//
// ONLY=idle or ONLY=cpu runs one half. CALLGRIND=1 (with SWITCHBOARD_BIN a script that execs
// `valgrind --tool=callgrind --callgrind-out-file=$DIR/cg.%p <binary> "$@"`, DIR in CALLGRIND_DIR)
// zeroes the counters before the publishes and dumps them after, and prints the server's
// instructions per delivery (a figure that does not depend on the machine's load).
//
// The CPU half runs the node with the server's default Engine.IO heartbeat (a ping every 25 s,
// so none in the window: native connections get no pings either); PING_MS=500 runs it with the
// tests' 500 ms heartbeat (timeout 1000 ms), whose pings are then charged to the deliveries.
'use strict';

const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const h = require('../lib/harness');
const { nativeClient, sioClient } = require('./clients');

const IDLE = Number(process.env.IDLE || 2000);
const SUBS = Number(process.env.SUBS || 200);
const MESSAGES = Number(process.env.MESSAGES || 200);
/** The CPU half's heartbeat: the server's default unless PING_MS is set. */
const PING = process.env.PING_MS
  ? { pingIntervalMs: Number(process.env.PING_MS), pingTimeoutMs: 2 * Number(process.env.PING_MS) }
  : { pingIntervalMs: null, pingTimeoutMs: null };

function rssKib(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(s)[1]);
}

function cpuSecs(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

const fakeT = { after() {} };

async function idleMemory(kind) {
  const node = await h.startNode(fakeT, { args: ['--max-connections', '100000'] });
  const token = await h.token(node.base, h.unique('idle'));
  // Warm up (allocator arenas, first connections) before the baseline.
  const warm = [];
  for (let i = 0; i < 50; i++) warm.push(await (kind === 'sio' ? sioClient : nativeClient)(node.base, token));
  await h.sleep(500);
  const before = rssKib(node.child.pid);
  const conns = [];
  for (let i = 0; i < IDLE; i += 50) {
    const batch = [];
    for (let j = 0; j < 50 && i + j < IDLE; j++) batch.push((kind === 'sio' ? sioClient : nativeClient)(node.base, token));
    conns.push(...(await Promise.all(batch)));
  }
  await h.sleep(Number(process.env.SETTLE_MS || 1500));
  const after = rssKib(node.child.pid);
  for (const c of [...warm, ...conns]) (c.close || c.terminate).call(c);
  node.kill();
  return (after - before) / IDLE;
}

async function cpuPerDelivery(kind) {
  const node = await h.startNode(fakeT, { ...PING, args: ['--max-connections', '100000'] });
  const owner = await h.token(node.base, h.unique('owner'));
  const conv = await h.room(node.base, owner, 'fanout');
  let received = 0;
  const clients = [];
  for (let i = 0; i < SUBS; i++) {
    const token = await h.token(node.base, h.unique('sub'));
    if (kind === 'sio') {
      const s = await sioClient(node.base, token);
      await h.request(s, 'subscribe', conv);
      s.on('message', () => received++);
      clients.push(s);
    } else {
      const ws = await nativeClient(node.base, token);
      await new Promise((resolve) => {
        ws.once('message', resolve);
        ws.send(JSON.stringify({ type: 'subscribe', conv, id: 1 }));
      });
      ws.on('message', () => received++);
      clients.push(ws);
    }
  }
  await h.sleep(500);
  if (process.env.CALLGRIND) execFileSync('callgrind_control', ['-z', String(node.child.pid)]);
  const cpu0 = cpuSecs(node.child.pid);
  for (let i = 0; i < MESSAGES; i++) await h.serverPublish(node.base, conv, { i, pad: 'x'.repeat(100) });
  const deadline = Date.now() + 60_000;
  while (received < SUBS * MESSAGES && Date.now() < deadline) await h.sleep(20);
  const cpu1 = cpuSecs(node.child.pid);
  if (received !== SUBS * MESSAGES) throw new Error(`${received} of ${SUBS * MESSAGES} deliveries`);
  if (process.env.CALLGRIND) {
    const pid = node.child.pid;
    execFileSync('callgrind_control', ['-d', `${kind}-publishes`, String(pid)]);
    const dir = process.env.CALLGRIND_DIR;
    const dump = fs.readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.`)).sort().pop();
    const ir = Number(/^(?:summary|totals):\s+(\d+)/m.exec(fs.readFileSync(`${dir}/${dump}`, 'utf8'))[1]);
    console.log(`callgrind ${kind}: ${(ir / (SUBS * MESSAGES)).toFixed(0)} instructions per delivery (${dir}/${dump})`);
  }
  for (const c of clients) (c.close || c.terminate).call(c);
  node.kill();
  return ((cpu1 - cpu0) * 1e6) / (SUBS * MESSAGES);
}

(async () => {
  const load = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  console.log(`load average at start: ${load}`);
  const only = process.env.ONLY || '';
  if (only !== 'cpu') {
    const memNative = await idleMemory('native');
    const memSio = await idleMemory('sio');
    console.log(`idle connections (${IDLE}): native ${memNative.toFixed(2)} KiB, Socket.IO ${memSio.toFixed(2)} KiB per connection (ratio ${(memSio / memNative).toFixed(2)})`);
  }
  if (only === 'idle') process.exit(0);
  const cpuNative = await cpuPerDelivery('native');
  const cpuSio = await cpuPerDelivery('sio');
  console.log(`deliveries (${SUBS} subscribers x ${MESSAGES} messages; includes the HTTP publishes): native ${cpuNative.toFixed(2)} us, Socket.IO ${cpuSio.toFixed(2)} us of server CPU per delivery (ratio ${(cpuSio / cpuNative).toFixed(2)})`);
  console.log(`load average at end: ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}`);
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
