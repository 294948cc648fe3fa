// Connection state recovery on one node: a dropped connection recovers (same pid, every missed
// message once); when history no longer reaches back, or after the client's own disconnect,
// the CONNECT gets a new pid and recovered is false. The record is stored when the session ends
// (as Socket.IO's own recovery does): a pid whose session still runs is not recovered, and of two
// clients presenting an ended session's pid at once, one recovers it.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

/** Drops the connection under the client, as a network failure would (it reconnects). */
function drop(socket) {
  socket.io.engine.close();
}

/** Resolves once `user` has no connection left on the node (its sessions have ended). */
async function offline(base, tok, user) {
  const deadline = Date.now() + h.WAIT_MS;
  for (;;) {
    const r = await h.http('GET', `${base}/v1/presence/users?ids=${encodeURIComponent(user)}`, { token: tok });
    if (r.status === 200 && !r.body.users[user].online) return;
    if (Date.now() > deadline) throw new Error(`${user} still online: ${r.text}`);
    await h.sleep(20);
  }
}

test('a dropped connection recovers; trimmed history or an own disconnect gives a new pid', async (t) => {
  const node = await h.startNode(t, { args: ['--history-max-messages', '3'] });
  const user = h.unique('u');
  const tok = await h.token(node.base, user);
  const conv = await h.room(node.base, tok, 'recovery');
  const socket = h.client(t, node.base, {
    transports: ['websocket'],
    auth: { token: tok },
    reconnectionDelay: 600,
    reconnectionDelayMax: 600,
  });
  const messages = h.collect(socket);
  await h.connected(socket);
  await h.request(socket, 'subscribe', conv);
  await h.serverPublish(node.base, conv, { i: 1 });
  await messages.waitFor(1);

  // Within history: recovered, the missed messages once, in order.
  let again = h.once(socket, 'connect');
  drop(socket);
  await h.serverPublish(node.base, conv, { i: 2 });
  await h.serverPublish(node.base, conv, { i: 3 });
  await again;
  assert.equal(socket.recovered, true);
  const list = await messages.waitFor(3);
  assert.deepEqual(list.map((m) => m.msg.seq), [1, 2, 3]);

  // History trimmed past the offset: a new session, the app must subscribe again.
  again = h.once(socket, 'connect');
  drop(socket);
  for (let i = 4; i <= 8; i++) await h.serverPublish(node.base, conv, { i });
  await again;
  assert.equal(socket.recovered, false, 'history no longer reaches back');
  await h.serverPublish(node.base, conv, { i: 9 });
  await h.serverPublish(node.base, `user:${user}`, 'marker');
  const after = await messages.waitFor(4);
  assert.equal(after[3].msg.body, 'marker', 'not subscribed to the room any more');
  assert.equal(messages.list.length, 4);

  // The client's own disconnect is not recoverable.
  const sub = await h.request(socket, 'subscribe', conv);
  assert.equal(sub.head_seq, 9);
  socket.disconnect();
  await h.serverPublish(node.base, conv, { i: 10 });
  socket.connect();
  await h.once(socket, 'connect');
  assert.equal(socket.recovered, false, 'an own disconnect ends the session for good');
});

test('a running pid, a pid of another user, or a forged offset, is not recovered', async (t) => {
  const node = await h.startNode(t);
  const userA = h.unique('a');
  const ta = await h.token(node.base, userA);
  const tb = await h.token(node.base, h.unique('b'));
  const a = h.client(t, node.base, { transports: ['websocket'], auth: { token: ta }, reconnection: false });
  await h.connected(a);
  const pid = a._pid;
  assert.match(pid, /^[0-9a-f]{32}$/);
  // (A client that names a pid itself reports `recovered` false whatever the answer: the
  // answer's pid is what tells.)
  const reply = async (auth) => {
    const s = h.client(t, node.base, { transports: ['websocket'], auth, reconnection: false });
    await h.connected(s);
    const got = s._pid;
    s.close();
    return got;
  };
  // On one node a running session keeps no record: a client that comes back before its old
  // connection is noticed gone starts afresh.
  assert.notEqual(await reply({ token: ta, pid }), pid, 'a running session is not recovered');
  drop(a);
  await offline(node.base, ta, userA);
  for (const auth of [
    { token: tb, pid },
    { token: ta, pid, offset: 'zz.zz.zz.zz' },
    { token: ta, pid, offset: '!' },
    { token: ta, pid: 'no-such-pid' },
    { token: ta, pid: 'x'.repeat(5000) },
  ]) {
    const got = await reply(auth);
    assert.match(got, /^[0-9a-f]{32}$/);
    assert.notEqual(got, pid, JSON.stringify(auth).slice(0, 80));
  }
  // Two clients presenting it at once: one recovers it, the other starts afresh.
  const racers = [0, 1].map(() => h.client(t, node.base, { transports: ['websocket'], auth: { token: ta, pid }, reconnection: false }));
  await Promise.all(racers.map((s) => h.connected(s)));
  const pids = racers.map((s) => s._pid);
  assert.equal(pids.filter((p) => p === pid).length, 1, `one recovers the ended session: ${pids}`);
});
