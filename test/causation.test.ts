import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { commandAggregate } from "../machines/command.ts";
import { ActorHost } from "../src/cp/actor-host.ts";
import type { EffectHandlers } from "../src/cp/effects.ts";
import type { CorralEvent } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { EventStore } from "../src/store/event-store.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import { corral } from "./helpers/cli.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { tempDir } from "./helpers/teardown.ts";

/**
 * Every event the daemon writes in response to another names it (causationId) and the chain's
 * first event or request (correlationId): effects' reports and deadlines alike, so `corral trace`
 * finds them (src/cp/actor-host.ts).
 */

const quiet: EffectHandlers = { dispatch: () => {}, cancelOnAgent: () => {} };

async function eventsOf(store: EventStore, ref: AggregateRef): Promise<CorralEvent[]> {
  return (await store.readAggregate(ref)).flatMap((r) => (r.event ? [r.event] : []));
}

async function until(cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("causation and correlation on what the daemon writes", () => {
  let t: TestNats;
  let store: EventStore;
  let env: Record<string, string>;
  const hosts: ActorHost[] = [];
  const newHost = (effects: EffectHandlers) => {
    const h = new ActorHost({ store, aggregates: [commandAggregate], effects: { command: effects } });
    hosts.push(h);
    return h;
  };

  before(async () => {
    t = await startTestNats();
    // Marked as the daemon marks them, so the CLI reads them as verified.
    const { key, file } = loadOrCreateEventKey(tempDir("causation-key-"));
    store = await EventStore.open(await t.connect(), { integrity: { key } });
    env = { NATS_URL: t.url, [KEY_FILE_ENV]: file };
  });
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
    store.close();
    await t.cleanup();
  });

  const created = { agentId: "agent-1", action: "echo", payload: {} };

  it("an effect's report is caused by its event and correlated with the chain's first", async () => {
    const reporting: EffectHandlers = {
      ...quiet,
      dispatch: async (p: { attempt: number }, ctx) => {
        await ctx.offer(ctx.aggregate, { type: "CommandSent", data: { attempt: p.attempt } });
      },
    };
    const host = newHost(reporting);
    const plain: AggregateRef = { kind: "command", id: "effect-1" };
    const requested: AggregateRef = { kind: "command", id: "effect-2" };
    await host.send(plain, { type: "CommandCreated", data: created });
    await host.send(requested, { type: "CommandCreated", data: created, correlationId: "request-7" });
    await host.idle();
    const [root, sent] = await eventsOf(store, plain);
    assert.equal(sent?.type, "CommandSent");
    assert.equal(sent?.causationId, root?.id);
    assert.equal(sent?.correlationId, root?.id, "a root without a correlation: its own id");
    const [root2, sent2] = await eventsOf(store, requested);
    assert.equal(sent2?.causationId, root2?.id);
    assert.equal(sent2?.correlationId, "request-7", "the request's correlation is carried on");

    const r = await corral(["trace", root?.id as string, "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    type Node = { seq: number; event: { type: string }; children: Node[] };
    const shape = (n: Node): unknown[] => [n.event.type, ...n.children.map(shape)];
    assert.deepEqual((JSON.parse(r.stdout).roots as Node[]).map(shape), [
      ["CommandCreated", ["CommandSent"]],
    ]);
  });

  it("a deadline's input is caused by the event that left the actor in its state", async () => {
    const host = newHost(quiet);
    const ref: AggregateRef = { kind: "command", id: "timer-1" };
    const data = { ...created, maxRetries: 0, timeouts: { pending: 50, sent: 50, acked: 50 } };
    await host.send(ref, { type: "CommandCreated", data });
    await until(async () => (await host.get(ref)).status === "done");
    const [root, timedOut] = await eventsOf(store, ref);
    assert.equal(timedOut?.type, "CommandTimedOut");
    assert.equal(timedOut?.causationId, root?.id);
    assert.equal(timedOut?.correlationId, root?.id);
  });
});
