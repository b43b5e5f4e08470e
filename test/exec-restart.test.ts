import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { CorralClient } from "../src/api/client.ts";
import { EXEC_REACH_MS, OUT_END_HEADER, OUT_STREAM_HEADER, outSubject } from "../src/api/protocol.ts";
import { execRequest } from "../src/api/requests.ts";
import { startApi } from "../src/api/service.ts";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { CommandFailedError } from "../src/cp/exec/errors.ts";
import { createExec, type Exec } from "../src/cp/exec/service.ts";
import { ManualScheduler } from "../src/cp/manual-scheduler.ts";
import type { LeaseGrant } from "../src/cp/pool/broker.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import { silentLogger } from "../src/log.ts";
import { PortAllocator } from "../src/ports/allocator.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { EventStore } from "../src/store/event-store.ts";
import { type AgentdHarness, startAgentd, TestSessions } from "./helpers/agentd-session.ts";
import { until } from "./helpers/daemon.ts";
import { poolConfig } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown } from "./helpers/teardown.ts";

/*
 * A daemon that stops mid-command and the next one that takes over, at the dispatcher: two exec
 * services on one stream, each with its own sessions to the same real agentd. The first is closed
 * without a word to agentd (its connection cut, as SIGKILL would), the second recovers the live
 * commands from the stream. Each command appends to a file in the agent's home: it must hold one
 * run, however many times the command was sent.
 */

