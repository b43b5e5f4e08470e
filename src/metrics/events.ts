import { agentPhase } from "../../machines/agent.ts";
import type { ActorView } from "../cp/actor-host.ts";
import { asAgentView } from "../cp/views.ts";
import type { CorralEvent } from "../events/catalogue.ts";
import { BoundedLabel, type CorralMetrics } from "./definitions.ts";

const LEASE_EVENTS: Partial<Record<CorralEvent["type"], string>> = {
  AgentLeased: "granted",
  AgentLeaseRenewed: "renewed",
  AgentReleased: "released",
  AgentLeaseExpired: "expired",
  AgentLeaseRevoked: "revoked",
};

/**
 * The counters and histograms that follow from each event the daemon stores (the actor host's
 * `onChange`): by the events' own times, so they match what the stream says.
 */
export function eventMetrics(m: CorralMetrics): (view: ActorView, event: CorralEvent) => void {
  const failureCodes = new BoundedLabel();
  const spawnCodes = new BoundedLabel();
  /** Agents on their way to ready: when their generation was asked for (event time, ms). */
  const spawning = new Map<string, number>();

  return (view, event) => {
    m.events.inc({ kind: event.aggregate.kind, type: event.type });
    if (view.ref.kind === "pool") {
      const pool = view.ref.id;
      if (event.type === "PoolAgentRecycled") m.recycles.inc({ pool, reason: event.data.reason });
      if (event.type === "PoolSpawnFailed")
        m.spawnFailures.inc({ pool, code: spawnCodes.of(event.data.code) });
      return;
    }
    if (view.ref.kind !== "agent") return;
    const agent = asAgentView(view);
    const pool = agent.context.poolId;
    const id = agent.ref.id;
    const lease = LEASE_EVENTS[event.type];
    if (lease) m.leaseEvents.inc({ pool, event: lease });
    switch (event.type) {
      case "AgentRequested":
      case "AgentRecycled":
        spawning.set(id, event.at);
        break;
      case "AgentFailed":
        m.failures.inc({ pool, code: failureCodes.of(event.data.code) });
        break;
      case "InitStepCompleted":
        m.initStep.observe({ pool, step: event.data.name, outcome: "ok" }, event.data.durationMs / 1000);
        break;
      case "InitStepFailed":
        m.initStep.observe(
          { pool, step: event.data.name, outcome: event.data.reason },
          event.data.durationMs / 1000,
        );
        break;
    }
    const since = spawning.get(id);
    if (since === undefined) return;
    const phase = agent.status === "done" ? "ended" : agentPhase(agent.value);
    if (phase === "idle") m.spawnReady.observe({ pool }, Math.max(0, event.at - since) / 1000);
    if (phase === "idle" || phase === "ended" || phase === "failed" || phase === "stopped")
      spawning.delete(id);
  };
}
