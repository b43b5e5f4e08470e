import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Decoder } from "@msgpack/msgpack";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection, nanos, nuid } from "@nats-io/nats-core";
import { encodeEvent } from "../src/codec/msgpack.ts";
import { createEvent, type DataInputOf, type EventType } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { uuidv7 } from "../src/events/id.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { ProjectionRunner } from "../src/projections/runner.ts";
import { worldviewProjection } from "../src/projections/worldview.ts";
import type { EventKey } from "../src/store/event-mark.ts";
import { EventStore } from "../src/store/event-store.ts";
import { loadOrCreateEventKey } from "../src/store/key-file.ts";
import { PipelinedPublisher } from "../src/store/publisher.ts";
import { ALL_EVENTS, eventSubject } from "../src/store/subjects.ts";
import {
  type BenchNats,
  collectGarbage,
  fmt,
  heapPeak,
  markCost,
  mb,
  median,
  perSecond,
  startBenchNats,
  timed,
} from "./lib.ts";

/** One rebuild reader's median time (bench/rebuild-reader.ts), in a process of its own. */
async function readerRebuild(server: BenchNats, keyFile: string): Promise<number> {
  const reader = fileURLToPath(new URL("./rebuild-reader.ts", import.meta.url));
  const { stdout } = await run(process.execPath, [
    "--import",
    "tsx",
    "--expose-gc",
    reader,
    server.server.url,
    keyFile,
    String(READER_RUNS),
  ]);
  const { ms } = JSON.parse(stdout.trim().split("\n").pop() as string) as { ms: number[] };
  return median(ms.slice(1));
}

const run = promisify(execFile);
const EVENTS = 200_000;
/** Commands in flight at once: their events interleave in the stream as they would live. */
const WINDOW = 1_000;
const AGENTS = 64;
const RUNS = 5;
/**
 * The marks' cost: rounds of an unmarked and a marked reader, each in a process of its own
 * (bench/rebuild-reader.ts), the order alternating, each taking the median of its rebuilds after
 * the first. Read in one process, the two interleaved made the worldview's code serve both kinds of
 * record, which slowed the unmarked reads and understated the cost by ~3 points.
 */
const MARK_ROUNDS = 10;
const READER_RUNS = 4;

export interface Msg {
  subject: string;
  id: string;
  bytes: Uint8Array;
}

export type Step = { [T in EventType]: [T, DataInputOf<T>] }[EventType];

/**
 * One command's life: mostly completed, some retried, failed or cancelled; only commands of the
 * last window (`tail`) may still be in flight when the stream ends, as in a running system.
 */
export function lifecycle(i: number, tail: boolean): Step[] {
  const created: Step = [
    "CommandCreated",
    {
      agentId: `agent-${i % AGENTS}`,
      action: i % 3 ? "npm test" : "git pull --rebase",
      payload: { cwd: `/work/repo-${i % 17}`, env: { CI: "1" }, args: ["--reporter", "dot"] },
    },
  ];
  const sent = (attempt: number): Step => ["CommandSent", { attempt }];
  const acked = (attempt: number): Step => ["CommandAcked", { attempt }];
  const done: Step = [
    "CommandCompleted",
    { result: { exitCode: 0, durationMs: 1200 + (i % 900), tail: "ok" } },
  ];
  const r = i % 100;
  if (r < 70) return [created, sent(1), acked(1), done];
  if (r < 80) return [created, sent(1), ["CommandTimedOut", { deadline: i }], sent(2), acked(2), done];
  if (r < 88)
    return [created, sent(1), acked(1), ["CommandFailed", { error: "exit status 1", code: "E_EXIT" }]];
  if (r < 93) return [created, ["CommandCancelled", { reason: "lease released" }]];
  if (!tail) return [created, sent(1), acked(1), ["CommandTimedOut", { deadline: i }]];
  if (r < 98) return [created, sent(1), acked(1)];
  return [created];
}

/** ≥ `count` encoded envelopes, built (and validated) as the actor host builds them. */
export function workload(count = EVENTS): Msg[] {
  const out: Msg[] = [];
  const t0 = Date.now() - 3_600_000;
  for (let base = 0; out.length < count; base += WINDOW) {
    const tail = out.length >= count - 5 * WINDOW; // a window holds ~4 events per command
    const lives = Array.from({ length: WINDOW }, (_, k) => lifecycle(base + k, tail));
    for (let step = 0; step < 6; step++) {
      for (let k = 0; k < WINDOW; k++) {
        const s = lives[k]?.[step];
        if (!s) continue;
        const ref: AggregateRef = { kind: "command", id: `cmd-${base + k}` };
        const at = t0 + base + step * 10;
        const e = createEvent(ref, s[0], s[1], { id: uuidv7(at), at });
        out.push({ subject: eventSubject(ref), id: e.id, bytes: encodeEvent(e) });
      }
    }
  }
  return out;
}