describe("exec across a daemon restart: no command runs twice", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let cp: ControlPlane;
  let lease: LeaseGrant;
  let agent: AgentdHarness;
  const pool = `exr${process.pid}`;

  before(async () => {
    t = await startTestNats();
    nc = await t.connect("exec-restart-test");
    store = await EventStore.open(nc);
    ({ cp } = await ControlPlane.start({
      nc,
      instance: `i-${pool}`,
      pools: { [pool]: poolConfig({ min: 1, max: 1, warm: 1 }) },
      runtimes: { process: new SimulatedRuntime(`i-${pool}`) },
      ports: new PortAllocator(),
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
    }));
    lease = await cp.pool(pool).acquire({ timeoutMs: 10_000 });
    agent = await startAgentd(pool, lease.agentId);
  });
  after(async () => {
    await cp?.stop();
    store?.close();
    await t.cleanup();
  });

  /** One daemon's exec service; `stop` cuts its session and closes it, as a killed daemon would. */
  function daemon(scheduler?: ManualScheduler) {
    const sessions = new TestSessions();
    const exec: Exec = createExec({
      nc,
      store,
      sessions,
      agents: cp.host,
      scheduler,
      log: silentLogger,
    });
    onTeardown("exec service", () => exec.close());
    const drops: (() => void)[] = [];
    return {
      exec,
      sessions,
      async connect() {
        const { session, drop } = await agent.connect();
        drops.push(drop);
        sessions.ready(session);
      },
      async stop() {
        for (const drop of drops) drop();
        await exec.close();
      },
    };
  }

  const run = (d: ReturnType<typeof daemon>, commandId: string, script: string) =>
    d.exec.run(
      pool,
      execRequest.parse({
        leaseId: lease.leaseId,
        leaseToken: lease.leaseToken,
        commandId,
        argv: ["node", "-e", script],
      }),
    );

  const types = async (commandId: string): Promise<string[]> =>
    (await store.readAggregate({ kind: "command", id: commandId })).flatMap((r) =>
      r.event ? [r.event.type] : [],
    );
  const storedUntil = (commandId: string, type: string) =>
    until(`${type} of ${commandId}`, async () => (await types(commandId)).includes(type));
  const marksFile = (name: string) => join(agent.home, `${name}.log`);
  const append = (file: string, text: string) =>
    `require('fs').appendFileSync(${JSON.stringify(file)}, ${JSON.stringify(text)})`;

  it("the client outlives the daemon it asked: the next daemon's end marker ends the call", async () => {
    const first = daemon();
    await first.connect();
    const svc = await startApi(nc, cp, {
      log: silentLogger,
      instance: `i-${pool}`,
      status: async () => ({}),
      instances: async () => [],
      exec: first.exec,
    });
    onTeardown("first daemon's API", () => svc.stop());
    const client = new CorralClient(await t.connect("exec-restart-client"));
    const chunks: string[] = [];
    let told = false;
    const call = client.exec(
      { leaseId: lease.leaseId, leaseToken: lease.leaseToken },
      {
        pool,
        argv: [
          "node",
          "-e",
          "console.log('before'); setTimeout(() => { console.log('after'); process.exit(4) }, 1500)",
        ],
        onOutput: (_stream, data) => chunks.push(new TextDecoder().decode(data)),
        onDaemonStopped: () => {
          told = true;
        },
      },
    );
    await until("the first output", () => chunks.includes("before\n"));
    await first.stop();
    await svc.stop();
    const second = daemon();
    await second.exec.start();
    await second.connect();
    const r = await call;
    assert.equal(r.exitCode, 4);
    assert.equal(told, true, "told the daemon stopped");
    assert.deepEqual(chunks, ["before\n", "after\n"]);
    assert.deepEqual([r.stdout, r.stderr], ["", ""], "the output streamed; the end marker carries none");
    await second.stop();
  });

  it("a command sent and still running is re-attached: its output and result reach the next daemon", async () => {
    const commandId = crypto.randomUUID();
    const marks = marksFile("running");
    const first = daemon();
    await first.connect();
    const answer = run(
      first,
      commandId,
      `${append(marks, "start\n")}; setTimeout(() => { ${append(marks, "end\n")}; console.log('finished') }, 1500)`,
    );
    await storedUntil(commandId, "CommandAcked");
    await first.stop();
    await assert.rejects(answer, { code: "shutting_down" });

    const out: string[] = [];
    const sub = nc.subscribe(outSubject(commandId), {
      callback: (_e, m) => {
        out.push(m.headers?.get(OUT_STREAM_HEADER) ? m.string() : `end:${m.headers?.get(OUT_END_HEADER)}`);
      },
    });
    onTeardown("output subscription", () => sub.unsubscribe());
    const second = daemon();
    assert.deepEqual(await second.exec.start(), { recovered: 1, resumed: 1 });
    await second.connect();
    await storedUntil(commandId, "CommandCompleted");
    assert.equal(readFileSync(marks, "utf8"), "start\nend\n", "ran once");
    assert.deepEqual(await types(commandId), [
      "CommandCreated",
      "CommandSent",
      "CommandAcked",
      "CommandCompleted",
    ]);
    const done = second.sessions.results.find((r) => r.id === commandId);
    assert.equal(done?.t, "done");
    assert.equal(done?.replayed, undefined, "re-attached to the run, not a replay");
    await until("the output and end marker", () => out.includes("end:1"));
    assert.deepEqual(out, ["finished\n", "end:1"]);
    await second.stop();
  });

  it("a command that finished while no daemon ran is answered from agentd's kept result (replayed)", async () => {
    const commandId = crypto.randomUUID();
    const marks = marksFile("finished");
    const first = daemon();
    await first.connect();
    const answer = run(
      first,
      commandId,
      `setTimeout(() => { ${append(marks, "ran\n")}; console.log('out'); process.exit(5) }, 300)`,
    );
    await storedUntil(commandId, "CommandAcked");
    await first.stop();
    await assert.rejects(answer, { code: "shutting_down" });
    await until("the command ran", () => readFileSync(marks, "utf8") === "ran\n");
    await new Promise((r) => setTimeout(r, 1000)); // agentd keeps the result once the process has exited

    const second = daemon();
    assert.deepEqual(await second.exec.start(), { recovered: 1, resumed: 1 });
    await second.connect();
    await storedUntil(commandId, "CommandCompleted");
    const done = second.sessions.results.find((r) => r.id === commandId);
    assert.equal(done?.t, "done");
    assert.equal(done?.replayed, true);
    assert.equal(done?.t === "done" && done.exitCode, 5);
    assert.equal(readFileSync(marks, "utf8"), "ran\n", "not run again");
    await second.stop();
  });

  it("a command stored but never sent is sent once by the next daemon", async () => {
    const commandId = crypto.randomUUID();
    const marks = marksFile("pending");
    const first = daemon(); // no session: the command waits in its agent's queue
    const answer = run(first, commandId, append(marks, "ran\n"));
    await storedUntil(commandId, "CommandCreated");
    await first.stop();
    await assert.rejects(answer, { code: "shutting_down" });
    assert.deepEqual(await types(commandId), ["CommandCreated"]);

    const second = daemon();
    assert.deepEqual(await second.exec.start(), { recovered: 1, resumed: 1 });
    await second.connect();
    await storedUntil(commandId, "CommandCompleted");
    assert.equal(readFileSync(marks, "utf8"), "ran\n");
    assert.deepEqual(await types(commandId), [
      "CommandCreated",
      "CommandSent",
      "CommandAcked",
      "CommandCompleted",
    ]);
    assert.equal(second.sessions.results.filter((r) => r.id === commandId).length, 1);
    await second.stop();
  });

  it("a command whose agent has no session fails once it waited its reach time, never sent", async () => {
    const scheduler = new ManualScheduler(Date.now());
    const lonely = daemon(scheduler); // no session ever
    const commandId = crypto.randomUUID();
    const answer = run(lonely, commandId, "process.exit(0)").catch((err: unknown) => err);
    await storedUntil(commandId, "CommandCreated");
    const timedOut = async () => (await types(commandId)).filter((t) => t === "CommandTimedOut").length;
    for (let n = 1; n <= 3; n++) {
      scheduler.advance(EXEC_REACH_MS / 3);
      await until(`time-out ${n}`, async () => (await timedOut()) === n);
    }
    const err = await answer;
    assert.ok(err instanceof CommandFailedError, String(err));
    assert.match(err.message, /not sent before the deadline/);
    assert.deepEqual(await types(commandId), [
      "CommandCreated",
      "CommandTimedOut",
      "CommandTimedOut",
      "CommandTimedOut",
    ]);
    assert.deepEqual(lonely.sessions.results, []);
    await lonely.stop();
  });

  it("a command whose lease ended while no daemon ran is cancelled by the next one, never sent", async () => {
    const commandId = crypto.randomUUID();
    const marks = marksFile("orphan");
    const first = daemon(); // no session: the command waits in its agent's queue
    const answer = run(first, commandId, append(marks, "ran\n"));
    await storedUntil(commandId, "CommandCreated");
    await first.stop();
    await assert.rejects(answer, { code: "shutting_down" });
    await cp.pool(pool).release(lease.leaseId, lease.leaseToken);

    const second = daemon();
    assert.deepEqual(await second.exec.start(), { recovered: 1, resumed: 0 });
    await second.connect();
    assert.deepEqual(await types(commandId), ["CommandCreated", "CommandCancelled"]);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(second.sessions.results, [], "nothing sent");
    assert.throws(() => readFileSync(marks), /ENOENT/);
    await second.stop();
  });
});
