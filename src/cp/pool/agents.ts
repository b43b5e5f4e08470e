import { type AgentPhase, agentPhase, type Lease } from "../../../machines/agent.ts";
import type { AgentSummary } from "../../../machines/pool-plan.ts";
import type { AgentView } from "../views.ts";

/** One agent as its pool sees it: what the plan needs, plus what a grant hands out. */
export interface PoolAgent extends AgentSummary {
  generation: number;
  instanceId: string | null;
  ports: number[];
  lease: Lease | null;
  leasesServed: number;
}

const ENDED: ReadonlySet<AgentPhase> = new Set(["stopped", "failed"]);

function phaseOf(view: AgentView): AgentPhase {
  return view.status === "done" ? (view.value as "stopped" | "failed") : agentPhase(view.value);
}

/**
 * The pool's view of its agents: each one's latest state, folded by the actor host from the
 * agent's own events (so a replay rebuilds it), plus the decisions recorded on the pool whose
 * agent has not reported yet — without them a plan made before the agent's first event lands
 * would decide the same spawn twice.
 */
export class PoolAgents {
  private readonly agents = new Map<string, PoolAgent>();
  /** Agents known only from a decision, not yet from their own events: when it was recorded. */
  private readonly unreported = new Map<string, number>();

  /** Folds an agent's new state in; returns its entry before and after (undefined once ended). */
  observe(view: AgentView): { prev?: PoolAgent; next?: PoolAgent; phase: AgentPhase } {
    const id = view.ref.id;
    const prev = this.agents.get(id);
    const phase = phaseOf(view);
    this.unreported.delete(id);
    const c = view.context;
    if (ENDED.has(phase)) {
      this.agents.delete(id);
      return { prev, phase };
    }
    const next: PoolAgent = {
      id,
      phase,
      generation: c.generation,
      instanceId: c.instanceId,
      ports: c.ports,
      lease: c.lease,
      leasesServed: c.leasesServed,
      generationLeases: c.generationLeases,
      recycles: c.recycles,
      readyAt: c.readyAt,
      idleSince: phase === "idle" ? c.idleSince : null,
    };
    this.agents.set(id, next);
    return { prev, next, phase };
  }

  /** A decision about `id` was recorded at `at`: until its agent reports, it counts in `phase`. */
  expect(id: string, phase: AgentPhase, at: number): PoolAgent | undefined {
    const prev = this.agents.get(id);
    if (!prev) this.unreported.set(id, at);
    this.agents.set(id, {
      ...(prev ?? {
        id,
        generation: 0,
        instanceId: null,
        ports: [],
        lease: null,
        leasesServed: 0,
        generationLeases: 0,
        recycles: 0,
        readyAt: null,
      }),
      phase,
      idleSince: null,
    });
    return prev;
  }

  /** Undoes `expect` when the decision could not be recorded. */
  restore(id: string, prev: PoolAgent | undefined): void {
    if (prev) this.agents.set(id, prev);
    else {
      this.agents.delete(id);
      this.unreported.delete(id);
    }
  }

  /** Forgets agents decided before `before` that never reported (their first effect failed). */
  dropUnreported(before: number): void {
    for (const [id, at] of this.unreported) {
      if (at >= before) continue;
      this.unreported.delete(id);
      this.agents.delete(id);
    }
  }

  get(id: string): PoolAgent | undefined {
    return this.agents.get(id);
  }

  all(): PoolAgent[] {
    return [...this.agents.values()];
  }

  get size(): number {
    return this.agents.size;
  }

  /** Agents by phase. */
  counts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const a of this.agents.values()) counts[a.phase] = (counts[a.phase] ?? 0) + 1;
    return counts;
  }
}