/** Pipelined publishes, a bounded number in flight; one connection keeps them in order. */
export async function seed(pub: PipelinedPublisher, msgs: readonly Msg[], key?: EventKey): Promise<void> {
  const IN_FLIGHT = 8_000;
  let next = 0;
  const lane = async () => {
    while (next < msgs.length) {
      const m = msgs[next++] as Msg;
      await pub.publish(m.subject, m.bytes, m.id, undefined, key?.mark(m.subject, m.bytes, 0));
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
}

/**
 * The plain subscriber: the official client's ordered consumer and `@msgpack/msgpack`'s decode,
 * nothing else (no validation, no fold): the baseline a rebuild is measured against.
 */
async function plainSubscriber(
  plain: NatsConnection,
  stream: string,
  last: number,
): Promise<{ ms: number; n: number }> {
  collectGarbage();
  const decoder = new Decoder(); // reused, as any fast reader would
  return timed(async () => {
    const consumer = await jetstream(plain).consumers.get(stream, { filter_subjects: ALL_EVENTS });
    const messages = await consumer.consume();
    let n = 0;
    for await (const m of messages) {
      decoder.decode(m.data);
      n++;
      if (m.seq >= last) break;
    }
    await messages.close();
    return n;
  }).then(({ ms, value }) => ({ ms, n: value }));
}

/**
 * The ceiling: the fast reader's transport alone (an ephemeral pull consumer without acks, two
 * batches asked ahead), every message received by the client and dropped: no decode, no checks.
 * On `nc`: the official client's own, or corral's connection with its frame reader.
 */
async function rawCeiling(
  nc: NatsConnection,
  stream: string,
  last: number,
): Promise<{ ms: number; n: number }> {
  collectGarbage();
  const BATCH = 2_000;
  const jsm = await jetstreamManager(nc);
  return timed(async () => {
    const consumer = await jsm.consumers.add(stream, {
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.All,
      filter_subject: ALL_EVENTS,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(30_000),
    });
    const inbox = `_INBOX.${nuid.next()}`;
    let n = 0;
    let requested = 0;
    const pull = () => {
      for (; requested - n < 2 * BATCH; requested += BATCH) {
        const req = JSON.stringify({ batch: BATCH, expires: nanos(30_000) });
        nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer.name}`, req, { reply: inbox });
      }
    };
    await new Promise<void>((resolve) => {
      const sub = nc.subscribe(inbox, {
        callback: (_err, m) => {
          if (!m.reply?.startsWith("$JS.ACK.")) return; // a pull's status, not a message
          if (++n >= last) {
            sub.unsubscribe();
            resolve();
          } else if (n % BATCH === 0) pull();
        },
      });
      pull();
    });
    await jsm.consumers.delete(stream, consumer.name);
    return n;
  }).then(({ ms, value }) => ({ ms, n: value }));
}

/** The worldview rebuilt through the runner: fast reader, validation, reducers, checkpoints. */
export async function worldview(
  store: EventStore,
  checkpoints: CheckpointStore,
): Promise<{ ms: number; n: number; peak: number; after: number; live: number }> {
  collectGarbage();
  const runner = new ProjectionRunner(store, worldviewProjection, { checkpoints });
  const heap = heapPeak();
  const { ms, value } = await timed(() => runner.rebuild());
  const peak = heap.stop();
  collectGarbage();
  const after = process.memoryUsage().heapUsed;
  const w = runner.view();
  if (w.totals.events !== value.records || Object.keys(w.skipped).length > 0) {
    throw new Error(`rebuild folded ${w.totals.events} of ${value.records} records`);
  }
  return { ms, n: value.records, peak, after, live: w.commands.live.length };
}

export async function benchRebuild(): Promise<void> {
  const keyDir = mkdtempSync(join(tmpdir(), "corral-bench-rebuild-key-"));
  const nats = await startBenchNats("rebuild");
  // The same events again on a server of their own, each with its writer mark: the rebuild there
  // checks every mark (the daemon's and the CLI's way), so the two rebuilds price the marks.
  const natsMarked = await startBenchNats("rebuild-marked");
  try {
    const store = await EventStore.open(nats.nc, { integrity: "off" });
    const checkpoints = await CheckpointStore.open(nats.nc);
    // In a file of its own (mode 0600), for the marked readers' processes.
    const { key, file: keyFile } = loadOrCreateEventKey(keyDir);
    const markedStore = await EventStore.open(natsMarked.nc, { integrity: { key } });
    const pub = new PipelinedPublisher(nats.nc);
    const built = await timed(async () => workload());
    const seeded = await timed(() => seed(pub, built.value));
    pub.close();
    const markedPub = new PipelinedPublisher(natsMarked.nc);
    await seed(markedPub, built.value, key);
    markedPub.close();
    if ((await markedStore.lastSeq()) !== built.value.length) throw new Error("marked seed incomplete");
    const last = await store.lastSeq();
    const total = built.value.length;
    if (last !== total) throw new Error(`seeded ${last} of ${total} events`);
    built.value.length = 0; // let the seed go before measuring heap
    console.log(
      `rebuild: seeded ${fmt(total)} command events in ${(seeded.ms / 1000).toFixed(1)} s ` +
        `(${fmt(perSecond(total, seeded.ms))} ev/s; building and encoding them took ${(built.ms / 1000).toFixed(1)} s)`,
    );
    collectGarbage();
    const base = process.memoryUsage().heapUsed;
    // Interleave them so drift on this noisy machine hits each alike.
    let plain = { ms: Number.POSITIVE_INFINITY, n: 0 };
    let ceiling = { ms: Number.POSITIVE_INFINITY, n: 0 };
    let ceilingPlain = { ms: Number.POSITIVE_INFINITY, n: 0 };
    let wv = { ms: Number.POSITIVE_INFINITY, n: 0, peak: 0, after: 0, live: 0 };
    for (let i = 0; i < RUNS; i++) {
      const a = await plainSubscriber(nats.plain, store.stream, last);
      if (a.n !== total) throw new Error(`plain subscriber read ${a.n} of ${total}`);
      if (a.ms < plain.ms) plain = a;
      const r = await rawCeiling(nats.nc, store.stream, last);
      if (r.n !== total) throw new Error(`raw read got ${r.n} of ${total}`);
      if (r.ms < ceiling.ms) ceiling = r;
      const rp = await rawCeiling(nats.plain, store.stream, last);
      if (rp.n !== total) throw new Error(`raw read got ${rp.n} of ${total}`);
      if (rp.ms < ceilingPlain.ms) ceilingPlain = rp;
      const b = await worldview(store, checkpoints);
      if (b.ms < wv.ms) wv = { ...b, peak: Math.max(b.peak, wv.peak) };
      else wv.peak = Math.max(wv.peak, b.peak);
    }
    /** Per round, the marked reader's rebuild time, the unmarked one's, and the cost. */
    const marked: number[] = [];
    const unmarked: number[] = [];
    const costs: number[] = [];
    for (let i = 0; i < MARK_ROUNDS; i++) {
      const order = i % 2 === 0 ? ["off", keyFile] : [keyFile, "off"];
      const ms: Record<string, number> = {};
      for (const k of order) ms[k] = await readerRebuild(k === "off" ? nats : natsMarked, k);
      marked.push(ms[keyFile] as number);
      unmarked.push(ms.off as number);
      costs.push((1 - (ms.off as number) / (ms[keyFile] as number)) * 100);
    }
    const plainRate = perSecond(plain.n, plain.ms);
    const wvRate = perSecond(wv.n, wv.ms);
    const r = wvRate / plainRate;
    console.log(
      `rebuild: ${fmt(wvRate)} ev/s = ${r.toFixed(2)}× plain subscriber ` +
        `(ceiling ${fmt(perSecond(ceiling.n, ceiling.ms))} ev/s)${r < 2 ? " SHORT" : ""}`,
    );
    console.log(
      `rebuild: ${fmt(total)} events, best of ${RUNS}: worldview from zero (envelopes and the fields ` +
        `it folds validated, every sequence accounted for) vs ordered consumer + msgpack decode ${fmt(plainRate)} ev/s ` +
        `(the official client as published); ceiling: the raw read on corral's connection ` +
        `(src/nats/msg-frames.ts), ${fmt(perSecond(ceilingPlain.n, ceilingPlain.ms))} ev/s on the official client's; ` +
        `peak heap ${mb(wv.peak)} MB (before ${mb(base)} MB, after ${mb(wv.after)} MB; ${fmt(wv.live)} live commands)`,
    );
    console.log(
      `rebuild: worldview with every mark checked ${fmt(perSecond(total, median(marked)))} ev/s vs unmarked ` +
        `${fmt(perSecond(total, median(unmarked)))} ev/s (medians; each reader a process of its own, ` +
        `${READER_RUNS} rebuilds, the first not counted): ${markCost(costs)}`,
    );
    store.close();
    markedStore.close();
  } finally {
    await nats.stop();
    await natsMarked.stop();
    rmSync(keyDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchRebuild();
