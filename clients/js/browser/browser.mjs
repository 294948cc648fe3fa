// Browser fixtures: headless Chromium (the Debian package) driven by playwright-core, with
// screenshots saved under clients/js/artifacts/ (ignored by git) and one helper per page action.
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
/** Where screenshots go. */
export const ARTIFACTS = path.resolve(here, "../artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

/** Launches Chromium (`CHROMIUM` overrides the path). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

/** One Chromium for the tests of a file: launched before them, closed after; `.browser` is it. */
export function useBrowser() {
  const holder = { browser: null };
  before(async () => {
    holder.browser = await launch();
  });
  after(async () => {
    await holder.browser?.close();
  });
  return holder;
}

/** A new page in its own context (own storage: another user), at a fixed viewport. */
export async function newPage(browser, viewport = { width: 1100, height: 720 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.errors = errors;
  return page;
}

/** Saves a screenshot as artifacts/<name>.png. */
export function shot(page, name) {
  return page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/** Signs `name` up on the chat page at `url` and waits until connected. */
export async function signUp(page, url, name) {
  await page.goto(url);
  await page.getByTestId("signup-username").fill(name);
  await page.getByTestId("signup-password").fill("secret-pass");
  await page.getByTestId("signup-submit").click();
  await page.getByTestId("connection-status").filter({ hasText: /^connected$/ }).waitFor();
}

/** Opens the room named `room` from the room list (it may take a refresh of the list to show). */
export async function openRoom(page, room) {
  await page.getByTestId("room-list").getByTestId("room-item").filter({ hasText: room }).first().click();
  await page.getByTestId("message-input").waitFor({ state: "visible" });
}

/** Sends `text` in the open conversation. */
export async function say(page, text) {
  await page.getByTestId("message-input").fill(text);
  await page.getByTestId("message-send").click();
}

/** The texts of the message items shown. */
export function messages(page) {
  return page.getByTestId("message-list").getByTestId("message-item").allInnerTexts();
}

/** The README's screenshot (docs/images/chat.png): saved as an artifact, and copied over the committed one when UPDATE_SCREENSHOT=1. */
export async function readmeShot(page) {
  await page.setViewportSize({ width: 1000, height: 560 });
  await page.evaluate(() => document.activeElement?.blur());
  const file = path.join(ARTIFACTS, "chat.png");
  await page.screenshot({ path: file });
  if (process.env.UPDATE_SCREENSHOT === "1") {
    const dest = path.resolve(here, "../../../docs/images/chat.png");
    mkdirSync(path.dirname(dest), { recursive: true });
    copyFileSync(file, dest);
  }
}
