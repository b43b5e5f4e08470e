import type { CorralEvent } from "../events/catalogue.ts";
import { type AggregateRef, isValidId, parseRef, refKey } from "../events/envelope.ts";
import { uuidv7Time } from "../events/id.ts";
import { agentOfLease, LEASE_ID } from "../events/lease-id.ts";
import type { EventStore } from "../store/event-store.ts";
import { markOf } from "../store/mark-header.ts";
import { type StoredRecord, toRecord } from "../store/records.ts";
import { eventSubject } from "../store/subjects.ts";
import { CliError, EXIT } from "./exit.ts";
import { clock, dataPairs } from "./format.ts";
import { CausationIndex, type TraceNode } from "./history/causation.ts";
import { RawFilter } from "./history/raw-filter.ts";
import type { Out } from "./output.ts";
import { progress } from "./progress.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Event ids are made from the event's own clock, the stream's time is the server's: allow for skew. */
const SKEW_MS = 60_000;

/** What the argument names, and which events are the seeds of its trace. */
type Query =
  | { kind: "lease"; leaseId: string; since?: number }
  | { kind: "event"; id: string; since?: number }
  | { kind: "aggregate"; ref: AggregateRef; correlationId?: string };

/** A lease id, an event or correlation id (a UUID), or an aggregate: `command/<id>`, or a bare command id. */
export function parseTraceQuery(text: string): Query {
  const t = text.trim();
  if (LEASE_ID.test(t)) return { kind: "lease", leaseId: t, since: v7Time(t.slice(t.lastIndexOf(".") + 1)) };
  if (UUID.test(t)) return { kind: "event", id: t, since: v7Time(t) };
  if (t.includes("/")) {
    try {
      return { kind: "aggregate", ref: parseRef(t) };
    } catch (err) {
      throw new CliError(
        `${JSON.stringify(text)} is not something to trace: ${(err as Error).message}`,
        EXIT.usage,
      );
    }
  }
  // A bare id: a command's, or a correlation id a caller chose (any string, not only a UUID).
  if (isValidId(t)) return { kind: "aggregate", ref: { kind: "command", id: t }, correlationId: t };
  throw new CliError(
    `${JSON.stringify(text)} is not an event id, correlation id, lease id (<agent>.<uuid>) or command id`,
    EXIT.usage,
  );
}

/** The time a UUIDv7 carries, less the allowed skew; undefined for another UUID version. */
function v7Time(uuid: string): number | undefined {
  return uuid[14] === "7" ? uuidv7Time(uuid) - SKEW_MS : undefined;
}

/** Whether `e` is where the trace starts; `leases`: leases the trace granted (their events are in it). */
function isSeed(q: Query, e: CorralEvent, leases: ReadonlySet<string>): boolean {
  const leaseId = leaseOf(e);
  if (leaseId !== undefined && leases.has(leaseId) && e.aggregate.id === agentOfLease(leaseId)) return true;
  if (q.kind === "event") return e.id === q.id || e.correlationId === q.id;
  if (q.kind === "lease") return false; // its lease is in `leases`
  if (e.aggregate.kind === q.ref.kind && e.aggregate.id === q.ref.id) return true;
  return q.correlationId !== undefined && e.correlationId === q.correlationId;
}

function leaseOf(e: CorralEvent): string | undefined {
  const data = e.data as { leaseId?: unknown };
  return typeof data.leaseId === "string" ? data.leaseId : undefined;
}

/** The strings a seed's raw bytes must contain (raw-filter.ts). */
function needlesOf(q: Query): string[] {
  if (q.kind === "event") return [q.id];
  if (q.kind === "lease") return [q.leaseId];
  return [q.ref.id, ...(q.correlationId === undefined ? [] : [q.correlationId])];
}

/** Where to start reading: the seed's time or its aggregate's first event; undefined: the start. */
async function startOf(store: EventStore, q: Query): Promise<{ fromTime?: Date; fromSeq?: number }> {
  if (q.kind !== "aggregate")
    return q.since !== undefined && q.since > 0 ? { fromTime: new Date(q.since) } : {};
  for await (const batch of store.read({ filter: eventSubject(q.ref), batch: 1 })) {
    if (batch[0]) return { fromSeq: batch[0].seq };
  }
  return {};
}

export interface TraceResult {
  query: string;
  matched: Query["kind"];
  events: number;
  aggregates: number;
  roots: TraceNode[];
  /** Messages the trace's search met that are not corral's events (forged) or not events at all: never in the tree. */
  unreadable: { seq: number; subject: string; reason: string; message: string }[];
}

/**
 * `corral trace <id>`: every event the request or event caused, across aggregates, as trees by
 * the envelope's causationId (and correlationId for an event or correlation id). A lease granted
 * in the trace brings its own events (renewed, released, expired, revoked) and what they caused.
 */
export async function trace(
  store: EventStore,
  opts: { query: string; json: boolean },
  out: Out,
): Promise<TraceResult> {
  const q = parseTraceQuery(opts.query);
  const toSeq = await store.lastSeq();
  let start = await startOf(store, q);
  let found = await collect(store, q, start, toSeq, opts.json);
  if (found.seeds.length === 0 && (start.fromTime || start.fromSeq)) {
    start = {}; // the id's clock was off by more than the skew allowed: read everything
    found = await collect(store, q, start, toSeq, opts.json);
  }
  const { index, seeds, unreadable } = found;
  if (seeds.length === 0)
    throw new CliError(`no event in ${store.stream} matches ${opts.query}`, EXIT.failure);
  const { roots, size, aggregates } = index.forest(seeds);
  const result = { query: opts.query, matched: q.kind, events: size, aggregates, roots, unreadable };
  if (opts.json) {
    out.write(`${JSON.stringify(result, (k, v) => (k === "time" ? new Date(v).toISOString() : v))}\n`);
  } else {
    const causes = await causesOf(store, roots, opts.json);
    out.write(formatTrace(result, causes));
  }
  return result;
}

