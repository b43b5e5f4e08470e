import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { DaemonWorldview } from "../src/daemon/worldview.ts";
import { silentLogger } from "../src/log.ts";
import { connectNats } from "../src/nats/connect.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { ProjectionRunner } from "../src/projections/runner.ts";
import { DEFAULT_SNAPSHOT_POLICY } from "../src/projections/snapshot-schedule.ts";
import { SnapshotStore } from "../src/projections/snapshots.ts";
import { worldviewProjection } from "../src/projections/worldview.ts";
import { EventStore } from "../src/store/event-store.ts";
import { bindIntegrity } from "../src/store/integrity.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey, readEventKey } from "../src/store/key-file.ts";
import { PipelinedPublisher } from "../src/store/publisher.ts";
import { fmt, heapPeak, mb, perSecond, startBenchNats, timed } from "./lib.ts";
import { mixedHistory, publishHistory } from "./mixed-history.ts";

/**
 * `npm run bench -- scale-events` (issue 10 item 3; not part of CI): SCALE_EVENTS (default
 * 1,000,000) mixed events — pools, agents with leases, commands — written with marks while the
 * daemon's own worldview (src/daemon/worldview.ts) follows them and keeps its snapshots; then a
 * cold rebuild in a process of its own (its heap alone), and the real CLI, each command a new
 * process, against it: `worldview`, `worldview --at` the middle, `diff` over 1k and 100k events.
 */

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");
const COUNT = Number(process.env.SCALE_EVENTS ?? 1_000_000);
const LANES = Number(process.env.SCALE_LANES ?? 1_000);
const CLI_RUNS = 3;
const HEAP_TARGET_MB = 256;
const CLI_TARGET_MS = 1_000;

export async function benchScaleEvents(): Promise<void> {
  if (!Number.isSafeInteger(COUNT) || COUNT < 10_000) throw new Error("SCALE_EVENTS must be ≥ 10000");
  const nats = await startBenchNats("scale-events");
  const dir = mkdtempSync(join(tmpdir(), "corral-bench-scale-events-"));
  try {
    const { key, file: keyFile } = loadOrCreateEventKey(dir);
    bindIntegrity(nats.nc, { key }); // as the daemon does: its stores mark and check
    const store = await EventStore.open(nats.nc);
    const daemonView = await DaemonWorldview.open(nats.nc, store, silentLogger);
    const pub = new PipelinedPublisher(nats.nc);
    const seeded = await timed(() =>
      publishHistory(pub, mixedHistory(COUNT, { lanes: LANES }), key, (n) =>
        process.stderr.write(`  seeded ${fmt(n)}\r`),
      ),
    );
    pub.close();
    await daemonView.now();
    await daemonView.close();
    const last = await store.lastSeq();
    if (last !== COUNT) throw new Error(`seeded ${last} of ${COUNT} events`);
    console.log(
      `scale-events: ${fmt(COUNT)} events (${LANES} agents live at once, 8 pools, commands in leases) ` +
        `written with marks in ${(seeded.ms / 1000).toFixed(1)} s (${fmt(perSecond(COUNT, seeded.ms))} ev/s, ` +
        "generating them included) while the daemon's worldview followed",
    );
    const kept = await reportSnapshots(nats.nc);
    await coldRebuild(nats.server.url, keyFile);
    await cli(await buildCli(), nats.server.url, keyFile, last, kept);
    store.close();
  } finally {
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints what the daemon kept; returns their sequences. */
async function reportSnapshots(nc: EventStore["nc"]): Promise<number[]> {
  const { entries } = await (await SnapshotStore.open(nc, { create: false })).list("worldview");
  const gaps = entries.slice(1).map((e, i) => e.seq - (entries[i]?.seq ?? 0));
  const bytes = entries.at(-1)?.bytes ?? 0;
  const p = DEFAULT_SNAPSHOT_POLICY;
  console.log(
    `scale-events: ${entries.length} worldview snapshots kept by the daemon (every ≥ ${fmt(p.everyEvents)} events, ` +
      `≥ ${p.minIntervalMs} ms apart, ≤ ${p.share * 100} % of its time), gaps ${fmt(Math.min(...gaps))}-${fmt(Math.max(...gaps))} events, ` +
      `newest ${fmt(bytes)} bytes in ${entries.at(-1)?.chunks ?? 0} chunk(s)`,
  );
  return entries.map((e) => e.seq);
}

/** The rebuild from zero in a child process, so its peak heap is the rebuild's alone. */
async function coldRebuild(url: string, keyFile: string): Promise<void> {
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "scale-events.ts")],
    {
      cwd: root,
      env: { ...process.env, SCALE_EVENTS_CHILD: "rebuild", NATS_URL: url, [KEY_FILE_ENV]: keyFile },
      maxBuffer: 1 << 20,
    },
  );
  const r = JSON.parse(stdout.trim().split("\n").at(-1) as string) as {
    ms: number;
    records: number;
    peak: number;
    maxRss: number;
    ignored: number;
  };
  if (r.ignored > 0)
    throw new Error(`the worldview ignored ${r.ignored} events: the history does not fit the machines`);
  const peakMb = r.peak / 1024 / 1024;
  console.log(
    `scale-events: cold rebuild ${(r.ms / 1000).toFixed(1)} s (${fmt(perSecond(r.records, r.ms))} ev/s, every mark ` +
      `checked, snapshots taken as the daemon takes them); peak heap ${mb(r.peak)} MB (target ≤ ${HEAP_TARGET_MB} MB` +
      `${peakMb > HEAP_TARGET_MB ? ", SHORT" : ""}; heapUsed sampled every 5 ms in the rebuilding process), ` +
      `max RSS ${mb(r.maxRss)} MB`,
  );
}

