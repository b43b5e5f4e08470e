import { jetstream } from "@nats-io/jetstream";
import { encodeEvent } from "../src/codec/msgpack.ts";
import { createEvent } from "../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../src/events/envelope.ts";
import { uuidv7 } from "../src/events/id.ts";
import { EventKey } from "../src/store/event-mark.ts";
import { EventStore } from "../src/store/event-store.ts";
import { PipelinedPublisher } from "../src/store/publisher.ts";
import { eventSubject } from "../src/store/subjects.ts";
import { collectGarbage, fmt, markCost, median, ratio as ratioText, startBenchNats } from "./lib.ts";

const AGGREGATES = 1_000;
const EVENTS_PER_AGGREGATE = 20;
const ROUNDS = 6;
const PAIRS_PER_ROUND = 3;

/** Realistic command events for one aggregate, built (and validated) the way the actor host builds them. */
function eventsFor(ref: AggregateRef): Envelope[] {
  const at = Date.now();
  const out: Envelope[] = [
    createEvent(
      ref,
      "CommandCreated",
      { agentId: "agent-1", action: "npm test", payload: { cwd: "/work", n: ref.id } },
      { id: uuidv7(at), at },
    ),
  ];
  for (let i = 1; i < EVENTS_PER_AGGREGATE; i++) {
    const type = i % 2 ? "CommandSent" : "CommandAcked";
    out.push(createEvent(ref, type, { attempt: i }, { id: uuidv7(at + i), at: at + i }));
  }
  return out;
}

function workload(tag: string): { ref: AggregateRef; events: Envelope[] }[] {
  return Array.from({ length: AGGREGATES }, (_, i) => {
    const ref: AggregateRef = { kind: "command", id: `${tag}-${i}` };
    return { ref, events: eventsFor(ref) };
  });
}

function encoded(w: { ref: AggregateRef; events: Envelope[] }[]) {
  return w.map(({ ref, events }) => ({
    subject: eventSubject(ref),
    msgs: events.map((e) => ({ id: e.id, bytes: encodeEvent(e) })),
  }));
}

async function each<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  await Promise.all(items.map(fn));
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/**
 * Appends through the store (pipelined publishes, one ack inbox) vs the official client's
 * `js.publish`, with the same payloads, the same per-aggregate expected-sequence headers and the
 * same concurrency: 1,000 aggregates in parallel, each a sequential writer.
 */
