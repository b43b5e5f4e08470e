import type { Logger } from "../log.ts";
import type { InstanceState, RuntimeEvent, RuntimeInstance } from "./types.ts";

type Listener = (e: RuntimeEvent) => void;

export interface ReconcileOptions {
  quiet?: boolean;
  at?: number;
  skip?: (id: string) => boolean;
}
type Meta = Pick<RuntimeEvent, "poolId" | "agentId" | "generation">;

/** "gone" is a tombstone: destroyed, kept until a list that started later confirms it. */
type ViewState = InstanceState | "gone";

interface Entry extends Meta {
  state: ViewState;
  /** Sequence number of the fact that set `state`: lets a slow list lose to a newer event. */
  touched: number;
}

/** The state an event leaves an instance in; undefined for events that change nothing (kill, stop, oom, restart). */
function stateAfter(type: RuntimeEvent["type"]): ViewState | undefined {
  switch (type) {
    case "create":
      return "created";
    case "start":
    case "unpause":
      return "running";
    case "pause":
      return "paused";
    case "die":
      return "exited";
    case "destroy":
      return "gone";
    default:
      return undefined;
  }
}

/** Reconcile mapping (LESSONS: running → start, exited/dead → die, removing → destroy). */
function eventFor(state: InstanceState): RuntimeEvent["type"] | undefined {
  switch (state) {
    case "created":
      return "create";
    case "running":
      return "start";
    case "exited":
    case "dead":
      return "die";
    case "removing":
      return "destroy";
    default:
      return undefined;
  }
}

/**
 * What a runtime believes exists right now, fed by observed events and by periodic lists, plus
 * the fan-out to `events()` subscribers. `isRunning` reads it synchronously.
 *
 * Ordering: every fact gets a sequence number. A list is tagged with the sequence taken before
 * it was requested; an entry an event touched after that is left alone, so a list answered
 * before a `die` cannot resurrect the agent as running.
 */
export class LiveView {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<Listener>();
  private readonly waiters = new Set<() => void>();
  private seq = 0;

  constructor(private readonly log?: Logger) {}

  state(id: string): InstanceState | undefined {
    const s = this.entries.get(id)?.state;
    return s === "gone" ? undefined : s;
  }

  isRunning(id: string): boolean {
    return this.entries.get(id)?.state === "running";
  }

  /** True when the id is (or was, until destroyed) in the view: it carried our labels. */
  knows(id: string): boolean {
    const e = this.entries.get(id);
    return e !== undefined && e.state !== "gone";
  }

  /** Take before requesting a list; pass to `reconcile` with its answer. */
  mark(): number {
    return this.seq;
  }

  /**
   * An observed event. State events that change nothing (a replayed `start` for an instance the
   * list already showed running) are not passed on, so replays after a reconnect stay quiet.
   */
  observe(e: RuntimeEvent): void {
    const next = stateAfter(e.type);
    const cur = this.entries.get(e.id);
    // A pause or unpause tells nothing about an instance the view does not hold (or saw destroyed).
    if ((e.type === "pause" || e.type === "unpause") && (!cur || cur.state === "gone")) return;
    if (next !== undefined) {
      if (cur?.state === next) return;
      this.entries.set(e.id, { ...metaOf(cur), ...metaOf(e), state: next, touched: ++this.seq });
      this.wake();
    }
    this.emit({ ...metaOf(cur), ...e });
  }

  /**
   * Fold a full list of what exists. Differences from the view become events marked
   * `reconciled` (unless `quiet`: the first list of a fresh runtime reports nothing new to anyone).
   * `skip(id)` leaves ids alone whose facts come from a better source (a child's own exit).
   */
  reconcile(listed: RuntimeInstance[], mark: number, opts: ReconcileOptions = {}): void {
    const seen = new Set<string>();
    for (const inst of listed) {
      seen.add(inst.id);
      if (!opts.skip?.(inst.id)) this.fold(inst.id, inst, mark, opts);
    }
    for (const id of [...this.entries.keys()]) {
      if (!seen.has(id) && !opts.skip?.(id)) this.fold(id, null, mark, opts);
    }
  }

  /** Fold what one inspect found (null: the instance does not exist). */
  reconcileOne(id: string, inst: RuntimeInstance | null, mark: number, opts: ReconcileOptions = {}): void {
    this.fold(id, inst, mark, opts);
  }

  private fold(id: string, inst: RuntimeInstance | null, mark: number, opts: ReconcileOptions): void {
    const cur = this.entries.get(id);
    if (cur && cur.touched > mark) return; // an event newer than this answer already spoke
    const at = opts.at ?? Date.now();
    if (inst === null) {
      if (!cur) return;
      this.entries.delete(id); // drops tombstones too: the engine confirms it is gone
      if (cur.state === "gone") return;
      this.wake();
      if (cur.state === "removing") return; // its destroy went out when it was seen removing
      if (!opts.quiet) this.emit({ type: "destroy", id, ...metaOf(cur), at, reconciled: true });
      return;
    }
    const meta = { poolId: inst.poolId, agentId: inst.agentId, generation: inst.generation };
    this.entries.set(id, { ...meta, state: inst.state, touched: mark });
    const prev = cur?.state === "gone" ? undefined : cur?.state;
    if (prev === inst.state) return;
    this.wake();
    const type = eventFor(inst.state);
    if (!type || opts.quiet) return;
    const exitCode = type === "die" ? inst.exitCode : undefined;
    this.emit({ type, id, ...meta, at, reconciled: true, ...(exitCode !== undefined && { exitCode }) });
  }

  subscribe(fn: Listener): { close(): void } {
    this.listeners.add(fn);
    return { close: () => void this.listeners.delete(fn) };
  }

  /**
   * Resolves true once `pred` holds for the id's state — and, with `after`, once a fact newer
   * than that mark has arrived — or false after `timeoutMs`.
   */
  async waitFor(
    id: string,
    pred: (s: InstanceState | undefined) => boolean,
    timeoutMs: number,
    after?: number,
  ): Promise<boolean> {
    const holds = () => {
      const e = this.entries.get(id);
      if (after !== undefined && (e?.touched ?? -1) <= after) return false;
      return pred(this.state(id));
    };
    if (holds()) return true;
    return new Promise((resolve) => {
      const check = () => {
        if (holds()) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(ok);
      };
      this.waiters.add(check);
    });
  }

  clear(): void {
    this.listeners.clear();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private emit(e: RuntimeEvent): void {
    for (const fn of [...this.listeners]) {
      try {
        fn(e);
      } catch (err) {
        // One faulty subscriber must not stop the others or the watcher.
        this.log?.error({ err, event: e }, "runtime event listener threw");
      }
    }
  }
}

function metaOf(x: Meta | undefined): Meta {
  const out: Meta = {};
  if (x?.poolId !== undefined) out.poolId = x.poolId;
  if (x?.agentId !== undefined) out.agentId = x.agentId;
  if (x?.generation !== undefined) out.generation = x.generation;
  return out;
}
