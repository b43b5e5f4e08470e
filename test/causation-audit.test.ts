import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Service } from "@nats-io/services";
import { CorralClient } from "../src/api/client.ts";
import type { AcquireReply } from "../src/api/protocol.ts";
import { startApi } from "../src/api/service.ts";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { createExec } from "../src/cp/exec/service.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import type { CorralEvent } from "../src/events/catalogue.ts";
import { refKey } from "../src/events/envelope.ts";
import { silentLogger } from "../src/log.ts";
import { PortAllocator } from "../src/ports/allocator.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { EventStore } from "../src/store/event-store.ts";
import { bindIntegrity } from "../src/store/integrity.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import { startAgentd, TestSessions } from "./helpers/agentd-session.ts";
import { corral } from "./helpers/cli.ts";
import { until } from "./helpers/daemon.ts";
import { poolConfig } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/*
 * The audit of issue 11, item 4: a real control plane (simulated runtime and dialer, a real agentd
 * for exec, the real API over a real nats-server) goes through a pool's whole life — open, spawn,
 * register, init, ready, acquire, exec, release, recycle, close — and then every event in the
 * stream must name its cause: an event stored before it, whose correlation it carries. Only the
 * roots below may stand alone.
 */

/**
 * The events that begin a chain, and why nothing in the stream caused them:
 * - PoolCreated: the daemon's own configuration opens the pool (a start, not an event);
 * - AgentLeased, CommandCreated, AgentReleased, PoolCloseRequested: the first event of an API
 *   request (acquire, exec, release, close) — caused by the client, correlated with the id the
 *   request named or the reply returned.
 * The simulated runtime observes nothing on its own, so no runtime fact is a root here.
 */
const ROOTS = new Set([
  "PoolCreated",
  "AgentLeased",
  "CommandCreated",
  "AgentReleased",
  "PoolCloseRequested",
]);

