import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { type Service, type ServiceMsg, Svcm } from "@nats-io/services";
import { ApiError, CorralClient, type PoolStatus } from "../src/api/client.ts";
import { type AcquireReply, subjects } from "../src/api/protocol.ts";
import { formatDuration } from "../src/cli/pool-format.ts";
import { EventStore } from "../src/store/event-store.ts";
import { corral } from "./helpers/cli.ts";
import { makeEvent } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { tempDir } from "./helpers/teardown.ts";

/*
 * The pool API client and the pool commands of the CLI, against a real nats-server and a
 * stand-in daemon: a NATS micro service on the real subjects that answers with canned replies
 * and records what it was asked. The pool logic itself is tested end to end elsewhere.
 */

const ESC = "\u001b[";

/** Lease ids name their agent (`<agent id>.<uuid>`, events/lease-id.ts): all three are agent-7's. */
const LEASE_1 = "agent-7.01943b1e-7a00-7000-8000-000000000001";
const LEASE_9 = "agent-7.01943b1e-7a00-7000-8000-000000000009";
const LEASE_LATE = "agent-7.01943b1e-7a00-7000-8000-00000000000a";
/** `s` as a regular expression matching it literally. */
const literally = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function lease(pool: string, leaseId = LEASE_1): AcquireReply {
  return {
    leaseId,
    leaseToken: `token-of-${leaseId.slice(-2)}`,
    pool,
    agentId: "agent-7",
    generation: 3,
    ports: [41000, 41001],
    urls: ["http://127.0.0.1:41000", "http://127.0.0.1:41001"],
    env: { CORRAL_PORT_A: "41000", CORRAL_PORT_B: "41001" },
    expiresAt: "2030-01-01T00:00:00.000Z",
    ttlMs: 60_000,
    reach: { runtime: "process", instanceId: "pid-4242", host: "127.0.0.1" },
    correlationId: "corr-7",
  };
}

const STATUS: PoolStatus = {
  pool: "ok",
  state: "open",
  metrics: {
    active: 1,
    idle: 1,
    total: 2,
    totalLeases: 12,
    totalRecycles: 3,
    spawned: 5,
    terminated: 3,
    lastScaleEvent: { at: Date.UTC(2030, 0, 1), direction: "up" },
  },
  agents: [
    { id: "agent-7", phase: "leased", generation: 3, ports: [41000, 41001], leasesServed: 9 },
    { id: "agent-8", phase: "idle", generation: 1, ports: [41002, 41003], leasesServed: 3 },
  ],
  waiters: 0,
};
/** A daemon older or newer than this CLI: fields missing, one unknown. */
const BARE: PoolStatus = { pool: "bare", agents: [{ id: "agent-x" }], mood: "calm" };

interface Recorded {
  subject: string;
  body: Record<string, unknown>;
}

/** The stand-in daemon: what each pool name makes it do is spelled out in `acquire` below. */
class StandIn {
  readonly calls: Recorded[] = [];
  /** Acquires left unanswered until cancelled, by request id. */
  private readonly waiting = new Map<string, { msg: ServiceMsg; pool: string }>();
  private svc?: Service;

