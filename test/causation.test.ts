import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { commandAggregate } from "../machines/command.ts";
import { ActorHost } from "../src/cp/actor-host.ts";
import { ControlPlane } from "../src/cp/control-plane.ts";
import type { EffectHandlers } from "../src/cp/effects.ts";
import { ManualScheduler } from "../src/cp/manual-scheduler.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import type { CorralEvent } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { silentLogger } from "../src/log.ts";
import { PortAllocator } from "../src/ports/allocator.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import type { CreateSpec, RuntimeInstance } from "../src/runtime/types.ts";
import { EventStore } from "../src/store/event-store.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import { corral } from "./helpers/cli.ts";
import { poolConfig } from "./helpers/events.ts";
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
  let nc: Awaited<ReturnType<TestNats["connect"]>>;
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
    nc = await t.connect();
    store = await EventStore.open(nc, { integrity: { key } });
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
    // Deadlines far off: on a loaded machine a sent command must not time out (and retry) mid-test.
    const data = { ...created, timeouts: { pending: 3_600_000, sent: 3_600_000, acked: 3_600_000 } };
    await host.send(plain, { type: "CommandCreated", data });
    await host.send(requested, { type: "CommandCreated", data, correlationId: "request-7" });
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
    const byRequest = await corral(["trace", "request-7", "--json"], env);
    assert.equal(byRequest.code, 0, byRequest.stderr);
    const roots = JSON.parse(byRequest.stdout).roots as (Node & { event: { aggregate: { id: string } } })[];
    assert.deepEqual(
      roots.map(shape),
      [["CommandCreated", ["CommandSent"]]],
      "a caller's own correlation id",
    );
    assert.equal(roots[0]?.event.aggregate.id, "effect-2");
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

  it("a failed spawn is recorded on the pool as caused by the agent's failure, in the chain of the pool's opening", async () => {
    /** Creates nothing: every spawn fails. */
    class Broken extends SimulatedRuntime {
      override async create(_spec: CreateSpec): Promise<RuntimeInstance> {
        throw Object.assign(new Error("no such image"), { code: "image_missing" });
      }
    }
    const pool = "broken";
    const scheduler = new ManualScheduler();
    const { cp } = await ControlPlane.start({
      nc,
      instance: "i-broken",
      pools: { [pool]: poolConfig({ min: 1, max: 1, warm: 1 }) },
      runtimes: { process: new Broken("i-broken") },
      ports: new PortAllocator(),
      scheduler,
      dialer: (host) => simulatedDialer(host, scheduler.now, silentLogger),
    });
    // The control plane here writes unmarked events: read them without checking marks.
    const plain = await EventStore.open(nc, { integrity: "off" });
    try {
      const poolRef: AggregateRef = { kind: "pool", id: pool };
      await until(async () => (await eventsOf(plain, poolRef)).some((e) => e.type === "PoolSpawnFailed"));
      const poolEvents = await eventsOf(plain, poolRef);
      const opened = poolEvents.find((e) => e.type === "PoolCreated") as CorralEvent;
      const spawned = poolEvents.find((e) => e.type === "PoolAgentSpawned") as CorralEvent;
      const failedSpawn = poolEvents.find((e) => e.type === "PoolSpawnFailed") as CorralEvent;
      const agentId = (spawned.data as { agentId: string }).agentId;
      const agentFailed = (await eventsOf(plain, { kind: "agent", id: agentId })).find(
        (e) => e.type === "AgentFailed",
      );
      assert.ok(agentFailed, "the agent's failure was stored");
      assert.equal(failedSpawn.causationId, agentFailed.id);
      assert.equal(spawned.causationId, opened.id, "the first spawn follows the pool's opening");
      assert.equal(agentFailed.correlationId, opened.id, "the agent's chain is the opening's");
      assert.equal(failedSpawn.correlationId, opened.id);
    } finally {
      await cp.stop();
      plain.close();
    }
  });

  it("closing a pool: revoked leases are caused by the close, the pool's end by its last agent's", async () => {
    const pool = "closing";
    const scheduler = new ManualScheduler();
    const { cp } = await ControlPlane.start({
      nc,
      instance: "i-closing",
      pools: { [pool]: poolConfig({ min: 1, max: 1, warm: 1 }) },
      runtimes: { process: new SimulatedRuntime("i-closing") },
      ports: new PortAllocator(),
      scheduler,
      dialer: (host) => simulatedDialer(host, scheduler.now, silentLogger),
    });
    const plain = await EventStore.open(nc, { integrity: "off" });
    try {
      const sup = cp.pool(pool);
      await until(async () => sup.status().agents.some((a) => a.phase === "idle"));
      const lease = await sup.acquire({ timeoutMs: 5_000 });
      await sup.close({ revokeLeases: true });
      const poolEvents = await eventsOf(plain, { kind: "pool", id: pool });
      const closeRequested = poolEvents.find((e) => e.type === "PoolCloseRequested") as CorralEvent;
      const closed = poolEvents.find((e) => e.type === "PoolClosed") as CorralEvent;
      const agentEvents = await eventsOf(plain, { kind: "agent", id: lease.agentId });
      const revoked = agentEvents.find((e) => e.type === "AgentLeaseRevoked");
      assert.equal(revoked?.causationId, closeRequested.id);
      assert.equal(revoked?.correlationId, closeRequested.id);
      assert.equal(agentEvents.at(-1)?.type, "AgentStopped");
      assert.equal(closed.causationId, agentEvents.at(-1)?.id, "the pool closed when its last agent stopped");
    } finally {
      await cp.stop();
      plain.close();
    }
  });
});
