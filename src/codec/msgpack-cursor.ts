/**
 * A forward cursor over one MessagePack value that steps over what its reader does not ask for:
 * a skipped string or map costs a length read, not a string or an object. Scalars it reads
 * itself; a map, array, binary or extension value that is asked for is handed, as its exact
 * bytes, to `@msgpack/msgpack` (msgpack.ts), so every value it returns is the one that decoder
 * returns. Bytes that are not MessagePack throw a MsgpackFormatError.
 */
export class MsgpackFormatError extends Error {}

const ASCII_RUN = 24;
/** stringIn: the next value is not a string. */
const NOT_A_STRING = -2;
const ascii = new TextDecoder();

export class MsgpackCursor {
  private b: Uint8Array = new Uint8Array(0);
  pos = 0;

  constructor(private readonly decodeValue: (bytes: Uint8Array) => unknown) {}

  reset(bytes: Uint8Array): void {
    this.b = bytes;
    this.pos = 0;
  }

  get done(): boolean {
    return this.pos === this.b.length;
  }

  /** A map's entry count, consumed; -1 (nothing consumed) when the next value is not a map. */
  mapHeader(): number {
    const c = this.b[this.pos];
    if (c === undefined) throw this.truncated();
    if (c >= 0x80 && c <= 0x8f) {
      this.pos++;
      return c & 0x0f;
    }
    if (c === 0xde) return this.uint(1, 2);
    if (c === 0xdf) return this.uint(1, 4);
    return -1;
  }

  /**
   * A string's byte length, its header consumed (its bytes are next); -1 (nothing consumed) when
   * the next value is not a string.
   */
  stringHeader(): number {
    const c = this.b[this.pos];
    if (c === undefined) throw this.truncated();
    if (c >= 0xa0 && c <= 0xbf) {
      this.pos++;
      return c & 0x1f;
    }
    if (c === 0xd9) return this.uint(1, 1);
    if (c === 0xda) return this.uint(1, 2);
    if (c === 0xdb) return this.uint(1, 4);
    return -1;
  }

  /** Steps over the next value if it is a string and returns its byte length; else -1, nothing consumed. */
  skipString(): number {
    const n = this.stringHeader();
    if (n > 0) this.advance(n);
    return n;
  }

  /**
   * Reads a map key that must be a string and returns its index in `keys` (UTF-8 bytes), or -1
   * when it is none of them; either way the key is consumed.
   */
  key(keys: readonly Uint8Array[], hint = -1): number {
    const k = this.stringIn(keys, hint);
    if (k === NOT_A_STRING) throw new MsgpackFormatError(`a map key at byte ${this.pos} is not a string`);
    return k;
  }

  /**
   * When the next value is a string: consumed, and its index in `list` (UTF-8 bytes), or -1 when
   * it is none of them. Else NOT_A_STRING, nothing consumed. A known name costs no string.
   * `hint`: the index most likely to match, tried first (the writer's key order, the last type).
   */
  stringIn(list: readonly Uint8Array[], hint = -1): number {
    const n = this.stringHeader();
    if (n < 0) return NOT_A_STRING;
    const at = this.pos;
    this.advance(n);
    if (hint >= 0 && hint < list.length && this.equals(at, n, list[hint] as Uint8Array)) return hint;
    for (let k = 0; k < list.length; k++) if (this.equals(at, n, list[k] as Uint8Array)) return k;
    return -1;
  }

  private equals(at: number, n: number, want: Uint8Array): boolean {
    if (want.length !== n) return false;
    const b = this.b;
    for (let i = 0; i < n; i++) if (b[at + i] !== want[i]) return false;
    return true;
  }

  /** The next value, decoded. */
  value(): unknown {
    const b = this.b;
    const start = this.pos;
    const c = b[start];
    if (c === undefined) throw this.truncated();
    if (c <= 0x7f) {
      this.pos++;
      return c;
    }
    if (c >= 0xe0) {
      this.pos++;
      return c - 0x100;
    }
    const n = this.stringHeader();
    if (n >= 0) return this.text(start, n);
    switch (c) {
      case 0xc0:
        this.pos++;
        return null;
      case 0xc2:
        this.pos++;
        return false;
      case 0xc3:
        this.pos++;
        return true;
      case 0xcc:
        return this.uint(1, 1);
      case 0xcd:
        return this.uint(1, 2);
      case 0xce:
        return this.uint(1, 4);
      case 0xcf:
        return this.uint(1, 4) * 0x1_0000_0000 + this.uint(0, 4);
      case 0xd0:
        return (this.uint(1, 1) << 24) >> 24;
      case 0xd1:
        return (this.uint(1, 2) << 16) >> 16;
      case 0xd2:
        return this.uint(1, 4) | 0;
      case 0xd3:
        return (this.uint(1, 4) | 0) * 0x1_0000_0000 + this.uint(0, 4);
    }
    // Containers, floats, binary and extensions: their exact bytes, decoded by @msgpack/msgpack.
    this.skip();
    return this.decodeValue(b.subarray(start, this.pos));
  }

