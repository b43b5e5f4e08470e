import { agentOfLease } from "../../events/lease-id.ts";
import { LeaseNotActiveError, LeaseTokenInvalidError, PoolError } from "../errors.ts";
import { leaseTokenMatches } from "../pool/lease-token.ts";
import type { AgentView } from "../views.ts";

/**
 * The agent whose live lease `leaseId` is, if `leaseToken` is that lease's token: the same check
 * release and renew make (src/cp/pool/broker.ts), on the agent's state as its actor host holds it.
 */
export async function leasedAgent(
  pool: string,
  leaseId: string,
  leaseToken: string,
  agentView: (agentId: string) => Promise<AgentView>,
): Promise<string> {
  const agentId = agentOfLease(leaseId);
  if (!agentId) throw new PoolError("bad_request", `${JSON.stringify(leaseId)} is not a lease id`);
  const view = await agentView(agentId);
  if (view.seq === 0) throw new LeaseNotActiveError(leaseId, "new");
  if (view.context.poolId !== pool) {
    throw new PoolError("wrong_pool", `lease ${leaseId} belongs to pool ${view.context.poolId}, not ${pool}`);
  }
  const lease = view.context.lease;
  if (lease?.id !== leaseId) throw new LeaseNotActiveError(leaseId, "over");
  if (!leaseTokenMatches(leaseToken, lease.tokenHash)) throw new LeaseTokenInvalidError(leaseId);
  return agentId;
}
