import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, linkSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

/**
 * Files written whole or not at all: the bytes go to a temporary file beside the target (created
 * with `mode`, so a key is never readable by others, not even for a moment), then move into place
 * in one step. A reader sees no file, the old one or the new one, never half of one.
 */

/** Writes `path`, replacing what was there. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = writeTemp(path, data, mode);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Creates `path` unless it exists: linking the temporary file into place fails when another
 * process got there first. True when this call created it; false when it was already there
 * (and is left as it was).
 */
export function createFileExclusive(path: string, data: string | Uint8Array, mode: number): boolean {
  const tmp = writeTemp(path, data, mode);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function writeTemp(path: string, data: string | Uint8Array, mode: number): string {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  } finally {
    closeSync(fd);
  }
  return tmp;
}
