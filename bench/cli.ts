import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseConfig } from "../src/config/load.ts";
import { Daemon } from "../src/daemon/daemon.ts";
import { silentLogger } from "../src/log.ts";
import { startBenchNats } from "./lib.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");
const bin = join(root, "bin", "corral.js");
const RUNS = 10;

/** Median wall time of `node <argv>`, a new process each time: `corral <args>` as a user runs it. */
async function median(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ ms: number; note: string }> {
  const opts = { cwd: root, env: { ...process.env, NO_COLOR: "1", ...env } };
  const { stderr } = await run(process.execPath, argv, opts); // warm the file cache
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await run(process.execPath, argv, opts);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: ((times[RUNS / 2 - 1] as number) + (times[RUNS / 2] as number)) / 2, note: stderr.trim() };
}

function report(what: string, m: { ms: number; note: string }, target?: number): void {
  const goal = target === undefined ? "" : ` (target ${target} ms${m.ms > target ? ", SHORT" : ""})`;
  console.log(`cli ${what}: median ${Math.round(m.ms)} ms of ${RUNS}${goal}`);
  if (m.note) console.log(`  ${m.note}`);
}

/**
 * Start-up cost of the CLI: `--version` and `--help` (nothing but the command line), `status`
 * against a running daemon (connect, one request, print), and for comparison node's own start-up
 * and `--version` through tsx, as every call ran before the build.
 */
export async function benchCli(): Promise<void> {
  // The floor: what node itself takes to start here, now (a loaded machine shows in it).
  report("node alone, no corral", await median(["-e", ""]));
  report("--version", await median([bin, "--version"]), 150);
  report("--help", await median([bin, "--help"]), 150);
  report("--version through tsx", await median([bin, "--version"], { CORRAL_FROM_SOURCE: "1" }));

  const nats = await startBenchNats("cli");
  const dir = mkdtempSync(join(tmpdir(), "corral-bench-cli-"));
  // The daemon runs in this process: the CLI's children find it over NATS like any other.
  const config = parseConfig({
    instance: `bench-cli-${process.pid}`,
    stateDir: join(dir, "state"),
    pools: {
      bench: { runtime: "process", min: 1, max: 1, warm: 1, template: { command: ["sleep", "100000"] } },
    },
  });
  const daemon = await Daemon.start({
    config,
    configFile: "bench",
    natsUrl: nats.server.url,
    log: silentLogger,
  });
  try {
    // One pool: one request. Every pool: a gather that ends 250 ms after the last daemon answers
    // (GATHER_QUIET_MS in src/api/client.ts), since no daemon knows how many others there are.
    report("status bench", await median([bin, "status", "bench"], { NATS_URL: nats.server.url }), 300);
    report("status", await median([bin, "status"], { NATS_URL: nats.server.url }), 300);
  } finally {
    await daemon.stop({ stopAgents: true });
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
