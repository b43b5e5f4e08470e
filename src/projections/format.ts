import { AGENT_END_STATES, AGENT_LIVE_STATES, type LiveAgent } from "./agents.ts";
import { FINAL_STATES, LIVE_STATES } from "./commands.ts";
import { LEASE_END_STATES } from "./leases.ts";
import type { Worldview } from "./worldview.ts";

export interface FormatOptions {
  /** Rows of the live-commands and live-agents tables before "… N more" (the JSON output has them all). */
  maxRows?: number;
  /** Leases, ports and failures listed before "… N more". */
  maxItems?: number;
}

const n = (x: number) => x.toLocaleString("en-US");
const iso = (ms: number) => new Date(ms).toISOString();

function counts(entries: [string, number][]): string {
  return entries.length === 0 ? "none" : entries.map(([k, v]) => `${k} ${n(v)}`).join(", ");
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) =>
    `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ")}`.trimEnd(),
  );
}

/**
 * A compact human rendering of the worldview: totals, commands by state, the live commands, the
 * skipped records, then pools with their metrics, live agents, leases and host ports. Depends
 * only on the state (no clock), so the same state prints the same.
 */
export function formatWorldview(w: Worldview, opts: FormatOptions = {}): string {
  const maxRows = opts.maxRows ?? 50;
  const c = w.commands;
  const live = LIVE_STATES.reduce((sum, s) => sum + c.byState[s], 0);
  const finished = FINAL_STATES.reduce((sum, s) => sum + c.byState[s], 0);
  const last = w.lastEventAt === null ? "" : `, last at ${iso(w.lastEventAt)}`;
  const lines = [
    `events    ${n(w.totals.events)} applied through stream seq ${w.lastSeq}${last}`,
    `by type   ${counts(Object.entries(w.totals.byType))}`,
    `skipped   ${counts(Object.entries(w.skipped))}`,
    `commands  live ${n(live)}: ${LIVE_STATES.map((s) => `${s} ${n(c.byState[s])}`).join(", ")}` +
      ` | finished ${n(finished)}: ${FINAL_STATES.map((s) => `${s} ${n(c.byState[s])}`).join(", ")}`,
  ];
  if (c.ignored > 0 || c.untracked > 0) {
    lines.push(
      `          ignored ${n(c.ignored)} (did not fit the command's state), untracked ${n(c.untracked)}`,
    );
  }
  lines.push(`agents    ${counts(c.agents.map((a) => [a.agentId, a.live]))}`);
  if (c.live.length > 0) {
    lines.push(`live commands (${n(c.live.length)})`);
    const rows = c.live
      .slice(0, maxRows)
      .map((x) => [
        x.id,
        x.agentId,
        x.state,
        String(x.attempt),
        `${x.retries}/${x.maxRetries}`,
        iso(x.updatedAt),
        x.action,
      ]);
    lines.push(...table([["ID", "AGENT", "STATE", "ATTEMPT", "RETRIES", "SINCE", "ACTION"], ...rows]));
    if (c.live.length > maxRows) lines.push(`  … ${n(c.live.length - maxRows)} more (--json lists all)`);
  }
  lines.push(...formatPools(w), ...formatAgents(w, maxRows, opts.maxItems ?? 10));
  lines.push(...formatLeases(w, opts.maxItems ?? 10), ...formatPorts(w, opts.maxItems ?? 10));
  return `${lines.join("\n")}\n`;
}

const more = (total: number, shown: number) =>
  total > shown ? [`  … ${n(total - shown)} more (--json lists all)`] : [];

function formatPools(w: Worldview): string[] {
  const pools = Object.values(w.pools);
  if (pools.length === 0) return ["pools     none"];
  const rows = pools.map((p) => {
    const m = p.metrics;
    const scale = m.lastScaleEvent;
    return [
      p.name,
      p.state,
      p.runtime,
      `${p.config.min}/${p.config.max}/${p.config.warm}`,
      String(m.active),
      String(m.idle),
      String(m.starting),
      String(m.total),
      n(m.totalLeases),
      n(m.totalRecycles),
      n(m.spawned),
      `${n(m.terminated)} (${n(m.failed)} failed)`,
      n(p.spawnFailures),
      scale ? `${scale.direction} ${scale.reason} ${iso(scale.at)}` : "-",
    ];
  });
  const head = [
    "POOL",
    "STATE",
    "RUNTIME",
    "MIN/MAX/WARM",
    "ACTIVE",
    "IDLE",
    "STARTING",
    "TOTAL",
    "LEASES",
    "RECYCLES",
    "SPAWNED",
    "TERMINATED",
    "SPAWN FAILS",
    "LAST SCALE",
  ];
  const lines = [`pools (${n(pools.length)})`, ...table([head, ...rows])];
  for (const p of pools) {
    const f = p.lastSpawnFailure;
    if (f) lines.push(`  ${p.name}: last spawn failure ${iso(f.at)} ${f.agentId} ${f.code}: ${f.message}`);
    if (p.ignored > 0) lines.push(`  ${p.name}: ignored ${n(p.ignored)} (did not fit the pool's state)`);
  }
  return lines;
}

