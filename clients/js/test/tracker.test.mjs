// Unit tests of the ordering and dedup tracker and of the backoff: the rules, without IO.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff, FILL_PAGE, Tracker, jitter } from "../dist/index.js";

const msg = (conv, seq) => ({ conv, seq, message_id: `m_${seq}`, from: null, to: null, ts: 0, client_msg_id: null, body: seq });
const delivered = (actions) => actions.filter((a) => a.kind === "deliver").map((a) => a.message.seq);

test("in-order messages pass, repeats and untracked conversations are dropped", () => {
  const t = new Tracker();
  t.onSubscribed("room:a", 3, "e1");
  const got = [];
  for (const s of [3, 4, 5, 4, 5, 6, 2]) got.push(...delivered(t.onMessage(msg("room:a", s))));
  assert.deepEqual(got, [4, 5, 6]);
  assert.deepEqual(t.position("room:a"), ["e1", 6]);
  assert.deepEqual(t.onMessage(msg("room:b", 1)), []);
});

test("a gap is filled from history before later messages are delivered", () => {
  const t = new Tracker();
  t.onSubscribed("room:a", 2, "e");
  assert.deepEqual(t.onMessage(msg("room:a", 6)), [{ kind: "fetch", conv: "room:a", after: 2, before: 6 }]);
  // Held while the fill is out: nothing is delivered, not even the next in line.
  assert.deepEqual(t.onMessage(msg("room:a", 7)), []);
  const out = t.onFill("room:a", [msg("room:a", 5), msg("room:a", 3), msg("room:a", 4)], false);
  assert.deepEqual(delivered(out), [3, 4, 5, 6, 7]);
  assert.deepEqual(t.position("room:a"), ["e", 7]);
});

test("a full fill page asks for the next page; a failed fill accepts the jump", () => {
  const t = new Tracker();
  t.onSubscribed("room:a", 0, "e");
  t.onMessage(msg("room:a", FILL_PAGE + 10));
  const page = Array.from({ length: FILL_PAGE }, (_, i) => msg("room:a", i + 1));
  const out = t.onFill("room:a", page, false);
  assert.equal(delivered(out).length, FILL_PAGE);
  assert.deepEqual(out.at(-1), { kind: "fetch", conv: "room:a", after: FILL_PAGE, before: FILL_PAGE + 10 });
  assert.deepEqual(delivered(t.onFillFailed("room:a")), [FILL_PAGE + 10]);
  // A page the server cut by bytes (`more`) also continues.
  t.onMessage(msg("room:a", FILL_PAGE + 20));
  const more = t.onFill("room:a", [msg("room:a", FILL_PAGE + 11)], true);
  assert.deepEqual(more.at(-1), { kind: "fetch", conv: "room:a", after: FILL_PAGE + 11, before: FILL_PAGE + 20 });
});

test("resume: recovered keeps the position, a new epoch or lost history moves it", () => {
  const t = new Tracker();
  t.onSubscribed("room:a", 10, "e1");
  t.onResumed("room:a", true, 11, "e1");
  assert.deepEqual(t.position("room:a"), ["e1", 10]);
  t.onResumed("room:a", false, 4, "e2");
  assert.deepEqual(t.position("room:a"), ["e2", 3]);
  assert.deepEqual(delivered(t.onMessage(msg("room:a", 4))), [4]);
  assert.deepEqual(t.resume(), { "room:a": { seq: 4, epoch: "e2" } });
  // A disconnect drops held messages; resuming brings them back.
  t.onMessage(msg("room:a", 9));
  t.onDisconnect();
  assert.deepEqual(delivered(t.onMessage(msg("room:a", 5))), [5]);
});

test("backoff: full jitter under a ceiling that doubles up to the max, then resets", () => {
  let r = 0.999999;
  const b = new Backoff(100, 1000, () => r);
  const ceilings = [];
  for (let i = 0; i < 6; i++) {
    ceilings.push(b.ceiling());
    const d = b.nextDelay();
    assert.ok(d <= b.max && d >= 0, `delay ${d}`);
    assert.equal(d, Math.min(1000, 100 * 2 ** i), "top of the range at random ~1");
  }
  assert.deepEqual(ceilings, [100, 200, 400, 800, 1000, 1000]);
  r = 0;
  assert.equal(b.nextDelay(), 0, "bottom of the range at random 0");
  for (let i = 0; i < 100; i++) b.nextDelay();
  assert.equal(b.ceiling(), 1000);
  b.reset();
  assert.equal(b.ceiling(), 100);
  b.hint(500, 30_000);
  assert.equal(b.ceiling(), 500);
  b.hint(0, 10); // insane hints are ignored
  assert.equal(b.ceiling(), 500);
  const samples = Array.from({ length: 500 }, () => jitter(10));
  assert.ok(samples.every((d) => d >= 0 && d <= 10));
  assert.ok(samples.some((d) => d < 3) && samples.some((d) => d > 7));
});
