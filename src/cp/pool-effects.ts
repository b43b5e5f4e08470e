import type { SpawnParams } from "../../machines/pool.ts";
import type { EffectContext, EffectHandlers } from "./effects.ts";
import { RejectedInputError } from "./errors.ts";

/** Sends a decision on to the agent it concerns; an agent that already moved on is fine. */
async function toAgent(
  ctx: EffectContext,
  agentId: string,
  input: Parameters<EffectContext["send"]>[1],
): Promise<void> {
  try {
    await ctx.send({ kind: "agent", id: agentId }, { ...input, causationId: ctx.event?.id });
  } catch (err) {
    if (!(err instanceof RejectedInputError)) throw err;
  }
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
