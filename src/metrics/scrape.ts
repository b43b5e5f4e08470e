import type { AgentPhase } from "../../machines/agent.ts";
import type { ControlPlane } from "../cp/control-plane.ts";
import type { CorralMetrics } from "./definitions.ts";

/** The phases a pool's live agents can be in (stopped and failed ones leave the pool's view). */
const LIVE_PHASES: readonly AgentPhase[] = [
  "starting",
  "idle",
  "leased",
  "expired",
  "draining",
  "recycling",
  "stopping",
];

export interface ScrapeSources {
  cp: ControlPlane;
  /** The stream sequence the daemon's worldview has folded up to (without catching up). */
  worldviewSeq(): number;
  now?: () => number;
}

/** Sets the gauges that describe this moment: each pool's agents, leases and waiters, and the lag. */
export async function refreshGauges(m: CorralMetrics, src: ScrapeSources): Promise<void> {
  for (const pool of src.cp.poolNames()) {
    const s = src.cp.pool(pool).status();
    const byPhase = new Map<string, number>(LIVE_PHASES.map((p) => [p, 0]));
    for (const a of s.agents) byPhase.set(a.phase, (byPhase.get(a.phase) ?? 0) + 1);
    for (const [phase, n] of byPhase) m.agents.set({ pool, phase }, n);
    m.leases.set({ pool }, s.agents.filter((a) => a.lease !== null).length);
    m.waiters.set({ pool }, s.waiters);
    m.poolOpen.set({ pool }, s.state === "open" ? 1 : 0);
  }
  await refreshLag(m, src);
}

async function refreshLag(m: CorralMetrics, src: ScrapeSources): Promise<void> {
  const store = src.cp.store;
  const last = await store.lastSeq();
  const folded = Math.min(src.worldviewSeq(), last);
  m.streamSeq.set(last);
  m.lagEvents.set(last - folded);
  if (last === folded) {
    m.lagSeconds.set(0);
    return;
  }
  // The first message not folded yet: how long since JetStream stored it.
  const next = await store.get(folded + 1);
  const now = (src.now ?? Date.now)();
  m.lagSeconds.set(next ? Math.max(0, now - next.time) / 1000 : 0);
}
