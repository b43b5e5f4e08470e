import type { JetStreamManager } from "@nats-io/jetstream";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { LiveRegistry } from "../src/cp/session/live-registry.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { silentLogger } from "../src/log.ts";
import { connectNats } from "../src/nats/connect.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { ProjectionRunner } from "../src/projections/runner.ts";
import { worldviewProjection } from "../src/projections/worldview.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { EventKey } from "../src/store/event-mark.ts";
import { EventStore } from "../src/store/event-store.ts";
import { bindIntegrity, integrityOf } from "../src/store/integrity.ts";
import { SNAPSHOT_BUCKET, SnapshotStore } from "../src/store/snapshots.ts";
import { DEFAULT_STREAM } from "../src/store/stream.ts";
import { type BenchNats, collectGarbage, fmt, perSecond, startBenchNats } from "./lib.ts";

/**
 * `npm run bench -- scale-agents` (not in CI): one control plane on the simulated runtime
 * (src/runtime/simulated.ts: nothing starts, so only corral itself is measured), a real
 * nats-server and event marks on. The bench process is the daemon: its heap and CPU are the
 * control plane's. Flags (environment): SCALE_AGENTS (10000), SCALE_IDLE_S (60),
 * SCALE_RESTART_AGENTS (1000), SCALE_CYCLES (1000000), SCALE_CLIENTS (32), SCALE_CRASH_S (55).
 */
const flag = (name: string, dflt: number) => {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`${name}=${JSON.stringify(v)}: expected a positive integer`);
  return n;
};

const AGENTS = flag("SCALE_AGENTS", 10_000);
const IDLE_S = flag("SCALE_IDLE_S", 60);
const RESTART_AGENTS = flag("SCALE_RESTART_AGENTS", 1_000);
const CYCLES = flag("SCALE_CYCLES", 1_000_000);
const CLIENTS = flag("SCALE_CLIENTS", 32);
/** Load before the crash: just under the 60 s between recovery points, the longest tail a crash leaves. */
const CRASH_S = flag("SCALE_CRASH_S", 55);
const LATENCY_SAMPLES = 2_000;
const FIRST_CYCLES = 10_000;

const short = (missed: boolean) => (missed ? ", SHORT" : "");
const ms = (n: number) => `${n.toFixed(2)} ms`;
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function heapAfterGc(): number {
  collectGarbage();
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

function config(agents: number): PoolConfig {
  return {
    runtime: "process",
    min: agents,
    max: agents,
    warm: agents,
    idleTimeoutMs: 0,
    recycle: {},
    maintenanceIntervalMs: 5_000,
    leaseTtlMs: 60_000,
    startTimeoutMs: 600_000,
    template: { command: ["simulated"], env: {}, mounts: [], limits: {}, stopGraceMs: 1_000 },
  };
}

interface Sim {
  cp: ControlPlane;
  pool: string;
  runtime: SimulatedRuntime;
}

async function startSim(nc: NatsConnection, pool: string, agents: number, runtime: SimulatedRuntime) {
  const { cp, report } = await ControlPlane.start({
    nc,
    instance: runtime.instance,
    pools: { [pool]: config(agents) },
    runtimes: { process: runtime },
    dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
  });
  return { sim: { cp, pool, runtime } satisfies Sim, report };
}

function idleCount(s: Sim): number {
  return s.cp.pool(s.pool).status().counts.idle ?? 0;
}

/** Resolves when `n` agents are idle, polling every 20 ms; throws past `forMs`. */
async function allIdle(s: Sim, n: number, forMs: number): Promise<void> {
  const end = performance.now() + forMs;
  while (idleCount(s) < n) {
    if (performance.now() > end)
      throw new Error(`only ${idleCount(s)} of ${n} agents idle after ${forMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function cycle(s: Sim): Promise<number> {
  const sup = s.cp.pool(s.pool);
  const t0 = performance.now();
  const lease = await sup.acquire({ timeoutMs: 30_000 });
  const took = performance.now() - t0;
  await sup.release(lease.leaseId, lease.leaseToken);
  return took;
}

/** Sequential acquire + release; the acquires' p50 and p99. */
async function acquireLatency(s: Sim): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 200; i++) await cycle(s); // warm up
  const took: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES; i++) took.push(await cycle(s));
  took.sort((a, b) => a - b);
  return { p50: pct(took, 50), p99: pct(took, 99) };
}

async function withNats<T>(name: string, fn: (nats: BenchNats) => Promise<T>): Promise<T> {
  const nats = await startBenchNats(name);
  bindIntegrity(nats.nc, { key: EventKey.generate() });
  try {
    return await fn(nats);
  } finally {
    await nats.stop();
  }
}

async function smallPool(): Promise<{ p50: number; p99: number }> {
  return withNats("scale-10", async ({ nc }) => {
    const { sim } = await startSim(nc, "small", 10, new SimulatedRuntime("scale-10", { recordSpecs: false }));
    try {
      await allIdle(sim, 10, 30_000);
      return await acquireLatency(sim);
    } finally {
      await sim.cp.stop();
    }
  });
}

/** 10,000 warm agents: spawn to all ready, heap per agent, idle CPU, acquire latency. */
async function bigPool(small: { p50: number; p99: number }): Promise<void> {
  await withNats("scale-big", async ({ nc }) => {
    const runtime = new SimulatedRuntime("scale-big", { recordSpecs: false });
    const before = heapAfterGc();
    const t0 = performance.now();
    const { sim } = await startSim(nc, "big", AGENTS, runtime);
    try {
      await allIdle(sim, AGENTS, 30 * 60_000);
      const spawnMs = performance.now() - t0;
      await sim.cp.host.idle();
      const perAgent = (heapAfterGc() - before) / AGENTS;
      console.log(
        `${fmt(AGENTS)} agents spawned to all ready in ${(spawnMs / 1000).toFixed(1)} s ` +
          `(${fmt(perSecond(AGENTS, spawnMs))} agents/s); heap ${kb(perAgent)}/agent ` +
          `(target <= 20 KB${short(perAgent > 20 * 1024)})`,
      );
      const cpu0 = process.cpuUsage();
      const w0 = performance.now();
      await new Promise((r) => setTimeout(r, IDLE_S * 1000));
      const cpu = process.cpuUsage(cpu0);
      const share = ((cpu.user + cpu.system) / 1000 / (performance.now() - w0)) * 100;
      console.log(
        `idle CPU with ${fmt(AGENTS)} warm agents over ${IDLE_S} s: ${share.toFixed(2)} % of one core ` +
          `(target < 5 %${short(share >= 5)})`,
      );
      const big = await acquireLatency(sim);
      console.log(
        `acquire p50 ${ms(big.p50)} p99 ${ms(big.p99)} with ${fmt(AGENTS)} agents vs p50 ${ms(small.p50)} ` +
          `p99 ${ms(small.p99)} with 10 (target: p99 within 2x of 10's${short(big.p99 > 2 * small.p99)})`,
      );
    } finally {
      await sim.cp.stop();
    }
  });
}

