import { worldviewProjection } from "../projections/worldview.ts";
import type { EventStore } from "../store/event-store.ts";
import { CliError, EXIT } from "./exit.ts";
import { type Moment, resolveMoment } from "./history/moment.ts";
import { formatChanges } from "./history/replay-format.ts";
import { diffWorldviews, type WorldDiff } from "./history/world-diff.ts";
import { foldInto, worldviewAt } from "./history/worldview-fold.ts";
import type { Out } from "./output.ts";

export interface DiffOptions {
  a: Moment;
  b: Moment;
  json: boolean;
}

/**
 * `corral diff <a> <b>`: the worldview folded to each moment (one pass: to `a`, then on to `b`),
 * compared: agents, leases, host ports, pools.
 */
export async function diff(store: EventStore, opts: DiffOptions, out: Out): Promise<WorldDiff> {
  const last = await store.lastSeq();
  const seqA = await resolveMoment(store, opts.a, last);
  const seqB = await resolveMoment(store, opts.b, last);
  if (seqA > seqB) {
    throw new CliError(
      `the first moment (seq ${seqA}) is after the second (seq ${seqB}): give the earlier one first`,
      EXIT.usage,
    );
  }
  const start = await worldviewAt(store, seqA);
  const w = start.state;
  await foldInto(store, w, { from: start.seq, to: seqA, json: opts.json });
  const before = worldviewProjection.save(w);
  const endedBy = new Map<string, string>();
  await foldInto(store, w, { from: seqA, to: seqB, json: opts.json }, (r) => {
    if (r.event?.aggregate.kind === "agent") endedBy.set(r.event.aggregate.id, r.event.type);
  });
  const d = { ...diffWorldviews(before, worldviewProjection.save(w), endedBy), from: seqA, to: seqB };
  out.write(opts.json ? `${JSON.stringify(d)}\n` : formatDiff(d));
  return d;
}

export function formatDiff(d: WorldDiff): string {
  const types = Object.entries(d.byType)
    .map(([t, n]) => `${t} ${n}`)
    .join(", ");
  const lines = [
    `seq ${d.from} → seq ${d.to}: ${d.events} event${d.events === 1 ? "" : "s"}${types ? ` (${types})` : ""}`,
  ];
  const section = (title: string, items: string[], summary = "") => {
    lines.push(`${title}${summary}${items.length === 0 && !summary ? ": no change" : ""}`);
    for (const i of items) lines.push(`  ${i}`);
  };
  const { agents, leases, ports, registrations, pools } = d;
  section("agents", [
    ...agents.added.map((x) => `+ ${x.id} (${x.poolId}) ${x.state}`),
    ...agents.removed.map(
      (x) => `- ${x.id} (${x.poolId}) was ${x.state}${x.endedBy ? `, ended by ${x.endedBy}` : ""}`,
    ),
    ...agents.changed.map((x) => `~ ${x.id} (${x.poolId}) ${x.from} → ${x.to}`),
  ]);
  const ended = Object.entries(leases.ended).filter(([, n]) => n > 0);
  const endedText = ended.length > 0 ? ` (${ended.map(([how, n]) => `${how} ${n}`).join(", ")})` : "";
  const endedTotal = ended.reduce((s, [, n]) => s + n, 0);
  section(
    "leases",
    [
      ...leases.started.map((l) => `+ ${l.id} (${l.poolId})${l.holder ? ` held by ${l.holder}` : ""}`),
      ...leases.finished.map((l) => `- ${l.id} (${l.poolId})`),
    ],
    leases.granted + endedTotal > 0 ? `: granted ${leases.granted}, ended ${endedTotal}${endedText}` : "",
  );
  section("ports", [
    ...ports.taken.map((p) => `+ ${p.port} ${p.agentId} (${p.poolId})`),
    ...ports.freed.map((p) => `- ${p.port} ${p.agentId} (${p.poolId})`),
  ]);
  section(
    "registrations",
    registrations.map(
      (r) => `~ ${r.agentId} gen ${r.generation}: ${r.from} → ${r.to}${r.reason ? ` (${r.reason})` : ""}`,
    ),
  );
  section("pools", [
    ...pools.added.map((n) => `+ ${n}`),
    ...pools.removed.map((n) => `- ${n}`),
    ...pools.changed.map((p) => `~ ${p.name}: ${formatChanges(p.changes)}`),
  ]);
  return `${lines.join("\n")}\n`;
}
