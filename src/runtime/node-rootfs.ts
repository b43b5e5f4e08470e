import { execFileSync } from "node:child_process";
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, posix } from "node:path";
import { elfInterpreter, isElf } from "./elf.ts";
import type { TarEntry } from "./tar.ts";

/** Where node sits inside the image (on PATH). */
export const NODE_IN_IMAGE = "/usr/local/bin/node";

/**
 * What this host's Node needs to run on its own: the binary, the loader and every shared object
 * it maps. Learnt from /proc/<pid>/maps of a fresh node (no addons, no loaders) that has already
 * resolved a host name and a user, so glibc's lazily loaded NSS modules are in it too.
 */
export interface NodeFiles {
  node: string;
  /** The loader path the binary asks for (PT_INTERP), when dynamically linked. */
  interpreter?: string;
  /** Real paths of the shared objects, loader included. */
  libs: string[];
}

const PROBE = `require("dns").lookup("localhost", () => {
  try { require("os").userInfo(); } catch {}
  process.stdout.write(require("fs").readFileSync("/proc/self/maps", "utf8"));
});`;

export function hostNodeFiles(execPath = process.execPath): NodeFiles {
  if (process.platform !== "linux") {
    throw new Error(`this host's node is a ${process.platform} binary, not a Linux one`);
  }
  const node = realpathSync(execPath);
  const maps = execFileSync(node, ["-e", PROBE], {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "" }, // no NODE_OPTIONS: nothing preloaded into the probe
    timeout: 30_000,
  });
  return { node, interpreter: elfInterpreter(node), libs: mappedLibs(maps, node) };
}

/** File-backed ELF mappings other than the executable (locale archives and the like are left out). */
export function mappedLibs(maps: string, executable: string): string[] {
  const out = new Set<string>();
  for (const line of maps.split("\n")) {
    const [, inode, path] = /^\S+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+(\/.*)$/.exec(line) ?? [];
    if (!path || inode === "0" || path.endsWith(" (deleted)")) continue;
    if (path === executable || out.has(path) || path.startsWith("/dev/") || path.startsWith("/proc/"))
      continue;
    if (isElf(path)) out.add(path);
  }
  return [...out].sort();
}

/**
 * The image's filesystem: node at NODE_IN_IMAGE, each library at its host path with the names
 * it is known by (soname symlinks in its directory), the loader at the path the binary asks for,
 * /tmp, a passwd with root, and `extra` files (read-only). Files are read one at a time as the
 * archive is written.
 */
export function* nodeRootfs(
  files: NodeFiles,
  extra: { path: string; data: Buffer }[] = [],
): Generator<TarEntry> {
  const dirs = new Set<string>();
  function* dir(path: string): Generator<TarEntry> {
    const rel = path.replace(/^\/+/, "");
    if (!rel || dirs.has(rel)) return;
    yield* dir(posix.dirname(`/${rel}`));
    dirs.add(rel);
    yield { type: "dir", path: rel, mode: rel === "tmp" ? 0o1777 : rel === "root" ? 0o700 : 0o755 };
  }
  const file = (path: string, data: Buffer, mode: number): TarEntry => ({
    type: "file",
    path: path.replace(/^\/+/, ""),
    data,
    mode,
  });
  yield* dir("/tmp");
  yield* dir("/root");
  yield* dir("/etc");
  yield file(
    "/etc/passwd",
    Buffer.from("root:x:0:0:root:/root:/usr/local/bin/node\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
    0o644,
  );
  yield file("/etc/group", Buffer.from("root:x:0:\nnogroup:x:65534:\n"), 0o644);
  yield* dir(dirname(NODE_IN_IMAGE));
  yield file(NODE_IN_IMAGE, readFileSync(files.node), 0o755);
  const placed = new Set<string>();
  for (const lib of files.libs) {
    yield* dir(dirname(lib));
    yield file(lib, readFileSync(lib), statSync(lib).mode & 0o7777);
    placed.add(lib);
    for (const alias of aliases(lib)) {
      placed.add(alias);
      yield { type: "symlink", path: alias.replace(/^\/+/, ""), target: basename(lib) };
    }
  }
  const interp = files.interpreter;
  if (interp && !placed.has(interp)) {
    yield* dir(dirname(interp));
    yield { type: "symlink", path: interp.replace(/^\/+/, ""), target: realpathSync(interp) };
  }
  for (const f of extra) {
    yield* dir(dirname(f.path));
    yield file(f.path, f.data, 0o444);
  }
}

/** Symlinks beside a library that resolve to it (libstdc++.so.6 → libstdc++.so.6.0.30). */
export function aliases(lib: string): string[] {
  const dir = dirname(lib);
  const stem = basename(lib).replace(/\.so(\..*)?$/, ".so");
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(stem) || name === basename(lib)) continue;
    const path = `${dir}/${name}`;
    try {
      if (lstatSync(path).isSymbolicLink() && realpathSync(path) === lib) out.push(path);
    } catch {
      // a dangling link: not one of ours
    }
  }
  return out.sort();
}
