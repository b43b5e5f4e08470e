import type { CreateSpec, Runtime, RuntimeEvent, RuntimeInstance } from "./types.ts";

type Op = "create" | "start" | "stop" | "remove";

/**
 * A runtime that starts nothing: instances are records in memory. For tests, benchmarks and
 * simulation only, never for agents: it stands in for the process runtime (kind "process") so
 * the control plane's own logic can be driven deterministically. `park(op)` holds the next call
 * of `op` until the returned release is called — a spawn "in flight" at a chosen moment.
 */
export class SimulatedRuntime implements Runtime {
  readonly kind = "process" as const;
  private readonly instances = new Map<string, RuntimeInstance>();
  private readonly parked = new Map<Op, Promise<void>>();
  private readonly listeners = new Set<(e: RuntimeEvent) => void>();
  private seq = 0;
  /** Calls made, by operation, and every spec created (what a test asserts on). */
  readonly calls: Record<Op, number> = { create: 0, start: 0, stop: 0, remove: 0 };
  readonly created: CreateSpec[] = [];

  constructor(readonly instance: string) {}

  /** Holds the next call of `op` (and the ones after it) until the returned function is called. */
  park(op: Op): () => void {
    let release = () => {};
    this.parked.set(op, new Promise<void>((r) => (release = r)));
    return () => {
      this.parked.delete(op);
      release();
    };
  }

  private async gate(op: Op): Promise<void> {
    this.calls[op]++;
    await this.parked.get(op);
  }

  async create(spec: CreateSpec): Promise<RuntimeInstance> {
    await this.gate("create");
    this.created.push(spec);
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
    await this.gate("start");
    const inst = this.instances.get(id);
    if (!inst) throw Object.assign(new Error(`no instance ${id}`), { code: "not_found" });
    inst.state = "running";
    inst.address = "127.0.0.1";
  }

  async stop(id: string): Promise<void> {
    await this.gate("stop");
    const inst = this.instances.get(id);
    if (inst) inst.state = "exited";
  }

  async remove(id: string): Promise<void> {
    await this.gate("remove");
    this.instances.delete(id);
  }

  async inspect(id: string): Promise<RuntimeInstance | null> {
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
