import { ApiError, type CorralClient } from "../api/client.ts";
import { forgetLeaseToken, leaseRef } from "./lease-tokens.ts";
import type { Out } from "./output.ts";
import { relative } from "./pool-format.ts";
import { jsonOut, paletteFor } from "./pool-session.ts";

/** The one-request pool commands: release, renew, pool close. `--json` prints the reply as is. */

export async function release(
  client: CorralClient,
  leaseId: string,
  opts: { token?: string; json: boolean },
  out: Out,
): Promise<void> {
  const { lease, pool } = leaseRef(leaseId, opts.token);
  const r = await client.release(lease, pool).catch((err: unknown) => {
    // The lease is over (or never was): its kept token is of no more use.
    if (err instanceof ApiError && (err.code === "lease_not_active" || err.code === "lease_not_found"))
      forgetLeaseToken(leaseId);
    throw err;
  });
  forgetLeaseToken(leaseId);
  if (opts.json) return jsonOut(out, r);
  const c = paletteFor(out);
  out.write(`released lease ${c.bold(r.leaseId)} ${c.dim(`(agent ${r.agentId}, pool ${r.pool})`)}\n`);
}

export async function renew(
  client: CorralClient,
  leaseId: string,
  opts: { ttlMs?: number; token?: string; json: boolean },
  out: Out,
): Promise<void> {
  const { lease, pool } = leaseRef(leaseId, opts.token);
  const r = await client.renew(lease, opts.ttlMs, pool);
  if (opts.json) return jsonOut(out, r);
  const c = paletteFor(out);
  const at = Date.parse(r.expiresAt);
  const when = Number.isNaN(at) ? "" : ` ${c.dim(`(${relative(at, Date.now())})`)}`;
  out.write(`renewed lease ${c.bold(r.leaseId)} until ${r.expiresAt}${when}\n`);
}

export async function closePool(
  client: CorralClient,
  pool: string,
  opts: { revokeLeases: boolean; json: boolean },
  out: Out,
): Promise<void> {
  const r = await client.close(pool, { revokeLeases: opts.revokeLeases });
  if (opts.json) return jsonOut(out, r);
  const c = paletteFor(out);
  out.write(`pool ${c.bold(r.pool)} is ${r.state}${opts.revokeLeases ? " (leases revoked)" : ""}\n`);
}
