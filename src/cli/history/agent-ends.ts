import { MARK_HEADER } from "../../store/event-mark.ts";
import type { EventStore } from "../../store/event-store.ts";
import { toRecord } from "../../store/records.ts";
import { eventSubject } from "../../store/subjects.ts";
import { scan } from "./scan.ts";

/** Lookups in flight at once. */
const PARALLEL = 64;

/**
 * The type of each agent's last event in (from, to], for agents that ended there — without
 * reading the range: an ended agent's machine is final and takes no further event, so its last
 * message is the one that ended it (one direct get per agent). Where that message is not a
 * readable event of the agent inside the range (forged, or something after it), that agent's
 * subject is read over the range instead.
 */
export async function lastAgentEvents(
  store: EventStore,
  agentIds: readonly string[],
  range: { from: number; to: number; json: boolean },
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const unsure: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < agentIds.length) {
      const id = agentIds[next++] as string;
      const type = await lastByDirectGet(store, id, range);
      if (type === undefined) unsure.push(id);
      else out.set(id, type);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, agentIds.length) }, lane));
  for (const id of unsure) {
    const filter = eventSubject({ kind: "agent", id });
    await scan(store, { filter, fromSeq: range.from + 1, toSeq: range.to, json: range.json }, (r) => {
      if (r.event?.aggregate.kind === "agent" && r.event.aggregate.id === id) out.set(id, r.event.type);
    });
  }
  return out;
}

async function lastByDirectGet(
  store: EventStore,
  id: string,
  range: { from: number; to: number },
): Promise<string | undefined> {
  const subject = eventSubject({ kind: "agent", id });
  const m = await store.jsm.streams.getMessage(store.stream, { last_by_subj: subject });
  if (!m || m.seq <= range.from || m.seq > range.to) return undefined;
  const mark = store.verify ? m.header?.get(MARK_HEADER) || undefined : undefined;
  const r = toRecord(m.seq, m.subject, m.time.getTime(), m.data, store.verify, mark);
  const e = r.event;
  return e?.aggregate.kind === "agent" && e.aggregate.id === id ? e.type : undefined;
}
