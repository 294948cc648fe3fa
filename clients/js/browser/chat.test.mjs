// The web chat and the ops page in headless Chromium against a real node: two users chat in a
// room, a direct message with an unread count, a SIGKILL and restart of the node (status shows
// reconnecting, then connected; messages sent meanwhile appear once, in order), history
// scroll-back, and the ops page.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { API_KEY, Node, until } from "../test/helpers.mjs";
import { launch, messages, newPage, openRoom, readmeShot, say, shot, signUp } from "./browser.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("two users in two browsers sign up and chat in a room; a direct message shows an unread count", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const alice = await newPage(browser);
    const bob = await newPage(browser);
    await signUp(alice, node.url, "alice");
    await signUp(bob, node.url, "bob");

    await alice.getByTestId("room-create-name").fill("general");
    await alice.getByTestId("room-create-submit").click();
    await alice.getByTestId("room-item").filter({ hasText: "general" }).waitFor();
    await say(alice, "hello from alice");
    await alice.getByTestId("message-item").filter({ hasText: "hello from alice" }).waitFor();

    // Bob's room list refreshes by itself; he joins and sees the history, then both chat live.
    await openRoom(bob, "general");
    await bob.getByTestId("message-item").filter({ hasText: "alice" }).filter({ hasText: "hello from alice" }).waitFor();
    await say(bob, "hi alice, bob here");
    await bob.getByTestId("message-item").filter({ hasText: "hi alice, bob here" }).waitFor();
    await alice.getByTestId("message-item").filter({ hasText: "bob" }).filter({ hasText: "hi alice, bob here" }).waitFor();
    await bob.getByTestId("presence-list").filter({ hasText: "alice" }).waitFor();
    assert.deepEqual((await messages(bob)).map((t) => t.split("\n").at(-1)), ["hello from alice", "hi alice, bob here"]);

    // A DM from bob to alice: alice is in the room, so the DM shows as unread.
    await bob.getByTestId("dm-username").fill("alice");
    await bob.getByTestId("dm-open").click();
    await bob.getByTestId("dm-item").filter({ hasText: "alice" }).waitFor();
    await say(bob, "a private word");
    await bob.getByTestId("message-item").filter({ hasText: "a private word" }).waitFor();
    const dm = alice.getByTestId("dm-item").filter({ hasText: "bob" });
    await dm.getByTestId("unread-count").filter({ hasText: "1" }).waitFor();
    await shot(alice, "dm-unread");
    // The README's picture: this view, at the fixed viewport (UPDATE_SCREENSHOT=1 refreshes it).
    await readmeShot(alice);
    await dm.click();
    await alice.getByTestId("message-item").filter({ hasText: "a private word" }).waitFor();
    assert.equal(await dm.getByTestId("unread-count").count(), 0);
    // Alice reads the DM; what bob says in the room meanwhile counts as unread there.
    await openRoom(bob, "general");
    await say(bob, "back in the room");
    await say(bob, "twice");
    const general = alice.getByTestId("room-item").filter({ hasText: "general" });
    await general.getByTestId("unread-count").filter({ hasText: "2" }).waitFor();
    await general.click();
    await alice.getByTestId("message-item").filter({ hasText: "twice" }).waitFor();
    assert.equal(await general.getByTestId("unread-count").count(), 0);
    // An unknown name is an error shown on the page.
    await alice.getByTestId("dm-username").fill("nobody-here");
    await alice.getByTestId("dm-open").click();
    await alice.getByTestId("error").filter({ hasText: "nobody-here" }).waitFor();
    assert.deepEqual([...alice.errors, ...bob.errors].filter((e) => !/Failed to load resource/.test(e)), []);
    await alice.context().close();
    await bob.context().close();
  } finally {
    await node.stop();
  }
});

