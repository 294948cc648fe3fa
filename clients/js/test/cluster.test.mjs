// The SDK against a real cluster: two gateways and a dispatcher-only node on a real Redis. The
// gateway the client is on is killed (SIGKILL): the client goes back to the dispatcher (which
// may still name the dead node first for a probe or two: then the alternates are tried), lands
// on the other gateway and resumes; what was published meanwhile arrives once, in order.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { Client } from "../dist/index.js";
import { Node, Redis, collect, until } from "./helpers.mjs";

test("a killed gateway: the client moves to another node of the cluster and loses nothing", { timeout: 60_000 }, async () => {
  const redis = await Redis.start();
  const cluster = ["--redis", redis.url, "--lease-ms", "1500"];
  const gateways = [
    await Node.start({ args: [...cluster, "--node-id", "gw-a", "--roles", "gateway,api"] }),
    await Node.start({ args: [...cluster, "--node-id", "gw-b", "--roles", "gateway,api"] }),
  ];
  const dispatcher = await Node.start({ args: [...cluster, "--node-id", "disp", "--roles", "api,dispatcher"] });
  try {
    const alice = await dispatcher.user("alice");
    const room = await dispatcher.room(alice.token, "failover");
    const conv = `room:${room}`;
    const a = await Client.connect({ url: dispatcher.url, token: alice.token, WebSocket, requestTimeoutMs: 3000, backoffBaseMs: 50, backoffMaxMs: 300 });
    const got = collect(a);
    await a.subscribe(conv);
    for (let i = 1; i <= 3; i++) await dispatcher.say(alice.token, room, `m${i}`);
    await until("three messages", () => got.seqs(conv).length === 3);

    const first = a.nodeId;
    assert.ok(first === "gw-a" || first === "gw-b", `on ${first}`);
    await gateways.find((g) => g.args.includes(first)).kill();
    for (let i = 4; i <= 6; i++) await dispatcher.say(alice.token, room, `m${i}`);
    await until("the other gateway", () => a.state === "connected" && a.nodeId && a.nodeId !== first, 20_000);
    await until("six messages", () => got.seqs(conv).length >= 6, 20_000);
    await a.publish(conv, { text: "from the new node" });
    await until("seven messages", () => got.seqs(conv).length >= 7);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(got.seqs(conv), [1, 2, 3, 4, 5, 6, 7]);
    await a.close();
  } finally {
    for (const n of [...gateways, dispatcher]) await n.stop();
    await redis.stop();
  }
});
