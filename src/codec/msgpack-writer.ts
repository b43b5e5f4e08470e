/**
 * MessagePack for the plain values events are made of — objects, arrays, ASCII strings, numbers,
 * booleans, null — written byte for byte as `@msgpack/msgpack`'s Encoder (with `ignoreUndefined`)
 * writes them, in one pass. That encoder took ~2.4 µs of a 16 µs append for a 120-byte event
 * (two passes over every string, an extension lookup per object, a count of each map's defined
 * values); this takes ~0.8 µs. Anything else (a non-ASCII string, bytes, a Date, a bigint, nesting
 * past its limit) is not written here: `write` answers undefined and the caller encodes the value
 * with `@msgpack/msgpack` itself, so every such value, and every error, is that encoder's own
 * (src/codec/msgpack.ts). test/msgpack-writer.test.ts holds the two to the same bytes.
 */
const SLAB = 8192;

export class MsgpackWriter {
  /**
   * Where values are written, one after the other, each handed out as a view of its own bytes: a
   * fresh ArrayBuffer per value (what `slice` makes) cost ~0.6 µs, more than the writing. A value
   * keeps its slab alive, as Node's pooled Buffers do (8 KB each).
   */
  private bytes = new Uint8Array(SLAB);
  private view = new DataView(this.bytes.buffer);
  /** Where the value being written starts, and where it is. */
  private start = 0;
  private pos = 0;

  /** `value`'s bytes (its own), or undefined when it holds something only the full encoder writes. */
  write(value: unknown): Uint8Array | undefined {
    this.pos = this.start;
    let out: Uint8Array | undefined;
    if (this.value(value, 1)) {
      out = new Uint8Array(this.bytes.buffer, this.start, this.pos - this.start);
      this.start = (this.pos + 7) & ~7;
    }
    // A value larger than a slab got a buffer of its own: small ones must not keep it alive.
    if (this.bytes.length > SLAB) this.slab();
    return out;
  }

  private slab(): void {
    this.bytes = new Uint8Array(SLAB);
    this.view = new DataView(this.bytes.buffer);
    this.start = 0;
  }

  private value(v: unknown, depth: number): boolean {
    if (depth > 100) return false; // @msgpack/msgpack's maxDepth: its error, for any value that deep
    if (v === null || v === undefined) {
      this.room(1);
      this.bytes[this.pos++] = 0xc0;
      return true;
    }
    switch (typeof v) {
      case "string":
        return this.string(v);
      case "number":
        this.number(v);
        return true;
      case "boolean":
        this.room(1);
        this.bytes[this.pos++] = v ? 0xc3 : 0xc2;
        return true;
      case "object":
        // @msgpack/msgpack's extension (Date) and binaries.
        if (v instanceof Date || ArrayBuffer.isView(v)) return false;
        return Array.isArray(v) ? this.array(v, depth) : this.map(v as Record<string, unknown>, depth);
      default:
        return false; // bigint, symbol, function: the full encoder says what it says
    }
  }

