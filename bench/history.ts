import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import { DaemonWorldview } from "../src/daemon/worldview.ts";
import { uuidv7 } from "../src/events/id.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { silentLogger } from "../src/log.ts";
import { PortAllocator } from "../src/ports/allocator.ts";
import { SnapshotStore } from "../src/projections/snapshots.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { bindIntegrity } from "../src/store/integrity.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import { PipelinedPublisher } from "../src/store/publisher.ts";
import { fmt, startBenchNats } from "./lib.ts";
import { mixedHistory } from "./mixed-history.ts";
import { seed } from "./rebuild.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");
const bin = join(root, "bin", "corral.js");
const EVENTS = 100_000;
const RUNS = 5;
const TARGET_MS = 1_000;
const SKEW_MS = 60_000;

/** Median wall time of `corral <args>` in a new process each time, as a user runs it. */
async function median(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; out: string }> {
  const opts = { cwd: root, env: { ...process.env, NO_COLOR: "1", ...env }, maxBuffer: 64 * 1024 * 1024 };
  const first = await run(process.execPath, [bin, ...args], opts); // warm the file cache
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await run(process.execPath, [bin, ...args], opts);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(RUNS / 2)] as number, out: first.stdout };
}

/** `trace: <ms> ms on <N> events (target < 1000 ms)`, SHORT when over. */
function report(what: string, ms: number, n: number): void {
  const short = ms > TARGET_MS ? ", SHORT" : "";
  console.log(`${what}: ${Math.round(ms)} ms on ${fmt(n)} events (target < ${TARGET_MS} ms${short})`);
}

/** Until the pool's one agent is back, ready, in generation `g` (each lease recycles it). */
async function readyAgain(cp: ControlPlane, pool: string, g: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (
    !cp
      .pool(pool)
      .status()
      .agents.some((a) => a.phase === "idle" && a.generation === g)
  ) {
    if (Date.now() > deadline) throw new Error(`the agent did not come back in generation ${g}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * `corral trace`, `timeline`, `replay`, `worldview --at` and `diff` on a stream of ~100k events, each timed as a user runs it
 * (a new process, median of RUNS). A real control plane (simulated runtime, marked events) grants
 * a lease, then ~100k events of pools that ran for a while (bench/mixed-history.ts) are written,
 * then the lease is released: tracing the grant's correlation (one the caller chose: not a time)
 * reads the whole stream, the worst case. Then a request at the end of the stream, traced by the
 * correlation id its reply returned (a UUIDv7: read from its time on), the usual case.
 */
export async function benchHistory(): Promise<void> {
  const nats = await startBenchNats("history");
  const dir = mkdtempSync(join(tmpdir(), "corral-bench-history-"));
  const { key, file } = loadOrCreateEventKey(dir);
  bindIntegrity(nats.nc, { key });
  const pool = "bench";
  const { cp } = await ControlPlane.start({
    nc: nats.nc,
    instance: "bench-history",
    pools: { [pool]: benchPool },
    runtimes: { process: new SimulatedRuntime("bench-history") },
    ports: new PortAllocator(),
    dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
  });
  try {
    const sup = cp.pool(pool);
    const grant = await sup.acquire({ timeoutMs: 30_000, correlationId: "bench-acquire" });
    // The daemon's own worldview follows the stream as it grows and keeps its snapshots at
    // intervals (src/daemon/worldview.ts), as on a pool that ran for a while: diff and --at use them.
    const daemonView = await DaemonWorldview.open(nats.nc, cp.store, silentLogger);
    const pub = new PipelinedPublisher(nats.nc);
    await seed(pub, [...mixedHistory(EVENTS)], key);
    pub.close();
    await daemonView.now();
    await sup.release(grant.leaseId, grant.leaseToken);
    await readyAgain(cp, pool, 2);
    // A trace reads from its id's time less the clock skew it allows (60 s, src/cli/trace.ts): the
    // last request comes once the seeded events are older than that, as on a pool that ran a while.
    const seeded = Date.now();
    await new Promise((r) => setTimeout(r, Math.max(0, seeded + SKEW_MS + 1_000 - Date.now())));
    const recent = uuidv7();
    const last = await sup.acquire({ timeoutMs: 30_000, correlationId: recent });
    await sup.release(last.leaseId, last.leaseToken);
    await readyAgain(cp, pool, 3);
    const total = await cp.store.lastSeq();
    const env = { NATS_URL: nats.server.url, [KEY_FILE_ENV]: file };
    const whole = await median(["trace", "bench-acquire", "--json"], env);
    const size = (out: string) => (JSON.parse(out) as { events: number }).events;
    report(`trace, a lease across the stream (${size(whole.out)} events)`, whole.ms, total);
    const late = await median(["trace", recent, "--json"], env);
    report(`trace, the last request (${size(late.out)} events)`, late.ms, total);
    const agent = `agent/${grant.agentId}`;
    report(`timeline ${agent}`, (await median(["timeline", agent, "--json"], env)).ms, total);
    report(`replay ${agent}`, (await median(["replay", agent, "--json"], env)).ms, total);
    // `--at` folds from the nearest snapshot before its seq: the middle, and the seq farthest from
    // one (just before the snapshot that ends the widest gap), the worst case on this stream.
    const kept = (await (await SnapshotStore.open(nats.nc, { create: false })).list("worldview")).entries.map(
      (e) => e.seq,
    );
    const folds = (seq: number) => seq - Math.max(0, ...kept.filter((k) => k <= seq));
    const ends = kept.filter((k) => k <= total);
    const worst = ends.reduce((w, k) => (folds(k - 1) > folds(w) ? k - 1 : w), total);
    const gaps = kept.slice(1).map((k, i) => k - (kept[i] ?? 0));
    console.log(
      `history: ${kept.length} worldview snapshots kept by the daemon as the stream was written, ` +
        `${fmt(Math.min(...gaps))}-${fmt(Math.max(...gaps))} events apart`,
    );
    const mid = Math.floor(total / 2);
    for (const seq of [mid, worst]) {
      report(
        `worldview --at ${seq} (folds ${fmt(folds(seq))} events from a snapshot)`,
        (await median(["worldview", "--at", String(seq), "--json"], env)).ms,
        total,
      );
    }
    const window = ["diff", String(mid), String(mid + 1_000), "--json"];
    report(`diff ${mid} → ${mid + 1_000}`, (await median(window, env)).ms, total);
    const farthest = ["diff", String(worst - 1_000), String(worst), "--json"];
    report(`diff ${worst - 1_000} → ${worst}`, (await median(farthest, env)).ms, total);
    report(`diff 1 → ${total}`, (await median(["diff", "1", String(total), "--json"], env)).ms, total);
    await daemonView.close();
  } finally {
    await cp.stop({ stopAgents: true });
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const benchPool: PoolConfig = {
  runtime: "process",
  min: 1,
  max: 1,
  warm: 1,
  idleTimeoutMs: 0,
  recycle: { maxLeases: 1 },
  maintenanceIntervalMs: 60_000,
  leaseTtlMs: 3_600_000,
  startTimeoutMs: 10_000,
  template: { command: ["x"], env: {}, mounts: [], limits: {}, stopGraceMs: 1_000 },
};