/** A new control plane for `sim`'s pool on its runtime: times to started and to its first acquire. */
async function startServing(nc: NatsConnection, sim: Sim, acquireTimeoutMs: number) {
  const t0 = performance.now();
  const next = await startSim(nc, sim.pool, RESTART_AGENTS, sim.runtime);
  const booted = performance.now() - t0;
  const sup = next.sim.cp.pool(sim.pool);
  const lease = await sup.acquire({ timeoutMs: acquireTimeoutMs });
  const firstAcquire = performance.now() - t0;
  await sup.release(lease.leaseId, lease.leaseToken);
  return { next, t0, booted, firstAcquire };
}

/** Stops `sim` and starts its control plane again on the same runtime; prints the time to serving. */
async function restart(nc: NatsConnection, sim: Sim, when: string): Promise<Sim> {
  await sim.cp.host.idle();
  await sim.cp.stop();
  // The instances keep "running" in the runtime, as agents outlive a daemon that stops.
  const events = (await (await jetstreamManager(nc)).streams.info(DEFAULT_STREAM.name)).state.messages;
  const { next, t0, booted, firstAcquire } = await startServing(nc, sim, 30_000);
  await allIdle(next.sim, RESTART_AGENTS, 60_000);
  await next.sim.cp.host.idle();
  const all = performance.now() - t0;
  const { recovered, adopted, resumed } = next.report;
  console.log(
    `restart with ${fmt(RESTART_AGENTS)} agents ${when} (${fmt(events)} events in the stream): start ${ms(booted)}, ` +
      `first acquire at ${ms(firstAcquire)} (target <= 2000 ms${short(firstAcquire > 2000)}), all ` +
      `${fmt(recovered.agents)} agents resumed and idle at ${ms(all)} (adopted ${adopted}, resumed ${resumed})`,
  );
  return next.sim;
}

/**
 * A crash under load: a control plane on a connection of its own (marking with the same key, as
 * the daemon restarted on that machine would) writes its recovery point at boot, serves CLIENTS
 * acquiring and releasing for CRASH_S, and then its connection drops without a stop: no point is
 * written, and persist-then-act keeps the dead one from acting. A new one on the same runtime
 * folds the tail after the last point; prints the time to its first acquire.
 */
