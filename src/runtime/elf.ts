import { closeSync, openSync, readSync } from "node:fs";

const PT_INTERP = 3;

/** The first bytes of a file (an ELF's headers and its interpreter path sit near the start). */
function head(path: string, bytes: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(bytes);
    return buf.subarray(0, readSync(fd, buf, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}

export function isElf(path: string): boolean {
  try {
    return head(path, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } catch {
    return false;
  }
}

/**
 * The dynamic loader an executable asks for (its PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2),
 * or undefined for a static one. Read from the file so no `ldd`/`readelf` is needed.
 */
export function elfInterpreter(path: string): string | undefined {
  const b = head(path, 64 * 1024);
  if (b.length < 52 || !b.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
    throw new Error(`${path} is not an ELF file`);
  }
  const is64 = b[4] === 2;
  const le = b[5] === 1;
  const u16 = (o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const word = (o: number) => (is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(o));
  const phoff = word(is64 ? 0x20 : 0x1c);
  const phentsize = u16(is64 ? 0x36 : 0x2a);
  const phnum = u16(is64 ? 0x38 : 0x2c);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + phentsize > b.length) break;
    if (u32(ph) !== PT_INTERP) continue;
    const offset = word(ph + (is64 ? 0x08 : 0x04));
    const size = word(ph + (is64 ? 0x20 : 0x10));
    if (offset + size > b.length) throw new Error(`${path}: interpreter path beyond the first 64 KiB`);
    return b.toString("latin1", offset, offset + size).replace(/\0.*$/s, "");
  }
  return undefined;
}
