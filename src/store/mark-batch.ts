import { Worker } from "node:worker_threads";
import type { EventKey } from "./event-mark.ts";
import { STAGED, StagedChecker } from "./mark-bytes.mjs";
import { scanHeaders } from "./mark-header.ts";

/**
 * A read's marks, checked a batch at a time (ARCHITECTURE.md, "Event marks"). A read stages each
 * message as it arrives: its subject and its raw bytes (header block, then body) copied as they
 * are, so the main thread does no more than one copy per message. The checker (in the worker,
 * src/store/mark-worker.mjs, once a read is long) finds and parses each mark, lays out the MAC
 * inputs and makes a whole batch's tags while the main thread decodes the next one. Entry i is `subject ‖ header block ‖ body`,
 * `spans[4i…4i+3]` its start, header start, body start and end (mark-bytes.mjs `StagedChecker`).
 */
export class MarkBatch {
  count = 0;
  private used = 0;

  constructor(
    private bytes: Uint8Array<ArrayBuffer>,
    private spans: Uint32Array<ArrayBuffer>,
  ) {}

  /**
   * Stages a message on `subject` (its bytes as delivered): `raw` is its header block (`hdr` bytes)
   * then its body. False when there is nothing to MAC: a subject corral never writes (not ASCII,
   * or too long).
   */
  add(subject: Uint8Array, raw: Uint8Array, hdr: number): boolean {
    if (subject.length > 0xffff) return false;
    const need = subject.length + raw.length;
    if (this.used + need > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.used + need, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.used));
      this.bytes = grown;
    }
    if (4 * this.count + 4 > this.spans.length) {
      const grown = new Uint32Array(this.spans.length * 2);
      grown.set(this.spans);
      this.spans = grown;
    }
    const bytes = this.bytes;
    let at = this.used;
    let wide = 0;
    for (let i = 0; i < subject.length; i++) {
      const c = subject[i] as number;
      wide |= c;
      bytes[at++] = c;
    }
    if (wide > 0x7f) return false;
    const k = 4 * this.count;
    this.spans[k] = this.used;
    this.spans[k + 1] = at;
    this.spans[k + 2] = at + hdr;
    bytes.set(raw, at);
    this.used = at + raw.length;
    this.spans[k + 3] = this.used;
    this.count++;
    return true;
  }

  /** The batch's buffers, handed to the worker (and back); the batch is not used after. */
  take(): Staged {
    return { bytes: this.bytes.buffer, spans: this.spans, count: this.count };
  }
}

interface Staged {
  bytes: ArrayBuffer;
  spans: Uint32Array<ArrayBuffer>;
  count: number;
}

/** A checked batch: per entry, its verdict, and the prev its mark names when valid. */
export interface Checked {
  verdicts: Uint8Array;
  prevs: Float64Array;
  /** The mark as written, of each entry whose verdict is not valid (to say why it is forged). */
  marks: Map<number, string | undefined>;
}

/** Each STAGED verdict's name, by its code. */
export const VERDICTS = Object.keys(STAGED) as (keyof typeof STAGED)[];

/** Bytes a fresh batch starts with: room for about a 2,000-message pull of ~300-byte events. */
const START_BYTES = 1 << 20;
const START_ENTRIES = 2_048;

interface Waiting {
  resolve: (checked: Checked) => void;
  reject: (err: Error) => void;
}

interface Reply {
  id: number;
  bytes: ArrayBuffer;
  spans: Uint32Array<ArrayBuffer>;
  verdicts: Uint8Array;
  prevs: Float64Array;
}

/** One worker per key, started on first use; it does not keep the process alive when idle. */
export class MarkChecker {
  private static readonly byKey = new WeakMap<EventKey, MarkChecker>();
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private next = 0;
  /** Buffers back from the worker, reused by the next batch. */
  private readonly spare: { bytes: ArrayBuffer; spans: Uint32Array<ArrayBuffer> }[] = [];
  /** Set when the worker failed: batches are then checked on the main thread. */
  private broken = false;
  /** Checks batches on this thread: a read's first ones, and all once the worker failed. */
  private here: StagedChecker | undefined;
  /** Marks the worker has checked (for tests and benches: proof the work left this thread). */
  checkedOffThread = 0;

  private constructor(private readonly key: EventKey) {}

  static of(key: EventKey): MarkChecker {
    let checker = MarkChecker.byKey.get(key);
    if (!checker) {
      checker = new MarkChecker(key);
      MarkChecker.byKey.set(key, checker);
    }
    return checker;
  }

  batch(): MarkBatch {
    const spare = this.spare.pop();
    return spare
      ? new MarkBatch(new Uint8Array(spare.bytes), spare.spans)
      : new MarkBatch(new Uint8Array(START_BYTES), new Uint32Array(4 * START_ENTRIES));
  }

  /** Each staged entry's verdict, in order. */
  check(batch: MarkBatch): Promise<Checked> {
    const taken = batch.take();
    if (this.broken) return Promise.resolve(this.checkHere(taken));
    const worker = this.started();
    const id = this.next++;
    return new Promise<Checked>((resolve, reject) => {
      if (this.waiting.size === 0) worker.ref();
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, ...taken }, [taken.bytes, taken.spans.buffer]);
    });
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL("./mark-worker.mjs", import.meta.url), {
      workerData: { keyBlock: this.key.keyBlock(), keyId: this.key.id },
      execArgv: [], // plain JavaScript: no TypeScript loader to start
      stdout: false,
    });
    worker.unref();
    worker.on("message", (m: Reply) => {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) worker.unref();
      this.checkedOffThread += m.verdicts.length;
      const checked = withMarks(m.verdicts, m.prevs, new Uint8Array(m.bytes), m.spans);
      if (this.spare.length < 4) this.spare.push({ bytes: m.bytes, spans: m.spans });
      w?.resolve(checked);
    });
    const fail = (err: Error) => {
      // Nothing is lost: the batches in flight fail their reads, later ones are checked here.
      this.broken = true;
      this.worker = undefined;
      for (const w of this.waiting.values()) w.reject(new Error(`the mark checker stopped: ${err.message}`));
      this.waiting.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  /** Each staged entry's verdict, checked on this thread (a short read: no round trip to the worker). */
  checkNow(batch: MarkBatch): Checked {
    return this.checkHere(batch.take());
  }

  /** The worker's loop, on this thread. */
  private checkHere({ bytes, spans, count }: Staged): Checked {
    this.here ??= new StagedChecker(this.key.keyBlock(), this.key.id);
    const view = new Uint8Array(bytes);
    const verdicts = new Uint8Array(count);
    const prevs = new Float64Array(count);
    this.here.check(view, spans, count, verdicts, prevs);
    return withMarks(verdicts, prevs, view, spans);
  }
}

/** The verdicts, with the mark of each entry that is not valid read back from the staged bytes. */
function withMarks(verdicts: Uint8Array, prevs: Float64Array, view: Uint8Array, spans: Uint32Array): Checked {
  const marks = new Map<number, string | undefined>();
  for (let i = 0; i < verdicts.length; i++) {
    if (verdicts[i] === STAGED.valid) continue;
    marks.set(i, scanHeaders(view, spans[4 * i + 1] as number, spans[4 * i + 2] as number));
  }
  return { verdicts, prevs, marks };
}
