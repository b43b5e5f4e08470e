import { type AggregateRef, refKey } from "../events/envelope.ts";
import type { EventStore } from "../store/event-store.ts";
import type { StoredRecord } from "../store/records.ts";
import { eventSubject } from "../store/subjects.ts";
import { CliError, EXIT } from "./exit.ts";
import { clock, dataPairs } from "./format.ts";
import { aggregateDef, foldSteps } from "./history/fold.ts";
import { duration, type PhaseSpan, phaseSpans } from "./history/phases.ts";
import { formatChanges } from "./history/replay-format.ts";
import { scan } from "./history/scan.ts";
import type { Out } from "./output.ts";

export interface TimelineOptions {
  ref: AggregateRef;
  json: boolean;
}

/** One decision or fact in a pool's history. */
export interface PoolEntry {
  seq: number;
  at: number;
  type: string;
  agentId?: string;
  reason?: string;
  detail: string;
}

export type Timeline =
  | { aggregate: string; kind: "agent"; phases: PhaseSpan[] }
  | { aggregate: string; kind: "pool"; entries: PoolEntry[]; counts: Record<string, Record<string, number>> };

async function recordsOf(store: EventStore, ref: AggregateRef, json: boolean): Promise<StoredRecord[]> {
  const records: StoredRecord[] = [];
  const toSeq = await store.lastSeqOf(ref);
  await scan(store, { filter: eventSubject(ref), toSeq, json }, (r) => records.push(r));
  if (records.length === 0)
    throw new CliError(`no events for ${refKey(ref)} in ${store.stream}`, EXIT.failure);
  return records;
}

/** `corral timeline agent/<id>` (its phases) or `pool/<id>` (its spawn and recycle history). */
export async function timeline(store: EventStore, opts: TimelineOptions, out: Out): Promise<Timeline> {
  const { ref } = opts;
  if (ref.kind !== "agent" && ref.kind !== "pool") {
    throw new CliError(`timeline takes agent/<id> or pool/<id>, not ${ref.kind}/…`, EXIT.usage);
  }
  const records = await recordsOf(store, ref, opts.json);
  const steps = foldSteps(aggregateDef(ref.kind), records);
  const t: Timeline =
    ref.kind === "agent"
      ? { aggregate: refKey(ref), kind: "agent", phases: phaseSpans(steps) }
      : { aggregate: refKey(ref), kind: "pool", ...poolHistory(records, steps) };
  out.write(
    opts.json
      ? `${JSON.stringify(t)}\n`
      : t.kind === "agent"
        ? formatPhases(t.aggregate, t.phases)
        : formatPool(t),
  );
  return t;
}

function formatPhases(label: string, phases: readonly PhaseSpan[]): string {
  const lines = [`${label}: ${phases.length} phase${phases.length === 1 ? "" : "s"}`];
  for (const p of phases) {
    const took = p.ms === null ? (p.final ? "" : "…") : duration(p.ms);
    const end = p.endedBy ? `→ ${p.endedBy.type} (seq ${p.endedBy.seq})` : p.final ? "(end)" : "(now)";
    lines.push(`  ${p.phase.padEnd(10)} gen ${p.generation}  ${clock(p.from)}  ${took.padStart(10)}  ${end}`);
  }
  const span = (p: PhaseSpan) => (p.final ? p.phase : `${p.phase} ${p.ms === null ? "…" : duration(p.ms)}`);
  lines.push(phases.map(span).join(" → "));
  return `${lines.join("\n")}\n`;
}

type Step = ReturnType<typeof foldSteps>[number];

/** Each pool event folded in, with the agent and reason of a decision, or what a config change changed. */
function poolHistory(
  records: readonly StoredRecord[],
  steps: readonly Step[],
): Omit<Extract<Timeline, { kind: "pool" }>, "aggregate" | "kind"> {
  const entries: PoolEntry[] = [];
  const counts: Record<string, Record<string, number>> = {};
  records.forEach((r, i) => {
    const s = steps[i];
    if (!r.event || !s || s.skipped || s.refused) return;
    const e = r.event;
    const data = e.data as { agentId?: string; reason?: string };
    const config = s.changes.filter((c) => c.path.startsWith("config."));
    const detail =
      e.type === "PoolCreated" || e.type === "PoolReconfigured" || e.type === "PoolReopened"
        ? config.length > 0 && e.type !== "PoolCreated"
          ? formatChanges(config)
          : `min=${e.data.config.min} max=${e.data.config.max} warm=${e.data.config.warm} runtime=${e.data.config.runtime}`
        : dataPairs(e.data);
    entries.push({ seq: r.seq, at: e.at, type: e.type, agentId: data.agentId, reason: data.reason, detail });
    const byReason = counts[e.type] ?? {};
    counts[e.type] = byReason;
    const key = data.reason ?? "all";
    byReason[key] = (byReason[key] ?? 0) + 1;
  });
  return { entries, counts };
}

function formatPool(t: Extract<Timeline, { kind: "pool" }>): string {
  const first = t.entries[0]?.at ?? 0;
  const lines = [`${t.aggregate}: ${t.entries.length} event${t.entries.length === 1 ? "" : "s"}`];
  for (const e of t.entries) {
    lines.push(
      `  ${clock(e.at)}  +${duration(e.at - first).padEnd(12)} ${e.type.padEnd(18)} ${e.detail}`.trimEnd(),
    );
  }
  const summary = Object.entries(t.counts).map(([type, by]) => {
    const total = Object.values(by).reduce((a, b) => a + b, 0);
    const reasons = Object.entries(by).filter(([k]) => k !== "all");
    return `${type} ${total}${reasons.length > 0 ? ` (${reasons.map(([k, n]) => `${k} ${n}`).join(", ")})` : ""}`;
  });
  lines.push(summary.join("; "));
  return `${lines.join("\n")}\n`;
}
