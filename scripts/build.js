#!/usr/bin/env node
// `npm run build` (run by `npm ci` and `npm install` as `prepare`): compiles src/ and machines/ to
// dist/ for bin/corral.js, which then starts without compiling TypeScript. Files that are not
// TypeScript but are loaded at run time (src/agents/hello-agent.mjs, …) are copied beside them.
import { execFileSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
} catch {
  // `npm ci --omit=dev`: no compiler, so no build; bin/corral.js runs the sources through tsx.
  console.error("corral build: typescript is not installed (dev dependencies omitted?); skipped");
  process.exit(0);
}

rmSync(dist, { recursive: true, force: true }); // nothing left from sources that are gone
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], {
    cwd: root,
    stdio: "inherit",
  });
} catch (err) {
  // tsc has printed the type errors; with noEmitOnError there is no dist/ (bin/corral.js then uses tsx).
  process.exit(err.status ?? 1);
}
for (const dir of ["src", "machines"]) {
  cpSync(join(root, dir), join(dist, dir), {
    recursive: true,
    filter: (path) => !path.endsWith(".ts"),
  });
}
