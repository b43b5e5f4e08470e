// An actor host with the real agent and pool machines and effects that do nothing, so a test can
// put an agent in a chosen phase and watch what the reconciler (src/cp/reconciler.ts) records.
import pino from "pino";
import { agentAggregate } from "../../machines/agent.ts";
import type { AggregateDef } from "../../machines/aggregate.ts";
import { poolAggregate } from "../../machines/pool.ts";
import { ActorHost } from "../../src/cp/actor-host.ts";
import type { EffectHandlers } from "../../src/cp/effects.ts";
import type { RuntimeDeps } from "../../src/cp/reconciler.ts";
import { asAgentView } from "../../src/cp/views.ts";
import type { RuntimeKind } from "../../src/runtime/types.ts";
import type { EventStore } from "../../src/store/event-store.ts";

export interface TestAgent {
  id: string;
  generation: number;
}

export interface AgentHost {
  host: ActorHost;
  log: pino.Logger;
  /**
   * An agent of `poolId` whose instance `instanceId` was created and started (as the stream
   * tells it; nothing is started by this host): the phase AgentStarted leads to.
   */
  startedAgent(kind: RuntimeKind, poolId: string, agentId: string, instanceId: string): Promise<TestAgent>;
  /** The agent's top-level phase ("failed" once it failed: final phases stay readable). */
  stateOf(agent: TestAgent): Promise<string>;
  /** The agent's stored events, by type. */
  eventsOf(agent: TestAgent): Promise<{ type: string; data: unknown }[]>;
  close(): Promise<void>;
}

function noEffects(def: AggregateDef): EffectHandlers {
  return Object.fromEntries(def.effects.map((name) => [name, async () => {}]));
}

export async function openAgentHost(store: EventStore): Promise<AgentHost> {
  const log = pino({ level: "silent" });
  const host = new ActorHost({
    store,
    aggregates: [poolAggregate, agentAggregate],
    effects: { pool: noEffects(poolAggregate), agent: noEffects(agentAggregate) },
    log,
  });
  return {
    host,
    log,
    async startedAgent(kind, poolId, agentId, instanceId) {
      const ref = { kind: "agent" as const, id: agentId };
      const deadline = Date.now() + 3_600_000;
      await host.send(ref, { type: "AgentRequested", data: { poolId, runtime: kind, deadline } });
      const generation = asAgentView(await host.get(ref)).context.generation;
      await host.send(ref, { type: "AgentPortsAllocated", data: { generation, ports: [] } });
      await host.send(ref, { type: "AgentCreated", data: { generation, instanceId } });
      await host.send(ref, { type: "AgentStarted", data: { generation } });
      return { id: agentId, generation };
    },
    async stateOf(agent) {
      const v = (await host.get({ kind: "agent", id: agent.id })).value;
      return typeof v === "object" && v !== null ? (Object.keys(v)[0] ?? "") : String(v);
    },
    async eventsOf(agent) {
      const records = await store.readAggregate({ kind: "agent", id: agent.id });
      return records.flatMap((r) => (r.event ? [{ type: r.event.type, data: r.event.data }] : []));
    },
    close: () => host.close(),
  };
}

/** RuntimeDeps that record each call, in order. */
export function spyDeps(): { deps: RuntimeDeps; calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    deps: {
      onDial: (agentId, generation) => void calls.push(["onDial", agentId, generation]),
      onDestroyed: (agentId, generation) => void calls.push(["onDestroyed", agentId, generation]),
      ports: {
        release: (agentId) => {
          calls.push(["release", agentId]);
          return [];
        },
      },
    },
  };
}