/** In the child: the daemon's runner (checkpoints, snapshots) rebuilding from zero, measured. */
async function rebuildChild(): Promise<void> {
  const key = readEventKey(process.env[KEY_FILE_ENV] as string);
  if (!key) throw new Error("no event key");
  const nc = await connectNats(process.env.NATS_URL as string, { name: "bench-scale-rebuild" });
  bindIntegrity(nc, { key });
  const store = await EventStore.open(nc);
  const bucket = "bench_cold_rebuild";
  const runner = new ProjectionRunner(store, worldviewProjection, {
    checkpoints: await CheckpointStore.open(nc, { bucket }),
    snapshots: await SnapshotStore.open(nc, { bucket }),
  });
  const heap = heapPeak();
  const { ms, value } = await timed(async () => {
    const r = await runner.rebuild();
    await runner.settled();
    return r;
  });
  const peak = heap.stop();
  const w = runner.view();
  const pools = Object.values(w.pools).reduce((n, p) => n + p.ignored, 0);
  const ignored = w.agents.ignored + w.commands.ignored + pools;
  const maxRss = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify({ ms, records: value.records, peak, maxRss, ignored })}\n`);
  store.close();
  await nc.close();
}

/**
 * The CLI as `npm run build` makes it (scripts/build.js), but built into a directory of its own:
 * a dist/ older than the sources (or a type error elsewhere in a working tree) would otherwise
 * send bin/corral.js through tsx, whose start-up alone is most of a second here.
 */
async function buildCli(): Promise<string> {
  const out = join(root, "node_modules", ".cache", "corral-bench-scale-events");
  rmSync(out, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const args = [
    "-p",
    join(root, "tsconfig.build.json"),
    "--outDir",
    join(out, "dist"),
    "--noEmitOnError",
    "false",
  ];
  // Type errors are tsc's to report elsewhere; it emits the JavaScript all the same.
  await run(process.execPath, [tsc, ...args], { cwd: root }).catch(() => {});
  for (const dir of ["src", "machines"]) {
    cpSync(join(root, dir), join(out, "dist", dir), { recursive: true, filter: (p) => !p.endsWith(".ts") });
  }
  cpSync(join(root, "bin"), join(out, "bin"), { recursive: true });
  return join(out, "bin", "corral.js");
}

/** Median wall time of `corral <args>`, a new process each run, as a user runs it. */
async function corralRun(
  bin: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ ms: number; out: string; note: string }> {
  const times: number[] = [];
  let out = "";
  let note = "";
  for (let i = 0; i < CLI_RUNS; i++) {
    const t0 = performance.now();
    const r = await run(process.execPath, [bin, ...args], { cwd: root, env, maxBuffer: 64 << 20 });
    times.push(performance.now() - t0);
    out = r.stdout;
    note = r.stderr.trim();
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(CLI_RUNS / 2)] as number, out, note };
}

async function cli(bin: string, url: string, keyFile: string, last: number, kept: number[]): Promise<void> {
  const env = { ...process.env, NATS_URL: url, [KEY_FILE_ENV]: keyFile, NO_COLOR: "1" };
  const corral = (args: string[]) => corralRun(bin, args, env);
  const mid = Math.floor(last / 2);
  /** How far a fold to `seq` goes from the nearest snapshot before it. */
  const from = (seq: number) => {
    const s = Math.max(0, ...kept.filter((k) => k <= seq));
    return `folds ${fmt(seq - s)} events from the snapshot at ${fmt(s)}`;
  };
  const line = (what: string, r: { ms: number; note: string }, how = "") => {
    const short = r.ms > CLI_TARGET_MS ? ", SHORT" : "";
    console.log(
      `scale-events: corral ${what}: median ${fmt(r.ms)} ms of ${CLI_RUNS} (target ≤ ${CLI_TARGET_MS} ms${short})` +
        `${how ? `; ${how}` : ""}; load average ${loadavg()[0]?.toFixed(1)} on ${cpus().length} cores`,
    );
    if (r.note) console.log(`  ${r.note}`);
  };
  line("--version (the start-up floor)", await corral(["--version"]));
  const now = await corral(["worldview", "--json"]);
  if ((JSON.parse(now.out) as { seq: number }).seq !== last) throw new Error("worldview is not at the end");
  line("worldview (warm checkpoint)", now);
  const at = await corral(["worldview", "--at", String(mid), "--json"]);
  if ((JSON.parse(at.out) as { seq: number }).seq !== mid)
    throw new Error(`worldview --at ${mid} is not there`);
  line(`worldview --at ${mid} (the middle)`, at, from(mid));
  const near = await corral(["diff", String(mid), String(mid + 1_000), "--json"]);
  line(`diff ${mid} ${mid + 1_000}`, near, `${from(mid)}, then on in the same read`);
  const wide = Math.min(last, mid + 100_000);
  const far = await corral(["diff", String(mid), String(wide), "--json"]);
  line(`diff ${mid} ${wide}`, far, `${from(mid)}; the second moment ${from(wide)}`);
}

if (process.env.SCALE_EVENTS_CHILD === "rebuild") await rebuildChild();
else if (import.meta.url === `file://${process.argv[1]}`) await benchScaleEvents();