  private string(s: string): boolean {
    const n = s.length;
    this.room(n + 5);
    const b = this.bytes;
    let at = this.pos;
    if (n < 32) b[at++] = 0xa0 + n;
    else if (n < 0x100) {
      b[at++] = 0xd9;
      b[at++] = n;
    } else if (n < 0x10000) {
      b[at++] = 0xda;
      b[at++] = n >>> 8;
      b[at++] = n & 0xff;
    } else {
      b[at++] = 0xdb;
      this.view.setUint32(at, n);
      at += 4;
    }
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) return false; // its UTF-8 length is not its length: the full encoder's
      b[at++] = c;
    }
    this.pos = at;
    return true;
  }

  private number(x: number): void {
    this.room(9);
    const b = this.bytes;
    if (!Number.isSafeInteger(x)) {
      b[this.pos] = 0xcb;
      this.view.setFloat64(this.pos + 1, x);
      this.pos += 9;
    } else if (x >= 0) {
      if (x < 0x80) b[this.pos++] = x;
      else if (x < 0x100) {
        b[this.pos++] = 0xcc;
        b[this.pos++] = x;
      } else if (x < 0x10000) {
        b[this.pos] = 0xcd;
        this.view.setUint16(this.pos + 1, x);
        this.pos += 3;
      } else if (x < 0x100000000) {
        b[this.pos] = 0xce;
        this.view.setUint32(this.pos + 1, x);
        this.pos += 5;
      } else {
        b[this.pos] = 0xcf;
        this.view.setUint32(this.pos + 1, x / 0x100000000);
        this.view.setUint32(this.pos + 5, x);
        this.pos += 9;
      }
    } else if (x >= -0x20) b[this.pos++] = 0xe0 | (x + 0x20);
    else if (x >= -0x80) {
      b[this.pos] = 0xd0;
      this.view.setInt8(this.pos + 1, x);
      this.pos += 2;
    } else if (x >= -0x8000) {
      b[this.pos] = 0xd1;
      this.view.setInt16(this.pos + 1, x);
      this.pos += 3;
    } else if (x >= -0x80000000) {
      b[this.pos] = 0xd2;
      this.view.setInt32(this.pos + 1, x);
      this.pos += 5;
    } else {
      b[this.pos] = 0xd3;
      this.view.setUint32(this.pos + 1, Math.floor(x / 0x100000000));
      this.view.setUint32(this.pos + 5, x);
      this.pos += 9;
    }
  }

  private array(a: readonly unknown[], depth: number): boolean {
    this.header(a.length, 0x90, 0xdc);
    for (let i = 0; i < a.length; i++) if (!this.value(a[i], depth + 1)) return false;
    return true;
  }

  private map(o: Record<string, unknown>, depth: number): boolean {
    const proto = Object.getPrototypeOf(o);
    if (proto === Object.prototype || proto === null) {
      // One pass (for-in reads an ordinary object's own keys in Object.keys order, through V8's
      // enum cache): the count of defined values is written once known, in a byte kept for it.
      this.room(1);
      const at = this.pos++ - this.start; // from the value's start: a longer value moves to a new slab
      let size = 0;
      for (const key in o) {
        const v = o[key];
        if (v === undefined) continue;
        if (size === 15) {
          this.pos = this.start + at; // 16 or more: the wide header, counted first
          return this.mapOf(o, Object.keys(o), depth);
        }
        size++;
        if (!this.string(key) || !this.value(v, depth + 1)) return false;
      }
      this.bytes[this.start + at] = 0x80 + size;
      return true;
    }
    return this.mapOf(o, Object.keys(o), depth);
  }

  private mapOf(o: Record<string, unknown>, keys: readonly string[], depth: number): boolean {
    let size = 0;
    for (let i = 0; i < keys.length; i++) if (o[keys[i] as string] !== undefined) size++;
    this.header(size, 0x80, 0xde);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const v = o[key];
      if (v === undefined) continue;
      if (!this.string(key) || !this.value(v, depth + 1)) return false;
    }
    return true;
  }

  /** An array's or a map's header: fix form under 16 entries, then 16 or 32 bits. */
  private header(n: number, fix: number, wide: number): void {
    this.room(5);
    if (n < 16) this.bytes[this.pos++] = fix + n;
    else if (n < 0x10000) {
      this.bytes[this.pos] = wide;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    } else {
      this.bytes[this.pos] = wide + 1;
      this.view.setUint32(this.pos + 1, n);
      this.pos += 5;
    }
  }

  /** Room for `n` more bytes: past the slab's end, the value so far moves to a new one (as large as it needs). */
  private room(n: number): void {
    if (this.pos + n <= this.bytes.length) return;
    const written = this.pos - this.start;
    const slab = new Uint8Array(Math.max(SLAB, 2 * (written + n)));
    slab.set(this.bytes.subarray(this.start, this.pos));
    this.bytes = slab;
    this.view = new DataView(slab.buffer);
    this.start = 0;
    this.pos = written;
  }
}