describe("causation audit: every event the daemon writes names its cause", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let cp: ControlPlane;
  let svc: Service;
  let client: CorralClient;
  let env: Record<string, string>;
  const pool = `audit${process.pid}`;
  const instance = `i-${pool}`;

  before(async () => {
    t = await startTestNats();
    nc = await t.connect("causation-audit");
    // Marked as the daemon marks them: the CLI below reads them as verified.
    const { key, file } = loadOrCreateEventKey(tempDir("audit-key-"));
    bindIntegrity(nc, { key });
    env = { NATS_URL: t.url, [KEY_FILE_ENV]: file };
    client = new CorralClient(nc);
    ({ cp } = await ControlPlane.start({
      nc,
      instance,
      pools: { [pool]: poolConfig({ min: 1, max: 1, warm: 1, recycle: { maxLeases: 1 } }) },
      runtimes: { process: new SimulatedRuntime(instance) },
      ports: new PortAllocator(),
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
    }));
    onTeardown("control plane", () => cp.stop());
  });
  after(async () => {
    await svc?.stop();
    await t.cleanup();
  });

  /** The whole stream, in order. */
  async function stream(): Promise<CorralEvent[]> {
    const store = await EventStore.open(nc);
    try {
      const out: CorralEvent[] = [];
      for await (const batch of store.read({}))
        for (const r of batch) {
          assert.ok(r.event, `seq ${r.seq} unreadable: ${r.error?.message}`);
          out.push(r.event);
        }
      return out;
    } finally {
      store.close();
    }
  }

  async function serve(sessions: TestSessions): Promise<void> {
    const exec = createExec({ nc, store: cp.store, sessions, agents: cp.host, log: silentLogger });
    onTeardown("exec service", () => exec.close());
    svc = await startApi(nc, cp, {
      log: silentLogger,
      instance,
      status: async () => ({}),
      instances: async () => [],
      exec,
    });
  }

  let lease: AcquireReply;
  let execCorrelation: string | undefined;

  it("a pool's whole life leaves no event without its cause", async () => {
    const sessions = new TestSessions();
    await serve(sessions);
    const first = await client.acquire(pool, { timeoutMs: 10_000, correlationId: "audit-acquire" });
    lease = first;
    assert.equal(first.correlationId, "audit-acquire", "the caller's own correlation id is kept");

    const agentd = await startAgentd(pool, first.agentId);
    sessions.ready((await agentd.connect()).session);
    const ran = await client.exec(first, { pool, argv: ["true"] });
    assert.equal(ran.exitCode, 0);
    execCorrelation = ran.correlationId;
    assert.ok(execCorrelation, "exec answers with its correlation id");

    const released = await client.release(first, pool);
    assert.ok(released.correlationId, "release answers with its correlation id");
    // maxLeases 1: the release makes the pool recycle the agent, which comes back ready.
    await until("the agent recycled and ready again", () =>
      cp
        .pool(pool)
        .status()
        .agents.some((a) => a.id === first.agentId && a.phase === "idle" && a.generation === 2),
    );
    const closed = await client.close(pool);
    assert.ok(closed.correlationId, "close answers with its correlation id");

    const events = await stream();
    const byId = new Map<string, { at: number; event: CorralEvent }>();
    const problems: string[] = [];
    for (const [at, e] of events.entries()) {
      const where = `#${at + 1} ${refKey(e.aggregate)} ${e.type}`;
      if (ROOTS.has(e.type) && e.causationId === undefined) {
        // A root of an API request carries the correlation its client saw.
        if (e.type !== "PoolCreated" && !e.correlationId)
          problems.push(`${where}: a request without a correlation`);
      } else if (e.causationId === undefined) {
        problems.push(`${where}: no causationId`);
      } else {
        const cause = byId.get(e.causationId);
        if (!cause) problems.push(`${where}: caused by ${e.causationId}, not stored before it`);
        else if (e.correlationId !== (cause.event.correlationId ?? cause.event.id))
          problems.push(`${where}: correlation ${e.correlationId} is not its cause's (${cause.event.type})`);
      }
      byId.set(e.id, { at, event: e });
    }
    assert.deepEqual(
      problems,
      [],
      `${events.length} events:\n${events.map((e) => `${refKey(e.aggregate)} ${e.type}`).join("\n")}`,
    );

    const types = new Set<string>(events.map((e) => e.type));
    for (const expected of [
      "PoolAgentSpawned",
      "AgentStarted",
      "AgentRegistered",
      "InitCompleted",
      "CommandSent",
      "CommandCompleted",
      "PoolAgentRecycled",
      "AgentRecycled",
      "PoolAgentRetired",
      "AgentDrainRequested",
      "AgentStopped",
      "PoolClosed",
    ])
      assert.ok(types.has(expected), `the life went through ${expected}`);
    const leased = events.find((e) => e.type === "AgentLeased");
    assert.equal(leased?.correlationId, "audit-acquire");
    const command = events.find((e) => e.type === "CommandCreated");
    assert.equal(command?.correlationId, execCorrelation);
  });

  it("corral trace <the acquire's correlation id> shows the lease's events and its agent's lease transitions", async () => {
    const correlation = lease?.correlationId;
    assert.ok(correlation, "the life above ran, and acquire answered with its correlation id");
    const r = await corral(["trace", correlation, "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    type Node = { event: CorralEvent; children: Node[] };
    const flat = (n: Node): CorralEvent[] => [n.event, ...n.children.flatMap(flat)];
    const traced = (JSON.parse(r.stdout).roots as Node[]).flatMap(flat);
    const types: string[] = traced.map((e) => e.type);
    for (const expected of ["AgentLeased", "AgentReleased", "PoolAgentRecycled", "AgentRecycleRequested"])
      assert.ok(types.includes(expected), `${expected} in the trace: ${types.join(", ")}`);
    for (const e of traced.filter((x) => x.aggregate.kind === "agent" && "leaseId" in (x.data as object)))
      assert.equal((e.data as { leaseId: string }).leaseId, lease.leaseId, `${e.type} is of this lease`);

    const human = await corral(["trace", correlation], env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /AgentLeased/);
    assert.match(human.stdout, /AgentReleased/);
  });
});
