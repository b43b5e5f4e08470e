import type { AgentContext } from "../../machines/agent.ts";
import type { PoolContext } from "../../machines/pool.ts";
import type { ActorView } from "./actor-host.ts";
import type { EffectContext } from "./effects.ts";

/**
 * Typed views per aggregate kind. The host holds every actor as an untyped ActorView; these are
 * the only places that say which context a kind carries (its machine's), checked by the kind.
 */
export type AgentView = ActorView<AgentContext>;
export type PoolView = ActorView<PoolContext>;

export function asAgentView(view: ActorView): AgentView {
  if (view.ref.kind !== "agent") throw new TypeError(`${view.ref.kind}/${view.ref.id} is not an agent`);
  return view as AgentView;
}

export function asPoolView(view: ActorView): PoolView {
  if (view.ref.kind !== "pool") throw new TypeError(`${view.ref.kind}/${view.ref.id} is not a pool`);
  return view as PoolView;
}

/** The agent's context as an agent effect sees it (after the transition that asked for it). */
export function agentContextOf(effect: EffectContext): AgentContext {
  if (effect.aggregate.kind !== "agent")
    throw new TypeError(`${effect.aggregate.kind} effect is not an agent's`);
  return effect.context as AgentContext;
}
