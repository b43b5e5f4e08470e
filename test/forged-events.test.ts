import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { CorralClient } from "../src/api/client.ts";
import { encodeEvent } from "../src/codec/msgpack.ts";
import { createEvent, type EventType } from "../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../src/events/envelope.ts";
import { uuidv7 } from "../src/events/id.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { createRuntime } from "../src/runtime/index.ts";
import { EventKey, MARK_HEADER } from "../src/store/event-mark.ts";
import { EventStore } from "../src/store/event-store.ts";
import { KEY_FILE_ENV, readEventKey } from "../src/store/key-file.ts";
import { SNAPSHOT_BUCKET } from "../src/store/snapshots.ts";
import { eventSubject } from "../src/store/subjects.ts";
import { corral } from "./helpers/cli.ts";
import { type DaemonProcess, portBlock, spawnDaemon, until, writeConfig } from "./helpers/daemon.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

interface AgentRow {
  id: string;
  phase: string;
  generation: number;
  leaseId: string | null;
}

/**
 * Issue 7's forged-event table, on a server without permissions (so the mark is the only line):
 * each event is well-formed and published by a plain nats.js client straight onto the stream,
 * without a mark or with a bad one. None may change the running daemon, nor the next one after a
 * restart; `events tail` shows each as FORGED and `worldview` counts them.
 */
