import type { Readable } from "node:stream";
import { LABEL_AGENT, LABEL_GENERATION, LABEL_POOL } from "./labels.ts";
import type { RuntimeEvent } from "./types.ts";

/** A container event from the engine's /events stream (the fields we read). */
export interface RawDockerEvent {
  Type?: string;
  Action?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
  timeNano?: number;
}

const TYPES = new Set<RuntimeEvent["type"]>([
  "create",
  "start",
  "restart",
  "pause",
  "unpause",
  "die",
  "stop",
  "kill",
  "oom",
  "destroy",
]);

/**
 * RuntimeEvent for the actions corral cares about; undefined for the rest (exec_*, attach,
 * health_status, rename, …). `at` is the engine's clock in ms.
 */
export function normaliseDockerEvent(raw: RawDockerEvent): RuntimeEvent | undefined {
  if (raw.Type !== "container" || !TYPES.has(raw.Action as RuntimeEvent["type"])) return undefined;
  const id = raw.Actor?.ID ?? raw.id;
  if (!id) return undefined;
  const attrs = raw.Actor?.Attributes ?? {};
  const at = raw.timeNano ? Math.floor(raw.timeNano / 1e6) : (raw.time ?? 0) * 1000;
  const e: RuntimeEvent = { type: raw.Action as RuntimeEvent["type"], id, at };
  if (attrs[LABEL_POOL] !== undefined) e.poolId = attrs[LABEL_POOL];
  if (attrs[LABEL_AGENT] !== undefined) e.agentId = attrs[LABEL_AGENT];
  const gen = Number(attrs[LABEL_GENERATION]);
  if (attrs[LABEL_GENERATION] !== undefined && Number.isInteger(gen)) e.generation = gen;
  if (raw.Action === "die" && attrs.exitCode !== undefined) e.exitCode = Number(attrs.exitCode);
  return e;
}

/** Dedupe key: reconnects replay from a little before the last disconnect. */
export function eventKey(raw: RawDockerEvent): string {
  return `${raw.Actor?.ID ?? raw.id}/${raw.Action}/${raw.timeNano ?? raw.time}`;
}

/**
 * Feeds each JSON object of the stream to `onEvent` (the engine writes one per line, but chunks
 * split them anywhere). Resolves when the stream ends, closes or fails.
 */
export function consumeJsonLines(stream: Readable, onEvent: (raw: RawDockerEvent) => void): Promise<void> {
  return new Promise((resolve) => {
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        let raw: RawDockerEvent | undefined;
        try {
          raw = line ? (JSON.parse(line) as RawDockerEvent) : undefined;
        } catch {
          // A line we cannot parse is skipped; the periodic re-list repairs whatever it said.
        }
        if (raw) onEvent(raw);
        nl = buf.indexOf("\n");
      }
    });
    const done = () => resolve();
    stream.once("end", done);
    stream.once("close", done);
    stream.once("error", done);
  });
}

/** A bounded set of recently seen keys (insertion order = age). */
export class RecentKeys {
  private readonly keys = new Set<string>();
  constructor(private readonly cap = 4096) {}
  /** True if new (and remembers it). */
  add(key: string): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    if (this.keys.size > this.cap) {
      const oldest = this.keys.values().next().value;
      if (oldest !== undefined) this.keys.delete(oldest);
    }
    return true;
  }
}
