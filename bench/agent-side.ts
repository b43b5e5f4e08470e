import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { NatsConnection } from "@nats-io/nats-core";
import { CorralClient } from "../src/api/client.ts";
import type { AcquireReply } from "../src/api/protocol.ts";
import type { Envelope } from "../src/events/envelope.ts";
import { connectNats } from "../src/nats/connect.ts";
import {
  createRuntime,
  dockerClient,
  dockerUnavailableReason,
  ensureNodeImage,
  NODE_IMAGE,
  SLEEP,
} from "../src/runtime/index.ts";
import type { RuntimeKind } from "../src/runtime/types.ts";
import { EventStore } from "../src/store/event-store.ts";
import { type DaemonProcess, spawnDaemon, until, writeConfig } from "../test/helpers/daemon.ts";
import { type BenchNats, fmt, perSecond, startBenchNats } from "./lib.ts";

const run = promisify(execFile);
const AGENTS = 20;
const ONE_CLIENT_EXECS = 300;
const CONCURRENT = 50;
const STORM_MS = 5_000;

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
const ms = (n: number) => `${n.toFixed(1)} ms`;

/**
 * Issue 9's figures, against a daemon process (`corral up`, as a user runs it) on a nats-server of
 * the bench's own: 20 agents from spawn to InitCompleted (process and docker; a plan of config
 * and post-init, then the agent's command), against 20 bare `docker run`s of the same image; and
 * the round trip of a no-op exec through the API client, one client and 50 concurrent, against a
 * plain nats.js request/reply responder in this process.
 */
export async function benchAgentSide(): Promise<void> {
  await benchProcessAgents();
  await benchDockerAgents();
}

/** Process runtime: 20 agents to InitCompleted, then the exec round trips on them. */
export async function benchProcessAgents(): Promise<void> {
  await withDaemon("process", async (d) => {
    await spawnFigure(d);
    await execFigures(d);
  });
}

/** Docker runtime: 20 bare `docker run`s, then 20 agents to InitCompleted. */
export async function benchDockerAgents(): Promise<void> {
  const why = await dockerUnavailableReason();
  if (why) {
    console.log(`docker: SKIPPED (no engine: ${why})`);
    return;
  }
  await ensureNodeImage(dockerClient());
  const bareMs = await bareDockerRuns();
  await withDaemon("docker", (d) => spawnFigure(d, bareMs));
}

interface BenchDaemon {
  kind: RuntimeKind;
  pool: string;
  nats: BenchNats;
  daemon: DaemonProcess;
}

