import { RuntimeError, type RuntimeErrorCode } from "./errors.ts";
import { faultDrawer, type SimulatedFaults, type SimulatedOp } from "./simulated-faults.ts";
import type { CreateSpec, Runtime, RuntimeEvent, RuntimeInstance } from "./types.ts";

export type { Latency, SimulatedFaults, SimulatedOp } from "./simulated-faults.ts";

export interface SimulatedRuntimeOptions extends SimulatedFaults {
  /** Keep every spec created in `created` (default true; a benchmark of 10,000 agents does not). */
  recordSpecs?: boolean;
}

const FAILURE_CODE: Record<SimulatedOp, RuntimeErrorCode> = {
  create: "create_failed",
  start: "start_failed",
  stop: "stop_failed",
  remove: "remove_failed",
  inspect: "engine_error",
};

/**
 * The runtime for tests, benchmarks and simulation: it starts nothing, instances are records in
 * memory. Never for agents: `createRuntime` (index.ts) cannot make one and corral.yaml cannot name
 * it; it stands in for the process runtime (kind "process") so the control plane's own logic can
 * be driven deterministically or at a scale no machine could run. Each operation can take a
 * latency and fail at a rate, drawn from a seeded PRNG (simulated-faults.ts). `park(op)` holds the
 * next call of `op` until the returned release is called — a spawn "in flight" at a chosen moment.
 */
export class SimulatedRuntime implements Runtime {
  readonly kind = "process" as const;
  private readonly instances = new Map<string, RuntimeInstance>();
  private readonly parked = new Map<SimulatedOp, Promise<void>>();
  private readonly listeners = new Set<(e: RuntimeEvent) => void>();
  private readonly draw: ReturnType<typeof faultDrawer>;
  private readonly recordSpecs: boolean;
  private seq = 0;
  /** Calls made and calls failed on purpose, by operation, and every spec created (what a test asserts on). */
  readonly calls: Record<SimulatedOp, number> = { create: 0, start: 0, stop: 0, remove: 0, inspect: 0 };
  readonly failed: Record<SimulatedOp, number> = { create: 0, start: 0, stop: 0, remove: 0, inspect: 0 };
  readonly created: CreateSpec[] = [];

  constructor(
    readonly instance: string,
    opts: SimulatedRuntimeOptions = {},
  ) {
    this.draw = faultDrawer(opts);
    this.recordSpecs = opts.recordSpecs ?? true;
  }

  /** Instances held (what a benchmark checks against its agent count). */
  get size(): number {
    return this.instances.size;
  }

  /** Holds the next call of `op` (and the ones after it) until the returned function is called. */
  park(op: SimulatedOp): () => void {
    let release = () => {};
    this.parked.set(op, new Promise<void>((r) => (release = r)));
    return () => {
      this.parked.delete(op);
      release();
    };
  }

  /** Counts the call, holds it while parked, waits its latency, and fails it when its draw says so. */
  private async gate(op: SimulatedOp, id?: string): Promise<void> {
    this.calls[op]++;
    await this.parked.get(op);
    const { delayMs, fails } = this.draw(op);
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    if (fails) {
      this.failed[op]++;
      throw new RuntimeError(FAILURE_CODE[op], `simulated ${op} failure${id ? ` (${id})` : ""}`, { id });
    }
  }

  async create(spec: CreateSpec): Promise<RuntimeInstance> {
    await this.gate("create", spec.agentId);
    if (this.recordSpecs) this.created.push(spec);
    const inst: RuntimeInstance = {
      id: `sim-${++this.seq}`,
      instance: spec.instance,
      poolId: spec.poolId,
      agentId: spec.agentId,
      generation: spec.generation,
      state: "created",
    };
    this.instances.set(inst.id, inst);
    return { ...inst };
  }

  async start(id: string): Promise<void> {
    await this.gate("start", id);
    const inst = this.instances.get(id);
    if (!inst) throw Object.assign(new Error(`no instance ${id}`), { code: "not_found" });
    inst.state = "running";
    inst.address = "127.0.0.1";
  }

  async stop(id: string): Promise<void> {
    await this.gate("stop", id);
    const inst = this.instances.get(id);
    if (inst) inst.state = "exited";
  }

  async remove(id: string): Promise<void> {
    await this.gate("remove", id);
    this.instances.delete(id);
  }

  async inspect(id: string): Promise<RuntimeInstance | null> {
    await this.gate("inspect", id);
    const inst = this.instances.get(id);
    return inst ? { ...inst } : null;
  }

  /** Nothing runs here, so no agentd listens. */
  async endpoint(_id: string): Promise<null> {
    return null;
  }

  async list(filter: { poolId?: string; agentId?: string } = {}): Promise<RuntimeInstance[]> {
    return [...this.instances.values()]
      .filter(
        (i) =>
          (!filter.poolId || i.poolId === filter.poolId) && (!filter.agentId || i.agentId === filter.agentId),
      )
      .map((i) => ({ ...i }));
  }

  events(onEvent: (e: RuntimeEvent) => void): { close(): void } {
    this.listeners.add(onEvent);
    return { close: () => this.listeners.delete(onEvent) };
  }

  async stats(): Promise<null> {
    return null;
  }

  isRunning(id: string): boolean {
    return this.instances.get(id)?.state === "running";
  }

  /** The instance dies as a process would (a `die` event for whoever watches). */
  kill(id: string, at: number): void {
    const inst = this.instances.get(id);
    if (!inst) return;
    inst.state = "exited";
    for (const l of this.listeners)
      l({
        type: "die",
        id,
        poolId: inst.poolId,
        agentId: inst.agentId,
        generation: inst.generation,
        at,
        exitCode: 137,
      });
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
