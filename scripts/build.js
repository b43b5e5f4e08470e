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

// The third-party packages every command loads at start, each made one file: their compiled
// re-exports in dist/src/vendor/ (src/vendor/*.ts) become bundles of what they name. zod goes
// without its ~50 translations (nothing in corral uses them; zod re-exports them from every entry
// point). Measured: zod 20-30 ms against 50-90 to load, the NATS client ~25 ms against ~60. Without
// esbuild the re-exports stay as they are, loading the packages themselves.
let esbuild;
try {
  esbuild = await import("esbuild");
} catch {
  console.error("corral build: esbuild is not installed; dist/src/vendor/ loads the packages unbundled");
  process.exit(0);
}
const vendor = join(dist, "src", "vendor");
/** zod's locale index, as the rest of zod imports it: only English in its place. */
const englishOnly = {
  name: "zod-english-only",
  setup(build) {
    build.onResolve({ filter: /\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]/.test(args.importer)
        ? { path: join(args.resolveDir, args.path), namespace: "zod-english-only" }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "zod-english-only" }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(join(dirname(args.path), "en.js"))};`,
      resolveDir: dirname(args.path),
    }));
  },
};
for (const [file, plugins] of [
  ["zod.js", [englishOnly]],
  ["nats.js", []],
]) {
  const path = join(vendor, file);
  // A failed bundle (esbuild without its binary for this platform, say) writes nothing: the plain
  // re-export stays, slower to load but the same.
  await esbuild
    .build({
      entryPoints: [path],
      outfile: path,
      allowOverwrite: true,
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node20",
      plugins,
      logLevel: "warning",
      // CommonJS modules inside (the NATS client's) require node's own modules.
      banner: {
        js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);',
      },
    })
    .catch((err) => console.error(`corral build: ${file} not bundled, left as it is: ${err.message}`));
}
