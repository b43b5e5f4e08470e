import type { StoredRecord } from "../store/records.ts";

/** pino-compatible subset; projections log skipped records and checkpoint trouble at warn. */
export interface ProjectionLogger {
  warn(obj: object, msg: string): void;
}

export const silent: ProjectionLogger = { warn() {} };

/** Called when a record is skipped rather than applied. */
export type OnSkip = (record: StoredRecord, reason: string, error: unknown) => void;

/**
 * A fold of the stream into a read model, as the runner drives it: a working state updated in
 * place, and a plain saved form for checkpoints and callers. `version` names the reducers and
 * the saved shape; a checkpoint of another version is never loaded.
 */
export interface Projection<S, V> {
  readonly name: string;
  readonly version: number;
  init(): S;
  /** Folds one record in. Never throws: poison is counted in the state and reported to onSkip. */
  apply(state: S, record: StoredRecord, onSkip?: OnSkip): void;
  save(state: S): V;
  /** Throws on data of the wrong shape. */
  load(saved: V): S;
}
