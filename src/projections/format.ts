import { FINAL_STATES, LIVE_STATES } from "./commands.ts";
import type { Worldview } from "./worldview.ts";

export interface FormatOptions {
  /** Rows of the live-commands table before "… N more" (the JSON output has them all). */
  maxRows?: number;
}

const n = (x: number) => x.toLocaleString("en-US");
const iso = (ms: number) => new Date(ms).toISOString();

function counts(entries: [string, number][]): string {
  return entries.length === 0 ? "none" : entries.map(([k, v]) => `${k} ${n(v)}`).join(", ");
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map(
    (r) => `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ")}`,
  );
}

/**
 * A compact human rendering of the worldview: totals, commands by state, the live commands and
 * the skipped records. Depends only on the state (no clock), so the same state prints the same.
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
  return `${lines.join("\n")}\n`;
}
