import { hash } from "node:crypto";
import { Worker } from "node:worker_threads";
import { type EventKey, KEY_BLOCK, MAC_CHARS, markInputLength, writeMarkInput } from "./event-mark.ts";

/**
 * Marks checked off the main thread (ARCHITECTURE.md, "Event marks"). A bulk read stages each
 * message's MAC input in a batch as it arrives; the worker (src/store/mark-worker.mjs) hashes a
 * whole batch while the main thread decodes the next one. Each entry of a batch is
 * `[key block slot][input]` then the claimed MAC's characters, its span `[start, end of input)`.
 */
export class MarkBatch {
  count = 0;
  private used = 0;

  constructor(
    private bytes: Uint8Array<ArrayBuffer>,
    private spans: Uint32Array<ArrayBuffer>,
  ) {}

  /**
   * Stages a mark that passed `EventKey.precheck`, its MAC the MAC_CHARS bytes of `mac` from
   * `macAt`; false when there is nothing to MAC (a mismatch).
   */
  add(subject: string, prev: number, body: Uint8Array, mac: Uint8Array, macAt: number): boolean {
    const need = KEY_BLOCK + markInputLength(subject, body) + MAC_CHARS;
    if (this.used + need > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.used + need, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.used));
      this.bytes = grown;
    }
    if (2 * this.count + 2 > this.spans.length) {
      const grown = new Uint32Array(this.spans.length * 2);
      grown.set(this.spans);
      this.spans = grown;
    }
    const start = this.used;
    const end = writeMarkInput(this.bytes, start + KEY_BLOCK, subject, prev, body);
    if (end < 0) return false;
    for (let j = 0; j < MAC_CHARS; j++) this.bytes[end + j] = mac[macAt + j] as number;
    this.spans[2 * this.count] = start;
    this.spans[2 * this.count + 1] = end;
    this.count++;
    this.used = end + MAC_CHARS;
    return true;
  }

  /** The batch's buffers, handed to the worker (and back); the batch is not used after. */
  take(): { bytes: ArrayBuffer; spans: Uint32Array<ArrayBuffer>; count: number } {
    return { bytes: this.bytes.buffer, spans: this.spans, count: this.count };
  }
}

/** Bytes a fresh batch starts with: room for about a 2,000-message pull of ~300-byte events. */
const START_BYTES = 1 << 20;
const START_ENTRIES = 2_048;

interface Waiting {
  resolve: (valid: Uint8Array) => void;
  reject: (err: Error) => void;
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
      : new MarkBatch(new Uint8Array(START_BYTES), new Uint32Array(2 * START_ENTRIES));
  }

  /** One flag per staged entry, in order: 1 when its MAC is the one claimed. */
  check(batch: MarkBatch): Promise<Uint8Array> {
    const taken = batch.take();
    if (this.broken) return Promise.resolve(this.checkHere(taken));
    const worker = this.started();
    const id = this.next++;
    return new Promise<Uint8Array>((resolve, reject) => {
      if (this.waiting.size === 0) worker.ref();
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, ...taken }, [taken.bytes, taken.spans.buffer]);
    });
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL("./mark-worker.mjs", import.meta.url), {
      workerData: { keyBlock: this.key.keyBlock() },
      execArgv: [], // plain JavaScript: no TypeScript loader to start
      stdout: false,
    });
    worker.unref();
    worker.on(
      "message",
      (m: { id: number; bytes: ArrayBuffer; spans: Uint32Array<ArrayBuffer>; valid: Uint8Array }) => {
        const w = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (this.waiting.size === 0) worker.unref();
        if (this.spare.length < 4) this.spare.push({ bytes: m.bytes, spans: m.spans });
        this.checkedOffThread += m.valid.length;
        w?.resolve(m.valid);
      },
    );
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

  /** The worker's loop, on this thread. */
  private checkHere({ bytes, spans, count }: ReturnType<MarkBatch["take"]>): Uint8Array {
    const view = new Uint8Array(bytes);
    const keyBlock = this.key.keyBlock();
    const valid = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const start = spans[2 * i] as number;
      const end = spans[2 * i + 1] as number;
      view.set(keyBlock, start);
      const mac = hash("sha256", view.subarray(start, end), "base64url");
      let diff = mac.length ^ MAC_CHARS;
      for (let j = 0; j < MAC_CHARS; j++) diff |= (view[end + j] as number) ^ mac.charCodeAt(j);
      valid[i] = diff === 0 ? 1 : 0;
    }
    return valid;
  }
}
