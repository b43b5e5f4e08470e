import { configFrom } from "../config/default.ts";
import { ConfigError } from "../config/load.ts";
import { natsAuthOf } from "../config/nats.ts";
import { Daemon, InstanceRunningError } from "../daemon/daemon.ts";
import type { Logger } from "../log.ts";
import { type MetricsAddress, MetricsAddressError, parseMetricsAddress } from "../metrics/address.ts";
import { redactUrl } from "../nats/auth.ts";
import { natsUrl } from "../nats/connect.ts";
import { type EnsuredNats, ensureNats } from "../nats/ensure.ts";
import { colourEnabled, palette } from "./colour.ts";
import { CliError, EXIT } from "./exit.ts";
import type { Out } from "./output.ts";
import { stopSignals } from "./stop-signals.ts";

function load(file?: string) {
  try {
    return configFrom(file);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, EXIT.usage);
    if (err instanceof InstanceRunningError) throw new CliError(err.message, EXIT.failure);
    throw err;
  }
}

/** The daemon checks a config against what this machine has (docker?): still a usage error. */
async function starting(opts: Parameters<typeof Daemon.start>[0]): Promise<Daemon> {
  try {
    return await Daemon.start(opts);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, EXIT.usage);
    throw err;
  }
}

/** `--metrics <addr>`: a bad address is a usage error that names it. */
function metricsFlag(text: string): MetricsAddress {
  try {
    return parseMetricsAddress(text);
  } catch (err) {
    if (err instanceof MetricsAddressError) throw new CliError(`--metrics: ${err.message}`, EXIT.usage);
    throw err;
  }
}

/**
 * `corral up`: runs until SIGINT/SIGTERM, then stops serving and leaves the agents running —
 * the next `corral up` adopts them. `corral down` is what stops agents.
 */
export async function up(opts: {
  config?: string;
  nats?: string;
  metrics?: string;
  log: Logger;
}): Promise<void> {
  const { config, source } = load(opts.config);
  const metrics = opts.metrics === undefined ? config.metrics : metricsFlag(opts.metrics);
  const url = opts.nats ?? (process.env.NATS_URL?.trim() || config.nats?.url || natsUrl());
  const signals = stopSignals(() => "Its agents keep running; the next `corral up` takes them over.");
  try {
    const daemon = await starting({
      config,
      configFile: source,
      natsUrl: url,
      natsAuth: natsAuthOf(config.nats),
      log: opts.log,
      connectWaitMs: 30_000,
      metrics,
    });
    const stopped = new Promise<void>((resolve) => {
      // `corral down` over the API: the daemon already stopped its agents; exit once replied.
      daemon.onDown = () => setTimeout(resolve, 50);
    });
    const how = await Promise.race([signals.requested, stopped.then(() => "down" as const)]);
    opts.log.info({ how }, "stopping");
    await daemon.stop({ stopAgents: false });
  } finally {
    signals.dispose();
  }
}

/**
 * `corral down`: asks the running daemon to close its pools and stop every agent. With no daemon
 * answering, does it itself: starts the control plane for the same instance and tears it down.
 */
export async function down(opts: { config?: string; nats?: string; log: Logger; out: Out }): Promise<void> {
  const { config, source } = load(opts.config);
  const url = opts.nats ?? (process.env.NATS_URL?.trim() || config.nats?.url || natsUrl());
  const [{ connectNats }, { CorralClient, ApiError }] = await Promise.all([
    import("../nats/connect.ts"),
    import("../api/client.ts"),
  ]);
  const natsAuth = natsAuthOf(config.nats);
  const nc = await connectNats(url, {
    name: "corral-down",
    timeoutMs: 1_500,
    auth: natsAuth,
    role: "client",
  });
  try {
    // Addressed to this config's instance alone: another daemon on the same NATS never hears it.
    await new CorralClient(nc, { timeoutMs: 120_000 }).down(config.instance);
    opts.out.write("corral is down: pools closed, agents stopped\n");
    return;
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== "no_daemon") throw err;
  } finally {
    await nc.close();
  }
  const daemon = await starting({
    config,
    configFile: source,
    natsUrl: url,
    natsAuth,
    log: opts.log,
    serveApi: false,
  });
  await daemon.stop({ stopAgents: true });
  opts.out.write("no daemon was running; stopped the agents of this instance and closed its pools\n");
}

