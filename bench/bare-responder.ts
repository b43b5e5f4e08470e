import { createEvent } from "../src/events/catalogue.ts";
import { uuidv7 } from "../src/events/id.ts";
import { connectNats } from "../src/nats/connect.ts";
import { EventStore } from "../src/store/event-store.ts";

/**
 * The baseline for the acquire bench, in a process of its own like the daemon: `bench.bare` is
 * request/reply whose responder appends one JetStream event (through the same store, with the
 * same optimistic concurrency check) before answering — the least an acquire or a release does.
 */
const nc = await connectNats(process.argv[2] as string, { name: "bench-bare" });
const store = await EventStore.open(nc);

function appendOne() {
  const at = Date.now();
  const id = uuidv7(at);
  const ref = { kind: "agent" as const, id };
  return store.append(ref, [createEvent(ref, "AgentTimedOut", { deadline: at }, { id, at })], 0);
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
await nc.flush();
process.stdout.write("ready\n");
