import { savedWorldviewRunner } from "../projections/index.ts";
import { type Worldview, type WorldviewState, worldviewProjection } from "../projections/worldview.ts";
import type { EventStore } from "../store/event-store.ts";
import { CliError, EXIT } from "./exit.ts";
import { lastAgentEvents } from "./history/agent-ends.ts";
import { type Moment, resolveMoment } from "./history/moment.ts";
import { formatChanges } from "./history/replay-format.ts";
import { scanAs } from "./history/scan.ts";
import { diffWorldviews, type WorldDiff } from "./history/world-diff.ts";
import { foldInto } from "./history/worldview-fold.ts";
import type { Out } from "./output.ts";

export interface DiffOptions {
  a: Moment;
  b: Moment;
  json: boolean;
  /** Events a snapshot must spare to be loaded for `b` (default JUMP_WORTH). */
  jumpWorth?: number;
}

/**
 * Events a saved worldview must spare to be loaded for `b` rather than folding on from `a`: loading
 * a large one costs about as much as folding this many.
 */
const JUMP_WORTH = 20_000;

/**
 * `corral diff <a> <b>`: the worldview at each moment, compared: agents, leases, host ports, pools.
 * Each starts from the nearest checkpoint or snapshot (runner.ts `startAt`); `b` folds on from
 * `a` in the same read unless a snapshot between them spares at least JUMP_WORTH events.
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
  const runner = await savedWorldviewRunner(store);
  const start = await runner.startAt(seqA);
  const range = { from: seqA, to: seqB, json: opts.json };
  const worth = opts.jumpWorth ?? JUMP_WORTH;
  const saved = seqB - seqA >= worth ? await runner.savedBetween(seqA + worth - 1, seqB) : undefined;
  const { before, after, endedBy } = saved
    ? await viaSnapshot(store, start, saved, range)
    : await foldThrough(store, start, range);
  const d = { ...diffWorldviews(before, after, endedBy), from: seqA, to: seqB };
  out.write(opts.json ? `${JSON.stringify(d)}\n` : formatDiff(d));
  return d;
}

type Range = { from: number; to: number; json: boolean };
type Saved = { seq: number; state: WorldviewState };
type Views = { before: Worldview; after: Worldview; endedBy: Map<string, string> };

/**
 * One read from `start` through `b`, the view at `a` taken on the way (a second read would cost
 * a consumer, which on a long stream costs as much as folding thousands of events), noting each
 * agent's last event after `a`.
 */
async function foldThrough(store: EventStore, start: Saved, range: Range): Promise<Views> {
  const w = start.state;
  const endedBy = new Map<string, string>();
  let before: Worldview | undefined;
  if (range.to > start.seq) {
    const opts = { fromSeq: start.seq + 1, toSeq: range.to, json: range.json };
    await scanAs(store, opts, worldviewProjection.decode, (r) => {
      if (r.seq <= w.lastSeq) return; // a redelivery
      if (r.seq > range.from) {
        before ??= worldviewProjection.save(w);
        if (r.event?.aggregate.kind === "agent") endedBy.set(r.event.aggregate.id, r.event.type);
      }
      worldviewProjection.apply(w, r);
    });
  }
  before ??= worldviewProjection.save(w); // nothing stored after `a`
  return { before, after: worldviewProjection.save(w), endedBy };
}

/** `a` folded from its start, `b` from a snapshot well after it; agents that ended are looked up. */
async function viaSnapshot(store: EventStore, start: Saved, saved: Saved, range: Range): Promise<Views> {
  await foldInto(store, start.state, { ...range, to: range.from, from: start.seq });
  const before = worldviewProjection.save(start.state);
  await foldInto(store, saved.state, { ...range, from: saved.seq });
  const after = worldviewProjection.save(saved.state);
  const live = new Set(after.agents.live.map((x) => x.id));
  const ended = before.agents.live.filter((x) => !live.has(x.id)).map((x) => x.id);
  return { before, after, endedBy: await lastAgentEvents(store, ended, range) };
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
