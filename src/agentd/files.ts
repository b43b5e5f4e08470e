import { randomBytes } from "node:crypto";
import { mkdirSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, relative, resolve } from "node:path";

/** Writes `path` whole or not at all: a temporary file beside it (made with `mode`), then a rename. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    writeFileSync(tmp, data, { mode, flag: "wx" });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * `rel` resolved under `home`, refused if it leaves it — also through a symlink in a directory
 * that already exists. Creates the parent directories it needs.
 */
export function pathUnderHome(home: string, rel: string): string {
  const root = realpathSync(home);
  const target = resolve(root, rel);
  if (!isInside(root, target)) throw new Error(`${rel}: outside the agent's home`);
  mkdirSync(dirname(target), { recursive: true });
  if (!isInside(root, realpathSync(dirname(target)))) throw new Error(`${rel}: outside the agent's home`);
  return target;
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}
