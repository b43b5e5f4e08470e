import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Service } from "@nats-io/services";
import { ApiError, CorralClient } from "../src/api/client.ts";
import { OUT_END_HEADER, OUT_STREAM_HEADER, outSubject } from "../src/api/protocol.ts";
import { startApi } from "../src/api/service.ts";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { createExec, type Exec } from "../src/cp/exec/service.ts";
import type { LeaseGrant } from "../src/cp/pool/broker.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import { silentLogger } from "../src/log.ts";
import { PortAllocator } from "../src/ports/allocator.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { EventStore } from "../src/store/event-store.ts";
import { type AgentdHarness, startAgentd, TestSessions } from "./helpers/agentd-session.ts";
import { bin, corral, root } from "./helpers/cli.ts";
import { until } from "./helpers/daemon.ts";
import { poolConfig } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown, trackProcess } from "./helpers/teardown.ts";

/*
 * Commands run in agents, through the exec endpoint: a real nats-server, a control plane whose
 * agents run nowhere (simulated runtime) but whose leases are real, and for each leased agent a
 * real agentd engine reached over mTLS by the control plane's own session code.
 */

/** Every error code this file saw, checked against README's exec paragraph at the end. */
const seen = new Set<string>();

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApiError, `not an ApiError: ${err}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
  seen.add(code);
}

const node = (script: string) => ["node", "-e", script];

describe("exec: commands in leased agents", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let cp: ControlPlane;
  let client: CorralClient;
  const pool = `ex${process.pid}`;
  const instance = `i-${pool}`;
  let lease: LeaseGrant;
  let agent: AgentdHarness;
  const services: Service[] = [];

  /** An exec service as one daemon runs it, over its own sessions to the agent's agentd. */
  function execService(sessions: TestSessions, queueCapacity?: number): Exec {
    const exec = createExec({
      nc,
      store,
      sessions,
      agents: cp.host,
      queueCapacity,
      log: silentLogger,
    });
    onTeardown("exec service", () => exec.close());
    return exec;
  }

  async function serve(exec: Exec | undefined, on = cp, name = instance): Promise<void> {
    const svc = await startApi(nc, on, {
      log: silentLogger,
      instance: name,
      status: async () => ({}),
      instances: async () => [],
      exec,
    });
    services.push(svc);
  }

  async function events(commandId: string) {
    return (await store.readAggregate({ kind: "command", id: commandId })).flatMap((r) =>
      r.event ? [r.event] : [],
    );
  }

  let sessions: TestSessions;
  const drops: (() => void)[] = [];
  async function connectSession(): Promise<void> {
    const { session, drop } = await agent.connect();
    drops.push(drop);
    sessions.ready(session);
  }
  /** Drops the main service's session (as a lost connection would) and waits until it is gone. */
  async function dropSession(): Promise<void> {
    for (const drop of drops.splice(0)) drop();
    await until("session gone", () => sessions.get(lease.agentId) === undefined);
  }

  before(async () => {
    t = await startTestNats();
    nc = await t.connect("exec-test");
    store = await EventStore.open(nc);
    client = new CorralClient(nc);
    ({ cp } = await ControlPlane.start({
      nc,
      instance,
      pools: { [pool]: poolConfig({ min: 1, max: 1, warm: 1 }) },
      runtimes: { process: new SimulatedRuntime(instance) },
      ports: new PortAllocator(),
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
    }));
    lease = await cp.pool(pool).acquire({ timeoutMs: 10_000 });
    agent = await startAgentd(pool, lease.agentId);
    sessions = new TestSessions();
    await serve(execService(sessions, 2));
    await connectSession();
  });
  after(async () => {
    for (const s of services) await s.stop();
    await cp?.stop();
    store?.close();
    await t.cleanup();
  });

  const ref = () => ({ leaseId: lease.leaseId, leaseToken: lease.leaseToken });

  it("answers with the exit code and both streams, and stores the command's story", async () => {
    const commandId = crypto.randomUUID();
    const argv = node("process.stdout.write('to out'); process.stderr.write('to err'); process.exit(3)");
    const r = await client.exec(ref(), { pool, commandId, argv });
    assert.equal(r.commandId, commandId);
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdout, "to out");
    assert.equal(r.stderr, "to err");
    assert.equal(r.truncated, false);
    assert.ok(r.durationMs > 0);
    const stored = await events(commandId);
    assert.deepEqual(
      stored.map((e) => e.type),
      ["CommandCreated", "CommandSent", "CommandAcked", "CommandCompleted"],
    );
    assert.deepEqual(stored[0]?.data, {
      agentId: lease.agentId,
      action: "exec",
      payload: { leaseId: lease.leaseId, argv, timeoutMs: 600_000 },
      maxRetries: 2,
      timeouts: { pending: 10_000, sent: 10_000, acked: 615_000 },
    });
    assert.deepEqual(stored[3]?.data, {
      result: { exitCode: 3, durationMs: r.durationMs, truncated: false },
    });
  });

  it("passes stdin, env and cwd to the command", async () => {
    const cwd = "work";
    mkdirSync(join(agent.home, cwd));
    const r = await client.exec(ref(), {
      pool,
      argv: node(
        "process.stdin.on('data', (d) => process.stdout.write(process.env.GREETING + ' ' + d)); process.stdin.on('end', () => console.error(process.cwd()))",
      ),
      stdin: "from stdin",
      env: { GREETING: "hello" },
      cwd,
    });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, "hello from stdin");
    assert.equal(r.stderr.trim(), join(agent.home, cwd));
  });

  it("publishes the output on corral.out.<commandId> as it comes, and the end marker, all before the reply", async () => {
    const commandId = crypto.randomUUID();
    const order: string[] = [];
    const chunks: string[] = [];
    const sub = nc.subscribe(outSubject(commandId), {
      callback: (_err, m) => {
        const stream = m.headers?.get(OUT_STREAM_HEADER);
        if (stream) {
          order.push(stream);
          chunks.push(`${stream}:${m.string()}`);
        } else if (m.headers?.get(OUT_END_HEADER)) order.push(`end ${m.string()}`);
      },
    });
    try {
      await nc.flush();
      const r = await client.exec(ref(), {
        pool,
        commandId,
        argv: node("console.log('a'); setTimeout(() => { console.error('b'); console.log('c'); }, 300)"),
      });
      order.push("reply");
      assert.deepEqual(chunks, ["stdout:a\n", "stderr:b\n", "stdout:c\n"]);
      assert.deepEqual(order, [
        "stdout",
        "stderr",
        "stdout",
        `end {"exitCode":0,"durationMs":${r.durationMs},"truncated":false}`,
        "reply",
      ]);
      assert.equal(r.stdout, "a\nc\n");
    } finally {
      sub.unsubscribe();
    }
  });

  it("a command that outlives its timeout is stopped: timedOut, exit code 124, its output so far", async () => {
    const commandId = crypto.randomUUID();
    const r = await client.exec(ref(), {
      pool,
      commandId,
      argv: node("console.log('started'); setTimeout(() => {}, 60000)"),
      timeoutMs: 500,
    });
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, 124);
    assert.equal(r.stdout, "started\n");
    assert.ok(r.durationMs >= 500 && r.durationMs < 10_000, `ran ${r.durationMs} ms`);
    const last = (await events(commandId)).at(-1);
    assert.equal(last?.type, "CommandFailed");
    assert.deepEqual(last?.data, { error: "timed out after 500 ms; agentd stopped it", code: "timeout" });
  });

  it("a wrong lease token is lease_token_invalid, and nothing is run or stored", async () => {
    const commandId = crypto.randomUUID();
    await rejectsWith(
      client.exec({ ...ref(), leaseToken: "not-the-token" }, { pool, commandId, argv: ["true"] }),
      "lease_token_invalid",
      /wrong lease token for lease /,
    );
    assert.deepEqual(await events(commandId), []);
    await rejectsWith(
      client.exec({ ...ref(), leaseToken: "" }, { pool, argv: ["true"] }),
      "bad_request",
      /leaseToken/,
    );
    const gone = `${lease.agentId}.0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b`;
    await rejectsWith(client.exec({ ...ref(), leaseId: gone }, { pool, argv: ["true"] }), "lease_not_active");
  });

  it("bad requests name what is wrong", async () => {
    await rejectsWith(client.exec(ref(), { pool, argv: [] }), "bad_request", /argv: at least the program/);
    await rejectsWith(
      client.exec(ref(), { pool, argv: ["true"], commandId: "cmd-1" }),
      "bad_request",
      /commandId: a lowercase UUID/,
    );
    await rejectsWith(
      client.exec(ref(), { pool, argv: ["true"], env: { "NOT A NAME": "x" } }),
      "bad_request",
      /^env: "NOT A NAME" is not a variable name$/,
    );
  });

  it("a command id is used once; a program that cannot start is command_failed, saying why", async () => {
    const commandId = crypto.randomUUID();
    await client.exec(ref(), { pool, commandId, argv: ["true"] });
    await rejectsWith(client.exec(ref(), { pool, commandId, argv: ["true"] }), "command_exists");
    await rejectsWith(
      client.exec(ref(), { pool, argv: ["/nonexistent/program"] }),
      "command_failed",
      /spawn_failed/,
    );
  });

  it("a session lost mid-command: the next one re-attaches to it, and the call ends once with its exit code", async () => {
    const marks = join(agent.home, "reattach.log");
    const append = (text: string) => `require('fs').appendFileSync(${JSON.stringify(marks)}, '${text}')`;
    const commandId = crypto.randomUUID();
    const chunks: string[] = [];
    const call = client.exec(ref(), {
      pool,
      commandId,
      argv: node(
        `${append("start")}; setTimeout(() => { ${append(" end")}; console.log('late'); process.exit(6) }, 1000)`,
      ),
      onOutput: (_s, d) => chunks.push(new TextDecoder().decode(d)),
    });
    await until("acked", async () => (await events(commandId)).some((e) => e.type === "CommandAcked"));
    await dropSession();
    await connectSession();
    const r = await call;
    assert.equal(r.exitCode, 6);
    assert.equal(r.stdout, "late\n");
    assert.deepEqual(chunks, ["late\n"], "the output reaches the new session");
    assert.equal(readFileSync(marks, "utf8"), "start end", "ran once");
    assert.deepEqual(
      (await events(commandId)).map((e) => e.type),
      ["CommandCreated", "CommandSent", "CommandAcked", "CommandCompleted"],
    );
  });

  it("queue_full past the agent's queue; queued commands go out once its session is back", async () => {
    await dropSession();
    const marks = join(agent.home, "queued.log");
    const argv = node(`require('fs').appendFileSync(${JSON.stringify(marks)}, 'ran\\n')`);
    const ids = [crypto.randomUUID(), crypto.randomUUID()];
    const running = ids.map((commandId) => client.exec(ref(), { pool, commandId, argv }));
    await until("two commands queued", async () =>
      (await Promise.all(ids.map(events))).every((e) => e.length > 0),
    );
    await rejectsWith(client.exec(ref(), { pool, argv }), "queue_full", /already has 2 commands/);
    await connectSession();
    assert.deepEqual(
      (await Promise.all(running)).map((r) => r.exitCode),
      [0, 0],
    );
    assert.equal(readFileSync(marks, "utf8"), "ran\nran\n");
    for (const id of ids) {
      const types = (await events(id)).map((e) => e.type);
      assert.deepEqual(types, ["CommandCreated", "CommandSent", "CommandAcked", "CommandCompleted"]);
    }
  });

  it("corral exec streams the command's output and exits with its exit code", async () => {
    const nats = { NATS_URL: t.url };
    const script = "console.log('out'); setTimeout(() => { console.error('err'); process.exit(7) }, 100)";
    const r = await corral(
      ["exec", lease.leaseId, "--token", lease.leaseToken, "--", "node", "-e", script],
      nats,
    );
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, "out\n");
    assert.equal(r.stderr, "err\n");

    const slow = await corral(
      [
        "exec",
        lease.leaseId,
        "--token",
        lease.leaseToken,
        "--timeout",
        "300ms",
        "--",
        "node",
        "-e",
        "setTimeout(() => {}, 60000)",
      ],
      nats,
    );
    assert.equal(slow.code, 124);
    assert.match(slow.stderr, /ran out of time after \d+ ms and was stopped/);

    const json = await corral(
      ["exec", lease.leaseId, "--token", lease.leaseToken, "--json", "--", "node", "-e", "console.log(1)"],
      nats,
    );
    assert.equal(json.code, 0, json.stderr);
    const reply = JSON.parse(json.stdout);
    // The request's correlation (`corral trace <it>`): a new one, as none was given.
    assert.match(reply.correlationId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
    assert.deepEqual(
      { ...reply, commandId: "", durationMs: 0, correlationId: "" },
      {
        commandId: "",
        exitCode: 0,
        stdout: "1\n",
        stderr: "",
        durationMs: 0,
        truncated: false,
        correlationId: "",
      },
    );
  });

  it("corral exec -i sends its stdin to the command", async () => {
    const args = [
      "exec",
      lease.leaseId,
      "--token",
      lease.leaseToken,
      "-i",
      "--",
      "node",
      "-e",
      "process.stdin.pipe(process.stdout)",
    ];
    const p = spawn(process.execPath, [bin, ...args], { env: { ...process.env, NATS_URL: t.url } });
    trackProcess(p, "corral exec -i");
    let stdout = "";
    p.stdout.on("data", (d) => {
      stdout += d;
    });
    const code = new Promise((resolve) => p.on("close", resolve));
    p.stdin.end("piped through\n");
    assert.equal(await code, 0);
    assert.equal(stdout, "piped through\n");
  });

  it("corral exec: a wrong token fails (exit 1, the code named), no token at all is a usage error", async () => {
    const nats = { NATS_URL: t.url };
    const wrong = await corral(["exec", lease.leaseId, "--token", "not-it", "--", "true"], nats);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /error \(lease_token_invalid\): wrong lease token/);
    const none = await corral(["exec", lease.leaseId, "--", "true"], nats);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no token for lease .*: pass --token/);
    const badEnv = await corral(["exec", lease.leaseId, "--token", "x", "-e", "=1", "--", "true"], nats);
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /--env "=1": expected NAME=value/);
  });

  it("a command ends with its lease: released mid-command, it is cancelled and agentd stops it", async () => {
    const marks = join(agent.home, "cancelled.log");
    const append = (text: string) => `require('fs').appendFileSync(${JSON.stringify(marks)}, '${text}')`;
    const commandId = crypto.randomUUID();
    const call = client.exec(ref(), {
      pool,
      commandId,
      argv: node(`${append("start")}; setTimeout(() => { ${append(" end")} }, 1500)`),
    });
    await until("the command started", () => readFileSync(marks, "utf8") === "start");
    await client.release(ref(), pool);
    await rejectsWith(call, "command_cancelled", new RegExp(`its lease ${lease.leaseId} ended`));
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal(readFileSync(marks, "utf8"), "start", "stopped before its end");
    assert.deepEqual(
      (await events(commandId)).map((e) => e.type),
      ["CommandCreated", "CommandSent", "CommandAcked", "CommandCancelled"],
    );
  });

  it("exec without sessions to agents answers unsupported", async () => {
    const other = `${pool}u`;
    const { cp: cp2 } = await ControlPlane.start({
      nc,
      instance: `i-${other}`,
      pools: { [other]: poolConfig({ min: 0, max: 1, warm: 0 }) },
      runtimes: { process: new SimulatedRuntime(`i-${other}`) },
      ports: new PortAllocator(),
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
    });
    onTeardown("second control plane", () => cp2.stop());
    await serve(undefined, cp2, `i-${other}`);
    await rejectsWith(
      client.exec(ref(), { pool: other, argv: ["true"] }),
      "unsupported",
      /does not run commands in agents/,
    );
  });

  it("every exec error code the README lists was met above", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const para = readme.slice(
      readme.indexOf("Exec's\nerror codes:"),
      readme.indexOf("From a terminal: `corral exec"),
    );
    const listed = new Set([...para.matchAll(/`([a-z_]+)`/g)].map((m) => m[1] as string));
    assert.ok(listed.has("queue_full") && listed.size >= 5, `the README's list: ${[...listed]}`);
    assert.deepEqual(
      [...listed].filter((c) => !seen.has(c)),
      [],
      "listed but never asserted",
    );
  });
});