async function crash(nc: NatsConnection, url: string, sim: Sim): Promise<Sim> {
  await sim.cp.host.idle();
  await sim.cp.stop();
  const own = await connectNats(url, { name: "bench-doomed" });
  bindIntegrity(own, integrityOf(nc) ?? "off");
  const doomed = (await startSim(own, sim.pool, RESTART_AGENTS, sim.runtime)).sim;
  await allIdle(doomed, RESTART_AGENTS, 60_000);
  const jsm = await jetstreamManager(nc);
  let flowing = true;
  let done = 0;
  const clients = Array.from({ length: CLIENTS }, async () => {
    while (flowing) {
      await cycle(doomed);
      done++;
    }
  });
  await new Promise((r) => setTimeout(r, CRASH_S * 1000));
  await own.close(); // the crash: nothing more reaches the stream from it
  flowing = false;
  await Promise.allSettled(clients);
  const events = (await jsm.streams.info(DEFAULT_STREAM.name)).state.last_seq;
  const points = await SnapshotStore.open(nc, SNAPSHOT_BUCKET, 1, undefined, doomed.cp.store.identity);
  const point = await points.getPoint(`agent.${sim.runtime.instance}`);
  const { next, booted, firstAcquire } = await startServing(nc, sim, 60_000);
  await doomed.cp.stop().catch(() => {}); // its timers: it cannot write anything any more
  console.log(
    `restart after a crash with ${fmt(RESTART_AGENTS)} agents, ${CRASH_S} s of load since its last recovery ` +
      `point (${fmt(done)} cycles; ${fmt(events - (point?.seq ?? 0))} events after the point): start ${ms(booted)}, first ` +
      `acquire at ${ms(firstAcquire)} (target <= 2000 ms${short(firstAcquire > 2000)})`,
  );
  return next.sim;
}

async function streamBytes(jsm: JetStreamManager): Promise<number> {
  return (await jsm.streams.info(DEFAULT_STREAM.name)).state.bytes;
}

/** CYCLES acquire + release from CLIENTS concurrent callers; heap and stream growth. */
async function cycles(sim: Sim, jsm: JetStreamManager): Promise<void> {
  let started = 0;
  const run = async (upTo: number) => {
    const t0 = performance.now();
    const from = started;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (started < upTo) {
          started++;
          await cycle(sim);
        }
      }),
    );
    return perSecond(started - from, performance.now() - t0);
  };
  const first = Math.min(FIRST_CYCLES, CYCLES);
  await run(first);
  await sim.cp.host.idle();
  const heapFirst = heapAfterGc();
  const bytesFirst = await streamBytes(jsm);
  const rate = await run(CYCLES);
  await sim.cp.host.idle();
  const heapEnd = heapAfterGc();
  const growth = ((heapEnd - heapFirst) / heapFirst) * 100;
  const perCycle = (await streamBytes(jsm)) - bytesFirst;
  const later = CYCLES - first;
  console.log(
    `${fmt(CYCLES)} acquire+release cycles (${CLIENTS} clients, ${fmt(rate)} cycles/s): heap ` +
      `${(heapEnd / 1048576).toFixed(1)} MB vs ${(heapFirst / 1048576).toFixed(1)} MB after the first ` +
      `${fmt(first)} (${growth >= 0 ? "+" : ""}${growth.toFixed(1)} %, target within 10 %${short(Math.abs(growth) > 10)}); ` +
      `stream growth ${later > 0 ? fmt(perCycle / later) : "n/a"} bytes/cycle`,
  );
}

/**
 * The real dialer's registry at start (src/cp/session/live-registry.ts): folded from every agent
 * event, or from the worldview's checkpoint (which the daemon keeps) and the agent events after it.
 */
async function registryRebuild(nc: NatsConnection): Promise<void> {
  const store = await EventStore.open(nc);
  try {
    const full = performance.now();
    await new LiveRegistry().rebuild(store);
    const fullMs = performance.now() - full;
    const checkpoints = await CheckpointStore.open(nc);
    const runner = new ProjectionRunner(store, worldviewProjection, { checkpoints });
    await runner.catchUp(undefined, { checkpoint: "always" });
    const t0 = performance.now();
    await new LiveRegistry().rebuild(store, checkpoints);
    console.log(
      `registry at start: ${ms(fullMs)} from every agent event vs ${ms(performance.now() - t0)} ` +
        `from the worldview's checkpoint`,
    );
  } finally {
    store.close();
  }
}

export async function benchScaleAgents(): Promise<void> {
  console.log(
    `agents ${fmt(AGENTS)}, idle ${IDLE_S} s, restart ${fmt(RESTART_AGENTS)}, cycles ${fmt(CYCLES)} ` +
      `(SCALE_AGENTS, SCALE_IDLE_S, SCALE_RESTART_AGENTS, SCALE_CYCLES)`,
  );
  const small = await smallPool();
  await bigPool(small);
  await withNats("scale-restart", async ({ nc, server }) => {
    const url = server.url;
    const runtime = new SimulatedRuntime("scale-restart", { recordSpecs: false });
    let sim = (await startSim(nc, "restart", RESTART_AGENTS, runtime)).sim;
    try {
      await allIdle(sim, RESTART_AGENTS, 10 * 60_000);
      sim = await restart(nc, sim, "warm");
      await cycles(sim, await jetstreamManager(nc));
      sim = await restart(nc, sim, `after ${fmt(CYCLES)} cycles`);
      await registryRebuild(nc);
      sim = await crash(nc, url, sim);
    } finally {
      await sim.cp.stop();
    }
  });
}