function formatAgents(w: Worldview, maxRows: number, maxItems: number): string[] {
  const a = w.agents;
  const lines = [
    `live agents ${n(a.live.length)}: ${AGENT_LIVE_STATES.map((s) => `${s} ${n(a.byState[s])}`).join(", ")}` +
      ` | ended: ${AGENT_END_STATES.map((s) => `${s} ${n(a.byState[s])}`).join(", ")}`,
  ];
  const r = a.byRegistration;
  lines.push(
    `          registered ${n(r.registered)}, untrusted ${n(r.untrusted)}, unregistered ${n(r.unregistered)}`,
  );
  if (a.ignored > 0 || a.untracked > 0) {
    lines.push(
      `          ignored ${n(a.ignored)} (did not fit the agent's state), untracked ${n(a.untracked)}`,
    );
  }
  if (a.live.length > 0) {
    const rows = a.live
      .slice(0, maxRows)
      .map((x) => [
        x.id,
        x.poolId,
        x.state,
        String(x.generation),
        x.ports.length > 0 ? x.ports.join(",") : "-",
        x.leaseId ?? "-",
        String(x.leasesServed),
        String(x.recycles),
        x.session?.state ?? "-",
        iso(x.updatedAt),
        liveAgentNote(x),
      ]);
    lines.push(
      ...table([
        ["ID", "POOL", "STATE", "GEN", "PORTS", "LEASE", "LEASES", "RECYCLES", "SESSION", "SINCE", "NOTE"],
        ...rows,
      ]),
      ...more(a.live.length, maxRows),
    );
  }
  if (a.failures.length > 0) {
    const recent = a.failures.slice(-maxItems).reverse();
    lines.push(`recent failures (${n(recent.length)} of the last ${n(a.failures.length)}, newest first)`);
    for (const f of recent) {
      lines.push(`  ${iso(f.at)}  ${f.agentId} (${f.poolId}) in ${f.phase}: ${f.code}: ${f.message}`);
    }
  }
  return lines;
}

/** "UNTRUSTED: <reason>", "init 2/5 git" or "". */
function liveAgentNote(x: LiveAgent): string {
  if (x.registration.state === "untrusted") return `UNTRUSTED: ${x.registration.reason ?? "?"}`;
  const i = x.init;
  if (i.state !== "running" || i.of === undefined) return "";
  return `init ${i.step === undefined ? 0 : (i.index ?? 0) + 1}/${i.of}${i.step ? ` ${i.step}` : ""}`;
}

function formatLeases(w: Worldview, maxItems: number): string[] {
  const l = w.leases;
  const lines = [
    `leases    live ${n(l.live.length)} | granted ${n(l.granted)}` +
      ` | ended: ${LEASE_END_STATES.map((s) => `${s} ${n(l.ended[s])}`).join(", ")}`,
  ];
  if (l.ignored > 0 || l.untracked > 0) {
    lines.push(
      `          ignored ${n(l.ignored)} (did not fit the lease's state), untracked ${n(l.untracked)}`,
    );
  }
  if (l.live.length > 0) {
    const rows = l.live
      .slice(0, maxItems)
      .map((x) => [x.id, x.poolId, x.agentId, x.holder || "-", iso(x.expiresAt)]);
    lines.push(
      ...table([["LEASE", "POOL", "AGENT", "HOLDER", "EXPIRES"], ...rows]),
      ...more(l.live.length, maxItems),
    );
  }
  return lines;
}

function formatPorts(w: Worldview, maxItems: number): string[] {
  const p = w.ports;
  if (p.held.length === 0) return ["ports     none held"];
  const shown = p.held
    .slice(0, maxItems)
    .map((h) => `${h.port} ${h.agentId}`)
    .join(", ");
  const rest = p.held.length > maxItems ? `, … ${n(p.held.length - maxItems)} more` : "";
  const lines = [`ports     held ${n(p.held.length)}: ${counts(Object.entries(p.byPool))} | ${shown}${rest}`];
  if (p.conflicts.length > 0) lines.push(`          held twice: ${p.conflicts.join(", ")}`);
  return lines;
}
