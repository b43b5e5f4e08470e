/** The msgpack key of the envelope's causationId: a fixstr of 11 bytes. */
const CAUSATION_KEY = Buffer.from([0xa0 | 11, ...Buffer.from("causationId", "latin1")]);

/**
 * Which raw messages a trace has to decode (src/cli/trace.ts): those whose bytes contain one of
 * its needles (the id asked for, a lease the trace granted), and those whose causationId names an
 * event already in the trace. MessagePack writes a string as its UTF-8 bytes, so both are found
 * in the body without decoding it. A message that passes is decoded and its mark checked like any
 * other: a false positive costs one decode, never a wrong answer; a forged message that passes is
 * shown as forged.
 */
export class RawFilter {
  private readonly needles: Buffer[] = [];
  private readonly known = new Set<string>();

  constructor(
    needles: Iterable<string>,
    /** Whether an event id is in the trace so far. */
    private readonly inTrace: (id: string) => boolean,
  ) {
    for (const n of needles) this.addNeedle(n);
  }

  addNeedle(text: string): void {
    if (text === "" || this.known.has(text)) return;
    this.known.add(text);
    this.needles.push(Buffer.from(text, "utf8"));
  }

  passes(body: Uint8Array): boolean {
    // nats.js hands bodies over as Buffers already: a second view per message is not free.
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    for (const n of this.needles) if (buf.indexOf(n) >= 0) return true;
    return this.causedFromTrace(buf);
  }

  /** Whether a causationId in `buf` (any occurrence of the key: it is checked after decoding) is in the trace. */
  private causedFromTrace(buf: Buffer): boolean {
    for (let at = buf.indexOf(CAUSATION_KEY); at >= 0; at = buf.indexOf(CAUSATION_KEY, at + 1)) {
      const value = stringAt(buf, at + CAUSATION_KEY.length);
      if (value !== undefined && this.inTrace(value)) return true;
    }
    return false;
  }
}

/** The msgpack string (fixstr, str8 or str16) at `at`, as latin1 (ids are ASCII); undefined if none is there. */
function stringAt(buf: Buffer, at: number): string | undefined {
  const head = buf[at];
  if (head === undefined) return undefined;
  let from = at + 1;
  let length: number;
  if ((head & 0xe0) === 0xa0) length = head & 0x1f;
  else if (head === 0xd9 && at + 1 < buf.length) {
    length = buf[at + 1] as number;
    from = at + 2;
  } else if (head === 0xda && at + 2 < buf.length) {
    length = buf.readUInt16BE(at + 1);
    from = at + 3;
  } else return undefined;
  return from + length <= buf.length ? buf.toString("latin1", from, from + length) : undefined;
}
