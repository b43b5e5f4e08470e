import type { AnyStateMachine, SnapshotFrom } from "xstate";
import type { AggregateKind } from "../src/events/envelope.ts";

/** An input the host delivers to an aggregate when one of its deadlines passes. */
export interface TimerInput {
  type: string;
  data: Record<string, unknown>;
}

/**
 * What the actor host needs to know about one aggregate kind: its machine, the version of its
 * persisted snapshot shape, the effects its actions name, and its current deadline (if any).
 * Pure data and pure functions: the host does the I/O.
 */
export interface AggregateDef<M extends AnyStateMachine = AnyStateMachine> {
  kind: AggregateKind;
  machine: M;
  /** Bump when the machine's states or context change shape: older snapshots are then ignored. */
  version: number;
  /** Names of the actions the host must run as effects (each needs a handler). */
  effects: readonly string[];
  /** The pending deadline of this snapshot and the input to deliver when it passes. */
  timer?: (snapshot: SnapshotFrom<M>) => { at: number; input: TimerInput } | null;
  /**
   * After a restart: the effects of the step the actor is in the middle of, to run again
   * (effects are idempotent). The crash may have come between storing an event and its effect.
   */
  resume?: (snapshot: SnapshotFrom<M>) => EffectIntent[];
}

/** A named action with its params, as `transition` returns them. */
export interface EffectIntent {
  type: string;
  params: unknown;
}

export function defineAggregate<M extends AnyStateMachine>(def: AggregateDef<M>): AggregateDef<M> {
  return def;
}
