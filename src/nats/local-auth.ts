import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NATS_ROLES, type NatsAuth, type NatsRole } from "./auth.ts";

/**
 * The credentials of `npm start`'s own nats-server: one nkey per role, made once and kept in
 * `<dataDir>/nats-auth/<role>.nk` (mode 0600, the folder 0700), its public key in `<role>.pub`. The server is given only the
 * public keys (as the environment its config file reads); the CLI run in the same directory
 * finds the seed of the role it needs there.
 */

/** The server config with the three users and their permissions (README "Security"). */
export const CORRAL_NATS_CONF = fileURLToPath(new URL("./corral-nats.conf", import.meta.url));

/** corral-nats.conf reads each user's public nkey from this variable. */
export const NKEY_ENV: Record<NatsRole, string> = {
  daemon: "CORRAL_DAEMON_NKEY",
  client: "CORRAL_CLIENT_NKEY",
  reader: "CORRAL_READER_NKEY",
};

export const DEFAULT_DATA_DIR = ".corral";

export function localSeedFile(role: NatsRole, dataDir = DEFAULT_DATA_DIR): string {
  return join(dataDir, "nats-auth", `${role}.nk`);
}

/** The role's seed from `npm start`'s data dir, when there is one. */
export function localAuthFor(role: NatsRole, dataDir = DEFAULT_DATA_DIR): NatsAuth | undefined {
  const file = localSeedFile(role, dataDir);
  return existsSync(file) ? { nkey: file } : undefined;
}

/**
 * Makes the seeds that are missing (keeping those there, so running CLIs and `corral up`s go on
 * working across restarts) and returns the environment corral-nats.conf needs.
 */
export async function ensureLocalUsers(dataDir: string): Promise<Record<string, string>> {
  const { createUser, fromSeed } = await import("@nats-io/nkeys");
  const dir = join(dataDir, "nats-auth");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const env: Record<string, string> = {};
  for (const role of NATS_ROLES) {
    const file = localSeedFile(role, dataDir);
    let seed: Uint8Array;
    if (existsSync(file)) {
      seed = new Uint8Array(readFileSync(file)).filter((b) => b > 32); // no trailing newline
      chmodSync(file, 0o600);
    } else {
      seed = createUser().getSeed();
      writeFileSync(file, seed, { mode: 0o600, flag: "wx" });
    }
    const pub = fromSeed(seed).getPublicKey();
    writeFileSync(join(dir, `${role}.pub`), `${pub}\n`); // not a secret: for a server of one's own
    env[NKEY_ENV[role]] = pub;
  }
  return env;
}
