// Two nodes on one Redis: messages cross nodes; a stock client whose node is SIGKILLed
// reconnects to the other node and recovers every missed message, once, in order; a drained
// node's clients reconnect elsewhere and recover; a session that ends late on its old node
// leaves the record of the session that recovered its pid elsewhere alone.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const { startProxy, portOf } = require('../lib/proxy');

async function cluster(t, args = []) {
  const redis = await h.startRedis(t);
  const n1 = await h.startNode(t, { redis: redis.url, nodeId: h.unique('n1'), args });
  const n2 = await h.startNode(t, { redis: redis.url, nodeId: h.unique('n2'), args });
  return { redis, n1, n2 };
}

test('two nodes on Redis: clients on either node see each other\'s messages', async (t) => {
  const { n1, n2 } = await cluster(t);
  const ta = await h.token(n1.base, h.unique('a'));
  const tb = await h.token(n2.base, h.unique('b'));
  const conv = await h.room(n1.base, ta, 'cross');
  const a = h.client(t, n1.base, { transports: ['websocket'], auth: { token: ta } });
  const b = h.client(t, n2.base, { transports: ['polling'], auth: { token: tb } });
  const am = h.collect(a);
  const bm = h.collect(b);
  await Promise.all([h.connected(a), h.connected(b)]);
  await h.request(a, 'subscribe', conv);
  await h.request(b, 'subscribe', conv);
  for (let i = 0; i < 10; i++) {
    await h.request(i % 2 ? a : b, 'publish', { conv, body: { i } });
  }
  const [la, lb] = await Promise.all([am.waitFor(10), bm.waitFor(10)]);
  const seqs = Array.from({ length: 10 }, (_, i) => i + 1);
  assert.deepEqual(la.map((m) => m.msg.seq), seqs);
  assert.deepEqual(lb.map((m) => m.msg.seq), seqs);
  assert.deepEqual(la.map((m) => m.msg.body.i), lb.map((m) => m.msg.body.i));
});

for (const transports of [['websocket'], ['polling']]) {
  test(`a ${transports[0]} client recovers on another node after its node is SIGKILLed`, async (t) => {
    const { n1, n2 } = await cluster(t);
    const user = h.unique('u');
    const tok = await h.token(n2.base, user);
    const conv = await h.room(n2.base, tok, 'crash');
    const proxy = await startProxy(t, portOf(n1.base));
    const socket = h.client(t, proxy.url, {
      transports,
      auth: { token: tok },
      reconnectionDelay: 1500,
      reconnectionDelayMax: 1500,
    });
    const messages = h.collect(socket);
    await h.connected(socket);
    assert.equal(socket.recovered, false);
    await h.request(socket, 'subscribe', conv);
    for (let i = 1; i <= 5; i++) await h.serverPublish(n2.base, conv, { i });
    await h.serverPublish(n2.base, `user:${user}`, { dm: 1 });
    await messages.waitFor(6);

    proxy.pointAt(portOf(n2.base));
    const reconnected = h.once(socket, 'connect', 15_000);
    n1.kill();
    await n1.exited();
    // Missed while the client is away: in the room and on its own stream.
    for (let i = 6; i <= 10; i++) await h.serverPublish(n2.base, conv, { i });
    await h.serverPublish(n2.base, `user:${user}`, { dm: 2 });
    await reconnected;
    assert.equal(socket.recovered, true, 'the stock client reports a recovered session');
    for (let i = 11; i <= 12; i++) await h.serverPublish(n2.base, conv, { i });
    const list = await messages.waitFor(14);
    await h.sleep(200);
    const room = list.filter((m) => m.msg.conv === conv).map((m) => m.msg.seq);
    const own = list.filter((m) => m.msg.conv === `user:${user}`).map((m) => m.msg.body.dm);
    assert.deepEqual(room, Array.from({ length: 12 }, (_, i) => i + 1), 'every room message once, in order');
    assert.deepEqual(own, [1, 2], 'every direct message once, in order');
    assert.equal(messages.list.length, 14, 'no duplicate');
  });
}

