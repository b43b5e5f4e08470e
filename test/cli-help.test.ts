import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Command } from "commander";
import { buildProgram } from "../src/cli/main.ts";
import { corral, root } from "./helpers/cli.ts";

/** Every command a user can run: `events tail`, `pool close`, `acquire`, … */
function leafPaths(cmd: Command, prefix: string[] = []): string[] {
  return cmd.commands.flatMap((c) =>
    c.commands.length ? leafPaths(c, [...prefix, c.name()]) : [[...prefix, c.name()].join(" ")],
  );
}

describe("corral --help and --version", () => {
  it("--help lists every command, nested ones too, one line each", async () => {
    const r = await corral(["--help"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    const listed = lines.slice(lines.indexOf("Commands:") + 1).filter((l) => l.trim());
    for (const line of listed)
      assert.match(line, /^ {2}\S.*\S {2,}\S/, `one line, name and summary: ${line}`);
    const names = listed.map((l) =>
      l
        .trim()
        .split(/ {2,}/)[0]
        ?.replace(/ [<[].*$/, ""),
    );
    assert.deepEqual(names, [...leafPaths(buildProgram()), "help"]);
  });

  it("an unknown command is answered with the whole command it is near (`tail`: events tail)", async () => {
    for (const [typed, meant] of [
      ["tail", "events tail"],
      ["shw", "events show"],
      ["close", "pool close"],
      ["worldveiw", "worldview"],
    ]) {
      const r = await corral([typed as string]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`unknown command '${typed}'\\s*\\(Did you mean ${meant}\\?\\)`));
    }
  });

  it("--version prints the package's version", async () => {
    const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
    const r = await corral(["--version"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${version}\n`);
  });

  it("an option value is still checked (its parser is loaded on demand)", async () => {
    const r = await corral(["events", "tail", "--type", "NoSuchEvent"]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /option '-t, --type <type>' argument 'NoSuchEvent' is invalid\. unknown event type/,
    );
  });
});
