import type { NatsConnection } from "@nats-io/nats-core";
import { Kind, State } from "../vendor/nats.ts";

/**
 * A faster reading of nats.js's protocol stream, for the frames that carry messages.
 *
 * nats.js parses every byte of a `HMSG`/`MSG` control line through its state machine, then splits
 * the line again into five subarrays and parses its numbers: ~2.5 µs of every message a rebuild
 * reads, 40 % of its main thread (`node --cpu-prof`). Here a whole frame that sits in one socket
 * chunk — control line, payload and its `\r\n` — is read in one pass and handed to the client
 * exactly as nats.js's parser would hand it: the same message arguments, the same payload bytes,
 * in the same order. Everything else (PING, INFO, -ERR, lowercase or unusual spacing, a frame
 * split across chunks, anything malformed) goes to nats.js's own parser, a line or a frame at a
 * time, so its state machine sees the same bytes it would have seen; it still decides every
 * error. test/msg-frames.test.ts holds the two to the same events for any stream, cut anywhere.
 */

/**
 * A message's arguments as nats.js's parser makes them (its `MsgArg`); a frame read here also says
 * where a tap put its subject and its bytes (`subjectAt`, `dataAt`; -1 when untapped).
 */
interface MsgArg {
  sid: number;
  hdr: number;
  size: number;
  subject: Uint8Array;
  reply: Uint8Array | undefined;
  subjectAt?: number;
  dataAt?: number;
}

/**
 * Copies each socket chunk somewhere before its frames are read (src/store/mark-ring.ts: a ring the
 * marks are checked in); returns where the chunk starts there, or -1 when it did not copy it.
 */
export type FrameTap = (chunk: Uint8Array) => number;

/** Per connection with the fast reader: the tap its parsers call, now and after a reconnect. */
const taps = new WeakMap<NatsConnection, { tap: FrameTap | undefined }>();

/** The parts of nats.js's `Parser` this reads (nats-core lib/parser.js). */
interface NatsParser {
  state: number;
  ma?: MsgArg;
  argBuf?: unknown;
  msgBuf?: { length: number };
  dispatcher: { push(e: { kind: number; msg: MsgArg; data: Uint8Array }): void };
  parse(buf: Uint8Array): void;
}

const MAX_SIZE = 64 * 1024 * 1024; // nats.js's own limit on header and payload sizes
const CR = 13;
const NL = 10;
const SPACE = 32;
const TAB = 9;

function isParser(p: unknown): p is NatsParser {
  const q = p as Partial<NatsParser> | undefined;
  return (
    typeof q?.parse === "function" &&
    typeof q.state === "number" &&
    typeof (q.dispatcher as { push?: unknown } | undefined)?.push === "function"
  );
}

/**
 * Reads this connection's message frames the fast way, now and after every reconnect (nats.js
 * makes a new parser then). False when the client is not shaped as expected: it then keeps its
 * own parser, slower but the same.
 */
export function readFramesFast(nc: NatsConnection): boolean {
  const protocol = (nc as unknown as { protocol?: { parser?: unknown } }).protocol;
  if (!protocol || !isParser(protocol.parser)) return false;
  let current: unknown;
  const holder: { tap: FrameTap | undefined } = { tap: undefined };
  taps.set(nc, holder);
  const install = (p: unknown) => {
    current = p;
    if (isParser(p)) fastParser(p, holder);
  };
  install(protocol.parser);
  Object.defineProperty(protocol, "parser", {
    configurable: true,
    enumerable: true,
    get: () => current,
    set: install,
  });
  return true;
}

/**
 * Has this connection's frame reader hand every chunk to `tap` first, and say in each frame it reads
 * where the tap put it. False when the connection has no fast reader.
 */
export function setFrameTap(nc: NatsConnection, tap: FrameTap): boolean {
  const holder = taps.get(nc);
  if (holder) holder.tap = tap;
  return holder !== undefined;
}

/** Gives `parser` the fast path; its class's own `parse` stays the fallback. Exported for the tests. */
export function fastParser(
  parser: NatsParser,
  holder: { tap: FrameTap | undefined } = { tap: undefined },
): void {
  const slow = Object.getPrototypeOf(parser).parse as NatsParser["parse"];
  parser.parse = function parse(this: NatsParser, buf: Uint8Array) {
    parseFrames(this, slow, buf, holder.tap ? tapped(holder.tap, buf) : -1);
  };
}

/** Where `tap` put `buf`; -1 if it failed (its frames are then read untapped, never lost). */
function tapped(tap: FrameTap, buf: Uint8Array): number {
  try {
    return tap(buf);
  } catch {
    return -1;
  }
}

/**
 * Whole frames in place; the rest handed to `slow` in pieces that end where a line or frame does.
 * `base`: where a tap put `buf` (-1: nowhere).
 */
