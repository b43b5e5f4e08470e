import { createEvent } from "../src/events/catalogue.ts";
import { uuidv7 } from "../src/events/id.ts";
import { connectNats } from "../src/nats/connect.ts";
import { EventStore } from "../src/store/event-store.ts";

/**
 * The baselines for the acquire bench, in a process of their own like the daemon:
 * - `bench.bare`: request/reply whose responder appends one JetStream event (through the same
 *   store) before answering — the baseline;
 * - `bench.shape`: the same with two appends to two aggregates in parallel, which is what an
 *   acquire (agent + lease) and a release each need at the least: two of these are the floor of
 *   one acquire + release cycle, with none of the control plane's work.
 */
const nc = await connectNats(process.argv[2] as string, { name: "bench-bare" });
const store = await EventStore.open(nc);

function appendOne() {
  const at = Date.now();
  const id = uuidv7(at);
  const ref = { kind: "lease" as const, id };
  return store.append(ref, [createEvent(ref, "LeaseRevoked", { reason: "bench" }, { id, at })], 0);
}

nc.subscribe("bench.bare", {
  queue: "bare",
  callback: (_err, msg) => {
    appendOne().then(
      (r) => msg.respond(JSON.stringify({ seq: r.lastSeq })),
      (err) => msg.respond(JSON.stringify({ error: String(err) })),
    );
  },
});
nc.subscribe("bench.shape", {
  queue: "bare",
  callback: (_err, msg) => {
    Promise.all([appendOne(), appendOne()]).then(
      ([a, b]) => msg.respond(JSON.stringify({ seqs: [a.lastSeq, b.lastSeq] })),
      (err) => msg.respond(JSON.stringify({ error: String(err) })),
    );
  },
});
await nc.flush();
process.stdout.write("ready\n");
