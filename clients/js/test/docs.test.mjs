// Runs the example of docs/SDK-JS.md (the code block after `<!-- example: chat -->`) against a
// real node, so the documentation cannot rot.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { Node, ROOT } from "./helpers.mjs";

test("the example in docs/SDK-JS.md runs and prints what it says", { timeout: 30_000 }, async () => {
  const doc = readFileSync(path.join(ROOT, "docs/SDK-JS.md"), "utf8");
  const m = doc.match(/<!-- example: chat -->\n```js\n([\s\S]*?)```/);
  assert.ok(m, "the example block is in docs/SDK-JS.md");
  // Inside clients/js, so `@switchboard/client` resolves to this package (self-reference).
  const dir = path.join(ROOT, "clients/js/artifacts");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "sdk-example.mjs");
  writeFileSync(file, m[1]);
  const node = await Node.start();
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [file], {
      env: { ...process.env, SWITCHBOARD_URL: node.url },
      timeout: 20_000,
    });
    assert.match(stdout, /state: connected|stored as seq 1/);
    assert.match(stdout, /stored as seq 1 with id c_[0-9a-f]+/);
    assert.match(stdout, /#1 me: hello from the SDK/);
    assert.match(stdout, /history: \[ 'hello from the SDK' \]/);
    assert.match(stdout, /online: \[ 'u_/);
    assert.match(stdout, /refused: not_found/);
  } finally {
    await node.stop();
  }
});
