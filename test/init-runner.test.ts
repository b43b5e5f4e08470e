import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { agentAggregate } from "../machines/agent.ts";
import { Agentd } from "../src/agentd/agentd.ts";
import { ActorHost } from "../src/cp/actor-host.ts";
import type { EffectHandlers } from "../src/cp/effects.ts";
import { initRunner } from "../src/cp/init/runner.ts";
import { TimerScheduler } from "../src/cp/scheduler.ts";
import { asAgentView } from "../src/cp/views.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { EventStore } from "../src/store/event-store.ts";
import { SnapshotStore } from "../src/store/snapshots.ts";
import { PlainAgentd } from "./helpers/agentd-plain.ts";
import { poolConfig } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { tempDir } from "./helpers/teardown.ts";

/**
 * The init runner as the control plane uses it on each registered session: the plan from this
 * daemon's config of the agent's pool, recorded on the agent through a real actor host (real
 * NATS, the real agent machine), against a real agentd. The agent becomes ready only through
 * InitCompleted; a new daemon over the same stream finishes a plan cut short without redoing it.
 */

const POOL = "web";
const THUMB = "ab".repeat(32);

/** Every effect of the agent machine does nothing: the test plays the runtime and the dialer. */
const inert: EffectHandlers = Object.fromEntries(agentAggregate.effects.map((name) => [name, () => {}]));

describe("init runner: the plan on a registered session, recorded on the agent", () => {
  let nats: TestNats;
  let store: EventStore;
  let snapshots: SnapshotStore;
  const hosts: ActorHost[] = [];
  let n = 0;

  before(async () => {
    nats = await startTestNats();
    const nc = await nats.connect();
    store = await EventStore.open(nc);
    snapshots = await SnapshotStore.open(nc);
  });
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
    store.close();
    await nats.cleanup();
  });

  const newHost = () => {
    const h = new ActorHost({ store, snapshots, aggregates: [agentAggregate], effects: { agent: inert } });
    hosts.push(h);
    return h;
  };

  /** A fresh agent id, requested, started and registered: in `initializing`. */
  async function registeredAgent(host: ActorHost): Promise<AggregateRef> {
    const ref: AggregateRef = { kind: "agent", id: `agent-${++n}` };
    const deadline = Date.now() + 600_000;
    await host.send(ref, { type: "AgentRequested", data: { poolId: POOL, runtime: "process", deadline } });
    await host.send(ref, { type: "AgentPortsAllocated", data: { generation: 1, ports: [] } });
    await host.send(ref, { type: "AgentCreated", data: { generation: 1, instanceId: `${ref.id}-1` } });
    await host.send(ref, { type: "AgentStarted", data: { generation: 1 } });
    await host.send(ref, {
      type: "AgentRegistered",
      data: { generation: 1, thumbprint: THUMB, peerCN: ref.id },
    });
    return ref;
  }

  async function agentd(t: TestContext, agentId: string) {
    const root = tempDir("init-runner-");
    const home = join(root, "home");
    mkdirSync(home);
    const served = await PlainAgentd.serve(
      new Agentd({
        agentId,
        poolId: POOL,
        stateDir: join(root, "state"),
        home,
        agentCommand: ["sleep", "60"],
        commandOutput: "ignore",
        killGraceMs: 200,
      }),
    );
    t.after(() => served.close());
    return { served, home };
  }

  const config: PoolConfig = poolConfig({
    template: {
      command: ["x"],
      env: {},
      mounts: [],
      limits: {},
      stopGraceMs: 1_000,
      init: {
        config: { files: [{ path: "agent.toml", content: "a = 1\n" }] },
        postInit: { argv: ["sh", "-c", "sleep 0.4; echo run >> post-init.log"] },
      },
    },
  });
  const runnerFor = (host: ActorHost) =>
    initRunner({
      host,
      configOf: (p) => (p === POOL ? config : null),
      keys: new Map(),
      clock: new TimerScheduler(),
    });

  const typesOf = async (ref: AggregateRef) =>
    (await store.readAggregate(ref)).map((r) => r.event?.type ?? "?").filter((t) => /^Init/.test(t));

  it("takes a registered agent through its plan to ready; a later session is refused the plan, nothing re-sent", async (t) => {
    const host = newHost();
    const ref = await registeredAgent(host);
    const { served, home } = await agentd(t, ref.id);
    const run = runnerFor(host);
    assert.deepEqual(await run(await served.session(ref.id, 1)), { outcome: "completed" });
    const agent = asAgentView(await host.get(ref));
    assert.deepEqual(agent.value, { ready: "idle" });
    assert.equal(readFileSync(join(home, "agent.toml"), "utf8"), "a = 1\n");
    const once = await typesOf(ref);
    assert.deepEqual(once.at(-1), "InitCompleted");

    const again = await served.session(ref.id, 1);
    assert.deepEqual(await run(again), { outcome: "refused", input: "InitStarted" });
    assert.deepEqual(again.sent, []);
    assert.deepEqual(await typesOf(ref), once, "nothing more recorded");
  });

  it("a session of another generation, or an agent of a pool not configured here, gets nothing", async (t) => {
    const host = newHost();
    const ref = await registeredAgent(host);
    const { served } = await agentd(t, ref.id);
    const stale = await served.session(ref.id, 2);
    assert.equal(await runnerFor(host)(stale), null);
    const elsewhere = initRunner({
      host,
      configOf: () => null,
      keys: new Map(),
      clock: new TimerScheduler(),
    });
    const s = await served.session(ref.id, 1);
    assert.equal(await elsewhere(s), null);
    assert.deepEqual([stale.sent, s.sent], [[], []]);
    assert.deepEqual(await typesOf(ref), []);
  });

  it("a plan cut short is finished by the next daemon over the same stream, post-init run once", async (t) => {
    const first = newHost();
    const ref = await registeredAgent(first);
    const { served, home } = await agentd(t, ref.id);
    const session = await served.session(ref.id, 1);
    const cut = runnerFor(first)(session);
    // The session ends while post-init runs: the daemon's view of it is lost with it.
    while (!session.sent.includes("post-init")) await new Promise((r) => setTimeout(r, 10));
    session.drop();
    assert.deepEqual(await cut, { outcome: "session_lost", step: "post-init" });
    await first.close();

    const second = newHost();
    await second.recover("agent");
    const resumed = await served.session(ref.id, 1);
    assert.deepEqual(await runnerFor(second)(resumed), { outcome: "completed" });
    assert.deepEqual(resumed.sent, ["post-init", "agent-ready"], "config was done: not sent again");
    assert.equal(readFileSync(join(home, "post-init.log"), "utf8"), "run\n");
    assert.deepEqual(asAgentView(await second.get(ref)).value, { ready: "idle" });
    assert.ok(existsSync(join(home, "agent.toml")));
  });
});
