import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { clock } from "../src/cli/format.ts";
import type { DataInputOf, EventType } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { uuidv7 } from "../src/events/id.ts";
import { EventStore } from "../src/store/event-store.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import { bin, corral, root } from "./helpers/cli.ts";
import { poolConfig } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { SeededStream } from "./helpers/seeded-stream.ts";
import { tempDir, trackProcess } from "./helpers/teardown.ts";

/**
 * replay, diff, timeline and trace against a real nats-server, on a seeded stream whose answers
 * are known: two agents of pool `build`, one failing while it is created, one leased and released,
 * the pool reconfigured; effects' reports caused by (and correlated with) the decision behind them.
 */

const T0 = Date.UTC(2026, 10, 22, 7, 0, 0);
const pool: AggregateRef = { kind: "pool", id: "build" };
const a: AggregateRef = { kind: "agent", id: "build-a" };
const b: AggregateRef = { kind: "agent", id: "build-b" };
const c: AggregateRef = { kind: "agent", id: "build-c" };
const cmd: AggregateRef = { kind: "command", id: "cmd-1" };
const lease = `build-a.${uuidv7(T0 + 4_310)}`;

const json = (s: string) => JSON.parse(s) as Record<string, unknown>;
const jsonLines = (s: string) =>
  s
    .split("\n")
    .filter(Boolean)
    .map((l) => json(l));

/** util-linux `script` gives the CLI a pseudo-terminal, as a user's shell would. */
const hasScript = spawnSync("script", ["--version"]).status === 0;
const shellQuote = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;

/**
 * Runs the CLI on a pseudo-terminal and types `keys`, each once the screen shows what `waits`
 * says it should first; resolves with everything the terminal showed and the exit code.
 */
function onTerminal(args: string[], env: Record<string, string>, script: [RegExp, string][]) {
  const command = [process.execPath, bin, ...args].map(shellQuote).join(" ");
  const p = spawn("script", ["-qfec", command, "/dev/null"], {
    cwd: root,
    env: { ...process.env, ...env, TERM: "xterm" },
    detached: true,
  });
  trackProcess(p, `corral ${args.join(" ")} on a terminal`, { group: true });
  let screen = "";
  let next = 0;
  let since = 0; // where the screen stood when the last key was typed
  return new Promise<{ code: number | null; screen: string }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`stuck waiting for ${script[next]?.[0]}:\n${screen}`)),
      60_000,
    );
    p.stdout.on("data", (d) => {
      screen += d;
      while (next < script.length && (script[next] as [RegExp, string])[0].test(screen.slice(since))) {
        p.stdin.write((script[next] as [RegExp, string])[1]);
        since = screen.length;
        next++;
      }
    });
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
  });
}

