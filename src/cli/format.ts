import type { DecodeError } from "../events/errors.ts";
import type { StoredRecord } from "../store/records.ts";
import { type Palette, plain } from "./colour.ts";

/** How wide a human line may be when stdout is not a terminal (pipes, CI logs). */
export const DEFAULT_WIDTH = 120;

export interface LineOptions {
  palette?: Palette;
  width?: number;
}

/** The JSON shape of one record, for `--json` (one object per line) and `events show`. */
export type RecordJson =
  | { seq: number; subject: string; time: string; event: unknown; unverified?: true }
  | { seq: number; subject: string; time: string; error: { reason: string; message: string } };

/** DecodeError messages end with "(stream seq N)"; the seq is printed beside them already. */
export function decodeMessage(err: DecodeError): string {
  return err.message.replace(/ \(stream seq \d+\)$/, "");
}

export function recordJson(r: StoredRecord): RecordJson {
  const base = { seq: r.seq, subject: r.subject, time: new Date(r.time).toISOString() };
  if (r.error) return { ...base, error: { reason: r.error.reason, message: decodeMessage(r.error) } };
  return r.unverified ? { ...base, event: r.event, unverified: true } : { ...base, event: r.event };
}

/** msgpack `bin` values decode to Uint8Array, which JSON would spell as an index map. */
function jsonReplacer(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { $bytes: Buffer.from(value).toString("base64") } : value;
}

export function jsonLine(r: StoredRecord): string {
  return JSON.stringify(recordJson(r), jsonReplacer);
}

export function prettyJson(r: StoredRecord): string {
  return JSON.stringify(recordJson(r), jsonReplacer, 2);
}

/** Local wall-clock time with milliseconds: tails are read live, the date is rarely in doubt. */
export function clock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** Aggregate column: fits `command/<id>` for typical ids; longer ones push the line right. */
const AGG_COLUMN = 28;

const BARE = /^[\w.:/@+-]+$/;

/** A compact, one-line rendering of a value: `{pending:500,sent:300}`, `"two words"`, `agent-1`. */
export function compact(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return BARE.test(value) ? value : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return String(value);
  }
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (Array.isArray(value)) return `[${value.map(compact).join(",")}]`;
  if (typeof value === "object") {
    const parts = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}:${compact(v)}`);
    return `{${parts.join(",")}}`;
  }
  return String(value);
}

/** `k=v` pairs of an event's data, in the order the event carries them. */
export function dataPairs(data: unknown): string {
  if (data === undefined) return "";
  if (typeof data !== "object" || data === null || Array.isArray(data) || data instanceof Uint8Array) {
    return `data=${compact(data)}`;
  }
  return Object.entries(data)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${compact(v)}`)
    .join(" ");
}

function truncate(s: string, max: number): string {
  if (max <= 0) return "";
  return s.length <= max ? s : `${s.slice(0, Math.max(0, max - 1))}…`;
}

function typeColour(type: string, c: Palette): (s: string) => string {
  if (/(Failed|TimedOut|Untrusted|Rejected|Killed)$/.test(type)) return c.red;
  if (/(Completed|Ready|Registered|Connected)$/.test(type)) return c.green;
  if (/(Cancelled|Recycled|Released)$/.test(type)) return c.yellow;
  return c.bold;
}

/**
 * One line per record: `seq time kind/id type k=v…`, cut to `width` columns. Colour is applied
 * after cutting, so escape codes never count towards (or get cut by) the width.
 */
export function formatLine(r: StoredRecord, opts: LineOptions = {}): string {
  const c = opts.palette ?? plain;
  const width = opts.width ?? DEFAULT_WIDTH;
  const seq = String(r.seq).padStart(6);
  const time = clock(r.time);
  if (r.error) {
    const subject = r.subject.padEnd(AGG_COLUMN);
    const head = `${seq} ${time} ${subject} `;
    const why =
      r.error.reason === "forged"
        ? `FORGED: ${decodeMessage(r.error)}`
        : `UNDECODABLE (${r.error.reason}): ${decodeMessage(r.error)}`;
    const rest = truncate(why, Math.max(width - head.length, 40));
    return `${c.dim(seq)} ${c.dim(time)} ${subject} ${c.red(rest)}`;
  }
  const e = r.event;
  const agg = `${e.aggregate.kind}/${e.aggregate.id}`.padEnd(AGG_COLUMN);
  const type = e.type.padEnd(16);
  const head = `${seq} ${time} ${agg} ${type} `;
  // Long aggregate ids may eat the line: keep a little data visible rather than none.
  const data = truncate(dataPairs(e.data), Math.max(width - head.length, 24));
  return `${c.dim(seq)} ${c.dim(time)} ${c.cyan(agg)} ${typeColour(e.type, c)(type)} ${data}`.trimEnd();
}
