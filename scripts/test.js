#!/usr/bin/env node
// Runs the test suite: `node --import tsx --test` over every test/**/*.test.ts, listed explicitly
// because Node 20 does not expand glob patterns given to --test.
//   npm test                              all tests
//   npm test -- test/cli.test.ts          only these files
//   npm test -- --test-name-pattern=tail  extra flags go to node
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { preflight } from "./preflight.js";
import { finishRun, startRun } from "./survivors.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function collect(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "node_modules" && !entry.name.startsWith(".")) out.push(...collect(path));
    } else if (entry.name.endsWith(".test.ts")) {
      out.push(relative(root, path));
    }
  }
  return out;
}

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith("-"));
const named = args.filter((a) => !a.startsWith("-"));
const files = named.length > 0 ? named : collect(join(root, "test")).sort();
if (files.length === 0) {
  console.error("no test files found under test/");
  process.exit(1);
}

const missing = await preflight();
if (missing) {
  console.error(`npm test: ${missing}`);
  process.exit(1);
}

// Two at a time: the machines have two cores and most files start a nats-server of their own.
// A test that hangs fails after 3 minutes instead of holding CI up (override: --test-timeout=ms).
const timeout = flags.some((f) => f.startsWith("--test-timeout")) ? [] : ["--test-timeout=180000"];
// Everything the run starts is marked, so what it leaves can be found, killed and named after.
const run = await startRun();
// CORRAL_FROM_SOURCE: the CLI the tests spawn runs these sources, never a build in dist/.
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=2", ...timeout, ...flags, ...files],
  { cwd: root, stdio: "inherit", env: { ...process.env, ...run.env, CORRAL_FROM_SOURCE: "1" } },
);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", async (code, signal) => {
  const survivors = await finishRun(run);
  const status = code ?? (signal ? 128 + ({ SIGINT: 2, SIGTERM: 15 }[signal] ?? 1) : 1);
  process.exit(status === 0 && survivors > 0 ? 1 : status);
});
