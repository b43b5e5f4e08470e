import { createEvent } from "../src/events/catalogue.ts";
import { uuidv7 } from "../src/events/id.ts";
import { connectNats } from "../src/nats/connect.ts";
import { EventStore } from "../src/store/event-store.ts";

/**
 * The ceiling for the acquire bench, in a process of its own like the daemon: request/reply
 * whose responder appends one JetStream event (through the same store) before answering.
 */
const nc = await connectNats(process.argv[2] as string, { name: "bench-bare" });
const store = await EventStore.open(nc);
nc.subscribe("bench.bare", {
  queue: "bare",
  callback: (_err, msg) => {
    const at = Date.now();
    const id = uuidv7(at);
    const ref = { kind: "lease" as const, id };
    const ev = createEvent(ref, "LeaseRevoked", { reason: "bench" }, { id, at });
    store.append(ref, [ev], 0).then(
      (r) => msg.respond(JSON.stringify({ seq: r.lastSeq })),
      (err) => msg.respond(JSON.stringify({ error: String(err) })),
    );
  },
});
await nc.flush();
process.stdout.write("ready\n");
