import type { NatsConnection } from "@nats-io/nats-core";
import { describeMark, type EventKey, type MarkCheck, markShape } from "./event-mark.ts";

/**
 * How a store treats marks (ARCHITECTURE.md, "Event marks"):
 * - `{key}`: a writer. Every append is marked; every read checks the mark, and a record without a
 *   valid one is forged (never folded).
 * - `"unverified"`: a reader without the key. An unmarked record is forged; a marked one is read,
 *   flagged `unverified` (its mark cannot be checked here).
 * - `"off"`: no marks written or checked (tests of other layers, benches' baselines, the demo).
 */
export type Integrity = { key: EventKey } | "unverified" | "off";

/**
 * A read's judgement of one message: trusted (a number: the sequence its mark says it follows on
 * its subject), readable but unverified, or forged (and why).
 */
export type Verdict = number | "unverified" | { check: Exclude<MarkCheck, "valid">; detail: string };

export type Verifier = (subject: string, data: Uint8Array, mark: string | undefined) => Verdict;

export function verifierOf(integrity: Integrity): Verifier | undefined {
  if (integrity === "off") return undefined;
  if (integrity === "unverified") {
    return (_subject, _data, mark) => {
      const shape = markShape(mark);
      return shape === "valid" ? "unverified" : { check: shape, detail: describeMark(shape, mark) };
    };
  }
  const { key } = integrity;
  return (subject, data, mark) => {
    const verdict = key.verify(subject, data, mark);
    return typeof verdict === "number" ? verdict : { check: verdict, detail: describeMark(verdict, mark) };
  };
}

/**
 * The integrity every store opened on this connection gets unless it says otherwise: the daemon
 * binds its key to its connection once, so each store the control plane opens on it marks and
 * checks, and none can be opened there without.
 */
const bound = new WeakMap<NatsConnection, Integrity>();

export function bindIntegrity(nc: NatsConnection, integrity: Integrity): void {
  bound.set(nc, integrity);
}

export function integrityOf(nc: NatsConnection): Integrity | undefined {
  return bound.get(nc);
}