  async start(nc: NatsConnection): Promise<void> {
    this.svc = await new Svcm(nc).add({ name: "corral-standin", version: "0.0.1", queue: "corral" });
    const on = (
      name: string,
      subject: string,
      handle: (msg: ServiceMsg, body: Record<string, unknown>) => void,
    ) =>
      this.svc?.addEndpoint(name, {
        subject,
        handler: (err, msg) => {
          if (err) throw err;
          const body = (msg.data.length > 0 ? msg.json() : {}) as Record<string, unknown>;
          this.calls.push({ subject: msg.subject, body });
          handle(msg, body);
        },
      });
    on("acquire", subjects.acquire("*"), (msg, body) => this.acquire(msg, body));
    on("cancel", subjects.cancel("*"), (msg, body) => this.cancel(msg, body));
    on("status", subjects.status("*"), (msg) => {
      const pool = poolOf(msg);
      if (pool === "mute") return; // never answers: the client's own timeout
      if (pool === "ok") return reply(msg, STATUS);
      fail(msg, "unknown_pool", `no pool named "${pool}" (pools: ok, bare)`);
    });
    on("pools", subjects.poolsList, (msg) => reply(msg, { instance: "stand-in", pools: [STATUS, BARE] }));
    on("release", subjects.release("*"), (msg, body) =>
      reply(msg, { leaseId: body.leaseId, agentId: "agent-7", pool: poolOf(msg) }),
    );
    on("renew", subjects.renew("*"), (msg, body) =>
      reply(msg, { leaseId: body.leaseId, expiresAt: "2030-01-01T00:02:00.000Z" }),
    );
    on("close", subjects.close("*"), (msg) => reply(msg, { pool: poolOf(msg), state: "closed" }));
    // No `down` endpoint: that subject has no responders.
  }

  private acquire(msg: ServiceMsg, body: Record<string, unknown>): void {
    const pool = poolOf(msg);
    switch (pool) {
      case "closed":
        fail(msg, "pool_closed", "pool is closed: closed");
        return;
      case "headers":
        // Only the micro error headers, no JSON body.
        msg.respondError(503, "daemon overloaded");
        return;
      case "slow":
        // The daemon's own acquire timeout, answered later than the acquire's timeoutMs.
        setTimeout(
          () => fail(msg, "timeout", `no agent of pool slow became free within ${body.timeoutMs} ms`),
          300,
        );
        return;
      case "wait":
      case "race":
        this.waiting.set(String(body.requestId), { msg, pool });
        return;
      default:
        reply(msg, lease(pool));
    }
  }

  private cancel(msg: ServiceMsg, body: Record<string, unknown>): void {
    const requestId = String(body.requestId);
    const w = this.waiting.get(requestId);
    this.waiting.delete(requestId);
    if (w?.pool === "race") {
      // The grant crossed the cancel: the lease is out, the cancel found nothing to stop.
      reply(w.msg, lease("race", LEASE_LATE));
      reply(msg, { requestId, cancelled: false });
      return;
    }
    if (w) fail(w.msg, "cancelled", `acquire on pool ${w.pool} was cancelled`);
    reply(msg, { requestId, cancelled: w !== undefined });
  }

  of(subject: string): Recorded[] {
    return this.calls.filter((c) => c.subject === subject);
  }

  async stop(): Promise<void> {
    await this.svc?.stop();
  }
}

function poolOf(msg: ServiceMsg): string {
  return msg.subject.split(".")[3] ?? "";
}
function reply(msg: ServiceMsg, value: unknown): void {
  msg.respond(JSON.stringify(value));
}
function fail(msg: ServiceMsg, code: string, message: string): void {
  msg.respondError(400, message, JSON.stringify({ error: { code, message } }));
}

// Conditions, not sleeps: the bound only decides when to give up (a CLI started through tsx on a
// loaded 2-core machine has taken over 8 s to send its first request).
async function waitUntil(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, message: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApiError, `not an ApiError: ${err}`);
    assert.equal(err.code, code);
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

