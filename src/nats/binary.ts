import { accessSync, constants, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

/**
 * Where `name` would run from: the first executable file in PATH, also trying the `sbin` beside
 * each `bin` — Debian installs nats-server to /usr/sbin, which a normal user's PATH lacks.
 */
export function findExecutable(name: string, path = process.env.PATH ?? ""): string | undefined {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    const sbin = /(^|\/)bin\/?$/.test(dir) ? join(dirname(dir), "sbin") : undefined;
    for (const candidate of sbin ? [join(dir, name), join(sbin, name)] : [join(dir, name)]) {
      try {
        if (!statSync(candidate).isFile()) continue;
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

export function findNatsServer(path?: string): string | undefined {
  return findExecutable("nats-server", path);
}