test("the node is killed and restarted: reconnecting, then connected, and what was sent meanwhile appears once, in order", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const page = await newPage(browser);
    await signUp(page, node.url, "carol");
    const dave = await node.user("dave");
    const room = await node.room(dave.token, "ops-room");
    await node.say(dave.token, room, "before 1");
    await openRoom(page, "ops-room");
    await page.getByTestId("message-item").filter({ hasText: "before 1" }).waitFor();

    await node.kill();
    await page.getByTestId("connection-status").filter({ hasText: /^reconnecting$/ }).waitFor();
    await shot(page, "reconnecting");
    // The chat's own message, typed while the node is down, waits and is stored once.
    await say(page, "typed while down");
    await node.start();
    for (let i = 1; i <= 3; i++) await node.say(dave.token, room, `meanwhile ${i}`);
    await page.getByTestId("connection-status").filter({ hasText: /^connected$/ }).waitFor({ timeout: 20_000 });
    await page.getByTestId("message-item").filter({ hasText: "meanwhile 3" }).waitFor();
    await page.getByTestId("message-item").filter({ hasText: "typed while down" }).waitFor();
    await new Promise((r) => setTimeout(r, 500));
    const texts = (await messages(page)).map((t) => t.split("\n").at(-1));
    const stored = (await node.http("GET", `/v1/rooms/${room}/messages`, { token: dave.token })).body.messages.map((m) => m.body.text);
    assert.deepEqual(texts, stored, "the page shows exactly what is stored, in seq order");
    assert.equal(texts.filter((t) => t === "typed while down").length, 1);
    assert.deepEqual(texts.filter((t) => t.startsWith("meanwhile")), ["meanwhile 1", "meanwhile 2", "meanwhile 3"]);
    await page.context().close();
  } finally {
    await node.stop();
  }
});

test("older history loads on scroll and on the button", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const erin = await node.user("erin");
    const room = await node.room(erin.token, "history");
    for (let i = 1; i <= 75; i++) await node.say(erin.token, room, `old ${i}`);
    const page = await newPage(browser);
    await signUp(page, node.url, "frank");
    await openRoom(page, "history");
    await page.getByTestId("message-item").filter({ hasText: "old 75" }).waitFor();
    await until("the first page", async () => (await messages(page)).length === 30);
    // Scrolling to the top loads the page before.
    await page.getByTestId("message-list").evaluate((el) => {
      el.scrollTop = 0;
    });
    await until("the second page", async () => (await messages(page)).length === 60);
    await page.getByTestId("history-more").click();
    await until("the rest", async () => (await messages(page)).length === 75);
    const texts = (await messages(page)).map((t) => t.split("\n").at(-1));
    assert.deepEqual(texts, Array.from({ length: 75 }, (_, i) => `old ${i + 1}`));
    assert.equal(await page.getByTestId("history-more").isDisabled(), true);
    await page.context().close();
  } finally {
    await node.stop();
  }
});

test("the ops page asks for the key and shows the node with a chart", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const page = await newPage(browser);
    await page.goto(`${node.url}/ops`);
    await page.getByTestId("ops-api-key").fill("wrong key");
    await page.getByTestId("ops-submit").click();
    await page.getByTestId("error").filter({ hasText: "unauthorized" }).waitFor();
    await page.getByTestId("ops-api-key").fill(API_KEY);
    await page.getByTestId("ops-submit").click();
    const id = (await node.http("GET", "/v1/node")).body.node_id;
    const row = page.getByTestId("ops-node").filter({ hasText: id });
    await row.filter({ hasText: "gateway, api, dispatcher" }).waitFor();
    const u = await node.user("gina");
    const room = await node.room(u.token, "busy");
    for (let i = 0; i < 20; i++) await node.say(u.token, room, `m${i}`);
    await until("a rate above zero", async () => Number((await row.locator("td").nth(4).innerText())) > 0, 10_000);
    assert.equal(await page.getByTestId("ops-chart").count(), 2);
    await page.getByTestId("ops-chart").first().locator("polyline").first().waitFor({ state: "attached" });
    await shot(page, "ops");
    await page.context().close();
  } finally {
    await node.stop();
  }
});

test("on a phone-sized screen the chat fits the width and works with the keyboard", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const page = await newPage(browser, { width: 375, height: 667 });
    await signUp(page, node.url, "hank");
    await page.getByTestId("room-create-name").fill("pocket");
    await page.getByTestId("room-create-name").press("Enter");
    await page.getByTestId("room-item").filter({ hasText: "pocket" }).waitFor();
    await page.getByTestId("message-input").fill("typed on a phone");
    await page.getByTestId("message-input").press("Enter");
    await page.getByTestId("message-item").filter({ hasText: "typed on a phone" }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
    // Every input has a label.
    const unlabeled = await page.evaluate(() => [...document.querySelectorAll("input")].filter((i) => !i.labels || i.labels.length === 0).map((i) => i.id));
    assert.deepEqual(unlabeled, []);
    await shot(page, "phone");
    await page.context().close();
  } finally {
    await node.stop();
  }
});
