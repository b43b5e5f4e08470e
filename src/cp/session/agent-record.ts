import type { ActorHost } from "../actor-host.ts";
import { asAgentView } from "../views.ts";
import type { AgentRecord } from "./register.ts";

/** The dialer's `agentOf` from the actor host: the agent's pool and generation, live unless ended. */
export function agentRecordsOf(
  host: Pick<ActorHost, "get">,
): (agentId: string) => Promise<AgentRecord | null> {
  return async (agentId) => {
    const view = asAgentView(await host.get({ kind: "agent", id: agentId }));
    if (view.seq === 0) return null;
    const { poolId, generation } = view.context;
    return { poolId, generation, live: view.status === "active" };
  };
}
