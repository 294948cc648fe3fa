// Builds the web chat and the ops page into crates/api/web/, the files the server embeds:
// `chat.js` and `ops.js` are esbuild bundles of web/*.ts (the chat with the SDK), the HTML and
// CSS are copied. The output is deterministic (same sources and locked versions, same bytes).
// `--check` builds into a temporary directory and fails when anything differs from the
// committed files (CI runs it), naming the files to rebuild.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const committed = path.resolve(here, "../../../crates/api/web");
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(path.join(os.tmpdir(), "sb-web-")) : committed;
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { chat: path.join(here, "chat.ts"), ops: path.join(here, "ops.ts") },
  outdir: out,
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  charset: "utf8",
  legalComments: "none",
  minify: true,
  sourcemap: false,
  logLevel: "warning",
});
for (const f of ["index.html", "ops.html", "style.css"]) copyFileSync(path.join(here, f), path.join(out, f));

if (check) {
  const differ = [];
  const names = new Set([...readdirSync(out), ...readdirSync(committed)]);
  for (const f of names) {
    let a = null;
    let b = null;
    try { a = readFileSync(path.join(out, f)); } catch { /* missing */ }
    try { b = readFileSync(path.join(committed, f)); } catch { /* missing */ }
    if (!a || !b || !a.equals(b)) differ.push(f);
  }
  rmSync(out, { recursive: true, force: true });
  if (differ.length) {
    console.error(`crates/api/web is out of date (${differ.join(", ")}): run \`npm run build:web\` in clients/js and commit the result`);
    process.exit(1);
  }
  console.log("crates/api/web matches a fresh build of clients/js/web");
}
