import type { SpawnParams } from "../../machines/pool.ts";
import type { Input } from "./actor-host.ts";
import type { EffectContext, EffectHandlers } from "./effects.ts";

/** Sends a decision on to the agent it concerns; an agent that already moved on refuses it. */
async function toAgent(ctx: EffectContext, agentId: string, input: Input): Promise<void> {
  await ctx.offer({ kind: "agent", id: agentId }, input);
}

/** The pool machine's effects: each recorded decision becomes its agent's next input. */
export function poolEffects(): EffectHandlers {
  return {
    spawnAgent: (p: SpawnParams, ctx) =>
      toAgent(ctx, p.agentId, {
        type: "AgentRequested",
        data: { poolId: p.poolId, runtime: p.runtime, deadline: p.deadline },
      }),
    retireAgent: (p: { agentId: string; reason: string; deadline: number }, ctx) =>
      toAgent(ctx, p.agentId, {
        type: "AgentDrainRequested",
        data: { reason: p.reason, deadline: p.deadline },
      }),
    recycleAgent: (p: { agentId: string; reason: string; deadline: number }, ctx) =>
      toAgent(ctx, p.agentId, {
        type: "AgentRecycleRequested",
        data: { reason: p.reason, deadline: p.deadline },
      }),
  };
}
