import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { AcquireReply, LeaseRef } from "../api/protocol.ts";
import { isLeaseId } from "../events/lease-id.ts";
import { CliError, EXIT } from "./exit.ts";

/**
 * Where `corral acquire` keeps each lease's token for this user, so `corral release` and
 * `corral renew` work without `--token`: one file per lease under the user's state dir
 * ($XDG_STATE_HOME/corral/leases, else ~/.local/state/corral/leases), the dir 0700 and each
 * file 0600, removed when the lease is released.
 */

export interface KeptLease {
  leaseId: string;
  leaseToken: string;
  pool: string;
}

export function leaseTokenDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_STATE_HOME?.trim() || join(homedir(), ".local", "state");
  return join(base, "corral", "leases");
}

function fileOf(leaseId: string): string {
  // A lease id is `<agent id>.<uuid>` (checked): safe as a file name, no path in it.
  if (!isLeaseId(leaseId)) throw new Error(`not a lease id: ${JSON.stringify(leaseId)}`);
  return join(leaseTokenDir(), `${leaseId}.json`);
}

/** Keeps the lease's token; returns the file. */
export function keepLeaseToken(lease: AcquireReply): string {
  const dir = leaseTokenDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = fileOf(lease.leaseId);
  const kept: KeptLease = { leaseId: lease.leaseId, leaseToken: lease.leaseToken, pool: lease.pool };
  writeFileSync(file, `${JSON.stringify(kept)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600); // a file that existed keeps its old mode through writeFileSync
  return file;
}

export function findLeaseToken(leaseId: string): KeptLease | undefined {
  try {
    const kept = JSON.parse(readFileSync(fileOf(leaseId), "utf8")) as Partial<KeptLease>;
    if (typeof kept.leaseToken !== "string" || typeof kept.pool !== "string") return undefined;
    return { leaseId, leaseToken: kept.leaseToken, pool: kept.pool };
  } catch {
    return undefined;
  }
}

export function forgetLeaseToken(leaseId: string): void {
  rmSync(fileOf(leaseId), { force: true });
}

/** A command's lease and its token: `--token`, else the one `corral acquire` kept for this user. */
export function leaseRef(leaseId: string, token: string | undefined): { lease: LeaseRef; pool?: string } {
  if (token) return { lease: { leaseId, leaseToken: token } };
  const kept = findLeaseToken(leaseId);
  if (!kept) {
    throw new CliError(
      `no token for lease ${leaseId}: pass --token <token> (\`corral acquire\` printed it)`,
      EXIT.usage,
    );
  }
  return { lease: kept, pool: kept.pool };
}
