import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { EventKey } from "./event-mark.ts";

/**
 * Where the writer key lives: a file of its own under the daemon's state dir, mode 0600, never in
 * NATS and never logged (ARCHITECTURE.md, "Event marks"). The file holds the key in base64 and a
 * newline, nothing else.
 */
export const KEY_FILE_NAME = "event.key";
export const KEY_FILE_ENV = "CORRAL_EVENT_KEY_FILE";

export class KeyFileError extends Error {
  override name = "KeyFileError";
}

export function keyFileIn(stateDir: string): string {
  return join(resolve(stateDir), KEY_FILE_NAME);
}

/** The daemon's key: read from `<stateDir>/event.key`, or made there on first start. */
export function loadOrCreateEventKey(stateDir: string): { key: EventKey; file: string; created: boolean } {
  const file = process.env[KEY_FILE_ENV] || keyFileIn(stateDir);
  const existing = readEventKey(file);
  if (existing) return { key: existing, file, created: false };
  mkdirSync(resolve(file, ".."), { recursive: true, mode: 0o700 });
  const secret = randomBytes(32);
  const key = EventKey.fromBytes(secret);
  let fd: number;
  try {
    // O_EXCL: two daemons starting at once must not each write a key of their own.
    fd = openSync(file, "wx", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      const raced = readEventKey(file);
      if (raced) return { key: raced, file, created: false };
    }
    throw new KeyFileError(`cannot create the event key ${file}: ${(err as Error).message}`);
  }
  try {
    writeSync(fd, `${secret.toString("base64")}\n`);
  } finally {
    closeSync(fd);
  }
  return { key, file, created: true };
}

/** The key in `file`; undefined when there is no such file. Refuses one others may read. */
export function readEventKey(file: string): EventKey | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new KeyFileError(`cannot read the event key ${file}: ${(err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (process.platform !== "win32" && (st.mode & 0o077) !== 0) {
      throw new KeyFileError(
        `the event key ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
      );
    }
    const text = readFileSync(fd, "utf8").trim();
    const bytes = Buffer.from(text, "base64");
    if (bytes.length !== 32 || bytes.toString("base64") !== text) {
      throw new KeyFileError(`the event key ${file} is not 32 bytes of base64`);
    }
    return EventKey.fromBytes(bytes);
  } finally {
    closeSync(fd);
  }
}

/**
 * The key a reader uses: `CORRAL_EVENT_KEY_FILE`, else `<stateDir>/event.key` (default `.corral`,
 * where `corral up` and `npm start` keep it). Undefined when there is none: the reader then says
 * "unverified" (README, "The subject contract").
 */
export function findEventKey(stateDir = ".corral"): { key: EventKey; file: string } | undefined {
  const file = process.env[KEY_FILE_ENV] || keyFileIn(stateDir);
  const key = readEventKey(file);
  return key ? { key, file } : undefined;
}
