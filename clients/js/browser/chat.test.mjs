// Headless Chromium against a real node: two users in two browser contexts sign up and chat
// in a room, a direct message and unread counts, and the chat on a phone-sized screen.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Node } from "../test/helpers.mjs";
import { useBrowser, messages, newPage, openRoom, readmeShot, say, shot, signUp } from "./browser.mjs";

const chromium = useBrowser();

test("two users in two browsers sign up and chat in a room; a direct message shows an unread count", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const alice = await newPage(chromium.browser);
    const bob = await newPage(chromium.browser);
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

test("on a phone-sized screen the chat fits the width and works with the keyboard", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const page = await newPage(chromium.browser, { width: 375, height: 667 });
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