interface Found {
  index: CausationIndex;
  seeds: TraceNode[];
  unreadable: TraceResult["unreadable"];
}

/**
 * One pass over the range: only messages the raw filter lets through are decoded and their marks
 * checked; of those, the seeds and what a node already in the trace caused join it (a cause is
 * stored before what it causes: ARCHITECTURE.md, "Persist, then act").
 */
async function collect(
  store: EventStore,
  q: Query,
  start: { fromTime?: Date; fromSeq?: number },
  toSeq: number,
  json: boolean,
): Promise<Found> {
  const index = new CausationIndex();
  const found: Found = { index, seeds: [], unreadable: [] };
  const leases = new Set<string>(q.kind === "lease" ? [q.leaseId] : []);
  const filter = new RawFilter(needlesOf(q), (id) => index.byId.has(id));
  await readPassing(store, { ...start, toSeq, json }, filter, (r) => {
    if (!r.event) {
      found.unreadable.push({
        seq: r.seq,
        subject: r.subject,
        reason: r.error.reason,
        message: r.error.message,
      });
      return;
    }
    const seed = isSeed(q, r.event, leases);
    const caused = r.event.causationId !== undefined && index.byId.has(r.event.causationId);
    if (!seed && !caused) return; // the filter's false positive
    const node = index.add(r.seq, r.time, r.event);
    if (seed) found.seeds.push(node);
    const leaseId = r.event.type === "AgentLeased" ? leaseOf(r.event) : undefined;
    if (leaseId !== undefined) {
      leases.add(leaseId);
      filter.addNeedle(leaseId);
    }
  });
  return found;
}

/** Reads the range raw; the messages `filter` lets through are decoded, their marks checked, and handed on. */
async function readPassing(
  store: EventStore,
  range: { fromTime?: Date; fromSeq?: number; toSeq: number; json: boolean },
  filter: RawFilter,
  onRecord: (r: StoredRecord) => void,
): Promise<void> {
  const shown = progress({ toSeq: range.toSeq, json: range.json });
  try {
    await store.readRaw({ ...range, onBatch: (n, seq) => shown.add(n, seq) }, (seq, time, msg) => {
      if (!filter.passes(msg.data)) return;
      const mark = store.verify ? markOf(msg) : undefined;
      onRecord(toRecord(seq, msg.subject, time, msg.data, store.verify, mark));
    });
  } finally {
    shown.done();
  }
}

/**
 * The events the roots name as their cause, for the human output's "(caused by …)" line: each one
 * searched for between its id's time and its root (a short read; the main pass had left it behind).
 */
async function causesOf(
  store: EventStore,
  roots: readonly TraceNode[],
  json: boolean,
): Promise<Map<string, TraceNode>> {
  const causes = new Map<string, TraceNode>();
  for (const root of roots) {
    const id = root.event.causationId;
    if (id === undefined || causes.has(id) || root.seq <= 1) continue;
    const since = UUID.test(id) ? v7Time(id) : undefined;
    const range = { ...(since ? { fromTime: new Date(since) } : {}), toSeq: root.seq - 1, json };
    await readPassing(store, range, new RawFilter([id], () => false), (r) => {
      if (r.event?.id === id) causes.set(id, { seq: r.seq, time: r.time, event: r.event, children: [] });
    });
  }
  return causes;
}

function formatTrace(t: TraceResult, causes: ReadonlyMap<string, TraceNode>): string {
  const lines = [
    `trace ${t.query} (${t.matched}): ${t.events} event${t.events === 1 ? "" : "s"} on ${t.aggregates} aggregate${t.aggregates === 1 ? "" : "s"}`,
  ];
  const line = (n: TraceNode) =>
    `${n.seq} ${clock(n.event.at)} ${refKey(n.event.aggregate)} ${n.event.type} ${dataPairs(n.event.data)}`.trimEnd();
  const walk = (n: TraceNode, prefix: string, last: boolean, top: boolean) => {
    lines.push(top ? line(n) : `${prefix}${last ? "└─ " : "├─ "}${line(n)}`);
    const inner = top ? "" : `${prefix}${last ? "   " : "│  "}`;
    for (const [i, c] of n.children.entries()) walk(c, inner, i === n.children.length - 1, false);
  };
  for (const root of t.roots) {
    const causeId = root.event.causationId;
    if (causeId) {
      const cause = causes.get(causeId);
      lines.push(cause ? `(caused by ${line(cause)})` : `(caused by ${causeId}, not in the range read)`);
    }
    walk(root, "", true, true);
  }
  for (const r of t.unreadable)
    lines.push(`not in the trace: seq ${r.seq} on ${r.subject}: ${unreadableText(r)}`);
  return `${lines.join("\n")}\n`;
}

function unreadableText(r: TraceResult["unreadable"][number]): string {
  return r.reason === "forged" ? `FORGED: ${r.message}` : `UNDECODABLE (${r.reason}): ${r.message}`;
}