/** A daemon with one pool of 20 warm agents of `kind`; its agents are removed after `fn`. */
async function withDaemon(kind: RuntimeKind, fn: (d: BenchDaemon) => Promise<void>): Promise<void> {
  const nats = await startBenchNats(`agent-side-${kind}`);
  const dir = mkdtempSync(join(tmpdir(), `corral-bench-agent-side-${kind}-`));
  const instance = `bench-as-${kind}-${process.pid}`;
  const pool = `as-${kind}`;
  const home = join(dir, "home");
  mkdirSync(home);
  const config = writeConfig(dir, {
    instance,
    stateDir: join(dir, "state"),
    pools: {
      [pool]: {
        runtime: kind,
        min: AGENTS,
        max: AGENTS,
        warm: AGENTS,
        maintenanceInterval: "1s",
        startTimeout: "120s",
        template: {
          command: SLEEP,
          // The process runtime hands agentd our HOME otherwise: the plan writes there.
          ...(kind === "docker" ? { image: NODE_IMAGE } : { env: { HOME: home } }),
          init: {
            config: { files: [{ path: "bench/config.txt", content: "bench\n" }] },
            postInit: { argv: ["node", "-e", "0"] },
          },
        },
      },
    },
  });
  const daemon = await spawnDaemon(config, nats.server.url, 120_000);
  try {
    await fn({ kind, pool, nats, daemon });
  } finally {
    daemon.proc.kill("SIGTERM");
    await daemon.exited;
    // The daemon leaves agents running by design: remove them by our instance label.
    const rt = await createRuntime(kind, { instance, stateDir: join(dir, "state", "process", instance) });
    for (const i of await rt.list()) await rt.remove(i.id);
    await rt.close();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Waits for every agent's InitCompleted, then times each from its PoolAgentSpawned (envelope times). */
async function spawnFigure(d: BenchDaemon, bareDockerMs?: number): Promise<void> {
  const events = await until(
    `${AGENTS} agents through InitCompleted`,
    async () => {
      const evs = await readAll(d.nats.nc);
      return evs.filter((e) => e.type === "InitCompleted").length >= AGENTS ? evs : undefined;
    },
    180_000,
  );
  const spawned = new Map<string, number>();
  for (const e of events) {
    if (e.type === "PoolAgentSpawned") spawned.set((e.data as { agentId: string }).agentId, e.at);
  }
  // Per agent, the time from its spawn to the first of each milestone: where the time goes.
  const firstAt = new Map<string, Map<string, number>>();
  for (const e of events) {
    if (!spawned.has(e.aggregate.id)) continue;
    const seen = firstAt.get(e.aggregate.id) ?? new Map<string, number>();
    if (!seen.has(e.type)) seen.set(e.type, e.at);
    firstAt.set(e.aggregate.id, seen);
  }
  const since = (type: string) =>
    [...firstAt].flatMap(([id, seen]) => {
      const at = seen.get(type);
      return at === undefined ? [] : [at - (spawned.get(id) as number)];
    });
  const p50 = (xs: number[]) =>
    ms(
      pct(
        xs.sort((a, b) => a - b),
        50,
      ),
    );
  const each = since("InitCompleted").sort((a, b) => a - b);
  // Dials before agentd answered (the dialer backs off with jitter from 500 ms: src/cp/session/).
  const attempts = events
    .filter((e) => e.type === "SessionConnected" && spawned.has(e.aggregate.id))
    .map((e) => (e.data as { attempts: number }).attempts)
    .sort((a, b) => a - b);
  const first = Math.min(...spawned.values());
  const last = Math.max(...[...firstAt.values()].map((seen) => seen.get("InitCompleted") ?? 0));
  const all = last - first;
  const versus =
    bareDockerMs === undefined
      ? ""
      : ` (${AGENTS} bare docker runs ${ms(bareDockerMs)}; corral/bare ${(all / bareDockerMs).toFixed(2)}x)`;
  console.log(
    `${d.kind}: spawn → InitCompleted, ${AGENTS} agents: all ${ms(all)}, per agent p50 ${ms(pct(each, 50))} ` +
      `p99 ${ms(pct(each, 99))}${versus}`,
  );
  console.log(
    `  ${d.kind}, p50 from spawn: AgentStarted ${p50(since("AgentStarted"))}, AgentRegistered ` +
      `${p50(since("AgentRegistered"))}, InitStarted ${p50(since("InitStarted"))}, InitCompleted ${p50(each)}; ` +
      `dial attempts to connect p50 ${pct(attempts, 50)}, max ${attempts.at(-1)}`,
  );
}

/** Every stored event, in stream order (this nats-server holds this daemon's only). */
async function readAll(nc: NatsConnection): Promise<Envelope[]> {
  const store = await EventStore.open(nc);
  const out: Envelope[] = [];
  try {
    for await (const batch of store.read({ filter: "corral.evt.>" })) {
      for (const r of batch) if (r.event) out.push(r.event);
    }
  } finally {
    store.close();
  }
  return out;
}

/** 20 `docker run -d` at once (the node image running a sleep), until all are running. */
async function bareDockerRuns(): Promise<number> {
  const names = Array.from({ length: AGENTS }, (_, i) => `corral-bench-as-bare-${process.pid}-${i}`);
  const t0 = performance.now();
  try {
    await Promise.all(
      names.map((n) =>
        run("docker", [
          "run",
          "-d",
          "--init",
          "--name",
          n,
          "--label",
          `corral.bench=${process.pid}`,
          NODE_IMAGE,
          ...SLEEP,
        ]),
      ),
    );
    return performance.now() - t0;
  } finally {
    // One at a time: 20 force-removes at once deadlocked docker 20.10's libnetwork here (endpoint
    // deletes of exiting containers against a create; only a dockerd restart cleared it).
    for (const n of names) await run("docker", ["rm", "-f", n]).catch(() => undefined);
  }
}

/** A no-op exec through the API client, one client then 50, against a bare request/reply. */
async function execFigures(d: BenchDaemon): Promise<void> {
  const client = new CorralClient(d.nats.nc);
  const leases: AcquireReply[] = [];
  for (let i = 0; i < AGENTS; i++) leases.push(await client.acquire(d.pool, { timeoutMs: 30_000 }));
  const noop = (lease: AcquireReply) => async () => {
    const r = await client.exec(lease, { pool: d.pool, argv: ["true"] });
    if (r.exitCode !== 0) throw new Error(`no-op exec exited ${r.exitCode}: ${r.stderr}`);
  };
  // A plain responder on a connection of its own: the least a request/reply costs here.
  const responder = await connectNats(d.nats.server.url, { name: "bench-echo" });
  responder.subscribe("bench.echo", {
    callback: (_err, m) => {
      m.respond(m.data);
    },
  });
  await responder.flush();
  const bare = async () => {
    await d.nats.nc.request("bench.echo", "{}", { timeout: 5_000 });
  };
  try {
    const one = noop(leases[0] as AcquireReply);
    for (let i = 0; i < 30; i++) await one(); // warm up
    const execLat = await latencies(ONE_CLIENT_EXECS, one);
    const bareLat = await latencies(ONE_CLIENT_EXECS, bare);
    console.log(
      `exec round trip, 1 client (${ONE_CLIENT_EXECS} × \`true\`): p50 ${ms(pct(execLat, 50))}, p99 ${ms(pct(execLat, 99))} ` +
        `(bare request/reply p50 ${ms(pct(bareLat, 50))}, p99 ${ms(pct(bareLat, 99))})`,
    );
    // 50 clients over the 20 leases (2-3 per agent, under its queue of 16).
    const execRate = await storm(CONCURRENT, (i) => noop(leases[i % AGENTS] as AcquireReply));
    const bareRate = await storm(CONCURRENT, () => bare);
    console.log(
      `exec, ${CONCURRENT} concurrent clients on ${AGENTS} agents: ${fmt(execRate)} execs/s ` +
        `(bare request/reply ${fmt(bareRate)} req/s; exec/bare ${((execRate / bareRate) * 100).toFixed(1)}%)`,
    );
  } finally {
    await responder.close();
    for (const l of leases) await client.release(l, d.pool).catch(() => undefined);
  }
}

async function latencies(n: number, op: () => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op();
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

/** `clients` callers, each looping its op for STORM_MS; completed ops per second. */
async function storm(clients: number, opOf: (i: number) => () => Promise<void>): Promise<number> {
  let done = 0;
  const t0 = performance.now();
  const end = t0 + STORM_MS;
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const op = opOf(i);
      while (performance.now() < end) {
        await op();
        done++;
      }
    }),
  );
  return perSecond(done, performance.now() - t0);
}

if (import.meta.url === `file://${process.argv[1]}`) await benchAgentSide();
