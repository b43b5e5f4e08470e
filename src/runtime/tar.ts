// Just enough of ustar to hand `docker import` a rootfs built in memory: regular files,
// directories and symlinks. Saves depending on a `tar` binary or a temp directory.

export type TarEntry =
  | { type: "file"; path: string; data: Buffer; mode?: number }
  | { type: "dir"; path: string; mode?: number }
  | { type: "symlink"; path: string; target: string };

const BLOCK = 512;

/**
 * The archive as a sequence of chunks, one entry at a time: entries may be produced lazily (a
 * generator reading each file when its turn comes), so a 100 MB binary is never copied twice.
 */
export function* tarChunks(
  entries: Iterable<TarEntry>,
  mtime = Math.floor(Date.now() / 1000),
): Generator<Buffer> {
  for (const e of entries) {
    const size = e.type === "file" ? e.data.length : 0;
    yield header(e, size, mtime);
    if (e.type === "file") {
      yield e.data;
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (pad) yield Buffer.alloc(pad);
    }
  }
  yield Buffer.alloc(BLOCK * 2); // end of archive
}

/** ustar keeps names over 100 bytes as prefix (up to 155) + "/" + name (up to 100). */
function splitName(path: string): [prefix: string, name: string] {
  if (Buffer.byteLength(path) <= 100) return ["", path];
  for (let i = path.indexOf("/"); i >= 0; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name) return [prefix, name];
  }
  throw new Error(`tar path too long for this writer: ${path}`);
}

function header(e: TarEntry, size: number, mtime: number): Buffer {
  const [prefix, name] = splitName(e.type === "dir" && !e.path.endsWith("/") ? `${e.path}/` : e.path);
  if (e.type === "symlink" && Buffer.byteLength(e.target) > 100) {
    throw new Error(`symlink target too long for this writer: ${e.target}`);
  }
  const h = Buffer.alloc(BLOCK);
  const mode = e.type === "symlink" ? 0o777 : (e.mode ?? (e.type === "dir" ? 0o755 : 0o644));
  h.write(name, 0, 100, "utf8");
  octal(h, 100, 8, mode);
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  octal(h, 124, 12, size);
  octal(h, 136, 12, mtime);
  h.fill(" ", 148, 156); // checksum is computed with its own field as spaces
  h.write(e.type === "file" ? "0" : e.type === "dir" ? "5" : "2", 156, 1, "latin1");
  if (e.type === "symlink") h.write(e.target, 157, 100, "utf8");
  h.write("ustar\u000000", 257, 8, "latin1");
  h.write("root", 265, 32, "latin1");
  h.write("root", 297, 32, "latin1");
  h.write(prefix, 345, 155, "utf8");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, 8, "latin1");
  return h;
}

function octal(buf: Buffer, offset: number, length: number, value: number): void {
  buf.write(`${value.toString(8).padStart(length - 1, "0")}\u0000`, offset, length, "latin1");
}