describe("replay debugging from the command line", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let env: Record<string, string>;
  /** Stream sequence and envelope by the name each seeded event is given below. */
  const seeded = new SeededStream(() => store);
  const { seq } = seeded;
  const put = <T extends EventType>(
    name: string,
    ref: AggregateRef,
    type: T,
    data: DataInputOf<T>,
    at: number,
    cause?: string,
  ) => seeded.put(name, ref, type, data, at, { cause });
  const idOf = (name: string) => seeded.ev[name]?.id as string;

  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    const { key, file } = loadOrCreateEventKey(tempDir("history-key-"));
    store = await EventStore.open(nc, { integrity: { key } });
    env = { NATS_URL: t.url, [KEY_FILE_ENV]: file };
    const config = poolConfig({ min: 1, max: 5, warm: 2 });
    await put("created", pool, "PoolCreated", { config, instance: "i1" }, T0);
    await put("spawnA", pool, "PoolAgentSpawned", { agentId: "build-a", reason: "warm" }, T0 + 50);
    await put("spawnB", pool, "PoolAgentSpawned", { agentId: "build-b", reason: "warm" }, T0 + 60);
    const requested = { poolId: "build", runtime: "process" as const, deadline: T0 + 10_000 };
    await put("reqA", a, "AgentRequested", requested, T0 + 100, "spawnA");
    await put("reqB", b, "AgentRequested", requested, T0 + 120, "spawnB");
    await put("portsB", b, "AgentPortsAllocated", { generation: 1, ports: [5003, 5004] }, T0 + 200, "reqB");
    const failure = { phase: "creating", code: "spawn-error", message: "no such image" };
    await put("failB", b, "AgentFailed", failure, T0 + 300, "portsB");
    const spawnFailed = { agentId: "build-b", code: "spawn-error", message: "no such image", streak: 1 };
    await put(
      "spawnFailB",
      pool,
      "PoolSpawnFailed",
      { ...spawnFailed, retryAt: T0 + 1_301 },
      T0 + 301,
      "failB",
    );
    await put("portsA", a, "AgentPortsAllocated", { generation: 1, ports: [5001, 5002] }, T0 + 310, "reqA");
    await put("createdA", a, "AgentCreated", { generation: 1, instanceId: "i-1" }, T0 + 710, "portsA");
    await put("startedA", a, "AgentStarted", { generation: 1 }, T0 + 1_210, "createdA");
    const registered = { generation: 1, thumbprint: "ab".repeat(32), peerCN: "build-a" };
    await put("registeredA", a, "AgentRegistered", registered, T0 + 1_300);
    await put("readyA", a, "InitCompleted", { generation: 1, durationMs: 100 }, T0 + 1_400);
    await new Promise((r) => setTimeout(r, 30)); // stream times apart, for the time moment below
    const leased = {
      leaseId: lease,
      poolId: "build",
      holder: "alice",
      ttlMs: 60_000,
      expiresAt: T0 + 64_310,
    };
    await put("leased", a, "AgentLeased", leased, T0 + 4_310);
    await put("renewed", a, "AgentLeaseRenewed", { leaseId: lease, expiresAt: T0 + 70_000 }, T0 + 5_000);
    await put(
      "reconf",
      pool,
      "PoolReconfigured",
      { config: { ...config, warm: 3 }, instance: "i1" },
      T0 + 7_000,
    );
    await put("released", a, "AgentReleased", { leaseId: lease }, T0 + 8_000);
    // build-c: spawned on demand, retired while starting.
    await put("spawnC", pool, "PoolAgentSpawned", { agentId: "build-c", reason: "demand" }, T0 + 9_000);
    await put("reqC", c, "AgentRequested", { ...requested, deadline: T0 + 19_000 }, T0 + 9_100, "spawnC");
    await put("portsC", c, "AgentPortsAllocated", { generation: 1, ports: [5005, 5006] }, T0 + 9_310, "reqC");
    await put("createdC", c, "AgentCreated", { generation: 1, instanceId: "i-3" }, T0 + 9_710, "portsC");
    // Never stored by the daemon (an agent still starting takes no lease): replay must say so.
    const early = { leaseId: `build-c.${uuidv7(T0)}`, poolId: "build", ttlMs: 1_000, expiresAt: T0 + 10_000 };
    await put("refusedC", c, "AgentLeased", early, T0 + 9_800);
    await put("retireC", pool, "PoolAgentRetired", { agentId: "build-c", reason: "scale-down" }, T0 + 10_200);
    const drain = { reason: "scale-down", deadline: T0 + 30_000 };
    await put("drainC", c, "AgentDrainRequested", drain, T0 + 10_210, "retireC");
    await put("stoppedC", c, "AgentStopped", {}, T0 + 11_410, "drainC");
    const command = { agentId: "build-a", action: "npm test" };
    await put("cmdCreated", cmd, "CommandCreated", command, T0 + 12_000);
    await put("cmdSent", cmd, "CommandSent", { attempt: 1 }, T0 + 12_100, "cmdCreated");
    // Garbage with no writer's mark, on build-c's subject: forged, shown as skipped, never folded.
    nc.publish("corral.evt.agent.build-c", new Uint8Array([0xc1]));
    await nc.flush();
    seq.poison = await store.lastSeq();
  });

  after(async () => {
    store.close();
    await t.cleanup();
  });

  describe("replay", () => {
    it("folds each event of the agent through its machine: state, changes, effects, refusals", async () => {
      const r = await corral(["replay", "agent/build-c", "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "", "no progress line or warning when stderr is not a terminal");
      const steps = jsonLines(r.stdout);
      assert.deepEqual(
        steps.map((s) => [s.seq, s.type, s.state, s.status]),
        [
          [seq.reqC, "AgentRequested", "requested", "active"],
          [seq.portsC, "AgentPortsAllocated", "creating", "active"],
          [seq.createdC, "AgentCreated", "starting", "active"],
          [seq.refusedC, "AgentLeased", "starting", "active"],
          [seq.drainC, "AgentDrainRequested", "stopping", "active"],
          [seq.stoppedC, "AgentStopped", "stopped", "done"],
          [seq.poison, "FORGED", "stopped", "done"],
        ],
      );
      const ports = steps[1] as Record<string, unknown>;
      assert.deepEqual(ports.changes, [{ path: "ports", from: [], to: [5005, 5006] }]);
      assert.deepEqual(ports.effects, ["createInstance"]);
      assert.equal(ports.at, new Date(T0 + 9_310).toISOString());
      assert.equal(steps[3]?.refused, true);
      assert.deepEqual(steps[3]?.changes, []);
      assert.deepEqual(steps[4]?.changes, [
        { path: "deadline", from: T0 + 19_000, to: T0 + 30_000 },
        { path: "stopReason", from: null, to: "scale-down" },
      ]);
      assert.deepEqual(steps[4]?.effects, ["stopInstance"]);
      assert.equal((steps[6]?.skipped as { reason?: string } | undefined)?.reason, "forged");
    });

    it("--to stops at a seq or a time; human output names state and changes, not the whole context", async () => {
      const readyAt = (await store.get(seq.readyA as number))?.time as number;
      const [bySeq, byTime, human] = await Promise.all([
        corral(["replay", "agent/build-a", "--to", String(seq.readyA), "--json"], env),
        corral(["replay", "agent/build-a", "--to", new Date(readyAt + 10).toISOString(), "--json"], env),
        corral(["replay", "agent/build-c", "--to", String(seq.drainC)], env),
      ]);
      for (const r of [bySeq, byTime, human]) assert.equal(r.code, 0, r.stderr);
      assert.equal(jsonLines(bySeq.stdout).at(-1)?.seq, seq.readyA);
      assert.deepEqual(jsonLines(byTime.stdout), jsonLines(bySeq.stdout));
      const lines = human.stdout.trimEnd().split("\n");
      assert.equal(lines[0], "agent/build-c: 5 events through the agent machine, effects off");
      assert.match(
        lines[2] as string,
        /AgentPortsAllocated +→ creating +ports: \[\] → \[5005,5006\] +⇒ createInstance$/,
      );
      assert.doesNotMatch(lines[2] as string, /poolId/, "only what changed");
      assert.match(lines[4] as string, /AgentLeased +refused in starting/);
      const times = `deadline: ${clock(T0 + 19_000)} → ${clock(T0 + 30_000)}, stopReason: null → scale-down`;
      assert.ok(lines[5]?.includes(times), `a time in the context reads as one: ${lines[5]}`);
      assert.equal(lines.at(-1), `now stopping (active) after seq ${seq.drainC}`);
    });

    it("a pool replays through the pool machine; unknown aggregates and bad arguments are refused", async () => {
      const [poolRun, none, bad, noMachine] = await Promise.all([
        corral(["replay", "pool/build", "--json"], env),
        corral(["replay", "agent/nobody"], env),
        corral(["replay", "agent/a.b"], env),
        corral(["replay", "host/h1"], env),
      ]);
      assert.equal(poolRun.code, 0, poolRun.stderr);
      const steps = jsonLines(poolRun.stdout);
      assert.deepEqual(
        steps.map((s) => s.type),
        [
          "PoolCreated",
          "PoolAgentSpawned",
          "PoolAgentSpawned",
          "PoolSpawnFailed",
          "PoolReconfigured",
          "PoolAgentSpawned",
          "PoolAgentRetired",
        ],
      );
      assert.deepEqual(steps[4]?.changes, [{ path: "config.warm", from: 2, to: 3 }]);
      assert.deepEqual(steps[5]?.effects, ["spawnAgent"]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no events for agent\/nobody/);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /aggregate id "a\.b" is invalid/);
      assert.equal(noMachine.code, 2);
      assert.match(noMachine.stderr, /host has no machine to replay through/);
    });

    it("--interactive on a terminal: arrows step forward and back, q quits and restores the screen", {
      skip: !hasScript && "no `script` to make a terminal with",
    }, async () => {
      const right = "\u001b[C";
      const left = "\u001b[D";
      const r = await onTerminal(["replay", "agent/build-c", "--interactive"], env, [
        [/step 1\/7/, right],
        [/step 2\/7/, right],
        [/step 3\/7/, left],
        [/step 2\/7/, "q"],
      ]);
      assert.equal(r.code, 0, r.screen);
      assert.match(r.screen, /state creating \(active\)/);
      assert.match(r.screen, /"ports": \[\s*5005,\s*5006\s*\]/, "the whole context after the step");
      const restored = r.screen.lastIndexOf("\u001b[?1049l");
      const left2 = r.screen.lastIndexOf("left at step 2/7");
      assert.ok(restored >= 0 && left2 > restored, "back on the main screen, then where it stopped");
      const ctrlC = await onTerminal(["replay", "agent/build-c", "-i"], env, [[/step 1\/7/, "\u0003"]]);
      assert.equal(ctrlC.code, 0, ctrlC.screen);
      assert.match(ctrlC.screen, /left at step 1\/7/);
    });

    it("--interactive without a terminal says so instead of reading", async () => {
      const r = await corral(["replay", "agent/build-a", "--interactive"], env);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--interactive needs a terminal/);
    });
  });

  describe("diff", () => {
    it("between two known seqs: the phase change, the lease granted, the pool reconfigured", async () => {
      const r = await corral(["diff", String(seq.readyA), String(seq.reconf), "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      const d = json(r.stdout);
      assert.equal(d.from, seq.readyA);
      assert.equal(d.to, seq.reconf);
      assert.equal(d.events, 3);
      assert.deepEqual(d.byType, { AgentLeaseRenewed: 1, AgentLeased: 1, PoolReconfigured: 1 });
      assert.deepEqual(d.agents, {
        added: [],
        removed: [],
        changed: [{ id: "build-a", poolId: "build", from: "idle", to: "leased" }],
      });
      const leases = d.leases as Record<string, unknown>;
      assert.equal(leases.granted, 1);
      assert.deepEqual(leases.started, [{ id: lease, agentId: "build-a", poolId: "build", holder: "alice" }]);
      assert.deepEqual(leases.finished, []);
      assert.deepEqual(d.ports, { taken: [], freed: [] });
      assert.deepEqual(d.registrations, []);
      assert.deepEqual(d.pools, {
        added: [],
        removed: [],
        changed: [{ name: "build", changes: [{ path: "config.warm", from: 2, to: 3 }] }],
      });
    });

    it("an agent that failed between the two is removed with how it ended; ports taken and freed", async () => {
      const r = await corral(["diff", String(seq.portsB), String(seq.readyA), "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      const d = json(r.stdout);
      assert.deepEqual(d.agents, {
        added: [],
        removed: [{ id: "build-b", poolId: "build", state: "creating", endedBy: "AgentFailed" }],
        changed: [{ id: "build-a", poolId: "build", from: "requested", to: "idle" }],
      });
      assert.deepEqual(d.ports, {
        taken: [
          { port: 5001, agentId: "build-a", poolId: "build" },
          { port: 5002, agentId: "build-a", poolId: "build" },
        ],
        freed: [
          { port: 5003, agentId: "build-b", poolId: "build" },
          { port: 5004, agentId: "build-b", poolId: "build" },
        ],
      });
      assert.deepEqual(d.registrations, [
        { agentId: "build-a", generation: 1, from: "unregistered", to: "registered" },
      ]);
    });

    it("moments as times and durations ago; human output; the earlier moment first", async () => {
      const readyAt = (await store.get(seq.readyA as number))?.time as number;
      const iso = new Date(readyAt + 10).toISOString();
      const [byTime, all, human, reversed, bad] = await Promise.all([
        corral(["diff", iso, "now", "--json"], env),
        corral(["diff", "1d", "now", "--json"], env),
        corral(["diff", String(seq.readyA), String(seq.released)], env),
        corral(["diff", "now", "0"], env),
        corral(["diff", "yesterday", "now"], env),
      ]);
      assert.equal(byTime.code, 0, byTime.stderr);
      assert.equal(json(byTime.stdout).from, seq.readyA);
      assert.equal(json(byTime.stdout).to, seq.poison);
      assert.equal(json(all.stdout).from, 0);
      assert.deepEqual((json(all.stdout).pools as { added: string[] }).added, ["build"]);
      assert.equal(human.code, 0, human.stderr);
      assert.deepEqual(human.stdout.trimEnd().split("\n").slice(1), [
        "agents: no change",
        "leases: granted 1, ended 1 (released 1)",
        "ports: no change",
        "registrations: no change",
        "pools",
        "  ~ build: config.warm: 2 → 3",
      ]);
      assert.equal(reversed.code, 2);
      assert.match(reversed.stderr, /give the earlier one first/);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /<a> "yesterday" is invalid/);
    });
  });

  describe("timeline", () => {
    it("an agent: each phase, its duration and the event that ended it", async () => {
      const [r, human] = await Promise.all([
        corral(["timeline", "agent/build-c", "--json"], env),
        corral(["timeline", "agent/build-c"], env),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const phases = json(r.stdout).phases as Record<string, unknown>[];
      assert.deepEqual(
        phases.map((p) => [
          p.phase,
          p.ms,
          (p.endedBy as { type: string } | null)?.type ?? null,
          p.final ?? false,
        ]),
        [
          ["requested", 210, "AgentPortsAllocated", false],
          ["creating", 400, "AgentCreated", false],
          ["starting", 500, "AgentDrainRequested", false],
          ["stopping", 1_200, "AgentStopped", false],
          ["stopped", null, null, true],
        ],
      );
      assert.equal(
        human.stdout.trimEnd().split("\n").at(-1),
        "requested 0.21 s → creating 0.40 s → starting 0.50 s → stopping 1.2 s → stopped",
      );
    });

    it("a pool: its spawn, retire, failure and config history with counts by reason", async () => {
      const r = await corral(["timeline", "pool/build", "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      const tl = json(r.stdout);
      const entries = tl.entries as Record<string, unknown>[];
      assert.deepEqual(
        entries.map((e) => [e.seq, e.type, e.agentId ?? null, e.reason ?? null]),
        [
          [seq.created, "PoolCreated", null, null],
          [seq.spawnA, "PoolAgentSpawned", "build-a", "warm"],
          [seq.spawnB, "PoolAgentSpawned", "build-b", "warm"],
          [seq.spawnFailB, "PoolSpawnFailed", "build-b", null],
          [seq.reconf, "PoolReconfigured", null, null],
          [seq.spawnC, "PoolAgentSpawned", "build-c", "demand"],
          [seq.retireC, "PoolAgentRetired", "build-c", "scale-down"],
        ],
      );
      assert.equal(entries[4]?.detail, "config.warm: 2 → 3");
      const counts = tl.counts as Record<string, unknown>;
      assert.deepEqual(counts.PoolAgentSpawned, { warm: 2, demand: 1 });
      assert.deepEqual(counts.PoolAgentRetired, { "scale-down": 1 });
      const wrongKind = await corral(["timeline", "command/cmd-1"], env);
      assert.equal(wrongKind.code, 2);
      assert.match(wrongKind.stderr, /timeline takes agent\/<id> or pool\/<id>/);
    });
  });

  describe("trace", () => {
    type Node = { seq: number; event: { type: string }; children: Node[] };
    const shape = (n: Node): unknown[] => [n.seq, n.event.type, ...n.children.map(shape)];

    it("an event id: everything it caused, across aggregates, as a tree", async () => {
      const r = await corral(["trace", idOf("spawnB"), "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      const tr = json(r.stdout);
      assert.equal(tr.matched, "event");
      assert.equal(tr.events, 5);
      assert.equal(tr.aggregates, 2);
      assert.deepEqual((tr.roots as Node[]).map(shape), [
        [
          seq.spawnB,
          "PoolAgentSpawned",
          [
            seq.reqB,
            "AgentRequested",
            [
              seq.portsB,
              "AgentPortsAllocated",
              [seq.failB, "AgentFailed", [seq.spawnFailB, "PoolSpawnFailed"]],
            ],
          ],
        ],
      ]);
    });

    it("a correlation id, a lease id and a command id; human output is an indented tree", async () => {
      const [byCorrelation, byLease, byCommand, human, none] = await Promise.all([
        corral(["trace", idOf("spawnA"), "--json"], env),
        corral(["trace", lease, "--json"], env),
        corral(["trace", "cmd-1", "--json"], env),
        corral(["trace", idOf("spawnA")], env),
        corral(["trace", uuidv7(T0)], env),
      ]);
      assert.equal(byCorrelation.code, 0, byCorrelation.stderr);
      assert.equal(json(byCorrelation.stdout).events, 5);
      const byLeaseRoots = json(byLease.stdout).roots as Node[];
      assert.deepEqual(byLeaseRoots.map(shape), [
        [seq.leased, "AgentLeased"],
        [seq.renewed, "AgentLeaseRenewed"],
        [seq.released, "AgentReleased"],
      ]);
      assert.equal(json(byLease.stdout).matched, "lease");
      assert.deepEqual((json(byCommand.stdout).roots as Node[]).map(shape), [
        [seq.cmdCreated, "CommandCreated", [seq.cmdSent, "CommandSent"]],
      ]);
      const lines = human.stdout.trimEnd().split("\n");
      assert.equal(lines[0], `trace ${idOf("spawnA")} (event): 5 events on 2 aggregates`);
      assert.match(
        lines[1] as string,
        new RegExp(`^${seq.spawnA} \\S+ pool/build PoolAgentSpawned agentId=build-a reason=warm$`),
      );
      assert.match(lines[2] as string, new RegExp(`^└─ ${seq.reqA} \\S+ agent/build-a AgentRequested `));
      assert.match(
        lines[3] as string,
        new RegExp(`^   └─ ${seq.portsA} \\S+ agent/build-a AgentPortsAllocated `),
      );
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no event in \S+ matches/);
    });

    it("something that cannot be traced is refused as such, before NATS is asked (none answers here)", async () => {
      const bad = await corral(["trace", "a b"], { ...env, NATS_URL: "nats://127.0.0.1:1" });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /"a b" is not an event id, correlation id, lease id/);
    });
  });
});

describe("replay --interactive keys", () => {
  it("splits one read into keys: escape sequences whole, other characters one by one", async () => {
    const { keysIn } = await import("../src/cli/history/interactive.ts");
    assert.deepEqual(keysIn("\u001b[Dq\u001b[1~x\u001bOA\u0003"), [
      "\u001b[D",
      "q",
      "\u001b[1~",
      "x",
      "\u001bOA",
      "\u0003",
    ]);
    assert.deepEqual(keysIn(""), []);
  });
});
