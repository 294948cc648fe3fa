// The SDK against a real node started by each test: live delivery, resume after a SIGKILL and
// restart, gap fill, long-polling fallback, publish retry idempotency, backoff when no node
// answers, and typed errors.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { Api, Client, SwitchboardError } from "../dist/index.js";
import { API_KEY, Node, aliceAndRoom, collect, freePort, nodeBehindProxy, until } from "./helpers.mjs";

const opts = (url, token, extra = {}) => ({ url, token, WebSocket, requestTimeoutMs: 3000, backoffBaseMs: 50, backoffMaxMs: 400, ...extra });

/** A node behind a proxy, alice's room on it, and alice's client subscribed to it over a WebSocket through the proxy. */
async function subscribedBehindProxy() {
  const net = await nodeBehindProxy();
  const { node, proxy } = net;
  const { alice, room, conv } = await aliceAndRoom(node);
  const a = await Client.connect(opts(proxy.url, alice.token, { transport: "websocket" }));
  const got = collect(a);
  await a.subscribe(conv);
  return { net, node, proxy, alice, room, conv, a, got };
}

test("messages arrive once and in order; publish, history, presence and DMs work", { timeout: 30_000 }, async () => {
  const node = await Node.start();
  try {
    const alice = await node.user("alice");
    const bob = await node.user("bob");
    const room = await node.room(alice.token);
    const conv = `room:${room}`;
    const a = await Client.connect(opts(node.url, alice.token));
    const b = await Client.connect(opts(node.url, bob.token));
    assert.equal(a.state, "connected");
    assert.equal(a.transport, "websocket");
    const got = collect(b);
    await a.subscribe(conv);
    const sub = await b.subscribe(conv);
    assert.equal(sub.head_seq, 0);
    for (let i = 1; i <= 5; i++) await a.publish(conv, { text: `m${i}` });
    await until("five messages", () => got.seqs(conv).length === 5);
    assert.deepEqual(got.texts(conv), ["m1", "m2", "m3", "m4", "m5"]);
    // The publisher gets its own copies too (each after its answer).
    await until("the publisher's position at 5", () => a.position(conv)?.[1] === 5);
    // History pages backwards.
    const older = await a.history(conv, { before: 4, limit: 2 });
    assert.deepEqual(older.map((m) => m.seq), [2, 3]);
    const presence = await a.presence(conv);
    assert.deepEqual(presence.map((p) => p.user_id).sort(), [alice.user_id, bob.user_id].sort());
    // A DM reaches the recipient's own stream.
    const dm = await a.sendDirect(bob.user_id, { text: "hi bob" });
    assert.equal(dm.conv, `user:${bob.user_id}`);
    await until("the DM", () => got.texts(`user:${bob.user_id}`).includes("hi bob"));
    // Errors are typed with the server's code.
    await assert.rejects(a.subscribe("room:r_nope"), (e) => e instanceof SwitchboardError && e.code === "not_found");
    await a.close();
    await b.close();
    assert.equal(a.state, "closed");
    await assert.rejects(a.publish(conv, 1), (e) => e.code === "closed");
  } finally {
    await node.stop();
  }
});

test("after a SIGKILL and restart the client resumes: nothing lost, nothing repeated, its own publish stored once", { timeout: 45_000 }, async () => {
  const node = await Node.start();
  try {
    const alice = await node.user("alice");
    const bob = await node.user("bob");
    const room = await node.room(alice.token);
    const conv = `room:${room}`;
    const a = await Client.connect(opts(node.url, alice.token));
    const states = [];
    a.on("state", (s) => states.push(s));
    const got = collect(a);
    await a.subscribe(conv);
    for (let i = 1; i <= 3; i++) await node.say(bob.token, room, `before ${i}`);
    await until("three messages", () => got.seqs(conv).length === 3);

    await node.kill();
    await until("reconnecting", () => a.state === "reconnecting");
    const pending = a.publish(conv, { text: "sent while down" });
    await node.start();
    for (let i = 1; i <= 3; i++) await node.say(bob.token, room, `after ${i}`);
    const receipt = await pending;
    await until("seven messages", () => got.seqs(conv).length >= 7);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(got.seqs(conv), [1, 2, 3, 4, 5, 6, 7]);
    assert.ok(got.texts(conv).includes("sent while down"));
    const stored = (await node.http("GET", `/v1/rooms/${room}/messages?limit=100`, { token: bob.token })).body.messages;
    assert.equal(stored.filter((m) => m.client_msg_id === receipt.client_msg_id).length, 1);
    assert.deepEqual(states.slice(0, 2), ["reconnecting", "connected"]);
    await a.close();
  } finally {
    await node.stop();
  }
});

test("a message missing on a live subscription is filled from history before later ones", { timeout: 30_000 }, async () => {
  const { net, node, proxy, alice, room, conv, a, got } = await subscribedBehindProxy();
  try {
    // Seq 2 is lost on the way: the client sees 1, 3, 4 and must fetch 2 first.
    proxy.drop = (f) => f.type === "message" && f.seq === 2;
    for (let i = 1; i <= 4; i++) await node.say(alice.token, room, `m${i}`);
    await until("four messages", () => got.seqs(conv).length === 4).catch((e) => { throw new Error(`${e.message}: got ${JSON.stringify(got.seqs(conv))}`); });
    assert.equal(proxy.dropped, 1, "seq 2 was dropped on the way");
    assert.deepEqual(got.seqs(conv), [1, 2, 3, 4]);
    assert.deepEqual(got.texts(conv), ["m1", "m2", "m3", "m4"]);
    await a.close();
  } finally {
    await net.stop();
  }
});

