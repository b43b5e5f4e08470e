import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CorralClient } from "../src/api/client.ts";
import { createRuntime } from "../src/runtime/index.ts";
import { bin, root } from "../test/helpers/cli.ts";
import { spawnDaemon, until, writeConfig } from "../test/helpers/daemon.ts";
import { startBenchNats } from "./lib.ts";

const run = promisify(execFile);
const RUNS = 10;

/** Median wall time of `corral <args>` as a user runs it (a new node process each time). */
async function median(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ ms: number; note: string }> {
  const opts = { cwd: root, env: { ...process.env, NO_COLOR: "1", ...env } };
  const { stderr } = await run(process.execPath, [bin, ...args], opts); // warm the file cache
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await run(process.execPath, [bin, ...args], opts);
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
 * against a running daemon (connect, one request, print), and `--version` through tsx, as every
 * call ran before the build, for comparison.
 */
export async function benchCli(): Promise<void> {
  report("--version", await median(["--version"]), 150);
  report("--help", await median(["--help"]), 150);
  report("--version through tsx", await median(["--version"], { CORRAL_FROM_SOURCE: "1" }));

  const nats = await startBenchNats("cli");
  const dir = mkdtempSync(join(tmpdir(), "corral-bench-cli-"));
  const instance = `bench-cli-${process.pid}`;
  const config = writeConfig(dir, {
    instance,
    stateDir: join(dir, "state"),
    pools: {
      bench: { runtime: "process", min: 2, max: 2, warm: 2, template: { command: ["sleep", "100000"] } },
    },
  });
  const daemon = await spawnDaemon(config, nats.server.url);
  try {
    const client = new CorralClient(nats.nc);
    await until("2 idle agents", async () => (await client.status("bench")).metrics?.idle === 2, 60_000);
    report("status", await median(["status"], { NATS_URL: nats.server.url }), 300);
  } finally {
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
