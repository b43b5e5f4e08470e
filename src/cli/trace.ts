import { type AggregateRef, isValidId, parseRef, refKey } from "../events/envelope.ts";
import { uuidv7Time } from "../events/id.ts";
import { agentOfLease, LEASE_ID } from "../events/lease-id.ts";
import type { EventStore } from "../store/event-store.ts";
import { eventSubject } from "../store/subjects.ts";
import { CliError, EXIT } from "./exit.ts";
import { clock, dataPairs } from "./format.ts";
import { CausationIndex, type TraceNode } from "./history/causation.ts";
import { scan } from "./history/scan.ts";
import type { Out } from "./output.ts";

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

function isSeed(q: Query, n: TraceNode): boolean {
  const e = n.event;
  if (q.kind === "event") return e.id === q.id || e.correlationId === q.id;
  if (q.kind === "lease") {
    const data = e.data as { leaseId?: unknown };
    return data.leaseId === q.leaseId && e.aggregate.id === agentOfLease(q.leaseId);
  }
  if (e.aggregate.kind === q.ref.kind && e.aggregate.id === q.ref.id) return true;
  return q.correlationId !== undefined && e.correlationId === q.correlationId;
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
}

/**
 * `corral trace <id>`: every event the request or event caused, across aggregates, as trees by
 * the envelope's causationId (and correlationId for an event or correlation id).
 */
export async function trace(
  store: EventStore,
  opts: { query: string; json: boolean },
  out: Out,
): Promise<TraceResult> {
  const q = parseTraceQuery(opts.query);
  const toSeq = await store.lastSeq();
  let start = await startOf(store, q);
  let { index, seeds } = await collect(store, q, start, toSeq, opts.json);
  if (seeds.length === 0 && (start.fromTime || start.fromSeq)) {
    start = {}; // the id's clock was off by more than the skew allowed: read everything
    ({ index, seeds } = await collect(store, q, start, toSeq, opts.json));
  }
  if (seeds.length === 0)
    throw new CliError(`no event in ${store.stream} matches ${opts.query}`, EXIT.failure);
  const { roots, size, aggregates } = index.forest(seeds);
  const result = { query: opts.query, matched: q.kind, events: size, aggregates, roots };
  out.write(
    opts.json
      ? `${JSON.stringify(result, (k, v) => (k === "time" ? new Date(v).toISOString() : v))}\n`
      : formatTrace(result, index),
  );
  return result;
}

async function collect(
  store: EventStore,
  q: Query,
  start: { fromTime?: Date; fromSeq?: number },
  toSeq: number,
  json: boolean,
): Promise<{ index: CausationIndex; seeds: TraceNode[] }> {
  const index = new CausationIndex();
  const seeds: TraceNode[] = [];
  await scan(store, { ...start, toSeq, json }, (r) => {
    if (!r.event) return;
    index.add(r.seq, r.time, r.event);
    const node = index.nodes.at(-1) as TraceNode;
    if (isSeed(q, node)) seeds.push(node);
  });
  return { index, seeds };
}

function formatTrace(t: TraceResult, index: CausationIndex): string {
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
      const cause = index.byId.get(causeId);
      lines.push(cause ? `(caused by ${line(cause)})` : `(caused by ${causeId}, not in the range read)`);
    }
    walk(root, "", true, true);
  }
  return `${lines.join("\n")}\n`;
}
