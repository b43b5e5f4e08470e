#!/usr/bin/env node
// corral's command line. It runs the JavaScript build in dist/ (`npm ci` makes it; so does
// `npm run build`), which starts in a fraction of the time tsx takes to compile the sources.
// Without a build, with one older than the sources, or with CORRAL_FROM_SOURCE=1 (the tests),
// it runs the TypeScript sources through tsx.
import { existsSync, readdirSync, statSync } from "node:fs";
import module from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const built = (path) => new URL(`../dist/src/cli/${path}`, import.meta.url);

/** Why the build cannot be used, or undefined when it can. */
function noBuild() {
  const main = fileURLToPath(built("main.js"));
  if (!existsSync(main)) return "no build in dist/";
  const builtAt = statSync(main).mtimeMs;
  // An image or package that ships only the build has no sources to be older than.
  for (const dir of ["src", "machines"].filter((d) => existsSync(`${root}${d}`))) {
    for (const e of readdirSync(`${root}${dir}`, { recursive: true, withFileTypes: true })) {
      if (e.isFile() && statSync(`${e.parentPath}/${e.name}`).mtimeMs > builtAt) {
        return "the build in dist/ is older than the sources";
      }
    }
  }
  return undefined;
}

async function fromSources(why) {
  if (why) process.stderr.write(`corral: ${why}; running the sources through tsx (npm run build)\n`);
  const { register } = await import("tsx/esm/api");
  register();
  return import("../src/cli/main.ts");
}

const args = process.argv.slice(2);
const why = process.env.CORRAL_FROM_SOURCE === "1" ? "" : noBuild();
if (why === undefined) module.enableCompileCache?.(); // Node 22.1+: later starts skip compiling
if (why === undefined && args.length === 1 && (args[0] === "--version" || args[0] === "-V")) {
  // Nothing to parse: answered without loading the command line (a third of the start-up).
  const { corralVersion } = await import(built("version.js").href);
  process.stdout.write(`${corralVersion()}\n`);
} else {
  const main = why === undefined ? await import(built("main.js").href) : await fromSources(why);
  process.exitCode = await main.run(process.argv);
}
// The command is done and has closed what it opened, but a connection attempt to a black-holed
// address can linger in the socket layer for a while: exit once stdout has drained, not later.
process.stdout.write("", () => process.exit());
