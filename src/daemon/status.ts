import type { ControlPlane } from "../cp/control-plane.ts";
import type { Worldview } from "../projections/worldview.ts";

/**
 * What `.status` answers for a pool: the pool metrics from the worldview (what the stream
 * says), and the supervisor's live details (waiting acquirers, each agent's phase).
 */
export function poolStatus(cp: ControlPlane, worldview: Worldview, pool: string) {
  const live = cp.pool(pool).status();
  const fromStream = worldview.pools?.[pool];
  // Session, registration and init progress are what the stream says (the agents slice).
  const told = new Map((worldview.agents?.live ?? []).map((a) => [a.id, a]));
  return {
    pool,
    state: live.state,
    metrics: fromStream?.metrics ?? null,
    spawnFailures: fromStream?.spawnFailures ?? 0,
    lastSpawnFailure: fromStream?.lastSpawnFailure ?? null,
    waiters: live.waiters,
    spawnPausedUntil: live.spawnPausedUntil,
    agents: live.agents.map((a) => ({
      id: a.id,
      phase: a.phase,
      generation: a.generation,
      ports: a.ports,
      leasesServed: a.leasesServed,
      recycles: a.recycles,
      leaseId: a.lease?.id ?? null,
      session: told.get(a.id)?.session?.state ?? null,
      registration: told.get(a.id)?.registration ?? null,
      init: told.get(a.id)?.init ?? null,
    })),
    worldviewSeq: worldview.lastSeq,
  };
}

/** The instances that run a pool not closed, as the stream says (sorted, each once). */
export function runningInstances(worldview: Worldview): string[] {
  const out = new Set<string>();
  for (const p of Object.values(worldview.pools ?? {}))
    if (p.state !== "closed" && p.instance) out.add(p.instance);
  return [...out].sort();
}
