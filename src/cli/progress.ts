/**
 * Progress of a long read on stderr: events read, events per second and an ETA, redrawn on one
 * line. Shown only on a terminal, never for `--json`, and only once a read has taken a second:
 * a short read prints nothing, and stdout (the answer) is never touched.
 */

export interface ProgressSink {
  isTTY?: boolean;
  write(text: string): unknown;
}

export interface Progress {
  /** `n` more records read; `seq` is the last one's stream sequence. */
  add(n: number, seq: number): void;
  /** Clears the line (if one was drawn). */
  done(): void;
}

export interface ProgressOptions {
  /** The last sequence the read goes to, for the ETA. */
  toSeq: number;
  json: boolean;
  sink?: ProgressSink;
  now?: () => number;
  /** Silent for this long (ms) after the read starts. */
  after?: number;
  /** At most one redraw per this many ms. */
  every?: number;
}

const quiet: Progress = { add: () => {}, done: () => {} };

export function progress(opts: ProgressOptions): Progress {
  const sink = opts.sink ?? process.stderr;
  if (opts.json || sink.isTTY !== true) return quiet;
  const now = opts.now ?? Date.now;
  const after = opts.after ?? 1_000;
  const every = opts.every ?? 100;
  const started = now();
  let read = 0;
  let drawnAt = 0;
  let drawn = false;
  return {
    add(n, seq) {
      read += n;
      const t = now();
      const elapsed = t - started;
      if (elapsed < after || t - drawnAt < every) return;
      drawnAt = t;
      drawn = true;
      sink.write(`\r\x1b[K${progressLine(read, elapsed, opts.toSeq - seq)}`);
    },
    done() {
      if (drawn) sink.write("\r\x1b[K");
      drawn = false;
    },
  };
}

/** `120,000 events  95,000 ev/s  ETA 1.2 s`: the figures of one redraw. */
export function progressLine(read: number, elapsedMs: number, left: number): string {
  const rate = elapsedMs > 0 ? (read * 1000) / elapsedMs : 0;
  const eta = rate > 0 ? Math.max(0, left) / rate : 0;
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  return `reading: ${n(read)} events  ${n(rate)} ev/s  ETA ${eta.toFixed(1)} s`;
}