test('drain: switchboard:reconnect, then the client reconnects elsewhere and recovers', async (t) => {
  const { n1, n2 } = await cluster(t, ['--drain-window-ms', '300', '--reconnect-jitter-ms', '200']);
  const tok = await h.token(n2.base, h.unique('u'));
  const conv = await h.room(n2.base, tok, 'drain');
  const proxy = await startProxy(t, portOf(n1.base));
  const socket = h.client(t, proxy.url, { transports: ['websocket'], auth: { token: tok }, reconnectionDelay: 800, reconnectionDelayMax: 800 });
  const messages = h.collect(socket);
  await h.connected(socket);
  await h.request(socket, 'subscribe', conv);
  await h.serverPublish(n2.base, conv, { i: 1 });
  await messages.waitFor(1);

  proxy.pointAt(portOf(n2.base));
  const told = h.once(socket, 'switchboard:reconnect');
  const gone = h.once(socket, 'disconnect');
  const r = await h.http('POST', `${n1.base}/v1/server/nodes/self/drain`, { apiKey: h.API_KEY });
  assert.equal(r.status, 202);
  const [payload] = await told;
  assert.equal(payload.reason, 'shutdown');
  assert.ok(payload.delay_ms >= 0 && payload.delay_ms < 200, `delay_ms ${payload.delay_ms}`);
  const [reason] = await gone;
  assert.equal(reason, 'transport close', 'no DISCONNECT: the client reconnects by itself');
  await h.serverPublish(n2.base, conv, { i: 2 });
  await h.once(socket, 'connect', 10_000);
  assert.equal(socket.recovered, true);
  await h.serverPublish(n2.base, conv, { i: 3 });
  const list = await messages.waitFor(3);
  assert.deepEqual(list.map((m) => m.msg.seq), [1, 2, 3]);
});

/** Waits until a node has no open client connection (`what` names them in the error). */
async function noConnections(base, what) {
  const deadline = Date.now() + h.WAIT_MS;
  while ((await openConnections(base)) !== 0) {
    if (Date.now() > deadline) throw new Error(`${what} did not end`);
    await h.sleep(20);
  }
}

/** Open client connections of a node (its `switchboard_connections` gauge). */
async function openConnections(base) {
  const r = await h.http('GET', `${base}/metrics`, { apiKey: h.API_KEY });
  const line = r.text.split('\n').find((l) => l.startsWith('switchboard_connections '));
  assert.ok(line, `no switchboard_connections in /metrics: ${r.status}`);
  return Number(line.split(' ')[1]);
}

test('a late end of the old session leaves the record of the session that recovered its pid elsewhere', async (t) => {
  const { n1, n2 } = await cluster(t);
  const user = h.unique('u');
  const tok = await h.token(n1.base, user);
  const opts = (auth) => ({ transports: ['websocket'], auth, reconnection: false });
  // The first session, on n1.
  const old = h.client(t, n1.base, opts({ token: tok }));
  await h.connected(old);
  const pid = old._pid;
  // Its client comes back on n2 before n1 noticed anything (a stock client sends its pid and
  // offset; the pid alone recovers from the record as stored).
  const moved = h.client(t, n2.base, opts({ token: tok, pid }));
  await h.connected(moved);
  assert.equal(moved._pid, pid, 'recovered on n2');
  // Now n1's session ends, as one that may not be recovered (the client's own DISCONNECT):
  // before records had owners, this deleted the record that is n2's session's now.
  old.disconnect();
  await noConnections(n1.base, 'the old session on n1');
  await h.sleep(300); // n1's record writer runs at once; this covers a slow machine
  // n2 is SIGKILLed: its client must still recover, on n1.
  n2.kill();
  await n2.exited();
  const back = h.client(t, n1.base, opts({ token: tok, pid }));
  await h.connected(back);
  assert.equal(back._pid, pid, 'the recovered session\'s record survived the old one\'s end');
});

test('a kick that ends the recovered session and its old one on one node leaves nothing to recover', async (t) => {
  const redis = await h.startRedis(t);
  const n = await h.startNode(t, { redis: redis.url, nodeId: h.unique('n') });
  const opts = (auth) => ({ transports: ['websocket'], auth, reconnection: false });
  // A few rounds: the two ends come in either order (the newer one first, most often).
  for (let round = 0; round < 5; round++) {
    const user = h.unique('u');
    const tok = await h.token(n.base, user);
    const old = h.client(t, n.base, opts({ token: tok }));
    await h.connected(old);
    const pid = old._pid;
    // The client came back on the same node before its old connection was noticed gone.
    const moved = h.client(t, n.base, opts({ token: tok, pid }));
    await h.connected(moved);
    assert.equal(moved._pid, pid, 'recovered');
    await h.sleep(200); // both sessions registered, so the kick reaches both
    const gone = [h.once(old, 'disconnect'), h.once(moved, 'disconnect')];
    const r = await h.http('POST', `${n.base}/v1/server/users/${encodeURIComponent(user)}/disconnect`, {
      apiKey: h.API_KEY,
    });
    assert.equal(r.status, 204);
    await Promise.all(gone);
    await noConnections(n.base, 'the kicked sessions');
    await h.sleep(300); // the record writer runs at once; this covers a slow machine
    // Kicked: not recoverable. Before the newer session's end was written whichever ended
    // first, its record outlived the kick.
    const again = h.client(t, n.base, opts({ token: tok, pid }));
    await h.connected(again);
    assert.notEqual(again._pid, pid, `round ${round}: the kicked pid is not recovered`);
    again.close();
  }
});
