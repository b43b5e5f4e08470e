import { type AggregateRef, refKey } from "../events/envelope.ts";
import type { EventStore } from "../store/event-store.ts";
import type { StoredRecord } from "../store/records.ts";
import { eventSubject } from "../store/subjects.ts";
import { CliError, EXIT } from "./exit.ts";
import { aggregateDef, foldSteps, type ReplayStep } from "./history/fold.ts";
import { type Moment, resolveMoment } from "./history/moment.ts";
import { formatStep, stepJson } from "./history/replay-format.ts";
import { scan } from "./history/scan.ts";
import type { Out } from "./output.ts";

export interface ReplayOptions {
  ref: AggregateRef;
  /** Stop after this moment (default: the aggregate's last event). */
  to?: Moment;
  json: boolean;
}

/** The aggregate's steps up to `to`, folded through its own machine (effects off). */
export async function replaySteps(store: EventStore, opts: ReplayOptions): Promise<ReplayStep[]> {
  const def = aggregateDef(opts.ref.kind);
  const last = await store.lastSeq();
  const toSeq = opts.to ? await resolveMoment(store, opts.to, last) : last;
  const records: StoredRecord[] = [];
  await scan(store, { filter: eventSubject(opts.ref), toSeq, json: opts.json }, (r) => records.push(r));
  if (records.length === 0) {
    const upTo = toSeq < last ? ` at or before seq ${toSeq}` : "";
    throw new CliError(`no events for ${refKey(opts.ref)}${upTo} in ${store.stream}`, EXIT.failure);
  }
  return foldSteps(def, records);
}

/**
 * `corral replay <kind/id>`: each event of one aggregate folded through its machine, as the
 * daemon folds it, with the state it led to and what changed in the context.
 */
export async function replay(store: EventStore, opts: ReplayOptions, out: Out): Promise<ReplayStep[]> {
  const steps = await replaySteps(store, opts);
  if (opts.json) {
    for (const s of steps) out.write(`${stepJson(s)}\n`);
    return steps;
  }
  const def = aggregateDef(opts.ref.kind);
  const n = steps.length;
  out.write(
    `${refKey(opts.ref)}: ${n} event${n === 1 ? "" : "s"} through the ${def.kind} machine, effects off\n`,
  );
  for (const s of steps) out.write(`${formatStep(s)}\n`);
  const end = steps.at(-1) as ReplayStep;
  out.write(`now ${end.state} (${end.status}) after seq ${end.seq}\n`);
  return steps;
}
