import { InvalidArgumentError } from "commander";
import { catalogue } from "../events/catalogue.ts";
import { AGGREGATE_KINDS, isAggregateKind, parseRef } from "../events/envelope.ts";
import { eventSubject, kindSubject } from "../store/subjects.ts";

/**
 * Parsers for option values. Each throws commander's InvalidArgumentError, so commander prints
 * "option '--x <v>' argument 'bad' is invalid. <why>" and the CLI exits with the usage code.
 */

/** A stream sequence number (1, 2, …). */
export function parseSeq(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new InvalidArgumentError("expected a stream sequence number (a positive integer).");
  }
  return Number(text);
}

/** A count of events; 0 is allowed (`-n 0 --follow`: only new events). */
export function parseCount(text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new InvalidArgumentError("expected a count (a non-negative integer).");
  }
  return Number(text);
}

export type Since = { fromSeq: number } | { fromTime: Date };

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `120` (stream seq), `90s` / `5m` / `2h` / `1d` (that long ago), or an ISO 8601 time. */
export function parseSince(text: string, now: () => number = Date.now): Since {
  const t = text.trim();
  if (/^\d+$/.test(t)) return { fromSeq: Math.max(1, Number(t)) };
  const d = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(t);
  if (d) return { fromTime: new Date(now() - Number(d[1]) * (UNIT_MS[d[2] as string] as number)) };
  // Date.parse accepts almost anything ("May 5"); insist on an ISO-looking date first.
  const ms = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(t) ? Date.parse(t) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new InvalidArgumentError(
      "expected a stream sequence (120), a duration ago (90s, 5m, 2h, 1d) or an ISO time (2026-11-22T07:00:00Z).",
    );
  }
  return { fromTime: new Date(ms) };
}

export interface AggregateFilter {
  /** JetStream subject filter: one aggregate or every aggregate of a kind. */
  subject: string;
  label: string;
}

/** `kind/id` (one aggregate) or `kind` (all of that kind). */
export function parseAggregate(text: string): AggregateFilter {
  if (!text.includes("/")) {
    if (!isAggregateKind(text)) {
      throw new InvalidArgumentError(`expected kind/id or a kind; kinds are ${AGGREGATE_KINDS.join(", ")}.`);
    }
    return { subject: kindSubject(text), label: text };
  }
  try {
    const ref = parseRef(text);
    return { subject: eventSubject(ref), label: `${ref.kind}/${ref.id}` };
  } catch (err) {
    throw new InvalidArgumentError(`${(err as Error).message}.`);
  }
}

export function knownTypes(): string[] {
  return catalogue.map((d) => d.type);
}

/** Repeatable and comma-separated: `--type CommandFailed,CommandTimedOut --type CommandCancelled`. */
export function parseTypes(text: string, previous: string[] = []): string[] {
  const names = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw new InvalidArgumentError("expected an event type name.");
  const known = new Set(knownTypes());
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new InvalidArgumentError(
      `unknown event type ${unknown.map((n) => JSON.stringify(n)).join(", ")}; known types: ${[...known].join(", ")}.`,
    );
  }
  return [...previous, ...names];
}