/**
 * `npm start`: NATS (found or started), the daemon with the default pool, and its status live
 * on screen. Ctrl-C stops everything it started, agents included, and the nats-server it
 * started last (that one runs in a process group of its own, so the terminal's Ctrl-C does not
 * reach it first). A Ctrl-C while starting stops everything once it has started.
 */
export async function startLocal(opts: {
  nats?: string;
  dataDir: string;
  config?: string;
  log: Logger;
  out: Out;
}): Promise<void> {
  const { config, source } = load(opts.config);
  let nats: EnsuredNats | undefined;
  const signals = stopSignals(() =>
    [
      nats?.started ? "Its nats-server stops by itself. " : "",
      `Agents of instance "${config.instance}" may still run: the next \`npm start\` takes them over, `,
      "and its Ctrl-C stops them.",
    ].join(""),
  );
  let daemon: Daemon | undefined;
  try {
    nats = await ensureNats({ url: opts.nats, dataDir: opts.dataDir, log: opts.log });
    daemon = await starting({
      config: { ...config, stateDir: opts.dataDir },
      configFile: source,
      natsUrl: nats.url,
      natsAuth: nats.authFor("daemon"),
      log: opts.log,
    });
    await showUntilStopped(daemon, nats.url, signals.requested, opts);
    opts.out.write("\nstopping: closing pools and stopping agents… (Ctrl-C again exits at once)\n");
  } finally {
    try {
      await daemon?.stop({ stopAgents: true });
    } finally {
      await nats?.stop();
      signals.dispose();
    }
  }
  opts.out.write("stopped; nothing left running\n");
}

/** The pools' status, redrawn every second until `stop` resolves. */
async function showUntilStopped(
  daemon: Daemon,
  url: string,
  stop: Promise<unknown>,
  opts: { log: Logger; out: Out },
): Promise<void> {
  const c = palette(colourEnabled(process.stdout));
  const tty = process.stdout.isTTY === true;
  const pools = daemon.cp.poolNames();
  let last = "";
  const draw = async () => {
    const lines = [c.bold(`corral is up · NATS ${redactUrl(url)} · Ctrl-C stops everything`)];
    for (const pool of pools) lines.push(...renderStatus(await daemon.status(pool), c));
    lines.push(
      "",
      c.dim(
        `try:  npx corral acquire ${pools[0]}   then curl the URL it prints   ·   npx corral status --watch`,
      ),
    );
    const text = lines.join("\n");
    if (tty) opts.out.write(`\x1b[H\x1b[2J${text}\n`);
    else if (text !== last) opts.out.write(`${text}\n`); // a log: only what changed
    last = text;
  };
  // One line, not a stack: this repeats every second while the trouble lasts.
  const redraw = () =>
    draw().catch((err: unknown) => opts.log.warn("status failed: %s", (err as Error).message));
  await redraw();
  const timer = setInterval(redraw, 1_000);
  await stop;
  clearInterval(timer);
}

type Status = Awaited<ReturnType<Daemon["status"]>>;

function renderStatus(s: Status, c: ReturnType<typeof palette>): string[] {
  const m = s.metrics as Record<string, unknown> | null;
  const head = `${c.bold(s.pool)} ${s.state}  waiting ${s.waiters}`;
  const metrics = m
    ? `  active ${m.active} idle ${m.idle} total ${m.total} · leases ${m.totalLeases} recycles ${m.totalRecycles} · spawned ${m.spawned} terminated ${m.terminated}`
    : "";
  const rows = s.agents.map(
    (a) =>
      `  ${a.id.padEnd(46)} ${a.phase.padEnd(10)} gen ${String(a.generation).padEnd(3)} leases ${String(a.leasesServed).padEnd(4)} ${a.ports.map((p) => `http://localhost:${p}`).join(" ")}`,
  );
  const failed = s.lastSpawnFailure
    ? [
        c.red(
          `  ${s.spawnFailures} failed spawn(s), last: ${s.lastSpawnFailure.code}: ${s.lastSpawnFailure.message}`,
        ),
      ]
    : [];
  return ["", head + metrics, ...failed, ...rows];
}
