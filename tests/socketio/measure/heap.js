// Heap per idle connection (not part of CI), with valgrind's massif: one node under massif, 20
// warm connections, a detailed snapshot, N more idle connections, another snapshot. The heap
// per connection is the difference of the two snapshots' `mem_heap_B` divided by N (their
// trees say by what). Run against a release build, the node under massif through a wrapper:
//
//   printf '#!/bin/sh\nexec valgrind --tool=massif --threshold=0.02 --massif-out-file=/tmp/m/massif.%%p %s "$@"\n' \
//     $PWD/target/release/switchboard > /tmp/m/run.sh && chmod +x /tmp/m/run.sh
//   SWITCHBOARD_BIN=/tmp/m/run.sh SWITCHBOARD_WAIT_MS=60000 IDLE=1000 OUT=/tmp/m \
//     node tests/socketio/measure/heap.js sio      # or native
//   grep mem_heap /tmp/m/sio.*.ms
//
// UPGRADE=1 connects socket.io-client with its default transports (polling, then the upgrade);
// SETTLE_MS (3000 by default) is how long the node idles before the second snapshot: past the
// first heartbeat (`pingInterval`, 25 s) it also counts what a heartbeat leaves behind.
//
// USERS=each gives every connection a user of its own (as the bench's `idle` scenario does), so
// the difference also holds what the node keeps per user; by default they share one user.
'use strict';

const { execFileSync } = require('node:child_process');
const h = require('../lib/harness');
const { nativeClient, sioClient } = require('./clients');

const N = Number(process.env.IDLE || 1000);
const OUT = process.env.OUT || '/tmp';
const kind = process.argv[2] === 'native' ? 'native' : 'sio';
const fakeT = { after() {} };
const eachUser = process.env.USERS === 'each';

(async () => {
  const node = await h.startNode(fakeT, { args: ['--max-connections', '100000'] });
  const shared = await h.token(node.base, h.unique('idle'));
  const open = kind === 'sio' ? (base, token) => sioClient(base, token, 60_000) : nativeClient;
  // Every token is made before the first snapshot, as the bench makes them before its baseline.
  const tokens = [];
  for (let i = 0; eachUser && i < N + 20; i++) tokens.push(await h.token(node.base, h.unique('idle')));
  const connect = (base) => open(base, eachUser ? tokens.pop() : shared);
  const snapshot = (name) =>
    execFileSync('vgdb', [`--pid=${node.child.pid}`, 'detailed_snapshot', `${OUT}/${kind}.${name}.ms`]);
  const conns = [];
  for (let i = 0; i < 20; i++) conns.push(await connect(node.base));
  await h.sleep(2000);
  snapshot('before');
  for (let i = 0; i < N; i += 25) {
    const batch = [];
    for (let j = 0; j < 25 && i + j < N; j++) batch.push(connect(node.base));
    conns.push(...(await Promise.all(batch)));
  }
  await h.sleep(Number(process.env.SETTLE_MS || 3000));
  snapshot('after');
  for (const c of conns) (c.close || c.terminate).call(c);
  node.kill();
  console.log(`${kind}: snapshots in ${OUT}/${kind}.before.ms and ${OUT}/${kind}.after.ms (${N} connections)`);
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