  /** Steps over the next value. */
  skip(): void {
    const c = this.b[this.pos];
    if (c === undefined) throw this.truncated();
    if (c <= 0x7f || c >= 0xe0 || c === 0xc0 || c === 0xc2 || c === 0xc3) {
      this.pos++;
      return;
    }
    const n = this.stringHeader();
    if (n >= 0) {
      this.advance(n);
      return;
    }
    const entries = this.containerHeader(c);
    if (entries < 0) {
      this.advance(this.scalarSize(c));
      return;
    }
    // More entries than bytes left cannot be: refused before a long loop over nothing.
    if (entries > this.b.length - this.pos) throw this.truncated();
    for (let i = 0; i < entries; i++) this.skip();
  }

  /** A map's or array's header consumed: the values in it (a map's keys among them); else -1. */
  private containerHeader(c: number): number {
    if (c >= 0x80 && c <= 0x8f) {
      this.pos++;
      return 2 * (c & 0x0f);
    }
    if (c >= 0x90 && c <= 0x9f) {
      this.pos++;
      return c & 0x0f;
    }
    if (c === 0xdc) return this.uint(1, 2);
    if (c === 0xdd) return this.uint(1, 4);
    if (c === 0xde) return 2 * this.uint(1, 2);
    if (c === 0xdf) return 2 * this.uint(1, 4);
    return -1;
  }

  /** Bytes from here to the end of a number, binary or extension value (a length read is consumed). */
  private scalarSize(c: number): number {
    switch (c) {
      case 0xcc:
      case 0xd0:
        return 2;
      case 0xcd:
      case 0xd1:
        return 3;
      case 0xca:
      case 0xce:
      case 0xd2:
        return 5;
      case 0xcb:
      case 0xcf:
      case 0xd3:
        return 9;
      case 0xc4: // bin 8, 16, 32: length, data
        return this.uint(1, 1);
      case 0xc5:
        return this.uint(1, 2);
      case 0xc6:
        return this.uint(1, 4);
      case 0xc7: // ext 8, 16, 32: length, type byte, data
        return this.uint(1, 1) + 1;
      case 0xc8:
        return this.uint(1, 2) + 1;
      case 0xc9:
        return this.uint(1, 4) + 1;
      case 0xd4: // fixext 1, 2, 4, 8, 16: type byte, data
        return 3;
      case 0xd5:
        return 4;
      case 0xd6:
        return 6;
      case 0xd7:
        return 10;
      case 0xd8:
        return 18;
    }
    throw new MsgpackFormatError(`byte 0x${c.toString(16)} at ${this.pos} starts no MessagePack value`);
  }

  /** A big-endian unsigned integer of `size` bytes after `skip` header bytes. */
  private uint(skip: number, size: number): number {
    const b = this.b;
    const at = this.pos + skip;
    if (at + size > b.length) throw this.truncated();
    this.pos = at + size;
    if (size === 1) return b[at] as number;
    if (size === 2) return ((b[at] as number) << 8) | (b[at + 1] as number);
    return (
      (b[at] as number) * 0x100_0000 +
      (((b[at + 1] as number) << 16) | ((b[at + 2] as number) << 8) | (b[at + 3] as number))
    );
  }

  private advance(n: number): void {
    if (this.pos + n > this.b.length) throw this.truncated();
    this.pos += n;
  }

  /**
   * The string whose header starts at `start` and whose `n` bytes are next. ASCII (ids, names) is
   * read here, short strings without a decoder call; anything else is @msgpack/msgpack's to decode,
   * so that bytes that are not UTF-8 come out as that decoder makes them.
   */
  private text(start: number, n: number): string {
    const b = this.b;
    const from = this.pos;
    this.advance(n);
    let s = "";
    for (let i = from; i < from + n; i++) {
      const c = b[i] as number;
      if (c > 0x7f) return this.decodeValue(b.subarray(start, from + n)) as string;
      if (n <= ASCII_RUN) s += String.fromCharCode(c);
    }
    return n <= ASCII_RUN ? s : ascii.decode(b.subarray(from, from + n));
  }

  private truncated(): MsgpackFormatError {
    return new MsgpackFormatError(`truncated at byte ${this.pos} of ${this.b.length}`);
  }
}