describe("CorralClient and the pool commands, against a stand-in daemon", () => {
  let t: TestNats;
  let client: CorralClient;
  let env: Record<string, string>;
  const standIn = new StandIn();

  before(async () => {
    t = await startTestNats();
    await standIn.start(await t.connect("stand-in"));
    client = new CorralClient(await t.connect("client"));
    // Lease tokens the CLI keeps go to a state dir of this test's own, never the user's.
    env = { NATS_URL: t.url, XDG_STATE_HOME: tempDir("api-client-state-") };
    // Release and renew by lease id alone find the lease's pool from the agent its id names: the
    // agent's first event (AgentRequested) names the pool. agent-odd starts with something else.
    const store = await EventStore.open(await t.connect("seed"));
    const agent7 = { kind: "agent" as const, id: "agent-7" };
    await store.append(
      agent7,
      [makeEvent(agent7, "AgentRequested", { poolId: "ok", runtime: "process", deadline: 1 })],
      0,
    );
    const odd = { kind: "agent" as const, id: "agent-odd" };
    await store.append(odd, [makeEvent(odd, "AgentStarted", { generation: 1 })], 0);
    store.close();
  });

  after(async () => {
    await standIn.stop();
    await t.cleanup();
  });

  it("acquire: the typed reply, and the request as sent", async () => {
    const r = await client.acquire("ok", { timeoutMs: 1_500, holder: "me", ttlMs: 9_000, requestId: "r-1" });
    assert.deepEqual(r, lease("ok"));
    assert.deepEqual(standIn.of(subjects.acquire("ok")).at(-1)?.body, {
      timeoutMs: 1_500,
      holder: "me",
      ttlMs: 9_000,
      requestId: "r-1",
    });
  });

  it("the other endpoints: release and renew by lease id, status, pools, close", async () => {
    const ref = { leaseId: LEASE_1, leaseToken: "t-1" };
    assert.deepEqual(await client.release(ref), { leaseId: LEASE_1, agentId: "agent-7", pool: "ok" });
    assert.deepEqual(standIn.of(subjects.release("ok")).at(-1)?.body, ref);
    await client.renew(ref, 5_000);
    assert.deepEqual(standIn.of(subjects.renew("ok")).at(-1)?.body, { ...ref, ttlMs: 5_000 });
    await client.renew(ref);
    assert.deepEqual(standIn.of(subjects.renew("ok")).at(-1)?.body, ref);
    assert.deepEqual(await client.status("ok"), STATUS);
    assert.deepEqual(await client.pools(), [STATUS, BARE]);
    assert.deepEqual(await client.close("ok", { revokeLeases: true }), { pool: "ok", state: "closed" });
    assert.deepEqual(standIn.of(subjects.close("ok")).at(-1)?.body, { revokeLeases: true });
  });

  it("error replies become ApiError with the daemon's code and message", async () => {
    await rejectsWith(client.acquire("closed"), "pool_closed", "pool is closed: closed");
    await rejectsWith(client.status("nope"), "unknown_pool", 'no pool named "nope" (pools: ok, bare)');
    // A responder that sets only the micro error headers still fails, with what they say.
    await rejectsWith(client.acquire("headers"), "503", "daemon overloaded");
    // A pool name that is not one subject token never leaves the client.
    await rejectsWith(client.status("a.b"), "bad_request", /invalid pool name "a\.b"/);
  });

  it("release and renew by lease id: an id that names no agent, or no requested agent, never leaves the client", async () => {
    const before = standIn.calls.length;
    // Not a lease id (an id of the old lease aggregate, or one without its agent).
    for (const id of ["lease-1", "agent-7", "agent-7.not-a-uuid"]) {
      const ref = { leaseId: id, leaseToken: "t" };
      await rejectsWith(client.release(ref), "bad_request", /^invalid lease id .*<agent id>\.<uuid>/);
      await rejectsWith(client.renew(ref), "bad_request", /^invalid lease id /);
    }
    const nobody = "agent-none.01943b1e-7a00-7000-8000-000000000001";
    await rejectsWith(
      client.release({ leaseId: nobody, leaseToken: "t" }),
      "lease_not_found",
      `no lease ${nobody} (no agent agent-none)`,
    );
    const odd = "agent-odd.01943b1e-7a00-7000-8000-000000000001";
    await rejectsWith(
      client.renew({ leaseId: odd, leaseToken: "t" }),
      "lease_not_found",
      `no lease ${odd} (agent agent-odd starts with AgentStarted)`,
    );
    assert.equal(standIn.calls.length, before, "no request reached the daemon");
    // With its pool given, no lookup: the daemon says whether the lease is held.
    assert.deepEqual(await client.release({ leaseId: nobody, leaseToken: "t" }, "ok"), {
      leaseId: nobody,
      agentId: "agent-7",
      pool: "ok",
    });
  });

  it("no responder: no_daemon, naming the subject; no reply: timeout", async () => {
    await rejectsWith(
      client.down("nobody"),
      "no_daemon",
      `no corral daemon answers on ${subjects.down("nobody")} — is \`corral up\` running?`,
    );
    const impatient = new CorralClient(await t.connect("impatient"), { timeoutMs: 200 });
    await rejectsWith(
      impatient.status("mute"),
      "timeout",
      `no reply on ${subjects.status("mute")} within 200 ms`,
    );
  });

  it("acquire waits past its own timeout, so the daemon's timeout error arrives, not a client one", async () => {
    // The stand-in answers 300 ms after a 200 ms acquire; a client timing out at 200 ms would
    // say "no reply on …" instead of the daemon's message.
    const impatient = new CorralClient(await t.connect("impatient-2"), { timeoutMs: 500 });
    await rejectsWith(
      impatient.acquire("slow", { timeoutMs: 200 }),
      "timeout",
      "no agent of pool slow became free within 200 ms",
    );
  });

  it("CLI acquire --json prints exactly the reply; human output shows how to reach the agent", async () => {
    const [json, human] = await Promise.all([
      corral(["acquire", "ok", "--json", "--timeout", "5s", "--ttl", "90s", "--holder", "ci-42"], env),
      corral(["acquire", "ok"], env),
    ]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(json.stdout, `${JSON.stringify(lease("ok"))}\n`);
    const sent = standIn.of(subjects.acquire("ok")).find((c) => c.body.holder === "ci-42")?.body;
    assert.equal(sent?.timeoutMs, 5_000);
    assert.equal(sent?.ttlMs, 90_000);
    assert.match(String(sent?.requestId), /^[0-9a-f-]{36}$/, "a random request id, for cancel");

    assert.equal(human.code, 0, human.stderr);
    for (const text of [
      new RegExp(`lease\\s+${literally(LEASE_1)}\\s+pool ok`),
      /agent\s+agent-7\s+generation 3/,
      /expires\s+2030-01-01T00:00:00.000Z \(in \S+\)\s+ttl 1m/,
      /ports\s+41000 41001/,
      /urls\s+http:\/\/127\.0\.0\.1:41000 http:\/\/127\.0\.0\.1:41001/,
      /reach\s+process instance pid-4242 on 127\.0\.0\.1/,
      /env\s+CORRAL_PORT_A=41000\n\s+CORRAL_PORT_B=41001/,
      /token\s+token-of-01\s+shown once; kept in \S+\/corral\/leases\//,
      /trace\s+corr-7\s+what it caused: corral trace corr-7/,
      new RegExp(`corral release ${literally(LEASE_1)}`),
    ]) {
      assert.match(human.stdout, text);
    }
    assert.ok(!human.stdout.includes(ESC), "no colour when stdout is not a terminal");
    // By default the holder says who asked.
    assert.match(
      String(
        standIn.of(subjects.acquire("ok")).find((c) => c.body.holder !== "ci-42" && c.body.holder !== "me")
          ?.body.holder,
      ),
      /@/,
    );
  });

  it("CLI: an API error exits 1 with `error (<code>): <message>` on stderr", async () => {
    const [closed, noPool] = await Promise.all([
      corral(["acquire", "closed"], env),
      corral(["status", "nope", "--json"], env),
    ]);
    assert.equal(closed.code, 1);
    assert.match(closed.stderr, /error \(pool_closed\): pool is closed: closed\n/);
    assert.equal(closed.stdout, "");
    assert.equal(noPool.code, 1);
    assert.match(noPool.stderr, /error \(unknown_pool\): no pool named "nope"/);
  });

  it("CLI: bad durations and names exit 2, naming the option, and send nothing", async () => {
    const before = standIn.calls.length;
    const cases: [string[], RegExp][] = [
      [["acquire", "ok", "--timeout", "soon"], /--timeout <duration>.*'soon'.*expected a duration/],
      [["acquire", "ok", "--timeout", "11m"], /--timeout <duration>.*'11m'.*between 0ms and 10m/],
      [["acquire", "ok", "--ttl", "50ms"], /--ttl <duration>.*'50ms'.*between 100ms and 1d/],
      [["renew", LEASE_1, "--ttl", "x"], /--ttl <duration>.*'x'/],
      [["release", "lease-1"], /'lease-1'.*expected a lease id .*<agent id>\.<uuid>/],
      [["renew", "agent-7"], /'agent-7'.*expected a lease id/],
      [["acquire", "a.b"], /'a\.b'.*pool name/],
    ];
    const runs = await Promise.all(cases.map(([args]) => corral(args, env)));
    runs.forEach((r, i) => {
      const [args, message] = cases[i] as [string[], RegExp];
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(" "));
    });
    assert.equal(standIn.calls.length, before, "no request reached the daemon");
  });

  it("CLI status: --json is the daemon's object per line; human output renders what is present", async () => {
    const [one, all, human] = await Promise.all([
      corral(["status", "ok", "--json"], env),
      corral(["status", "--json"], env),
      corral(["status"], env),
    ]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout, `${JSON.stringify(STATUS)}\n`);
    assert.equal(all.stdout, `${JSON.stringify(STATUS)}\n${JSON.stringify(BARE)}\n`);
    assert.equal(human.code, 0, human.stderr);
    const lines = human.stdout.split("\n");
    assert.match(human.stdout, /^pool ok {2}open {2}0 waiting\n/);
    assert.match(human.stdout, /2 agents · 1 active · 1 idle/);
    assert.match(human.stdout, /12 leases · 3 recycles · 5 spawned · 3 terminated · last scale up /);
    assert.ok(lines.some((l) => /^\s+AGENT\s+PHASE\s+GEN\s+PORTS\s+LEASES$/.test(l)));
    assert.ok(
      lines.some((l) => /^\s+agent-7\s+leased\s+3\s+41000,41001\s+9$/.test(l)),
      human.stdout,
    );
    // The bare pool: no state, metrics or numbers, one unknown field — shown, not a crash.
    assert.match(human.stdout, /\npool bare\n\s+mood=calm\n(.*\n)?\s+agent-x\s+-\s+-\s+-\s+-\n/);
  });

  it("CLI status --watch refreshes until Ctrl-C, then exits 0", async () => {
    const before = standIn.of(subjects.status("ok")).length;
    const r = await corral(["status", "ok", "--watch", "--json"], env, async (kill) => {
      // Each refresh asks, prints, then waits: a third request means two frames were printed.
      await waitUntil("two refreshes", () => standIn.of(subjects.status("ok")).length >= before + 3);
      kill("SIGINT");
    });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n").filter(Boolean);
    assert.ok(lines.length >= 2, r.stdout);
    for (const l of lines) assert.deepEqual(JSON.parse(l), STATUS);
  });

  it("CLI release, renew and pool close use the lease and close endpoints", async () => {
    const [rel, ren, close] = await Promise.all([
      corral(["release", LEASE_9, "--json", "--token", "t-9"], env),
      corral(["renew", LEASE_9, "--ttl", "2m", "--token", "t-9"], env),
      corral(["pool", "close", "ok", "--revoke-leases"], env),
    ]);
    assert.equal(rel.code, 0, rel.stderr);
    assert.deepEqual(JSON.parse(rel.stdout), { leaseId: LEASE_9, agentId: "agent-7", pool: "ok" });
    assert.equal(ren.code, 0, ren.stderr);
    assert.match(
      ren.stdout,
      new RegExp(`renewed lease ${literally(LEASE_9)} until 2030-01-01T00:02:00\\.000Z`),
    );
    assert.ok(
      standIn
        .of(subjects.renew("ok"))
        .some((c) => c.body.leaseId === LEASE_9 && c.body.leaseToken === "t-9" && c.body.ttlMs === 120_000),
    );
    assert.ok(standIn.of(subjects.release("ok")).some((c) => c.body.leaseToken === "t-9"));
    assert.equal(close.code, 0, close.stderr);
    assert.equal(close.stdout, "pool ok is closed (leases revoked)\n");
  });

  it("CLI release and renew use the token acquire kept for this user (0600), release removes it; without one: exit 2", async () => {
    const file = join(env.XDG_STATE_HOME as string, "corral", "leases", `${LEASE_1}.json`);
    const acq = await corral(["acquire", "ok", "--json"], env);
    assert.equal(acq.code, 0, acq.stderr);
    assert.equal(JSON.parse(acq.stdout).leaseToken, "token-of-01", "--json shows the token too");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(file, "..")).mode & 0o777, 0o700);
    assert.equal(JSON.parse(readFileSync(file, "utf8")).leaseToken, "token-of-01");
    const ren = await corral(["renew", LEASE_1], env);
    assert.equal(ren.code, 0, ren.stderr);
    assert.equal(standIn.of(subjects.renew("ok")).at(-1)?.body.leaseToken, "token-of-01");
    const rel = await corral(["release", LEASE_1], env);
    assert.equal(rel.code, 0, rel.stderr);
    assert.deepEqual(standIn.of(subjects.release("ok")).at(-1)?.body, {
      leaseId: LEASE_1,
      leaseToken: "token-of-01",
    });
    assert.ok(!existsSync(file), "released: the kept token is gone");
    const before = standIn.calls.length;
    const again = await corral(["release", LEASE_1], env);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, new RegExp(`no token for lease ${literally(LEASE_1)}: pass --token`));
    assert.equal(standIn.calls.length, before, "nothing sent without a token");
  });

  it("CLI: Ctrl-C while acquire waits sends cancel with the request id and exits 130", async () => {
    const r = await corral(["acquire", "wait", "--json"], env, async (kill) => {
      await waitUntil(
        "the acquire to reach the stand-in",
        () => standIn.of(subjects.acquire("wait")).length > 0,
      );
      kill("SIGINT");
    });
    assert.equal(r.code, 130, r.stderr);
    const requestId = standIn.of(subjects.acquire("wait"))[0]?.body.requestId;
    assert.ok(requestId, "the acquire carried a request id");
    assert.deepEqual(
      standIn.of(subjects.cancel("wait")).map((c) => c.body),
      [{ requestId }],
    );
    assert.match(r.stderr, /acquire on pool wait cancelled/);
    assert.equal(r.stdout, "");
  });

  it("CLI: a lease granted as the acquire is cancelled is released, not leaked", async () => {
    const r = await corral(["acquire", "race"], env, async (kill) => {
      await waitUntil(
        "the acquire to reach the stand-in",
        () => standIn.of(subjects.acquire("race")).length > 0,
      );
      kill("SIGINT");
    });
    assert.equal(r.code, 130, r.stderr);
    assert.equal(standIn.of(subjects.cancel("race")).length, 1);
    assert.ok(
      standIn.of(subjects.release("race")).some((c) => c.body.leaseId === LEASE_LATE),
      r.stderr,
    );
    assert.match(
      r.stderr,
      new RegExp(`lease ${literally(LEASE_LATE)} was granted as the acquire was cancelled; released it`),
    );
  });
});

describe("pool commands without a daemon", () => {
  let t: TestNats;
  before(async () => {
    t = await startTestNats();
  });
  after(async () => {
    await t.cleanup();
  });

  it("client and CLI say no daemon answers, and name the subject", async () => {
    const client = new CorralClient(await t.connect());
    await rejectsWith(
      client.acquire("default"),
      "no_daemon",
      `no corral daemon answers on ${subjects.acquire("default")} — is \`corral up\` running?`,
    );
    const r = await corral(["status"], { NATS_URL: t.url });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error \(no_daemon\): no corral daemon answers on corral\.api\.pools\.list/);
  });
});

describe("duration formatting", () => {
  it("prints durations in the form the options accept", () => {
    assert.equal(formatDuration(250), "250ms");
    assert.equal(formatDuration(30_000), "30s");
    assert.equal(formatDuration(90_000), "1m30s");
    assert.equal(formatDuration(86_400_000), "1d");
  });
});
