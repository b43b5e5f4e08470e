import { uuidv7 } from "./id.ts";

/**
 * A lease is a phase of its agent (one event per acquire, on the agent's subject), so a lease id
 * names its agent: `<agentId>.<uuidv7>`. Whoever holds a lease id finds the agent, and through
 * the agent's first event its pool, without reading any other part of the stream.
 */
export const LEASE_ID =
  /^[A-Za-z0-9_-]{1,128}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function newLeaseId(agentId: string, at: number): string {
  return `${agentId}.${uuidv7(at)}`;
}

export function isLeaseId(s: unknown): s is string {
  return typeof s === "string" && LEASE_ID.test(s);
}

/** The agent a lease id names; undefined when it is not a lease id. */
export function agentOfLease(leaseId: string): string | undefined {
  return isLeaseId(leaseId) ? leaseId.slice(0, leaseId.lastIndexOf(".")) : undefined;
}

/**
 * Whether `leaseId` names `agentId`, for an id already validated as a lease id (an event's data
 * is checked by its schema): no second regex on the hot path.
 */
export function namesAgent(leaseId: string, agentId: string): boolean {
  return (
    leaseId.length === agentId.length + 37 && leaseId.startsWith(agentId) && leaseId[agentId.length] === "."
  );
}