describe("forged events against a running daemon (process runtime, real NATS)", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let client: CorralClient;
  let dir: string;
  const daemons: DaemonProcess[] = [];

  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    client = new CorralClient(nc);
    dir = tempDir("forged-");
  });
  after(() => {
    for (const d of daemons)
      if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill("SIGKILL");
  });

  /** An instance of its own with one process pool (`spec`), its agents removed at teardown. */
  function instanceWith(prefix: string, spec: Record<string, unknown>) {
    const instance = `${prefix}${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const pool = `${prefix}-${instance}`;
    const stateDir = join(dir, instance);
    const runtimeFor = () =>
      createRuntime("process", { instance, stateDir: join(stateDir, "process", instance) });
    onTeardown(`agents of instance ${instance}`, async () => {
      const rt = await runtimeFor();
      for (const i of await rt.list()) await rt.remove(i.id);
      await rt.close();
    });
    const file = writeConfig(stateDir, {
      instance,
      stateDir,
      pools: { [pool]: { runtime: "process", startTimeout: "30s", ...spec } },
    });
    return { instance, pool, stateDir, file, runtimeFor };
  }

  it("no effect live, none after a restart, FORGED in tail, counted in worldview", async () => {
    const { instance, pool, stateDir, file, runtimeFor } = instanceWith("forge", {
      min: 2,
      max: 4,
      warm: 2,
      maintenanceInterval: "300ms",
      leaseTtl: "60s",
      ports: { range: portBlock(20), perAgent: 1 },
    });
    const keyFile = join(stateDir, "event.key");
    const cliEnv = { NATS_URL: t.url, [KEY_FILE_ENV]: keyFile };
    let d = await spawnDaemon(file, t.url);
    daemons.push(d);
    assert.ok(existsSync(keyFile), "the daemon made its key under its state dir");

    const agents = async () => (await client.status(pool)).agents as unknown as AgentRow[];
    const idle = (n: number) =>
      until(`${n} idle agents`, async () => (await agents()).filter((a) => a.phase === "idle").length >= n);
    await idle(2);
    const victim = await client.acquire(pool, { timeoutMs: 10_000, holder: "victim" });
    await idle(2); // the warm target restored beside the lease
    const idleAgent = (await agents()).find((a) => a.phase === "idle" && a.id !== victim.agentId);
    assert.ok(idleAgent);

    // What a forger can read: the stream, in the clear (a plain reader, no key).
    const plain = await EventStore.open(nc, { integrity: "off" });
    const history: Envelope[] = [];
    for await (const b of plain.read({})) for (const r of b) if (r.event) history.push(r.event);
    const created = history.find((e) => e.type === "PoolCreated" && e.aggregate.id === pool);
    const leased = history.find((e) => e.type === "AgentLeased" && e.aggregate.id === victim.agentId);
    assert.ok(created && leased);
    const config = (created.data as { config: PoolConfig }).config;
    const realMark =
      (
        await plain.jsm.streams.getMessage(plain.stream, { last_by_subj: eventSubject(created.aggregate) })
      )?.header?.get(MARK_HEADER) ?? "";
    assert.match(realMark, /^v4\.[0-9a-f]{8}\./, "the daemon marks what it appends");
    plain.close();

    const hostDir = tempDir("host-");
    const pwned = join(hostDir, "pwned");
    const poolRef: AggregateRef = { kind: "pool", id: pool };
    const event = (ref: AggregateRef, type: EventType, data: unknown) =>
      createEvent(ref, type, data, { id: uuidv7(), at: Date.now() });
    const yearThree = Date.UTC(3000, 0, 1);
    const table: {
      what: string;
      event?: Envelope;
      /** Bytes that are no event at all, and where they go. */
      garbage?: { subject: string; body: Uint8Array };
      mark: (subject: string, body: Uint8Array) => string | undefined;
    }[] = [
      {
        what: "PoolReconfigured: a new command and a host bind mount (no mark)",
        event: event(poolRef, "PoolReconfigured", {
          instance,
          config: {
            ...config,
            template: {
              ...config.template,
              command: ["/bin/sh", "-c", `id > ${pwned}; exec sleep 600`],
              mounts: [{ source: hostDir, target: "/host" }],
            },
          },
        }),
        mark: () => undefined,
      },
      {
        what: "AgentFailed on the leased agent (a mark with the daemon's key id, wrong MAC)",
        event: event({ kind: "agent", id: victim.agentId }, "AgentFailed", {
          phase: "leased",
          code: "forged",
          message: "forged",
        }),
        mark: () => `${realMark.slice(0, -22)}${"A".repeat(22)}`,
      },
      {
        what: "PoolCloseRequested (the daemon's real mark of another event, moved)",
        event: event(poolRef, "PoolCloseRequested", { reason: "forged" }),
        mark: () => realMark,
      },
      {
        what: "AgentLeased until the year 3000 on an idle agent (a mark made with another key)",
        event: {
          ...leased,
          id: uuidv7(),
          at: Date.now(),
          aggregate: { kind: "agent", id: idleAgent.id },
          data: {
            ...(leased.data as object),
            leaseId: `${idleAgent.id}.${uuidv7()}`,
            holder: "mallory",
            expiresAt: yearThree,
          },
        } as Envelope,
        mark: (subject, body) => EventKey.generate().mark(subject, body, 0),
      },
      {
        what: 'PoolReconfigured{instance:"mallory"} (no mark)',
        event: event(poolRef, "PoolReconfigured", { config, instance: "mallory" }),
        mark: () => undefined,
      },
      {
        // The pool's own history: closing the pool at stop reads it, and must not fail on it.
        what: "garbage on the pool's subject (the daemon's real mark, moved)",
        garbage: { subject: eventSubject(poolRef), body: new TextEncoder().encode("garbage") },
        mark: () => realMark,
      },
      {
        what: "garbage on the leased agent's subject (no mark)",
        garbage: {
          subject: eventSubject({ kind: "agent", id: victim.agentId }),
          body: new Uint8Array([0xc1]),
        },
        mark: () => undefined,
      },
    ];

    const forger = jetstream(await t.connect("forger"));
    const forgedSeqs: number[] = [];
    for (const row of table) {
      const subject = row.garbage?.subject ?? eventSubject((row.event as Envelope).aggregate);
      const body = row.garbage?.body ?? encodeEvent(row.event as Envelope);
      const h = headers();
      h.set("Nats-Msg-Id", row.event?.id ?? uuidv7());
      const mark = row.mark(subject, body);
      if (mark) h.set(MARK_HEADER, mark);
      forgedSeqs.push((await forger.publish(subject, body, { headers: h })).seq);
    }

    /** The daemon's picture is what it was: pool open, the lease held, nothing run from the stream. */
    const unchanged = async (when: string) => {
      const status = await client.status(pool);
      assert.equal(status.state, "open", `${when}: the pool is open`);
      const rows = status.agents as unknown as AgentRow[];
      const v = rows.find((a) => a.id === victim.agentId);
      assert.equal(v?.phase, "leased", `${when}: the victim's agent still leased`);
      assert.equal(v?.leaseId, victim.leaseId, `${when}: by the victim's lease`);
      const mallory = (table[3]?.event?.data as { leaseId?: string } | undefined)?.leaseId;
      assert.ok(
        rows.every((a) => a.leaseId !== mallory),
        `${when}: no agent holds the forged lease`,
      );
      const metrics = status.metrics as { active: number } | null;
      assert.equal(
        metrics?.active,
        rows.filter((a) => a.phase === "leased").length,
        `${when}: metrics agree`,
      );
      assert.equal(existsSync(pwned), false, `${when}: the forged command never ran`);
    };

    // Drive the daemon through the pool and both agents the forgeries name: leases on every idle
    // agent, expiring at once, so each is recycled (new generations from the template) and the
    // pool records decisions after the forged events (its appends must go through them).
    await idle(2);
    const short = await Promise.all(
      [0, 1].map(() => client.acquire(pool, { timeoutMs: 10_000, ttlMs: 500 })),
    );
    assert.ok(
      short.some((l) => l.agentId === idleAgent.id),
      "the agent forged as leased until 3000 was leased to a real client",
    );
    await until("the short leases recycled", async () =>
      (await agents()).filter((a) => a.phase === "idle" && a.generation >= 2).length >= 2 ? true : undefined,
    );
    await unchanged("live");
    assert.ok(
      d.logs.some((l) => l.includes("forged")),
      `the daemon logged the forged records it met:\n${d.logs.slice(-20).join("\n")}`,
    );

    // A restart: it must come up (an instance "mallory" would make it refuse) with the same picture.
    d.proc.kill("SIGTERM");
    assert.equal(await d.exited, 0, `a clean stop through the forgeries:\n${d.logs.slice(-20).join("\n")}`);
    d = await spawnDaemon(file, t.url);
    daemons.push(d);
    await idle(2);
    // That start folded only what came after the stop's recovery point (src/cp/actor-host.ts).
    await unchanged("after a restart from a recovery point");
    // And one that must replay every whole history and so meet every forgery: killed, so no point
    // is written at stop, and every snapshot and recovery point gone (their bucket purged).
    d.proc.kill("SIGKILL");
    await d.exited;
    await (await jetstreamManager(nc)).streams.purge(`KV_${SNAPSHOT_BUCKET}`);
    d = await spawnDaemon(file, t.url);
    daemons.push(d);
    await idle(2);
    await unchanged("after a restart that replays everything");
    const recovered = d.logs.filter(
      (l) => l.includes("skipping unreadable event in recovery") && l.includes('"forged"'),
    );
    assert.ok(
      recovered.length >= forgedSeqs.length,
      `recovery logged each forged seq:\n${recovered.join("\n")}`,
    );
    for (const seq of forgedSeqs)
      assert.ok(
        recovered.some((l) => l.includes(`"seq":${seq},`)),
        `seq ${seq} logged`,
      );

    // The CLI with the key: each one FORGED, in JSON and in human lines; worldview counts them.
    const since = String(forgedSeqs[0]);
    const [json, human, world] = await Promise.all([
      corral(["events", "tail", "--since", since, "--json"], cliEnv),
      corral(["events", "tail", "--since", since], cliEnv),
      corral(["worldview", "--json"], cliEnv),
    ]);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { seq: number; error?: { reason: string }; event?: unknown });
    for (const seq of forgedSeqs) {
      const line = lines.find((l) => l.seq === seq);
      assert.equal(line?.error?.reason, "forged", `seq ${seq} in --json`);
      assert.equal(line?.event, undefined);
    }
    assert.ok(
      lines.filter((l) => !forgedSeqs.includes(l.seq)).every((l) => l.event !== undefined),
      "the daemon's own events read as events",
    );
    for (const seq of forgedSeqs) {
      assert.match(human.stdout, new RegExp(`^\\s*${seq} \\S+ \\S+\\s+FORGED: `, "m"), `seq ${seq} in tail`);
    }
    assert.equal(world.code, 0, world.stderr);
    const w = JSON.parse(world.stdout) as { skipped: Record<string, number> };
    assert.equal(w.skipped.forged, forgedSeqs.length, "worldview counts each forged record once");

    // Without the key the CLI says so, still flags the unmarked ones, and claims nothing else.
    const blind = await corral(["events", "tail", "--since", since, "--json"], {
      NATS_URL: t.url,
      [KEY_FILE_ENV]: join(dir, "no-such.key"),
    });
    assert.equal(blind.code, 0, blind.stderr);
    assert.match(blind.stderr, /no event key at .*no-such\.key.*unverified/);
    const seen = blind.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { seq: number; error?: { reason: string }; unverified?: boolean });
    for (const [i, seq] of forgedSeqs.entries()) {
      const line = seen.find((l) => l.seq === seq);
      if (table[i]?.mark("x", new Uint8Array()) === undefined) assert.equal(line?.error?.reason, "forged");
      else if (table[i]?.garbage)
        assert.equal(line?.error?.reason, "not-envelope", `seq ${seq}: marked garbage`);
      else assert.equal(line?.unverified, true, `seq ${seq}: marked, so unverified, never trusted`);
    }
    assert.ok(
      seen.every((l) => l.error !== undefined || l.unverified === true),
      "nothing claimed verified",
    );

    // `down` closes the pool, reading its whole history (garbage and all), and stops every agent.
    const down = await corral(["down", "--config", file], cliEnv);
    assert.equal(down.code, 0, `${down.stderr}\n${d.logs.slice(-20).join("\n")}`);
    assert.equal(await d.exited, 0);
    const rt = await runtimeFor();
    assert.deepEqual(await rt.list(), [], "the stop left no agent running");
    await rt.close();
  });

  it("a pool whose own history cannot be read still has its agents stopped by `down`", async () => {
    const { pool, stateDir, file, runtimeFor } = instanceWith("unread", {
      min: 2,
      max: 2,
      warm: 2,
      ports: { range: portBlock(10), perAgent: 1 },
    });
    const d = await spawnDaemon(file, t.url);
    daemons.push(d);
    await until("2 idle agents", async () =>
      ((await client.status(pool)).agents as unknown as AgentRow[]).filter((a) => a.phase === "idle")
        .length >= 2
        ? true
        : undefined,
    );
    // Bytes no reader can decode, marked with the daemon's own key (a newer writer's event, or
    // a bug): not forged, so the pool's history really is unreadable, and it cannot close through it.
    const key = readEventKey(join(stateDir, "event.key"));
    assert.ok(key);
    const subject = eventSubject({ kind: "pool", id: pool });
    const plain = await EventStore.open(nc, { integrity: "off" });
    const last = (await plain.jsm.streams.getMessage(plain.stream, { last_by_subj: subject }))?.seq ?? 0;
    plain.close();
    const body = new TextEncoder().encode("garbage");
    const h = headers();
    h.set(MARK_HEADER, key.mark(subject, body, last));
    const seq = (await jetstream(nc).publish(subject, body, { headers: h })).seq;

    const down = await corral(["down", "--config", file], { NATS_URL: t.url });
    assert.notEqual(down.code, 0, "down says it could not close the pool");
    // A fault, not a refusal: the reply says where to look, and the daemon's log names the event.
    assert.match(down.stderr, /internal error in down; the daemon's log has the details/);
    assert.ok(
      d.logs.some(
        (l) => l.includes("cannot close the pool through its events") && l.includes(`stream seq ${seq}`),
      ),
      d.logs.slice(-10).join("\n"),
    );
    assert.equal(await d.exited, 0, "the daemon exits as after any down");
    const rt = await runtimeFor();
    assert.deepEqual(await rt.list(), [], "its agents were removed all the same");
    await rt.close();
  });
});