export async function benchAppend(): Promise<{ baseline: number; store: number; ratio: number }> {
  const nats = await startBenchNats("append");
  const { nc } = nats;
  try {
    const store = await EventStore.open(nc, { integrity: "off" });
    // The same store with a writer key: every append also carries its Corral-Mark.
    const marked = await EventStore.open(nc, { integrity: { key: EventKey.generate() } });
    const js = jetstream(nats.plain); // the official client as a user has it
    const total = AGGREGATES * EVENTS_PER_AGGREGATE;
    const raw = new PipelinedPublisher(nc);
    const best = {
      base: Number.POSITIVE_INFINITY,
      store: Number.POSITIVE_INFINITY,
      raw: Number.POSITIVE_INFINITY,
    };
    // Warm up (JIT, connection buffers).
    await Promise.all(
      workload("warm")
        .slice(0, 100)
        .map(({ ref, events }) => store.append(ref, events, 0)),
    );
    await Promise.all(
      workload("warm-marked")
        .slice(0, 100)
        .map(({ ref, events }) => marked.append(ref, events, 0)),
    );
    /** Per round, the marked append's cost against the unmarked one run next to it. */
    const costs: number[] = [];
    /** Every run's time, marked and not. */
    const markedRuns: number[] = [];
    const unmarkedRuns: number[] = [];
    /** Per round, the store's rate as a share of the bare publisher's, run next to it. */
    const ofBareRuns: number[] = [];
    // Interleave the variants round by round so drift on this noisy machine hits all of them.
    for (let round = 0; round < ROUNDS; round++) {
      const base = encoded(workload(`base${round}`));
      collectGarbage();
      best.base = Math.min(
        best.base,
        await timed(() =>
          each(base, async ({ subject, msgs }) => {
            let seq = 0;
            for (const m of msgs)
              seq = (
                await js.publish(subject, m.bytes, { msgID: m.id, expect: { lastSubjectSequence: seq } })
              ).seq;
          }),
        ),
      );
      // Unmarked, marked and the bare publisher in turn, the order rotating: the server's own work
      // after a burst (flushing its file store) would otherwise always fall on the same one.
      const appendAll = (via: EventStore, tag: string) => {
        const w = workload(tag);
        collectGarbage();
        return timed(() =>
          each(w, async ({ ref, events }) => {
            let seq = 0;
            for (const e of events) seq = (await via.append(ref, [e], seq)).lastSeq;
          }),
        );
      };
      // The ceiling: pre-encoded bytes through the bare pipelined publisher (no validation/encoding).
      const bareAll = (tag: string) => {
        const bare = encoded(workload(tag));
        collectGarbage();
        return timed(() =>
          each(bare, async ({ subject, msgs }) => {
            let seq = 0;
            for (const m of msgs) seq = (await raw.publish(subject, m.bytes, m.id, seq)).seq;
          }),
        );
      };
      // Runs vary by ±20-30 % on this machine: several per round, for medians worth reading.
      for (let p = 0; p < PAIRS_PER_ROUND; p++) {
        const run = { store: 0, marked: 0, raw: 0 };
        const kinds = ["store", "marked", "raw"] as const;
        for (let k = 0; k < kinds.length; k++) {
          const which = kinds[(round * PAIRS_PER_ROUND + p + k) % kinds.length] as (typeof kinds)[number];
          const tag = `${which}${round}_${p}`;
          run[which] =
            which === "raw" ? await bareAll(tag) : await appendAll(which === "store" ? store : marked, tag);
          // Best of one run a round, as for js.publish: a fair ratio.
          if (p === 0 && which !== "marked") best[which] = Math.min(best[which], run[which]);
        }
        costs.push((1 - run.store / run.marked) * 100);
        markedRuns.push(run.marked);
        unmarkedRuns.push(run.store);
        ofBareRuns.push((run.raw / run.store) * 100);
      }
    }
    raw.close();
    const rate = (ms: number) => (total / ms) * 1000;
    const baseline = rate(best.base);
    const storeRate = rate(best.store);
    const ratio = storeRate / baseline;
    const bareRate = rate(best.raw);
    const ofBare = median(ofBareRuns);
    const spread = `${Math.min(...ofBareRuns).toFixed(0)}…${Math.max(...ofBareRuns).toFixed(0)}%`;
    console.log(
      `append: ${total} events over ${AGGREGATES} aggregates, best of ${ROUNDS}  js.publish ${fmt(baseline)} ev/s  ` +
        `store.append ${fmt(storeRate)} ev/s  ${ratioText(storeRate, baseline, 3)}  = ${ofBare.toFixed(0)}% of ` +
        `the bare pipelined publisher of the same bytes ${fmt(bareRate)} ev/s (median of ${ofBareRuns.length} runs side by side, ` +
        `range ${spread}; best against best ${((storeRate / bareRate) * 100).toFixed(0)}%; target >= 90%${ofBare < 90 ? ", SHORT" : ""})`,
    );
    console.log(
      `append: with marks ${fmt(rate(median(markedRuns)))} ev/s vs without ${fmt(rate(median(unmarkedRuns)))} ev/s ` +
        `(medians of ${costs.length} runs each, a full GC before each): ` +
        markCost(costs),
    );
    store.close();
    marked.close();
    return { baseline, store: storeRate, ratio };
  } finally {
    await nats.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchAppend();
