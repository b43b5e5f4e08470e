import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { ApiError, CorralClient } from "../src/api/client.ts";
import type { AcquireReply } from "../src/api/protocol.ts";
import type { CorralEvent } from "../src/events/catalogue.ts";
import { parseMetricsAddress } from "../src/metrics/address.ts";
import { createRuntime } from "../src/runtime/index.ts";
import { EventStore } from "../src/store/event-store.ts";
import { corral, root } from "./helpers/cli.ts";
import { type DaemonProcess, spawnDaemon, until, writeConfig } from "./helpers/daemon.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/*
 * `corral up` with metrics (process runtime, real NATS): after known activity, a scrape of
 * /metrics says what the stream says — each counter against the stored events.
 */

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition, the sample lines only. */
function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of a metric's samples whose labels include `where`. */
function total(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

const SLEEP = { command: ["sleep", "100000"] };

describe("corral up --metrics: a scrape matches the stream", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let client: CorralClient;
  let d: DaemonProcess;
  let url: string;
  const tag = `${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const instance = `m${tag}`;
  const pool = `pm${tag}`;

  const scrape = async (): Promise<Sample[]> => {
    const res = await fetch(url);
    assert.equal(res.status, 200, await res.clone().text());
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return parseSamples(await res.text());
  };

  async function storedEvents(): Promise<CorralEvent[]> {
    const store = await EventStore.open(nc);
    const out: CorralEvent[] = [];
    try {
      for await (const batch of store.read({ filter: "corral.evt.>" }))
        for (const r of batch) if (r.event) out.push(r.event);
    } finally {
      store.close();
    }
    return out;
  }

  /** A scrape with the stream as it was both before and after it: nothing moved in between. */
  async function steadyScrape(): Promise<{ samples: Sample[]; events: CorralEvent[] }> {
    return until("a scrape while the stream stands still", async () => {
      await client.status(pool); // the worldview catches up
      const before = await storedEvents();
      const samples = await scrape();
      const afterwards = await storedEvents();
      return before.length === afterwards.length ? { samples, events: afterwards } : undefined;
    });
  }

  before(async () => {
    t = await startTestNats();
    nc = await t.connect("metrics-test");
    client = new CorralClient(nc);
    const dir = tempDir("metrics-");
    // Registered before the daemon: it runs after the daemon is stopped (a daemon would respawn).
    onTeardown(`agents of instance ${instance}`, async () => {
      const rt = await createRuntime("process", { instance, stateDir: join(dir, "process", instance) });
      for (const i of await rt.list()) await rt.remove(i.id);
      await rt.close();
    });
    const file = writeConfig(dir, {
      instance,
      stateDir: dir,
      metrics: "127.0.0.1:0",
      pools: {
        [pool]: {
          runtime: "process",
          min: 0,
          max: 2,
          warm: 2,
          maintenanceInterval: "300ms",
          template: SLEEP,
        },
      },
    });
    d = await spawnDaemon(file, t.url);
    const line = d.logs.find((l) => l.includes('"msg":"metrics"'));
    const found = line && /"url":"(http:\/\/127\.0\.0\.1:\d+\/metrics)"/.exec(line);
    assert.ok(found, `no metrics url logged:\n${d.logs.join("\n")}`);
    url = found[1] as string;
    await until("2 idle agents", async () => {
      const s = await client.status(pool);
      return (s.agents ?? []).filter((a) => a.phase === "idle").length === 2;
    });
  });

  after(async () => {
    await t.cleanup();
  });

  it("gauges show leases held and an acquire waiting; counters and histograms count what the stream holds", async () => {
    for (let i = 0; i < 3; i++) await client.release(await client.acquire(pool, { holder: "metrics-test" }));
    const held: AcquireReply[] = [await client.acquire(pool), await client.acquire(pool)];
    // A third acquire waits (max 2, both leased) and times out.
    const waiting = client.acquire(pool, { timeoutMs: 1_500 });
    const during = await until("the waiting acquire in the gauges", async () => {
      const s = await scrape();
      return total(s, "corral_pool_waiters", { pool }) === 1 ? s : undefined;
    });
    assert.equal(total(during, "corral_pool_leases", { pool }), 2);
    assert.equal(total(during, "corral_pool_agents", { pool, phase: "leased" }), 2);
    assert.equal(total(during, "corral_pool_agents", { pool, phase: "idle" }), 0);
    await assert.rejects(waiting, (err: unknown) => err instanceof ApiError && err.code === "timeout");
    for (const lease of held) await client.release(lease);
    await until("2 idle again", async () => {
      const s = await client.status(pool);
      return (s.agents ?? []).filter((a) => a.phase === "idle").length === 2;
    });

    const { samples, events } = await steadyScrape();
    const count = (type: string) => events.filter((e) => e.type === type).length;
    // Every stored event is counted once, by kind and type, and nothing else is.
    const byType = new Map<string, number>();
    for (const e of events)
      byType.set(`${e.aggregate.kind}/${e.type}`, (byType.get(`${e.aggregate.kind}/${e.type}`) ?? 0) + 1);
    const counted = new Map(
      samples
        .filter((s) => s.name === "corral_events_total")
        .map((s) => [`${s.labels.kind}/${s.labels.type}`, s.value]),
    );
    assert.deepEqual(counted, byType);
    // One append per event, each acknowledged.
    assert.equal(total(samples, "corral_append_seconds_count", { outcome: "ok" }), events.length);
    assert.equal(count("AgentLeased"), 5);
    assert.equal(total(samples, "corral_lease_events_total", { pool, event: "granted" }), 5);
    assert.equal(
      total(samples, "corral_lease_events_total", { pool, event: "released" }),
      count("AgentReleased"),
    );
    assert.equal(total(samples, "corral_acquire_seconds_count", { pool, outcome: "granted" }), 5);
    assert.equal(total(samples, "corral_acquire_seconds_count", { pool, outcome: "timeout" }), 1);
    // Each spawned agent reached idle once; none failed or was recycled.
    assert.equal(
      total(samples, "corral_agent_spawn_ready_seconds_count", { pool }),
      count("PoolAgentSpawned"),
    );
    assert.equal(count("PoolAgentSpawned"), 2);
    assert.equal(total(samples, "corral_agent_failures_total"), count("AgentFailed"));
    assert.equal(total(samples, "corral_recycles_total"), count("PoolAgentRecycled"));
    // This moment: two idle agents, nothing held or waiting, the worldview caught up.
    assert.equal(total(samples, "corral_pool_agents", { pool, phase: "idle" }), 2);
    assert.equal(total(samples, "corral_pool_leases", { pool }), 0);
    assert.equal(total(samples, "corral_pool_waiters", { pool }), 0);
    assert.equal(total(samples, "corral_pool_open", { pool }), 1);
    const store = await EventStore.open(nc);
    try {
      assert.equal(total(samples, "corral_stream_last_seq"), await store.lastSeq());
    } finally {
      store.close();
    }
    assert.equal(total(samples, "corral_projection_lag_events"), 0);
    assert.equal(total(samples, "corral_projection_lag_seconds"), 0);
  });

  it("no label names an agent, a lease or a command", async () => {
    const events = await storedEvents();
    const ids = new Set<string>();
    for (const e of events) {
      if (e.aggregate.kind !== "pool") ids.add(e.aggregate.id);
      const leaseId = (e.data as { leaseId?: unknown }).leaseId;
      if (typeof leaseId === "string") ids.add(leaseId);
    }
    assert.ok(ids.size >= 2, "the agents and leases of the first test");
    for (const s of await scrape())
      for (const v of Object.values(s.labels))
        assert.ok(![...ids].some((id) => v.includes(id)), `${s.name}: ${v}`);
  });

  it("the Grafana dashboard (grafana/corral.json) asks only for metrics a scrape has", async () => {
    const dash = JSON.parse(readFileSync(join(root, "grafana", "corral.json"), "utf8")) as {
      __inputs: { name: string; type: string }[];
      panels: { id: number; targets: { expr: string }[] }[];
    };
    assert.deepEqual(
      dash.__inputs.map((i) => [i.name, i.type]),
      [["DS_PROMETHEUS", "datasource"]],
    );
    assert.equal(new Set(dash.panels.map((p) => p.id)).size, dash.panels.length, "panel ids are unique");
    const families = new Set(
      (await (await fetch(url)).text()).split("\n").flatMap((l) => /^# TYPE (\S+)/.exec(l)?.[1] ?? []),
    );
    const asked = new Set(
      dash.panels.flatMap((p) =>
        p.targets.flatMap((t) =>
          [...t.expr.matchAll(/\b(corral_[a-z_]+?)(?:_bucket|_count|_sum)?\b/g)].map((m) => m[1]),
        ),
      ),
    );
    assert.ok(asked.size >= 10, [...asked].join(" "));
    for (const name of asked) assert.ok(families.has(name as string), `${name} is not in a scrape`);
  });

  it("answers /metrics only", async () => {
    const other = await fetch(url.replace(/\/metrics$/, "/"));
    assert.equal(other.status, 404);
    await other.text();
    const post = await fetch(url, { method: "POST" });
    assert.equal(post.status, 405);
    await post.text();
  });
});

describe("the metrics address", () => {
  it("takes host:port, [v6]:port, :port and a bare port (loopback)", () => {
    assert.deepEqual(parseMetricsAddress("0.0.0.0:9464"), { host: "0.0.0.0", port: 9464 });
    assert.deepEqual(parseMetricsAddress("[::1]:9464"), { host: "::1", port: 9464 });
    assert.deepEqual(parseMetricsAddress(":9464"), { host: "127.0.0.1", port: 9464 });
    assert.deepEqual(parseMetricsAddress("9464"), { host: "127.0.0.1", port: 9464 });
    assert.deepEqual(parseMetricsAddress("metrics.local:0"), { host: "metrics.local", port: 0 });
  });

  it("refuses what is not one, saying what is wrong", () => {
    assert.throws(() => parseMetricsAddress("localhost"), /"localhost": no port/);
    assert.throws(() => parseMetricsAddress("1.2.3.4:99999"), /port "99999" is not 0-65535/);
    assert.throws(() => parseMetricsAddress("::1:9464"), /IPv6 host goes in brackets/);
    assert.throws(() => parseMetricsAddress("[nope]:1"), /nope is not an IPv6 address/);
    assert.throws(() => parseMetricsAddress("a b:1"), /"a b" is not a host name/);
  });

  it("corral up --metrics with a bad address is a usage error before anything starts", async () => {
    const r = await corral(["up", "--metrics", "localhost"], { NATS_URL: "nats://127.0.0.1:1" });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--metrics: metrics address "localhost": no port/);
  });
});
