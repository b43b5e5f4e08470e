import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { ApiError, CorralClient } from "../src/api/client.ts";
import { type AcquireReply, subjects } from "../src/api/protocol.ts";
import type { Envelope } from "../src/events/envelope.ts";
import { createRuntime } from "../src/runtime/index.ts";
import { EventStore } from "../src/store/event-store.ts";
import { DEFAULT_STREAM } from "../src/store/stream.ts";
import { corral, root } from "./helpers/cli.ts";
import { type DaemonProcess, spawnDaemon, until, writeConfig } from "./helpers/daemon.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/*
 * The real API service (`corral up`, process runtime, real NATS) as an attacker and a careless
 * client meet it: requests addressed to one instance, reply-less publishes, lease tokens, the TTL
 * cap, bodies that are not what they should be — and every error code the README lists.
 */

const utf8 = new TextEncoder();
const SLEEP = { command: ["sleep", "100000"] };

/** Every code this file saw from the real service or client, checked against the README at the end. */
const seen = new Set<string>();

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<ApiError> {
  let caught: ApiError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApiError, `not an ApiError: ${err}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    caught = err;
    return true;
  });
  seen.add(code);
  return caught as ApiError;
}

/** A raw request (any bytes), its reply decoded: what a client other than ours would see. */
async function raw(nc: NatsConnection, subject: string, body: string | Uint8Array, timeout = 5_000) {
  const m = await nc.request(subject, typeof body === "string" ? utf8.encode(body) : body, { timeout });
  return m.json<{ error?: { code: string; message: string } } & Record<string, unknown>>();
}

describe("the API service of real daemons: scoped, authorized, robust", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let client: CorralClient;
  let dir: string;
  const tag = `${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const a = {
    instance: `a${tag}`,
    pool: `pa${tag}`,
    other: `pa2${tag}`,
    file: "",
    d: undefined as unknown as DaemonProcess,
  };
  const b = { instance: `b${tag}`, pool: `pb${tag}`, file: "", d: undefined as unknown as DaemonProcess };

  function configFor(instance: string, pools: Record<string, unknown>): string {
    // Registered before the daemon: it runs after the daemon is stopped (a daemon would respawn).
    onTeardown(`agents of instance ${instance}`, async () => {
      const rt = await createRuntime("process", {
        instance,
        stateDir: join(dir, instance, "process", instance),
      });
      for (const i of await rt.list()) await rt.remove(i.id);
      await rt.close();
    });
    return writeConfig(join(dir, instance), { instance, stateDir: join(dir, instance), pools });
  }

  const idle = (pool: string, n: number) =>
    until(`${n} idle in ${pool}`, async () => {
      const s = await client.status(pool);
      return (s.agents ?? []).filter((x) => x.phase === "idle").length >= n;
    });

  async function leasedEvents(pool: string): Promise<Envelope[]> {
    const store = await EventStore.open(nc);
    const out: Envelope[] = [];
    try {
      for await (const batch of store.read({ filter: "corral.evt.agent.>" }))
        for (const r of batch)
          if (r.event?.type === "AgentLeased" && (r.event.data as { poolId: string }).poolId === pool)
            out.push(r.event);
    } finally {
      store.close();
    }
    return out;
  }

  before(async () => {
    t = await startTestNats();
    nc = await t.connect("api-service-test");
    client = new CorralClient(nc);
    dir = tempDir("api-service-");
    const pool = { runtime: "process", min: 0, maintenanceInterval: "300ms", template: SLEEP };
    a.file = configFor(a.instance, {
      [a.pool]: { ...pool, max: 2, warm: 2, leaseTtl: "5s", maxLeaseTtl: "10s" },
      [a.other]: { ...pool, max: 1, warm: 1 },
    });
    b.file = configFor(b.instance, { [b.pool]: { ...pool, max: 1, warm: 1 } });
    [a.d, b.d] = await Promise.all([spawnDaemon(a.file, t.url), spawnDaemon(b.file, t.url)]);
    await Promise.all([idle(a.pool, 2), idle(a.other, 1), idle(b.pool, 1)]);
  });

  after(async () => {
    await t.cleanup();
  });

  it("status without a pool gathers every daemon's pools; an unknown pool is unknown_pool, not 'is corral up running?'", async () => {
    const daemons = await client.daemons();
    assert.deepEqual(
      daemons.map((d) => [d.instance, d.pools.map((p) => (p as { pool: string }).pool).sort()]),
      [
        [a.instance, [a.pool, a.other].sort()],
        [b.instance, [b.pool]],
      ],
    );
    const cli = await corral(["status", "--json"], { NATS_URL: t.url });
    assert.equal(cli.code, 0, cli.stderr);
    const pools = cli.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).pool)
      .sort();
    assert.deepEqual(pools, [a.pool, a.other, b.pool].sort());

    await rejectsWith(
      client.acquire("nope", { timeoutMs: 100 }),
      "unknown_pool",
      /^no daemon serves pool nope \(pools: /,
    );
    const r = await corral(["acquire", "nope"], { NATS_URL: t.url });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error \(unknown_pool\): no daemon serves pool nope/);
    assert.doesNotMatch(r.stderr, /corral up/);
  });

  it("an acquire (or down) without a reply subject is dropped: no lease to nobody, nothing stops", async () => {
    const before = (await leasedEvents(a.pool)).length;
    for (let i = 0; i < 4; i++)
      nc.publish(subjects.acquire(a.pool), utf8.encode(JSON.stringify({ ttlMs: 9_000 })));
    nc.publish(subjects.down(a.instance), utf8.encode(JSON.stringify({ instance: a.instance })));
    nc.publish(subjects.down(a.instance), utf8.encode("garbage"));
    nc.publish(subjects.close(a.other), utf8.encode(JSON.stringify({ revokeLeases: true })));
    await nc.flush();
    await until("the daemon to log the dropped requests", () =>
      a.d.logs.filter((l) => l.includes("request without a reply subject dropped")).length >= 7
        ? true
        : undefined,
    );
    assert.equal((await leasedEvents(a.pool)).length, before, "no AgentLeased stored");
    const s = await client.status(a.pool);
    assert.equal((s.agents ?? []).filter((x) => x.phase === "leased").length, 0);
    assert.equal((await client.status(a.other)).state, "open", "close without a reply changed nothing");
    assert.equal(a.d.proc.exitCode, null, "down without a reply stopped nothing");
  });

  it("lease tokens: the reply carries one, the stream only its hash; release and renew refuse a wrong or missing one", async () => {
    // The pool's longest TTL, and the CLI last: a loaded machine must not expire it mid-test.
    const lease = await client.acquire(a.pool, { timeoutMs: 5_000, holder: "test", ttlMs: 10_000 });
    assert.match(lease.leaseToken, /^[A-Za-z0-9_-]{43}$/, "32 random bytes, base64url");
    const stored = (await leasedEvents(a.pool)).find(
      (e) => (e.data as { leaseId: string }).leaseId === lease.leaseId,
    );
    const hash = createHash("sha256").update(lease.leaseToken).digest("base64url");
    assert.ok(stored, "the grant is on the stream");
    assert.equal((stored.data as { tokenHash?: string }).tokenHash, hash);
    assert.ok(!JSON.stringify(stored).includes(lease.leaseToken), "the token itself is not on the stream");

    const wrong = { leaseId: lease.leaseId, leaseToken: `${lease.leaseToken.slice(0, -1)}x` };
    await rejectsWith(client.release(wrong), "lease_token_invalid", /wrong lease token for lease /);
    await rejectsWith(client.renew(wrong, 9_000), "lease_token_invalid");
    await rejectsWith(
      client.release({ leaseId: lease.leaseId, leaseToken: "" }),
      "bad_request",
      /leaseToken/,
    );
    const missing = await raw(nc, subjects.release(a.pool), JSON.stringify({ leaseId: lease.leaseId }));
    assert.equal(missing.error?.code, "bad_request");
    assert.match(String(missing.error?.message), /leaseToken/);
    const rows = (await client.status(a.pool)).agents ?? [];
    assert.equal(
      rows.find((x) => x.id === lease.agentId)?.leaseId,
      lease.leaseId,
      "still held by its holder",
    );

    await rejectsWith(client.renew(lease, 1_000), "lease_not_extended", /a renewal must extend the lease/);
    await rejectsWith(client.release(lease, a.other), "wrong_pool", new RegExp(`belongs to pool ${a.pool}`));
    const renewed = await client.renew(lease, 10_000);
    assert.ok(Date.parse(renewed.expiresAt) > Date.parse(lease.expiresAt));

    // The CLI: a wrong --token is refused the same way.
    const cli = await corral(["release", lease.leaseId, "--token", "not-it"], {
      NATS_URL: t.url,
      XDG_STATE_HOME: tempDir("api-service-state-"),
    });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /error \(lease_token_invalid\)/);
    await client.release(lease);
    await rejectsWith(client.release(lease), "lease_not_active", /is released/);
    await rejectsWith(
      client.release(
        { leaseId: `nobody${tag}.01943b1e-7a00-7000-8000-000000000001`, leaseToken: "t" },
        a.pool,
      ),
      "lease_not_found",
    );
  });

  it("a pool caps the TTL a client may ask for (maxLeaseTtl), on acquire and on renew", async () => {
    const before = (await leasedEvents(a.pool)).length;
    for (const ttlMs of [86_400_000, 10_001]) {
      await rejectsWith(
        client.acquire(a.pool, { timeoutMs: 1_000, ttlMs }),
        "bad_request",
        new RegExp(`^ttlMs: ${ttlMs} ms is longer than the pool's maxLeaseTtl of 10000 ms`),
      );
    }
    assert.equal((await leasedEvents(a.pool)).length, before, "nothing granted");
    const lease = await client.acquire(a.pool, { timeoutMs: 5_000, ttlMs: 10_000 });
    assert.equal(lease.ttlMs, 10_000);
    await rejectsWith(client.renew(lease, 20_000), "bad_request", /maxLeaseTtl/);
    await client.release(lease);
  });

  it("malformed, huge and deeply nested bodies get bad_request, quickly, and change nothing", async () => {
    const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
    const bodies: [string, string | Uint8Array][] = [
      ["not JSON", "{not json"],
      ["a JSON array", "[]"],
      ["null", "null"],
      ["a string", '"x"'],
      ["binary", new Uint8Array([0xff, 0x00, 0xfe, 0x81])],
      ["200 KiB", JSON.stringify({ holder: "x".repeat(200 * 1024) })],
      ["a 60 KB unknown key", JSON.stringify({ ["k".repeat(60_000)]: 1 })],
      // Each within the 64 KiB the service parses at all: the parser itself meets the depth.
      ["30,000 levels of arrays", deep(30_000)],
      ["deep nesting in a field", `{"holder":${deep(15_000)},"leaseId":${deep(15_000)}}`],
      ["deep objects", `${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}`],
      [
        "wrong types",
        JSON.stringify({ timeoutMs: "soon", leaseId: 7, leaseToken: [], revokeLeases: "yes", instance: {} }),
      ],
    ];
    const targets = [
      subjects.acquire(a.pool),
      subjects.release(a.pool),
      subjects.renew(a.pool),
      subjects.cancel(a.pool),
      subjects.close(a.other),
      subjects.down(a.instance),
    ];
    for (const subject of targets) {
      for (const [what, body] of bodies) {
        const started = Date.now();
        const r = await raw(nc, subject, body);
        assert.equal(r.error?.code, "bad_request", `${subject}, ${what}: ${JSON.stringify(r).slice(0, 200)}`);
        assert.ok(String(r.error?.message).length <= 501, `${subject}, ${what}: the message is bounded`);
        assert.ok(Date.now() - started < 2_000, `${subject}, ${what}: answered at once`);
      }
    }
    // A well-formed down for another instance, sent to this one's subject, is refused too.
    const misaddressed = await raw(nc, subjects.down(a.instance), JSON.stringify({ instance: b.instance }));
    assert.equal(misaddressed.error?.code, "bad_request");
    seen.add("bad_request");
    assert.equal(a.d.proc.exitCode, null, "the daemon is still up");
    assert.equal((await client.status(a.other)).state, "open");
    const l = await client.acquire(a.pool, { timeoutMs: 5_000 });
    await client.release(l);
  });

  it("timeout and cancelled from a waiting acquire, pool_closed from a closed pool", async () => {
    const held = await client.acquire(a.other, { timeoutMs: 5_000 });
    await rejectsWith(client.acquire(a.other, { timeoutMs: 200 }), "timeout", new RegExp(`pool ${a.other}`));
    const waiting = client.acquire(a.other, { timeoutMs: 20_000, requestId: `req-${tag}` });
    await until(
      "the waiting acquire cancelled",
      async () => (await client.cancel(a.other, `req-${tag}`)).cancelled,
    );
    await rejectsWith(waiting, "cancelled");
    // Two closes crossing each other both wait for the pool to close; neither is refused.
    await Promise.all([
      client.close(a.other, { revokeLeases: true }),
      client.close(a.other, { revokeLeases: true }),
    ]);
    await rejectsWith(
      client.acquire(a.other, { timeoutMs: 1_000 }),
      "pool_closed",
      new RegExp(`pool is closed: ${a.other}`),
    );
    await rejectsWith(client.release(held, a.other), "lease_not_active", /is revoked/);
  });

  it("a second daemon of a running instance refuses to start, naming the one that runs it", async () => {
    const info = await client.info(a.instance);
    assert.equal(info.pid, a.d.proc.pid);
    assert.deepEqual([...info.pools].sort(), [a.pool, a.other].sort());
    // `corral up` again with a's config (npm start in a second terminal does the same): refused
    // before it touches anything, not a second supervisor of a's agents.
    const again = await corral(["up", "--config", a.file], { NATS_URL: t.url }, async (kill) => {
      await new Promise((r) => setTimeout(r, 20_000).unref());
      kill("SIGKILL"); // it started after all: the assertions below say so
    });
    assert.equal(again.code, 1, again.stderr);
    assert.match(
      again.stderr,
      new RegExp(`instance ${a.instance} already runs on this NATS: pid ${a.d.proc.pid} on \\S+, up since `),
    );
    assert.ok(again.ms < 10_000, `refused at once (${again.ms} ms)`);
    assert.equal(a.d.proc.exitCode, null, "a still runs");
    await rejectsWith(client.info(`nobody${tag}`), "no_daemon");
    const l = await client.acquire(a.pool, { timeoutMs: 5_000 });
    await client.release(l);
  });

  it("two instances on one NATS: `corral down --config b.yaml` stops b, never a", async () => {
    const r = await corral(["down", "--config", b.file], { NATS_URL: t.url });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /corral is down/);
    assert.equal(await b.d.exited, 0);
    assert.equal(a.d.proc.exitCode, null, "a is still running");
    assert.deepEqual(
      (await client.daemons()).map((d) => d.instance),
      [a.instance],
    );
    await rejectsWith(
      client.acquire(b.pool, { timeoutMs: 100 }),
      "unknown_pool",
      new RegExp(`no daemon serves pool ${b.pool}`),
    );
    const l = await client.acquire(a.pool, { timeoutMs: 5_000 });
    await client.release(l);
  });

  it("internal when the stream is gone, shutting_down to a waiting acquire when the daemon stops, then no_daemon", async () => {
    const held: AcquireReply[] = await Promise.all([
      client.acquire(a.pool, { timeoutMs: 5_000 }),
      client.acquire(a.pool, { timeoutMs: 5_000 }),
    ]);
    assert.equal(held.length, 2);
    const waiting = client.acquire(a.pool, { timeoutMs: 30_000 });
    await until("the acquire to wait", async () => ((await client.status(a.pool)).waiters as number) >= 1);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(DEFAULT_STREAM.name);
    // A release must store its event: with no stream, that is a failure nobody planned for.
    await rejectsWith(
      client.release(held[0] as AcquireReply, a.pool),
      "internal",
      /^internal error in release-\S+; the daemon's log has the details$/,
    );
    a.d.proc.kill("SIGTERM");
    await rejectsWith(waiting, "shutting_down");
    const exited = await Promise.race([
      a.d.exited,
      new Promise((r) => setTimeout(() => r("still running"), 20_000)),
    ]);
    if (exited === "still running") a.d.proc.kill("SIGKILL");
    await rejectsWith(client.status(a.pool), "no_daemon", /is `corral up` running\?/);
  });

  it("every error code the README lists was met above", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const para = readme.slice(readme.indexOf("Error codes:"), readme.indexOf("`reach` is"));
    const listed = new Set([...para.matchAll(/`([a-z_]+)`/g)].map((m) => m[1] as string));
    assert.ok(listed.size >= 12, `the README's list: ${[...listed]}`);
    assert.deepEqual(
      [...listed].filter((c) => !seen.has(c)),
      [],
      "listed but never asserted",
    );
  });
});
