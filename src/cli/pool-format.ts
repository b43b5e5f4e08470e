import type { AgentStatus, PoolMetrics, PoolStatus } from "../api/client.ts";
import type { AcquireReply } from "../api/protocol.ts";
import { type Palette, plain } from "./colour.ts";
import { clock, compact } from "./format.ts";

/**
 * Human renderings of pool API replies. Status comes from a daemon whose shape may be newer or
 * older than this CLI, so every field is optional here: render what is there, skip what is not.
 */

const UNITS: [string, number][] = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1_000],
];

/** 30000 → "30s", 90000 → "1m30s", 250 → "250ms": the form `--timeout` and `--ttl` accept. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  let rest = Math.round(ms / 1_000) * 1_000;
  let text = "";
  for (const [unit, size] of UNITS) {
    if (rest >= size) {
      text += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return text;
}

/** "in 59s" / "3s ago" relative to `now`. */
export function relative(at: number, now: number): string {
  const d = at - now;
  return d >= 0 ? `in ${formatDuration(d)}` : `${formatDuration(-d)} ago`;
}

function toMs(at: unknown): number | undefined {
  if (typeof at === "number" && Number.isFinite(at)) return at;
  if (typeof at === "string") {
    const ms = Date.parse(at);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/**
 * The granted lease: what it is, its token, until when, and how to reach the agent. `keptIn` is
 * where the token was kept for release and renew (cli/lease-tokens.ts), when it was.
 */
export function formatLease(r: AcquireReply, c: Palette = plain, now = Date.now(), keptIn?: string): string {
  const label = (s: string) => c.dim(s.padEnd(9));
  const expires = toMs(r.expiresAt);
  const lines = [
    `${label("lease")}${c.bold(r.leaseId)}  ${c.dim(`pool ${r.pool}`)}`,
    `${label("token")}${r.leaseToken}  ${c.dim(
      keptIn ? `shown once; kept in ${keptIn}` : "shown once: release and renew need it (--token)",
    )}`,
    `${label("agent")}${c.cyan(r.agentId)}  ${c.dim(`generation ${r.generation}`)}`,
    `${label("expires")}${r.expiresAt}${expires === undefined ? "" : ` (${relative(expires, now)})`}  ${c.dim(
      `ttl ${formatDuration(r.ttlMs)}, renew with: corral renew ${r.leaseId}`,
    )}`,
    `${label("ports")}${r.ports.length > 0 ? r.ports.join(" ") : "none"}`,
  ];
  if (r.urls.length > 0) lines.push(`${label("urls")}${r.urls.join(" ")}`);
  if (r.reach) {
    lines.push(`${label("reach")}${r.reach.runtime} instance ${r.reach.instanceId} on ${r.reach.host}`);
  }
  Object.entries(r.env ?? {}).forEach(([k, v], i) => {
    lines.push(`${label(i === 0 ? "env" : "")}${k}=${v}`);
  });
  if (r.correlationId) {
    lines.push(
      `${label("trace")}${r.correlationId}  ${c.dim(`what it caused: corral trace ${r.correlationId}`)}`,
    );
  }
  lines.push(c.dim(`give it back with: corral release ${r.leaseId}`));
  return `${lines.join("\n")}\n`;
}

function stateColour(state: string, c: Palette): (s: string) => string {
  if (state === "open") return c.green;
  if (state === "closing") return c.yellow;
  if (state === "closed") return c.dim;
  return c.bold;
}

function phaseColour(phase: string, c: Palette): (s: string) => string {
  if (phase === "idle") return c.green;
  if (phase === "leased") return c.cyan;
  if (phase === "failed") return c.red;
  if (phase === "stopped" || phase === "starting") return c.dim;
  return c.yellow; // draining, recycling, stopping
}

const KNOWN_METRICS = new Set([
  "active",
  "idle",
  "total",
  "totalLeases",
  "totalRecycles",
  "spawned",
  "terminated",
  "lastScaleEvent",
]);

const num = (v: unknown): v is number => typeof v === "number";

/** Two lines at most: agent counts, then lifetime counters and the last scale event. */
function metricLines(m: PoolMetrics, now: number, c: Palette): string[] {
  const counts: string[] = [];
  if (num(m.total)) counts.push(`${m.total} agents`);
  if (num(m.active)) counts.push(`${m.active} active`);
  if (num(m.idle)) counts.push(`${m.idle} idle`);
  const life: string[] = [];
  if (num(m.totalLeases)) life.push(`${m.totalLeases} leases`);
  if (num(m.totalRecycles)) life.push(`${m.totalRecycles} recycles`);
  if (num(m.spawned)) life.push(`${m.spawned} spawned`);
  if (num(m.terminated)) life.push(`${m.terminated} terminated`);
  for (const [k, v] of Object.entries(m)) {
    if (!KNOWN_METRICS.has(k) && v !== undefined && v !== null) life.push(`${k} ${compact(v)}`);
  }
  const scale = m.lastScaleEvent;
  if (scale && typeof scale === "object") {
    const at = toMs(scale.at);
    const when = at === undefined ? "" : ` ${clock(at)} (${relative(at, now)})`;
    life.push(`last scale ${scale.direction ?? "?"}${when}`);
  } else if (scale === null) {
    life.push(c.dim("never scaled"));
  }
  return [counts, life].filter((l) => l.length > 0).map((l) => l.join(" · "));
}

const TOP_LEVEL = new Set([
  "pool",
  "state",
  "metrics",
  "agents",
  "waiters",
  "spawnFailures",
  "lastSpawnFailure",
  "worldviewSeq",
]);

/** "2 failed spawns · last 18:00:01 (3s ago) ports_exhausted: no free ports …", when any failed. */
function spawnFailureLine(s: PoolStatus, now: number, c: Palette): string | undefined {
  const last = s.lastSpawnFailure as { code?: unknown; message?: unknown; at?: unknown } | null | undefined;
  if (!num(s.spawnFailures) || s.spawnFailures === 0 || !last || typeof last !== "object") return undefined;
  const at = toMs(last.at);
  const when = at === undefined ? "" : ` ${clock(at)} (${relative(at, now)})`;
  const plural = s.spawnFailures === 1 ? "" : "s";
  return c.red(
    `${s.spawnFailures} failed spawn${plural} · last${when} ${String(last.code)}: ${String(last.message)}`,
  );
}

/** One pool: a headline, its metrics, anything else it reported, and a compact agent table. */
export function formatStatus(s: PoolStatus, c: Palette = plain, now = Date.now()): string {
  const head = [c.bold(`pool ${s.pool ?? "?"}`)];
  if (typeof s.state === "string") head.push(stateColour(s.state, c)(s.state));
  if (num(s.waiters)) head.push(s.waiters > 0 ? c.yellow(`${s.waiters} waiting`) : `${s.waiters} waiting`);
  const lines = [head.join("  ")];
  if (s.metrics && typeof s.metrics === "object") {
    for (const l of metricLines(s.metrics, now, c)) lines.push(`  ${l}`);
  }
  const failures = spawnFailureLine(s, now, c);
  if (failures) lines.push(`  ${failures}`);
  const extra = Object.entries(s)
    .filter(([k, v]) => !TOP_LEVEL.has(k) && v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${compact(v)}`);
  if (extra.length > 0) lines.push(`  ${c.dim(extra.join(" "))}`);
  if (Array.isArray(s.agents)) {
    if (s.agents.length === 0) lines.push(`  ${c.dim("no agents")}`);
    else lines.push(...agentTable(s.agents, c).map((l) => `  ${l}`));
  }
  return `${lines.join("\n")}\n`;
}

/** id, phase, generation, ports, leases served, then a note; columns as wide as their widest cell. */
function agentTable(agents: AgentStatus[], c: Palette): string[] {
  const cell = (v: unknown) => (v === undefined || v === null ? "-" : String(v));
  const rows = agents.map((a) => [
    cell(a.id),
    cell(a.phase),
    cell(a.generation),
    Array.isArray(a.ports) && a.ports.length > 0 ? a.ports.join(",") : "-",
    cell(a.leasesServed),
    agentNote(a),
  ]);
  const header = ["AGENT", "PHASE", "GEN", "PORTS", "LEASES", ""];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  // Numbers right-aligned; padding happens before colouring so escape codes do not skew columns.
  const pad = (text: string, i: number) =>
    i === 2 || i === 4 ? text.padStart(widths[i] as number) : text.padEnd(widths[i] as number);
  const line = (cells: string[], colour: (s: string, i: number) => string) =>
    cells
      .map((t, i) => colour(pad(t, i), i))
      .join("  ")
      .trimEnd();
  const colourOf = (r: string[], t: string, i: number) => {
    if (i === 1) return phaseColour(r[1] as string, c)(t);
    if (i === 5) return r[5]?.startsWith("UNTRUSTED") ? c.red(t) : c.dim(t);
    return t;
  };
  return [line(header, (t) => c.dim(t)), ...rows.map((r) => line(r, (t, i) => colourOf(r, t, i)))];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

/**
 * What an agent is waiting for or why it is not trusted, from the status's `registration`,
 * `init` and `session` (absent from an older daemon): "UNTRUSTED: cn_mismatch", "init 2/5 git"
 * (the step under way or last done, counted from 1; "init 0/5" before the first), "session
 * broken"; "" when there is nothing to say.
 */
export function agentNote(a: AgentStatus): string {
  const reg = a.registration;
  if (isObject(reg) && reg.state === "untrusted") return `UNTRUSTED: ${shown(reg.reason)}`;
  const init = a.init;
  if (isObject(init) && init.state === "running" && num(init.of)) {
    const step = typeof init.step === "string" ? init.step : undefined;
    const at = step !== undefined && num(init.index) ? init.index + 1 : 0;
    return `init ${at}/${init.of}${step === undefined ? "" : ` ${step}`}`;
  }
  if (a.session === "broken" || a.session === "failed") return `session ${a.session}`;
  return "";
}

function shown(v: unknown): string {
  return v === undefined || v === null ? "?" : String(v);
}
