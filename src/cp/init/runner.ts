import type { Logger } from "pino";
import type { PoolConfig } from "../../events/pool.ts";
import { KeyedQueue } from "../../keyed-queue.ts";
import { silentLogger } from "../../log.ts";
import type { ActorHost } from "../actor-host.ts";
import type { Scheduler } from "../scheduler.ts";
import { asAgentView } from "../views.ts";
import { type InitOutcome, type InitSession, runInitPlan } from "./executor.ts";
import { initPlan } from "./plan.ts";
import type { InitKeys } from "./template.ts";

/**
 * What the control plane does with each registered session (Sessions.onReady, an AgentSession): runs the agent's
 * init plan, built from this daemon's own config of the agent's pool (never the stream's copy).
 * One plan at a time per agent: a plan for a newer session waits for the one before it to stop
 * (its session lost), so their facts never interleave. An agent that is not of the session's
 * generation, or not live, gets nothing; one that is ready already is offered the plan all the
 * same: its InitStarted is refused, unless the hello-ack shows the init was bypassed.
 */

export interface InitRunnerDeps {
  host: Pick<ActorHost, "offer" | "get">;
  configOf(poolId: string): PoolConfig | null;
  keys: InitKeys;
  clock: Pick<Scheduler, "now" | "arm" | "disarm">;
  log?: Logger;
}

export function initRunner(deps: InitRunnerDeps): (session: InitSession) => Promise<InitOutcome | null> {
  const queue = new KeyedQueue();
  const log = deps.log ?? silentLogger;
  return (session) =>
    queue.run(session.agentId, async () => {
      const agent = asAgentView(await deps.host.get({ kind: "agent", id: session.agentId }));
      if (agent.context.generation !== session.generation || agent.status !== "active") return null;
      const config = deps.configOf(agent.context.poolId);
      if (!config) {
        log.warn(
          { agent: session.agentId, pool: agent.context.poolId },
          "init: the pool is not configured here",
        );
        return null;
      }
      const plan = initPlan(config.template.init, deps.keys);
      const outcome = await runInitPlan({
        session,
        plan,
        offer: (r, i) => deps.host.offer(r, i),
        clock: deps.clock,
        log,
      });
      log.info({ agent: session.agentId, generation: session.generation, ...outcome }, "init plan ended");
      return outcome;
    });
}
