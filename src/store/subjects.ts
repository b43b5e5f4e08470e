import type { AggregateKind, AggregateRef } from "../events/envelope.ts";
import { isAggregateKind } from "../events/envelope.ts";

export const EVENT_SUBJECT_PREFIX = "corral.evt";
export const ALL_EVENTS = `${EVENT_SUBJECT_PREFIX}.>`;

export function eventSubject(ref: AggregateRef): string {
  return `${EVENT_SUBJECT_PREFIX}.${ref.kind}.${ref.id}`;
}

export function kindSubject(kind: AggregateKind): string {
  return `${EVENT_SUBJECT_PREFIX}.${kind}.*`;
}

/** `corral.evt.command.abc` → {kind: "command", id: "abc"}; undefined for anything else. */
export function refOfSubject(subject: string): AggregateRef | undefined {
  const parts = subject.split(".");
  if (parts.length !== 4 || `${parts[0]}.${parts[1]}` !== EVENT_SUBJECT_PREFIX) return undefined;
  const kind = parts[2];
  const id = parts[3];
  if (!isAggregateKind(kind) || !id) return undefined;
  return { kind, id };
}
