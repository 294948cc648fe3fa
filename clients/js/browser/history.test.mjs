// Headless Chromium against a real node: older history loads on scroll and on the button.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Node, until } from "../test/helpers.mjs";
import { messages, newPage, openRoom, signUp, useBrowser } from "./browser.mjs";

const chromium = useBrowser();

test("older history loads on scroll and on the button", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const erin = await node.user("erin");
    const room = await node.room(erin.token, "history");
    for (let i = 1; i <= 75; i++) await node.say(erin.token, room, `old ${i}`);
    const page = await newPage(chromium.browser);
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
