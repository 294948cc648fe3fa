// Unit tests of the connection logic with fake frames, no server: how resume refusals and
// gap-fill errors are handled (the three gaps the chaos soak found in the Rust SDK).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "../dist/index.js";

const AUTH_ID = 1;
const CONV = "room:r1";
const PASSING = ["unavailable", "internal", "overloaded", "rate_limited"];

/**
 * A client whose loop never runs, with a fake link that records what it sends, subscribed to
 * `CONV` at head 0 of epoch `e1`: frames are fed to its `onFrame` directly.
 */
function fakeClient() {
  const c = new Client({ url: "http://127.0.0.1:1", token: "t", fetch: async () => { throw new Error("no network"); } });
  const sent = [];
  c.link = { transport: "websocket", lastHeard: Date.now(), send: (f) => sent.push(f), close() {} };
  c._state = "connected";
  c.tracker.onSubscribed(CONV, 0, "e1");
  const got = [];
  const unsubscribed = [];
  c.on("message", (m) => got.push(m.seq));
  c.on("unsubscribed", (u) => unsubscribed.push(u));
  return { c, sent, got, unsubscribed, frame: (f) => c.onFrame(f, AUTH_ID) };
}

const message = (seq) => ({ type: "message", conv: CONV, seq, message_id: `m_${seq}`, from: "u_a", to: null, ts: 0, body: { text: `m${seq}` } });

test("a resume refused for a passing reason keeps the conversation and reconnects to resume it again", () => {
  for (const code of PASSING) {
    const { c, frame, unsubscribed } = fakeClient();
    const after = frame({ type: "error", id: AUTH_ID, code, message: `${CONV}: storage away`, conv: CONV });
    assert.equal(after?.kind, "reconnect", code);
    assert.match(after.reason, new RegExp(`resume of ${CONV} failed: ${code}`));
    assert.ok(c.tracker.isTracked(CONV), `${code}: still tracked`);
    assert.deepEqual(c.tracker.resume()[CONV], { seq: 0, epoch: "e1" }, `${code}: resumed from where it was`);
    assert.deepEqual(unsubscribed, [], `${code}: no unsubscribed event`);
  }
  // A final refusal (an older server naming the conversation only in the message) forgets it.
  const { c, frame, unsubscribed } = fakeClient();
  assert.equal(frame({ type: "error", id: AUTH_ID, code: "forbidden", message: `${CONV}: not a member` }), null);
  assert.equal(c.tracker.isTracked(CONV), false);
  assert.deepEqual(unsubscribed, [{ conv: CONV, reason: "forbidden" }]);
});

test("on long-polling a refusal with no id but a conv is a refusal of that conversation's resume", () => {
  for (const code of PASSING) {
    const { c, frame, unsubscribed } = fakeClient();
    c.link.transport = "long-poll";
    const after = frame({ type: "error", code, message: "storage away", conv: CONV });
    assert.equal(after?.kind, "reconnect", code);
    assert.ok(c.tracker.isTracked(CONV), `${code}: still tracked`);
    assert.deepEqual(unsubscribed, []);
  }
  const { c, frame, unsubscribed } = fakeClient();
  c.link.transport = "long-poll";
  // Neither id nor conv: nothing to act on.
  assert.equal(frame({ type: "error", code: "unavailable", message: "storage away" }), null);
  assert.ok(c.tracker.isTracked(CONV));
  // A final refusal: the conversation is forgotten and the application told.
  assert.equal(frame({ type: "error", code: "forbidden", message: "not a member", conv: CONV }), null);
  assert.equal(c.tracker.isTracked(CONV), false);
  assert.deepEqual(unsubscribed, [{ conv: CONV, reason: "forbidden" }]);
});

test("a gap fill answered with a passing-reason error ends the connection so the resume replays the gap", () => {
  for (const code of PASSING) {
    const { c, sent, got, frame } = fakeClient();
    assert.equal(frame(message(1)), null);
    assert.equal(frame(message(3)), null);
    const fill = sent.find((f) => f.type === "history");
    assert.ok(fill, "the jump asks history for the gap");
    assert.deepEqual([fill.conv, fill.after, fill.before], [CONV, 1, 3]);
    const after = frame({ type: "error", id: fill.id, code, message: "storage away" });
    assert.equal(after?.kind, "reconnect", code);
    assert.match(after.reason, new RegExp(`gap fill of ${CONV} failed: ${code}`));
    assert.deepEqual(got, [1], `${code}: the jump was not let through`);
    assert.deepEqual(c.position(CONV), ["e1", 1]);
    // The connection ends; the resume from seq 1 has the node replay 2 and 3, in order.
    c.dropped();
    c.link = { transport: "websocket", lastHeard: Date.now(), send: (f) => sent.push(f), close() {} };
    c.tracker.onResumed(CONV, true, 1, "e1");
    frame(message(2));
    frame(message(3));
    assert.deepEqual(got, [1, 2, 3]);
  }
  // Any other error still accepts the jump (the history will not come).
  const { sent, got, frame } = fakeClient();
  frame(message(1));
  frame(message(3));
  const fill = sent.find((f) => f.type === "history");
  assert.equal(frame({ type: "error", id: fill.id, code: "forbidden", message: "not a member" }), null);
  assert.deepEqual(got, [1, 3]);
});
