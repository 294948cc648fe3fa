// Headless Chromium against a real node: the ops page asks for the API key and shows the node,
// its rate and the charts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { API_KEY, Node, until } from "../test/helpers.mjs";
import { newPage, shot, useBrowser } from "./browser.mjs";

const chromium = useBrowser();

test("the ops page asks for the key and shows the node with a chart", { timeout: 60_000 }, async () => {
  const node = await Node.start();
  try {
    const page = await newPage(chromium.browser);
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