function parseFrames(p: NatsParser, slow: NatsParser["parse"], buf: Uint8Array, base: number): void {
  const n = buf.length;
  let i = 0;
  while (i < n) {
    if (p.state !== State.OP_START || p.argBuf || p.msgBuf) {
      // Finish what nats.js's parser began in an earlier chunk: the rest of its payload and the
      // `\r\n` after it, or the rest of its line.
      let end = n;
      if (p.state === State.MSG_PAYLOAD && p.msgBuf && p.ma) {
        end = Math.min(n, i + p.ma.size - p.msgBuf.length + 2);
      } else {
        const nl = buf.indexOf(NL, i);
        if (nl >= 0) end = nl + 1;
      }
      slow.call(p, i === 0 && end === n ? buf : buf.subarray(i, end));
      i = end;
      continue;
    }
    let at: number; // where the arguments begin
    let headers: boolean;
    if (
      buf[i] === 72 &&
      buf[i + 1] === 77 &&
      buf[i + 2] === 83 &&
      buf[i + 3] === 71 &&
      buf[i + 4] === SPACE
    ) {
      at = i + 5; // "HMSG "
      headers = true;
    } else if (buf[i] === 77 && buf[i + 1] === 83 && buf[i + 2] === 71 && buf[i + 3] === SPACE) {
      at = i + 4; // "MSG "
      headers = false;
    } else {
      // Another operation (PING, +OK, INFO, -ERR…): one line.
      const nl = buf.indexOf(NL, i);
      const end = nl < 0 ? n : nl + 1;
      slow.call(p, buf.subarray(i, end));
      i = end;
      continue;
    }
    const nl = buf.indexOf(NL, at);
    const frame = nl < 0 ? undefined : readArgs(buf, at, nl, headers);
    const start = nl + 1;
    const end = frame ? start + frame.size : n;
    // Not whole in this chunk, or not as corral's server writes it: nats.js's parser takes it.
    if (!frame || end + 2 > n || buf[end] !== CR || buf[end + 1] !== NL) {
      slow.call(p, buf.subarray(i));
      return;
    }
    if (base >= 0) {
      frame.subjectAt = base + (tokens[0] as number);
      frame.dataAt = base + start;
    }
    p.dispatcher.push({ kind: Kind.MSG, msg: frame, data: buf.subarray(start, end) });
    i = end + 2;
  }
}

/**
 * The arguments of a control line `buf[at, nl)` (it ends "\r\n"): subject, sid, optional reply,
 * header size (HMSG), total size. Undefined for anything nats.js's parser should judge itself.
 */
function readArgs(buf: Uint8Array, at: number, nl: number, headers: boolean): MsgArg | undefined {
  if (buf[nl - 1] !== CR) return undefined;
  const to = nl - 1;
  let count = 0;
  let j = at;
  while (j < to) {
    let c = buf[j] as number;
    if (c === SPACE || c === TAB) {
      j++;
      continue;
    }
    if (count === 5) return undefined;
    tokens[2 * count] = j;
    while (j < to && c !== SPACE && c !== TAB) {
      if (c < 33) return undefined; // a control character: not a line nats.js would split the same
      c = buf[++j] as number;
    }
    tokens[2 * count + 1] = j;
    count++;
  }
  const sid = int(buf, 1);
  let reply: Uint8Array | undefined;
  let hdr = -1;
  let size: number;
  if (headers && count === 5) {
    reply = token(buf, 2);
    hdr = int(buf, 3);
    size = int(buf, 4);
  } else if (headers && count === 4) {
    hdr = int(buf, 2);
    size = int(buf, 3);
  } else if (!headers && count === 4) {
    reply = token(buf, 2);
    size = int(buf, 3);
  } else if (!headers && count === 3) {
    size = int(buf, 2);
  } else return undefined;
  if (sid < 0 || size < 0 || size > MAX_SIZE || (headers && (hdr < 0 || hdr > size))) return undefined;
  return { sid, hdr, size, subject: token(buf, 0), reply, subjectAt: -1, dataAt: -1 };
}

/** Start and end of each argument of the line being read (reused: one line at a time). */
const tokens = new Int32Array(10);

const token = (buf: Uint8Array, k: number) => buf.subarray(tokens[2 * k], tokens[2 * k + 1]);

/** Argument `k` as a decimal of 1-15 digits; -1 otherwise (as nats.js's `protoParseInt`). */
function int(buf: Uint8Array, k: number): number {
  const from = tokens[2 * k] as number;
  const to = tokens[2 * k + 1] as number;
  if (to <= from || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = buf[i] as number;
    if (c < 48 || c > 57) return -1;
    n = n * 10 + (c - 48);
  }
  return n;
}
