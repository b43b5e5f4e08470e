#!/usr/bin/env node
// corral's command line. It runs the JavaScript build in dist/ (`npm ci` makes it; so does
// `npm run build`), which starts in a fraction of the time tsx takes to compile the sources.
// Without a build, with one older than the sources, or with CORRAL_FROM_SOURCE=1 (the tests),
// it runs the TypeScript sources through tsx.
import { existsSync, readdirSync, statSync } from "node:fs";
import module from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const built = new URL("../dist/src/cli/main.js", import.meta.url);

/** Why the build cannot be used, or undefined when it can. */
function noBuild() {
  if (!existsSync(built)) return "no build in dist/";
  const builtAt = statSync(built).mtimeMs;
  for (const dir of ["src", "machines"]) {
    for (const e of readdirSync(`${root}${dir}`, { recursive: true, withFileTypes: true })) {
      if (e.isFile() && statSync(`${e.parentPath}/${e.name}`).mtimeMs > builtAt) {
        return "the build in dist/ is older than the sources";
      }
    }
  }
  return undefined;
}

let main;
const why = process.env.CORRAL_FROM_SOURCE === "1" ? "" : noBuild();
if (why === undefined) {
  module.enableCompileCache?.(); // Node 22.1+: later starts skip compiling the build
  main = await import(built);
} else {
  if (why) process.stderr.write(`corral: ${why}; running the sources through tsx (npm run build)\n`);
  const { register } = await import("tsx/esm/api");
  register();
  main = await import("../src/cli/main.ts");
}
process.exitCode = await main.run(process.argv);
// The command is done and has closed what it opened, but a connection attempt to a black-holed
// address can linger in the socket layer for a while: exit once stdout has drained, not later.
process.stdout.write("", () => process.exit());
