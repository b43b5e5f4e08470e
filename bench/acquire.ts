import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { subjects } from "../src/api/protocol.ts";
import {
  createRuntime,
  dockerClient,
  dockerUnavailableReason,
  ensureNodeImage,
  NODE_IMAGE,
  SLEEP,
} from "../src/runtime/index.ts";
import { spawnDaemon, until, writeConfig } from "../test/helpers/daemon.ts";
import { fmt, perSecond, startBenchNats } from "./lib.ts";

const utf8 = new TextDecoder();
const ONE_CLIENT_CYCLES = 2_000;
const CONCURRENT = 100;
const STORM_MS = 5_000;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
const ms = (n: number) => `${n.toFixed(2)} ms`;

async function request(nc: NatsConnection, subject: string, body: unknown): Promise<Record<string, unknown>> {
  const m = await nc.request(subject, JSON.stringify(body), { timeout: 30_000 });
  const r = JSON.parse(utf8.decode(m.data));
  if (r.error) throw new Error(`${subject}: ${JSON.stringify(r.error)}`);
  return r;
}

async function startBare(url: string): Promise<ChildProcess> {
  const p = spawn(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "bare-responder.ts"), url],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  await new Promise<void>((resolve) => p.stdout?.once("data", () => resolve()));
  return p;
}

/** Loops `op` from `clients` concurrent callers for `forMs`; returns completed ops per second. */
async function storm(clients: number, forMs: number, op: () => Promise<void>): Promise<number> {
  let done = 0;
  const end = performance.now() + forMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        await op();
        done++;
      }
    }),
  );
  return perSecond(done, performance.now() - t0);
}

/**
 * Warm acquire + release over NATS against a real daemon (its own process, process runtime,
 * `sleep` agents so nothing but the control plane is measured), compared in the same run with
 * a bare request/reply whose responder appends one JetStream event.
 */
export async function benchAcquire(): Promise<void> {
  const nats = await startBenchNats("acquire");
  const dir = mkdtempSync(join(tmpdir(), "corral-bench-acquire-"));
  const instance = `bench-${process.pid}`;
  const config = writeConfig(dir, {
    instance,
    stateDir: join(dir, "state"),
    pools: {
      bench: {
        runtime: "process",
        min: CONCURRENT,
        max: CONCURRENT,
        warm: CONCURRENT,
        maintenanceInterval: "1s",
        template: { command: ["sleep", "100000"] },
      },
    },
  });
  const daemon = await spawnDaemon(config, nats.server.url);
  let bare: ChildProcess | undefined;
  try {
    const { nc } = nats;
    await until(
      "100 idle agents",
      async () => {
        const s = await request(nc, subjects.status("bench"), {});
        return (s.agents as { phase: string }[]).filter((a) => a.phase === "idle").length === CONCURRENT;
      },
      120_000,
    );
    const cycle = async () => {
      const lease = await request(nc, subjects.acquire("bench"), { timeoutMs: 10_000 });
      await request(nc, subjects.release("bench"), { leaseId: lease.leaseId, leaseToken: lease.leaseToken });
    };
    for (let i = 0; i < 200; i++) await cycle(); // warm up
    // One client, sequential.
    const acq: number[] = [];
    const rel: number[] = [];
    for (let i = 0; i < ONE_CLIENT_CYCLES; i++) {
      const t0 = performance.now();
      const lease = await request(nc, subjects.acquire("bench"), { timeoutMs: 10_000 });
      const t1 = performance.now();
      await request(nc, subjects.release("bench"), { leaseId: lease.leaseId, leaseToken: lease.leaseToken });
      acq.push(t1 - t0);
      rel.push(performance.now() - t1);
    }
    // 100 concurrent clients, each acquire → release in a loop.
    const acquires = await storm(CONCURRENT, STORM_MS, cycle);
    // The bare responder's events go to the same stream, unmarked: a daemon reading them would
    // spend its time on forged records while the baseline runs. Each side runs alone.
    daemon.proc.kill("SIGTERM");
    await daemon.exited;
    bare = await startBare(nats.server.url);
    for (let i = 0; i < 200; i++) await request(nc, "bench.bare", {}); // warm up
    const bareLat: number[] = [];
    for (let i = 0; i < ONE_CLIENT_CYCLES; i++) {
      const t0 = performance.now();
      await request(nc, "bench.bare", {});
      bareLat.push(performance.now() - t0);
    }
    const bareRate = await storm(CONCURRENT, STORM_MS, async () => {
      await request(nc, "bench.bare", {});
    });
    for (const a of [acq, rel, bareLat]) a.sort((x, y) => x - y);
    console.log(
      `acquire, one client (${ONE_CLIENT_CYCLES} cycles): acquire p50 ${ms(pct(acq, 50))} p99 ${ms(pct(acq, 99))} ` +
        `(target p50 <= 1.0 ms, p99 <= 4 ms${pct(acq, 50) > 1.0 || pct(acq, 99) > 4 ? ", SHORT" : ""})  release p50 ${ms(pct(rel, 50))} p99 ${ms(pct(rel, 99))}  ` +
        `[bare request+append p50 ${ms(pct(bareLat, 50))} p99 ${ms(pct(bareLat, 99))}]`,
    );
    // An operation is an acquire or a release, each answered only after its one event is stored:
    // the bare responder does the least such an operation can (a request and one append).
    const ops = acquires * 2;
    const ratio = (ops / bareRate) * 100;
    console.log(
      `acquire ops, ${CONCURRENT} clients: ${fmt(ops)} ops/s = ${ratio.toFixed(0)}% of bare request+append ` +
        `(${fmt(bareRate)} req/s; target >= 80%${ratio < 80 ? ", SHORT" : ""})`,
    );
    await coldDocker(pct(acq, 50));
  } finally {
    bare?.kill();
    daemon.proc.kill("SIGTERM");
    await daemon.exited;
    // The daemon leaves agents running by design: stop them by our instance label.
    const rt = await createRuntime("process", {
      instance,
      stateDir: join(dir, "state", "process", instance),
    });
    for (const i of await rt.list()) await rt.remove(i.id);
    await rt.close();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Cold docker create+start, compared with a warm acquire. (20 agents spawned to ready against 20
 * bare `docker run`s: `npm run bench -- agent-side`, which goes through register and init.)
 */
async function coldDocker(warmAcquireP50: number): Promise<void> {
  const why = await dockerUnavailableReason();
  if (why) {
    console.log(`docker: SKIPPED (no engine: ${why})`);
    return;
  }
  const docker = dockerClient();
  await ensureNodeImage(docker);
  const instance = `bench-docker-${process.pid}`;
  const runtime = await createRuntime("docker", { instance, docker });
  try {
    const cold: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const inst = await runtime.create({
        instance,
        poolId: "cold",
        agentId: `cold-${i}`,
        generation: 1,
        template: { image: NODE_IMAGE, command: SLEEP },
        env: {},
        ports: [],
      });
      await runtime.start(inst.id);
      cold.push(performance.now() - t0);
      await runtime.remove(inst.id);
    }
    cold.sort((a, b) => a - b);
    const coldP50 = pct(cold, 50);
    console.log(
      `docker cold create+start p50 ${ms(coldP50)} vs warm acquire p50 ${ms(warmAcquireP50)}: ` +
        `a warm agent is ${(coldP50 / warmAcquireP50).toFixed(0)}x faster to get`,
    );
  } finally {
    for (const i of await runtime.list()) await runtime.remove(i.id);
    await runtime.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchAcquire();
