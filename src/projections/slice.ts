import type { EventType } from "../events/catalogue.ts";
import type { AnyEventView, Reads, ReadView } from "../events/reads.ts";

/** Where an event sits in the stream; the only notion of time a reducer gets (never a clock). */
export interface RecordMeta {
  seq: number;
  /** When the server stored it (ms since the epoch). */
  time: number;
}

/**
 * One independent part of the worldview: a reducer over the event types it declares, plus the
 * conversion between its working state and plain, canonical, MessagePack-safe data.
 *
 * Reducers update their working state in place: copying a map of live items on every event
 * would make a rebuild O(events × live items). They are still deterministic functions of
 * (state, event, meta) — no I/O, no clock, no randomness — so folding the same records always
 * gives the same state, whichever way the stream was split into catch-ups.
 */
export interface Slice<S, V, T extends EventType = EventType, P = unknown, R extends Reads<T> = Reads<T>> {
  /** Event types this slice reduces; every other type never reaches it. */
  readonly handles: readonly T[];
  /**
   * The data fields `reduce` reads, by type: a rebuild decodes and checks only these (a type not
   * listed arrives with empty data). Typed, so reading a field not listed does not compile.
   */
  readonly reads: R;
  init(): S;
  reduce(state: S, event: ReadView<T, R>, meta: RecordMeta): void;
  /**
   * Plain data, canonical (same state → deep-equal output), not sharing objects with `state`.
   *
   * `peers` are the working states of every slice of the composition, by key, for a view that is
   * derived from another slice's state (pool metrics and host ports come from the agents' states):
   * read them, never write them. A derived part is not state: `load` skips it, `save` derives it
   * again, so it cannot disagree with what it is derived from.
   */
  save(state: S, peers: P): V;
  /** The inverse of `save`; throws on data of the wrong shape (the checkpoint is then ignored). */
  load(saved: V): S;
}

/** A slice of any state, for composition tables; `reduce` gets the events it declared (method: bivariant). */
// biome-ignore lint/suspicious/noExplicitAny: any state, view, types and peers
export type AnySlice = Omit<Slice<any, any, any, any, any>, "reduce"> & {
  // biome-ignore lint/suspicious/noExplicitAny: any state
  reduce(state: any, event: AnyEventView, meta: RecordMeta): void;
};
export type ViewOf<L> = L extends { save(...args: never): infer V } ? V : never;
/** The peer states a slice's `save` reads (unknown when it reads none). */
export type PeersOf<L> = L extends { save(state: never, peers: infer P): unknown } ? P : unknown;
export type StateOf<L> = L extends { init(): infer S } ? S : never;

export function defineSlice<
  S,
  V,
  const T extends EventType,
  P = unknown,
  const R extends Reads<T> = Reads<T>,
>(slice: Slice<S, V, T, P, R>): Slice<S, V, T, P, R> {
  return slice;
}

/** Routes each event to the slices that declared its type, built once per composition. */
export function dispatchTable<L extends Record<string, AnySlice>>(
  slices: L,
): Map<string, [key: keyof L & string, slice: AnySlice][]> {
  const table = new Map<string, [keyof L & string, AnySlice][]>();
  for (const [key, slice] of Object.entries(slices)) {
    for (const type of slice.handles as readonly string[]) {
      const list = table.get(type) ?? [];
      list.push([key, slice]);
      table.set(type, list);
    }
  }
  return table;
}
