import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import * as natsSource from "../src/vendor/nats.ts";
import * as zodSource from "../src/vendor/zod.ts";

const root = join(import.meta.dirname, "..");
/** The packages src/vendor/ stands in for: a value taken from one elsewhere loads it a second time. */
const VENDORED = /^(zod|@nats-io\/(transport-node|nats-core|jetstream|kv|services))$/;

function sources(): string[] {
  const out: string[] = [];
  for (const dir of ["src", "machines"]) {
    for (const e of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
      const path = join(e.parentPath, e.name);
      if (e.isFile() && path.endsWith(".ts") && !path.startsWith(join(root, "src", "vendor"))) out.push(path);
    }
  }
  return out;
}

/** Value imports of `text`'s module specifiers: static ones not marked `type` (whole or per name), dynamic ones, re-exports. */
function valueImports(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(import|export)\s+(type\s+)?([^;'"]*?)\s*from\s+"([^"]+)"/g)) {
    const [, , wholeType, names = "", from = ""] = m;
    if (wholeType) continue;
    const braced = names.match(/^\{([^}]*)\}$/);
    const values = braced
      ? (braced[1] ?? "").split(",").filter((n) => n.trim() && !/^\s*type\s/.test(n))
      : [names];
    if (values.length > 0) found.push(from);
  }
  for (const m of text.matchAll(/import\(\s*"([^"]+)"\s*\)/g)) found.push(m[1] ?? "");
  return found;
}

describe("vendored packages (src/vendor/, bundled by scripts/build.js)", () => {
  it("every value from zod or the NATS client is taken through src/vendor/", () => {
    const offenders = sources().flatMap((path) =>
      valueImports(readFileSync(path, "utf8"))
        .filter((from) => VENDORED.test(from))
        .map((from) => `${relative(root, path)} imports ${from}`),
    );
    assert.deepEqual(offenders, [], "import it from src/vendor/ instead (types may come from the package)");
  });

  it("the scan sees the imports it is for", () => {
    const text = [
      'import { z } from "zod";',
      'import type { KV } from "@nats-io/kv";',
      'import { type Msg, nuid } from "@nats-io/nats-core";',
      'import { type Msg } from "@nats-io/jetstream";',
      'const nats = await import("@nats-io/transport-node");',
      'export { Svcm } from "@nats-io/services";',
    ].join("\n");
    assert.deepEqual(valueImports(text), [
      "zod",
      "@nats-io/nats-core",
      "@nats-io/services",
      "@nats-io/transport-node",
    ]);
  });

  const built = join(root, "dist", "src", "vendor");
  // A build without esbuild keeps the plain re-exports; CI's (npm ci) must have bundled.
  const bundled = (file: string) =>
    existsSync(join(built, file)) &&
    !/from\s*"(zod|@nats-io\/)/.test(readFileSync(join(built, file), "utf8"));
  const skip =
    bundled("nats.js") || process.env.CI ? false : "no bundled build in dist/ (npm run build makes one)";
  it("the build's bundles are single files with the names the sources export, zod in English only", {
    skip,
  }, async () => {
    for (const file of ["zod.js", "nats.js"]) {
      const text = readFileSync(join(built, file), "utf8");
      const imports = [...text.matchAll(/(?:^|\n)\s*import\s[^;]*?from\s*"([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual(
        imports.filter((s) => !s?.startsWith("node:")),
        [],
        `${file} imports only node's modules`,
      );
    }
    const nats = await import(pathToFileURL(join(built, "nats.js")).href);
    for (const [name, value] of Object.entries(natsSource))
      assert.equal(typeof nats[name], typeof value, `dist's nats.js exports ${name}`);
    const { z } = await import(pathToFileURL(join(built, "zod.js")).href);
    assert.deepEqual(Object.keys(z.locales), ["en"]);
    const bad = { id: 1, ports: [-1] };
    const schema = (zz: typeof zodSource.z) =>
      zz.strictObject({ id: zz.string(), ports: zz.array(zz.number().min(0)) });
    assert.deepEqual(
      schema(z)
        .safeParse(bad)
        .error?.issues.map((i: { message: string }) => i.message),
      schema(zodSource.z)
        .safeParse(bad)
        .error?.issues.map((i) => i.message),
      "the same English messages as zod itself",
    );
  });
});
