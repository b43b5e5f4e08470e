import type { Logger } from "pino";
import type { Runtime, RuntimeEvent } from "../runtime/types.ts";
import type { ActorHost, Input } from "./actor-host.ts";
import { type AgentView, asAgentView } from "./views.ts";

/** States in which an agent's instance is expected to exist and keep running. */
const MUST_RUN = new Set(["ready", "draining"]);

function stateName(value: unknown): string {
  return typeof value === "object" && value !== null ? (Object.keys(value)[0] ?? "") : String(value);
}

/** An agent that moved on meanwhile refuses the input: fine. Anything else is logged. */
async function tell(host: ActorHost, log: Logger, view: AgentView, input: Input) {
  await host
    .offer(view.ref, input)
    .catch((err: unknown) => log.error({ err, aggregate: view.ref }, "reconcile input failed"));
}

export interface ReconcileReport {
  adopted: number;
  removed: number;
  gone: number;
}

/**
 * After a restart: compare what the runtime has (by our instance label) with what the stream
 * says. Instances of a live agent's current generation are adopted; everything else is removed
 * (orphans, old generations, agents that ended) — each removal recorded on its pool first;
 * agents that should be running but are not are recorded as failed, so the pool replaces them.
 */
export async function reconcileRuntime(
  runtime: Runtime,
  host: ActorHost,
  log: Logger,
  ours: (poolId: string) => boolean,
): Promise<ReconcileReport> {
  // Only agents of our own pools: another instance's agents are not ours to judge.
  const agents = new Map(
    host
      .liveActors("agent")
      .map(asAgentView)
      .filter((v) => v.context.runtime === runtime.kind && ours(v.context.poolId))
      .map((v) => [v.ref.id, v]),
  );
  const report: ReconcileReport = { adopted: 0, removed: 0, gone: 0 };
  const running = new Set<string>();
  for (const inst of await runtime.list()) {
    const agent = agents.get(inst.agentId);
    const ctx = agent?.context;
    const state = agent ? stateName(agent.value) : "";
    const current =
      ctx !== undefined &&
      inst.generation === ctx.generation &&
      (ctx.instanceId === inst.id || (ctx.instanceId === null && state === "creating"));
    if (current && state !== "stopping" && state !== "recycling") {
      report.adopted++;
      if (inst.state === "running") running.add(inst.id);
      continue;
    }
    if (current) continue; // its resumed stop/recycle effect removes it
    log.info(
      { instance: inst.id, agent: inst.agentId, generation: inst.generation },
      "removing orphaned instance",
    );
    // Persist, then act: the removal is a fact on the pool the instance is labelled with.
    await host.offer(
      { kind: "pool", id: inst.poolId },
      {
        type: "PoolOrphanRemoved",
        data: {
          instanceId: inst.id,
          agentId: inst.agentId,
          generation: inst.generation,
          runtime: runtime.kind,
        },
      },
    );
    await runtime.stop(inst.id, 1_000);
    await runtime.remove(inst.id);
    report.removed++;
  }
  for (const agent of agents.values()) {
    const ctx = agent.context;
    if (!MUST_RUN.has(stateName(agent.value)) || (ctx.instanceId && running.has(ctx.instanceId))) continue;
    report.gone++;
    await tell(host, log, agent, {
      type: "AgentFailed",
      data: { phase: stateName(agent.value), code: "gone", message: "instance not running after restart" },
    });
  }
  return report;
}

/** Live runtime events: an instance that dies under a running agent fails that agent. */
export function watchRuntime(runtime: Runtime, host: ActorHost, log: Logger): { close(): void } {
  return runtime.events((e: RuntimeEvent) => {
    if ((e.type !== "die" && e.type !== "destroy") || !e.agentId) return;
    const view = host.liveActors("agent").find((v) => v.ref.id === e.agentId);
    const agent = view && asAgentView(view);
    const ctx = agent?.context;
    if (!agent || !ctx || ctx.instanceId !== e.id) return;
    const state = stateName(agent.value);
    if (state !== "starting" && !MUST_RUN.has(state)) return; // stopping / recycling: expected
    const code = e.exitCode === undefined ? "" : ` with code ${e.exitCode}`;
    void tell(host, log, agent, {
      type: "AgentFailed",
      data: {
        phase: state,
        code: "exited",
        message: `instance ${e.type === "destroy" ? "was removed" : `exited${code}`}`,
      },
    });
  });
}
