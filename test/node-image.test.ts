import assert from "node:assert/strict";
import { existsSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { elfInterpreter, isElf } from "../src/runtime/elf.ts";
import { hostNodeFiles, mappedLibs, NODE_IN_IMAGE, nodeRootfs } from "../src/runtime/node-rootfs.ts";
import { type TarEntry, tarChunks } from "../src/runtime/tar.ts";
import { tempDir } from "./helpers/teardown.ts";

// What goes into the node image, without an engine: the host's node, its libraries, the archive.
const skip = process.platform === "linux" ? false : "the node image is made from a Linux node only";

describe("the node image's files (no engine needed)", { skip }, () => {
  const dir = tempDir("node-image-");

  it("reads the loader a binary asks for from its ELF headers; a non-ELF file is refused", () => {
    const interp = elfInterpreter(process.execPath);
    if (interp !== undefined) assert.ok(existsSync(interp), `${interp} exists`); // undefined: a static node
    const text = join(dir, "text");
    writeFileSync(text, "not a binary\n");
    assert.equal(isElf(text), false);
    assert.equal(isElf(process.execPath), true);
    assert.throws(() => elfInterpreter(text), /not an ELF file/);
  });

  it("keeps only file-backed ELF mappings, other than the executable itself", () => {
    const libc = hostNodeFiles().libs.find((l) => /\/(libc\.so|ld-musl)/.test(l));
    assert.ok(libc, "libc is among node's libraries");
    const archive = join(dir, "locale-archive");
    writeFileSync(archive, "not ELF");
    const exe = realpathSync(process.execPath);
    const maps = [
      `00400000-00500000 r-xp 00000000 fe:00 1 ${exe}`,
      `7f00-7f01 r--p 00000000 fe:00 2 ${libc}`,
      `7f01-7f02 r-xp 00001000 fe:00 2 ${libc}`,
      `7f02-7f03 r--p 00000000 fe:00 3 ${archive}`,
      "7f03-7f04 rw-p 00000000 00:00 0 [heap]",
      "7f04-7f05 rw-s 00000000 00:05 4 /dev/zero (deleted)",
      `7f05-7f06 r--p 00000000 fe:00 5 ${join(dir, "gone.so")} (deleted)`,
      "7f06-7f07 r-xp 00000000 00:00 0 [vdso]",
    ].join("\n");
    assert.deepEqual(mappedLibs(maps, exe), [libc]);
  });

  it("lays out node, each library with its soname links, the loader path, and extra files", () => {
    const files = hostNodeFiles();
    const entries = [...nodeRootfs(files, [{ path: "/opt/corral/agents/a.mjs", data: Buffer.from("x") }])];
    const byPath = new Map<string, TarEntry>();
    for (const e of entries) {
      assert.ok(!byPath.has(e.path), `${e.path} appears once`);
      const parent = e.path.split("/").slice(0, -1).join("/");
      if (parent) assert.equal(byPath.get(parent)?.type, "dir", `${parent} comes before ${e.path}`);
      byPath.set(e.path, e);
    }
    assert.equal(byPath.get(NODE_IN_IMAGE.slice(1))?.type, "file");
    for (const lib of files.libs) assert.equal(byPath.get(lib.slice(1))?.type, "file", lib);
    if (files.interpreter)
      assert.ok(byPath.has(files.interpreter.slice(1)), "the loader where node asks for it");
    assert.equal(byPath.get("opt/corral/agents/a.mjs")?.type, "file");
    assert.deepEqual(byPath.get("tmp"), { type: "dir", path: "tmp", mode: 0o1777 });
    const links = entries.filter((e) => e.type === "symlink");
    for (const l of links) if (l.type === "symlink") assert.ok(byPath.has(l.path));
  });
});

describe("tar writer", () => {
  it("stores a path over 100 bytes as ustar prefix + name", () => {
    const long = `${"d".repeat(60)}/${"e".repeat(60)}/file`;
    const [header] = tarChunks([{ type: "file", path: long, data: Buffer.from("hi") }]);
    assert.ok(header);
    const field = (o: number, n: number) => header.toString("utf8", o, o + n).replace(/\0.*$/s, "");
    assert.equal(field(0, 100), `${"e".repeat(60)}/file`);
    assert.equal(field(345, 155), "d".repeat(60));
    assert.throws(
      () => [...tarChunks([{ type: "file", path: "x".repeat(101), data: Buffer.alloc(0) }])],
      /too long/,
    );
  });
});
