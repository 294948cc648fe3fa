// Headless Chromium against a real node that is killed (SIGKILL) and restarted on the same port
// and data dir: the status shows reconnecting then connected, and what was sent meanwhile
// appears once, in order.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Node } from "../test/helpers.mjs";
import { useBrowser, messages, newPage, openRoom, say, shot, signUp } from "./browser.mjs";

const chromium = useBrowser();

test("the node is killed and restarted: reconnecting, then connected, and what was sent meanwhile appears once, in order", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const page = await newPage(chromium.browser);
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
