// Authentication in the CONNECT payload: missing, bad and expired tokens get CONNECT_ERROR
// {"message":"unauthorized","data":{"code":"unauthorized"}}; another namespace is refused.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

async function refused(socket) {
  const [err] = await h.once(socket, 'connect_error');
  return err;
}

test('missing, bad and expired tokens are refused with unauthorized', async (t) => {
  const node = await h.startNode(t);
  const expiring = await h.token(node.base, h.unique('u'), 1);
  for (const [what, auth, transports] of [
    ['no auth', undefined, ['websocket']],
    ['no token', { nope: 1 }, ['polling']],
    ['a bad token', { token: 'sb_not_a_token' }, ['websocket']],
    ['a token of the wrong type', { token: 42 }, ['polling']],
  ]) {
    const socket = h.client(t, node.base, { transports, auth, reconnection: false });
    const err = await refused(socket);
    assert.equal(err.message, 'unauthorized', what);
    assert.deepEqual(err.data, { code: 'unauthorized' }, what);
  }
  await h.sleep(1600);
  const socket = h.client(t, node.base, { transports: ['websocket'], auth: { token: expiring }, reconnection: false });
  const err = await refused(socket);
  assert.equal(err.message, 'unauthorized', 'an expired token');
  assert.deepEqual(err.data, { code: 'unauthorized' });
});

test('a namespace other than / is refused', async (t) => {
  const node = await h.startNode(t);
  const tok = await h.token(node.base, h.unique('u'));
  const socket = h.client(t, `${node.base}/admin`, { transports: ['websocket'], auth: { token: tok }, reconnection: false });
  const err = await refused(socket);
  assert.equal(err.message, 'Invalid namespace');
});

test('a token that expires while connected ends the session with auth_expired', async (t) => {
  const node = await h.startNode(t);
  const tok = await h.token(node.base, h.unique('u'), 2);
  const socket = h.client(t, node.base, { transports: ['websocket'], auth: { token: tok } });
  const told = h.once(socket, 'switchboard:disconnect', 8000);
  const gone = h.once(socket, 'disconnect', 8000);
  await h.connected(socket);
  const [payload] = await told;
  assert.deepEqual(payload, { reason: 'auth_expired' });
  const [reason] = await gone;
  assert.equal(reason, 'io server disconnect');
});

test('kick and logout send switchboard:disconnect, then DISCONNECT', async (t) => {
  const node = await h.startNode(t);
  for (const [path, reason] of [
    ['disconnect', 'kicked'],
    ['revoke', 'logged_out'],
  ]) {
    const user = h.unique('u');
    const tok = await h.token(node.base, user);
    const socket = h.client(t, node.base, { transports: ['polling'], auth: { token: tok } });
    await h.connected(socket);
    const told = h.once(socket, 'switchboard:disconnect');
    const gone = h.once(socket, 'disconnect');
    const r = await h.http('POST', `${node.base}/v1/server/users/${user}/${path}`, { apiKey: h.API_KEY, body: {} });
    assert.equal(r.status, 204);
    assert.deepEqual((await told)[0], { reason });
    assert.equal((await gone)[0], 'io server disconnect');
  }
});
