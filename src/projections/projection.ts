import type { CorralEvent } from "../events/catalogue.ts";
import type { AnyEventView } from "../events/reads.ts";
import type { EventDecoder, StoredRecord } from "../store/records.ts";

/** pino-compatible subset; projections log skipped records and checkpoint trouble at warn. */
export interface ProjectionLogger {
  warn(obj: object, msg: string): void;
}

export const silent: ProjectionLogger = { warn() {} };

/** Called when a record is skipped rather than applied. */
export type OnSkip = (record: StoredRecord<AnyEventView>, reason: string, error: unknown) => void;

/**
 * A fold of the stream into a read model, as the runner drives it: a working state updated in
 * place, and a plain saved form for checkpoints and callers. `version` names the reducers and
 * the saved shape; a checkpoint of another version is never loaded. `E`: the events it folds, whole
 * or as the view of them it reads (src/events/reads.ts); a whole event is always one too.
 */
export interface Projection<S, V, E extends AnyEventView = CorralEvent> {
  readonly name: string;
  readonly version: number;
  /** How the runner decodes what it reads for this projection. */
  readonly decode: EventDecoder<E>;
  init(): S;
  /** Folds one record in. Never throws: poison is counted in the state and reported to onSkip. */
  apply(state: S, record: StoredRecord<E> | StoredRecord, onSkip?: OnSkip): void;
  save(state: S): V;
  /** Throws on data of the wrong shape. */
  load(saved: V): S;
}