test("when WebSocket upgrades are refused, auto falls back to long-polling and keeps every guarantee", { timeout: 40_000 }, async () => {
  const net = await nodeBehindProxy({ refuseUpgrades: true });
  const { node, proxy } = net;
  try {
    const { alice, room, conv } = await aliceAndRoom(node);
    const a = await Client.connect(opts(proxy.url, alice.token));
    assert.equal(a.transport, "long-poll");
    assert.ok(proxy.refused >= 1, "the upgrade was tried first");
    const got = collect(a);
    await a.subscribe(conv);
    await a.publish(conv, { text: "over polling" });
    await node.say(alice.token, room, "from http");
    await until("two messages", () => got.seqs(conv).length === 2);
    // A restart: the poll session is gone; the client resumes on a new one.
    await node.kill();
    await node.start();
    await node.say(alice.token, room, "after restart");
    await until("three messages", () => got.seqs(conv).length === 3, 20_000);
    assert.deepEqual(got.seqs(conv), [1, 2, 3]);
    assert.equal(a.transport, "long-poll");
    await a.close();
  } finally {
    await net.stop();
  }
});

test("a publish whose answer was lost is sent again with the same client_msg_id and stored once", { timeout: 30_000 }, async () => {
  const { net, node, proxy, alice, room, conv, a, got } = await subscribedBehindProxy();
  try {
    proxy.mute();
    let settled = false;
    const pending = a.publish(conv, { text: "once" }, "retry-me-1").finally(() => (settled = true));
    await until("the publish to be stored", async () => {
      const h = await node.http("GET", `/v1/rooms/${room}/messages`, { token: alice.token });
      return h.body.messages.length === 1;
    });
    assert.equal(settled, false, "no answer came through the muted proxy");
    proxy.unmute();
    proxy.cut();
    const receipt = await pending;
    assert.equal(receipt.seq, 1);
    assert.equal(receipt.client_msg_id, "retry-me-1");
    await until("the message", () => got.seqs(conv).length === 1);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(got.seqs(conv), [1]);
    const h = await node.http("GET", `/v1/rooms/${room}/messages`, { token: alice.token });
    assert.equal(h.body.messages.length, 1, "stored once");
    await a.close();
  } finally {
    await net.stop();
  }
});

test("no node: connect retries with bounded backoff and fails with unreachable; a bad token fails at once", { timeout: 30_000 }, async () => {
  const port = await freePort();
  let calls = 0;
  const started = Date.now();
  const countingFetch = (...args) => {
    calls += 1;
    return fetch(...args);
  };
  await assert.rejects(
    Client.connect(opts(`http://127.0.0.1:${port}`, "t", { fetch: countingFetch, requestTimeoutMs: 500, backoffBaseMs: 20, backoffMaxMs: 100 })),
    (e) => e instanceof SwitchboardError && e.code === "unreachable" && /dispatch/.test(e.message),
  );
  const took = Date.now() - started;
  // 1.5 s at 20..100 ms steps of full jitter: many rounds, never a wait beyond the max.
  assert.ok(calls >= 8, `only ${calls} attempts in ${took} ms`);
  assert.ok(took < 3000, `took ${took} ms`);
  await assert.rejects(Client.connect(opts("127.0.0.1:1", "t")), (e) => e.code === "config");

  const node = await Node.start();
  try {
    await assert.rejects(Client.connect(opts(node.url, "sb_bad")), (e) => e.code === "unauthorized");
    await assert.rejects(Client.connect(opts(node.url, "sb_bad", { transport: "long-poll" })), (e) => e.code === "unauthorized");
  } finally {
    await node.stop();
  }
});

test("the HTTP API helper: accounts, rooms, find a user by name, typed errors", { timeout: 30_000 }, async () => {
  const node = await Node.start();
  try {
    const api = new Api(node.url);
    const u = await api.register("carol", "secret-pass");
    await assert.rejects(api.register("Carol", "secret-pass"), (e) => e.code === "username_taken" && e.status === 409);
    await api.login("carol", "secret-pass");
    assert.equal((await api.me()).user_id, u.user_id);
    const room = await api.createRoom("general");
    assert.ok((await api.rooms()).some((r) => r.room_id === room.room_id));
    await api.publish(room.room_id, { text: "hello" });
    assert.equal((await api.roomMessages(room.room_id))[0].body.text, "hello");
    assert.equal((await api.findUser("CAROL")).user_id, u.user_id);
    await assert.rejects(api.findUser("nobody"), (e) => e.code === "not_found" && e.status === 404);
    const anon = new Api(node.url);
    await assert.rejects(anon.findUser("carol"), (e) => e.code === "unauthorized");
    // The ops endpoints need the API key.
    const stats = await node.http("GET", "/v1/server/stats", { key: API_KEY });
    assert.equal(stats.status, 200);
    assert.deepEqual(stats.body.roles, ["gateway", "api", "dispatcher"]);
    assert.equal((await node.http("GET", "/v1/server/nodes")).status, 401);
  } finally {
    await node.stop();
  }
});
