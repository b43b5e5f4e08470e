import type { CreateSpec, InstanceState } from "./types.ts";

// Every container corral creates carries these, so orphans can be found and reaped by owner —
// never by name, never "all containers".
export const LABEL_MANAGED = "corral.managed";
export const LABEL_INSTANCE = "corral.instance";
export const LABEL_POOL = "corral.pool";
export const LABEL_AGENT = "corral.agent";
export const LABEL_GENERATION = "corral.generation";
/** On an instance whose main process is agentd: the port it listens on inside the container. */
export const LABEL_AGENTD_PORT = "corral.agentd-port";
/** Set by the test runner (scripts/test.js): whatever a run leaves is found by this run alone. */
export const LABEL_TEST_RUN = "corral.test-run";

export const LABELS = {
  managed: LABEL_MANAGED,
  instance: LABEL_INSTANCE,
  pool: LABEL_POOL,
  agent: LABEL_AGENT,
  generation: LABEL_GENERATION,
} as const;

export const DEFAULT_STOP_GRACE_MS = 2000;

export function labelsFor(spec: CreateSpec, agentdPort?: number): Record<string, string> {
  const run = process.env.CORRAL_TEST_RUN;
  return {
    [LABEL_MANAGED]: "true",
    [LABEL_INSTANCE]: spec.instance,
    [LABEL_POOL]: spec.poolId,
    [LABEL_AGENT]: spec.agentId,
    [LABEL_GENERATION]: String(spec.generation),
    ...(run ? { [LABEL_TEST_RUN]: run } : {}),
    ...(agentdPort === undefined ? {} : { [LABEL_AGENTD_PORT]: String(agentdPort) }),
  };
}

/** Docker `label` filters (ANDed by the engine) selecting one instance's containers. */
export function labelFilters(instance: string, filter: { poolId?: string; agentId?: string } = {}): string[] {
  const out = [`${LABEL_MANAGED}=true`, `${LABEL_INSTANCE}=${instance}`];
  if (filter.poolId !== undefined) out.push(`${LABEL_POOL}=${filter.poolId}`);
  if (filter.agentId !== undefined) out.push(`${LABEL_AGENT}=${filter.agentId}`);
  return out;
}

export function ownedBy(labels: Record<string, string> | undefined, instance: string): boolean {
  return labels?.[LABEL_MANAGED] === "true" && labels[LABEL_INSTANCE] === instance;
}

/** Docker names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. Anything else becomes `_`. */
export function containerName(spec: Pick<CreateSpec, "instance" | "agentId" | "generation">): string {
  const raw = `corral-${spec.instance}-${spec.agentId}-${spec.generation}`;
  return raw.replace(/[^a-zA-Z0-9_.-]/g, "_").slice(0, 200);
}

const STATES = new Set<InstanceState>([
  "created",
  "running",
  "paused",
  "restarting",
  "exited",
  "dead",
  "removing",
  "unknown",
]);

export function toInstanceState(s: string | undefined): InstanceState {
  const lower = (s ?? "").toLowerCase() as InstanceState;
  return STATES.has(lower) ? lower : "unknown";
}
