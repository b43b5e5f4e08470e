import type { Logger } from "pino";
import { createEvent } from "../events/catalogue.ts";
import { uuidv7 } from "../events/id.ts";
import type { PortAllocator } from "../ports/allocator.ts";
import { engineMessage } from "../runtime/errors.ts";
import type { Runtime, RuntimeEvent, RuntimeInstance, RuntimeKind } from "../runtime/types.ts";
import { ConcurrencyError } from "../store/errors.ts";
import type { EventStore } from "../store/event-store.ts";
import type { ActorHost, Input } from "./actor-host.ts";
import { type AgentView, asAgentView } from "./views.ts";

/**
 * States in which an agent's instance is expected to exist and keep running — the same in which
 * the control plane talks to its agentd, so a (re)started instance is dialled again.
 */
const MUST_RUN = new Set(["connecting", "initializing", "ready", "draining"]);

function stateName(value: unknown): string {
  return typeof value === "object" && value !== null ? (Object.keys(value)[0] ?? "") : String(value);
}

/** An agent that moved on meanwhile refuses the input: fine. Anything else is logged. */
async function tell(host: ActorHost, log: Logger, view: AgentView, input: Input): Promise<boolean> {
  try {
    return (await host.offer(view.ref, input)).accepted;
  } catch (err) {
    log.error({ err, aggregate: view.ref }, "reconcile input failed");
    return false;
  }
}

/**
 * What the rest of the control plane does when an agent's instance comes and goes (the lead's
 * wiring: the session dialer and the registry). Every call may repeat: runtimes deliver events at
 * least once, and a start-up reap can meet an instance the live events also report.
 */
export interface RuntimeDeps {
  /** The agent's current instance (re)started or was unpaused: dial its agentd again. */
  onDial?(agentId: string, generation: number): void;
  /** The agent's current instance is gone: evict its registration. */
  onDestroyed?(agentId: string, generation: number): void;
  /** Host ports: an agent whose current instance is gone holds none. */
  ports?: Pick<PortAllocator, "release">;
  /** Records that a runtime could not be listed (ReapDegraded): see recordReapDegraded. */
  degraded?(runtime: RuntimeKind, reason: string): Promise<void>;
}

export interface ReconcileReport {
  adopted: number;
  removed: number;
  gone: number;
  /** Why the runtime could not be listed: nothing was reaped, nothing failed. */
  degraded?: string;
}

/**
 * After a restart: compare what the runtime has (by our instance label, every state) with what
 * the stream says. Instances of a live agent's current generation are adopted; everything else is
 * removed (orphans, old generations, agents that ended) — each removal recorded on its pool
 * first; agents that should be running but are not are recorded as failed (the pool replaces
 * them), their registration evicted and their ports released. A runtime that cannot be listed
 * reaps nothing: an error is never taken for "nothing exists" (ReapDegraded instead).
 */
export async function reconcileRuntime(
  runtime: Runtime,
  host: ActorHost,
  log: Logger,
  ours: (poolId: string) => boolean,
  deps: RuntimeDeps = {},
): Promise<ReconcileReport> {
  let listed: RuntimeInstance[];
  try {
    listed = await runtime.list();
  } catch (err) {
    const reason = engineMessage(err).slice(0, 500) || "list failed";
    log.error({ err, runtime: runtime.kind }, "runtime cannot be listed: nothing reaped this start");
    await deps.degraded?.(runtime.kind, reason);
    return { adopted: 0, removed: 0, gone: 0, degraded: reason };
  }
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
  for (const inst of listed) {
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
    await removeOrphan(runtime, host, log, inst);
    report.removed++;
  }
  for (const agent of agents.values()) {
    const ctx = agent.context;
    if (!MUST_RUN.has(stateName(agent.value)) || (ctx.instanceId && running.has(ctx.instanceId))) continue;
    report.gone++;
    const failed = await tell(host, log, agent, {
      type: "AgentFailed",
      data: { phase: stateName(agent.value), code: "gone", message: "instance not running after restart" },
    });
    if (failed) forget(agent.ref.id, ctx.generation, deps);
  }
  return report;
}

/** Persist, then act: the removal is a fact on the pool the instance is labelled with. */
async function removeOrphan(runtime: Runtime, host: ActorHost, log: Logger, inst: RuntimeInstance) {
  log.info(
    { instance: inst.id, agent: inst.agentId, generation: inst.generation },
    "removing orphaned instance",
  );
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
}

/** The agent's instance is gone: its registration and its host ports go with it. */
function forget(agentId: string, generation: number, deps: RuntimeDeps): void {
  deps.onDestroyed?.(agentId, generation);
  deps.ports?.release(agentId);
}

/**
 * Live runtime events, for the agent whose current instance (id and generation) they are about:
 * start / restart / unpause → dial (in the phases that talk to agentd); die → the agent fails
 * (unless it is being stopped or recycled); destroy → it fails likewise, and its registration and
 * ports go. The process runtime reports its children's exits as the same `die`.
 */
export function watchRuntime(
  runtime: Runtime,
  host: ActorHost,
  log: Logger,
  deps: RuntimeDeps = {},
): { close(): void } {
  return runtime.events((e: RuntimeEvent) => {
    if (!e.agentId) return;
    const view = host.cached({ kind: "agent", id: e.agentId });
    const agent = view && asAgentView(view);
    const ctx = agent?.context;
    if (!agent || !ctx || ctx.instanceId !== e.id) return;
    if (e.generation !== undefined && e.generation !== ctx.generation) return;
    const state = stateName(agent.value);
    switch (e.type) {
      case "start":
      case "restart":
      case "unpause":
        if (MUST_RUN.has(state)) deps.onDial?.(agent.ref.id, ctx.generation);
        return;
      case "destroy":
        forget(agent.ref.id, ctx.generation, deps);
        failIfExpected(host, log, agent, state, e);
        return;
      case "die":
        failIfExpected(host, log, agent, state, e);
        return;
      default:
        return;
    }
  });
}

/** An instance that ends under an agent that needs it fails the agent (stopping: expected). */
function failIfExpected(
  host: ActorHost,
  log: Logger,
  agent: AgentView,
  state: string,
  e: RuntimeEvent,
): void {
  if (state !== "starting" && !MUST_RUN.has(state)) return;
  const code = e.exitCode === undefined ? "" : ` with code ${e.exitCode}`;
  void tell(host, log, agent, {
    type: "AgentFailed",
    data: {
      phase: state,
      code: "exited",
      message: `instance ${e.type === "destroy" ? "was removed" : `exited${code}`}`,
    },
  });
}

/**
 * Stores ReapDegraded on the daemon instance's own aggregate (`host/<instance>`): a runtime that
 * could not be listed at start-up, so what it lost was not reaped. Appended after the host's last
 * event (a concurrent writer makes it retry, a bounded number of times).
 */
export async function recordReapDegraded(
  store: EventStore,
  instance: string,
  runtime: RuntimeKind,
  reason: string,
  now = Date.now(),
): Promise<void> {
  const ref = { kind: "host" as const, id: instance };
  const event = createEvent(
    ref,
    "ReapDegraded",
    { runtime, reason: reason.slice(0, 500) },
    { id: uuidv7(now), at: now },
  );
  for (let attempt = 1; ; attempt++) {
    try {
      await store.append(ref, [event], await store.lastSeqOf(ref));
      return;
    } catch (err) {
      if (!(err instanceof ConcurrencyError) || attempt >= 3) throw err;
    }
  }
}
