import { type AnyMachineSnapshot, initialTransition } from "xstate";
import { agentAggregate } from "../../../machines/agent.ts";
import type { AggregateDef } from "../../../machines/aggregate.ts";
import { commandAggregate } from "../../../machines/command.ts";
import { poolAggregate } from "../../../machines/pool.ts";
import { sessionAggregate } from "../../../machines/session.ts";
import { step } from "../../../machines/step.ts";
import type { AggregateKind } from "../../events/envelope.ts";
import type { StoredRecord } from "../../store/records.ts";
import { CliError, EXIT } from "../exit.ts";
import { decodeMessage } from "../format.ts";
import { type Change, changes, stateName } from "./changes.ts";

/** The aggregate kinds that have a machine: the ones a replay can fold. */
const AGGREGATES: Partial<Record<AggregateKind, AggregateDef>> = {
  agent: agentAggregate,
  pool: poolAggregate,
  command: commandAggregate,
  session: sessionAggregate,
};

export function aggregateDef(kind: AggregateKind): AggregateDef {
  const def = AGGREGATES[kind];
  if (!def) {
    const kinds = Object.keys(AGGREGATES).join(", ");
    throw new CliError(`${kind} has no machine to replay through; kinds with one: ${kinds}`, EXIT.usage);
  }
  return def;
}

/** One record folded through the machine: where the machine went and what changed. */
export interface ReplayStep {
  seq: number;
  /** Stream time (ms). */
  time: number;
  /** The event's own time and id; absent for a record that could not be read. */
  at?: number;
  id?: string;
  type: string;
  /** The state after the step, as one name (`ready.idle`), and the machine's status. */
  state: string;
  status: string;
  /** The machine did not accept the event (the daemon would never have stored it). */
  refused?: true;
  /** Not folded: unreadable, forged, or a real event copied to another position. */
  skipped?: { reason: string; message: string };
  changes: Change[];
  /** The effects the daemon ran after this step (named only: a replay runs none). */
  effects: string[];
  /** The whole context after the step, for the interactive view. */
  context: unknown;
}

/**
 * Folds one aggregate's records through its own machine with the daemon's pure step
 * (machines/step.ts): effects are collected, never run. A record is skipped as the actor host
 * skips it (src/cp/actor-host.ts `load`): undecodable, forged, or marked for another position.
 */
export function foldSteps(def: AggregateDef, records: Iterable<StoredRecord>): ReplayStep[] {
  let snapshot: AnyMachineSnapshot = initialTransition(def.machine)[0];
  let lastSeq = 0;
  const effects = new Set(def.effects);
  const out: ReplayStep[] = [];
  for (const r of records) {
    const here = { seq: r.seq, time: r.time, state: stateName(snapshot.value), status: snapshot.status };
    const prevSeq = lastSeq;
    lastSeq = r.seq;
    if (r.error) {
      const skipped = { reason: r.error.reason, message: decodeMessage(r.error) };
      const type = r.error.reason === "forged" ? "FORGED" : "UNDECODABLE";
      out.push({ ...here, type, skipped, changes: [], effects: [], context: snapshot.context });
      continue;
    }
    const e = r.event;
    const base = { ...here, at: e.at, id: e.id, type: e.type };
    if (r.prev !== undefined && r.prev !== prevSeq) {
      const message = `marked to follow seq ${r.prev}, stored after seq ${prevSeq}`;
      out.push({
        ...base,
        skipped: { reason: "replayed", message },
        changes: [],
        effects: [],
        context: snapshot.context,
      });
      continue;
    }
    const [next, actions] = step(def.machine, snapshot, e);
    const ran = actions.map((a) => a.type).filter((t) => effects.has(t));
    const refused = next === snapshot && actions.length === 0;
    out.push({
      ...base,
      state: stateName(next.value),
      status: next.status,
      ...(refused ? { refused: true as const } : {}),
      changes: changes(snapshot.context, next.context),
      effects: ran,
      context: next.context,
    });
    snapshot = next;
  }
  return out;
}
