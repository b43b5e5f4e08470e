import { join, resolve } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Service } from "@nats-io/services";
import type { Logger } from "pino";
import { ApiError, CorralClient } from "../api/client.ts";
import { startApi } from "../api/service.ts";
import type { FileConfig } from "../config/schema.ts";
import { AgentIdentities } from "../cp/agent-identities.ts";
import { ControlPlane, type StartReport } from "../cp/control-plane.ts";
import { createExec, type Exec } from "../cp/exec/service.ts";
import { initKeysOf } from "../cp/init/template.ts";
import type { MetricsAddress } from "../metrics/address.ts";
import { type MetricsServer, openMetrics } from "../metrics/server.ts";
import { type NatsAuth, redactUrl } from "../nats/auth.ts";
import { connectNats } from "../nats/connect.ts";
import { createRuntime, dockerClient, dockerUnavailableReason } from "../runtime/index.ts";
import type { Runtime, RuntimeKind } from "../runtime/types.ts";
import { bindIntegrity } from "../store/integrity.ts";
import { loadOrCreateEventKey } from "../store/key-file.ts";
import { resolvePools } from "./pools.ts";
import { poolStatus, runningInstances } from "./status.ts";
import { DaemonWorldview } from "./worldview.ts";

export interface DaemonOptions {
  config: FileConfig;
  /** For error messages: where the config came from. */
  configFile: string;
  natsUrl: string;
  /** Credentials from corral.yaml or `npm start`'s own server (the environment's and flags' win). */
  natsAuth?: NatsAuth;
  log: Logger;
  /** Keep trying to reach NATS this long at start (compose starts NATS and corral together). */
  connectWaitMs?: number;
  /** false: no NATS API (a one-shot `corral down` that tears the instance down itself). */
  serveApi?: boolean;
  /** Serve Prometheus text on GET /metrics at this address (`--metrics`, src/metrics/). */
  metrics?: MetricsAddress;
}

/** Another daemon answers for this instance on this NATS: two would supervise the same agents. */
export class InstanceRunningError extends Error {
  override name = "InstanceRunningError";
}

/**
 * `corral up`: the control plane, its NATS API and a live worldview, for one instance. Stopping
 * it leaves agents running for the next `corral up` to adopt; `down` stops them too.
 */
export class Daemon {
  /** Called after `corral down` (over the API) has stopped every agent: time to exit. */
  onDown: () => void = () => {};

  private constructor(
    readonly nc: NatsConnection,
    readonly cp: ControlPlane,
    private readonly exec: Exec,
    readonly report: StartReport,
    private readonly api: Service | undefined,
    private readonly worldview: DaemonWorldview,
    private readonly runtimes: Runtime[],
    private readonly log: Logger,
    private readonly metrics?: MetricsServer,
  ) {}

  /** Where `/metrics` is served, when asked for. */
  get metricsUrl(): string | undefined {
    return this.metrics?.url;
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const { config, log } = opts;
    const nc = await connectWithRetry(opts.natsUrl, opts.natsAuth, opts.connectWaitMs ?? 0, log);
    const runtimes: Partial<Record<RuntimeKind, Runtime>> = {};
    let metrics: MetricsServer | undefined;
    let exec: Exec | undefined;
    try {
      await refuseIfRunning(nc, config.instance, log);
      // First: an address in use fails before anything starts.
      if (opts.metrics) metrics = await openMetrics(opts.metrics, log);
      const dockerReason = await dockerUnavailableReason();
      const docker = dockerReason === undefined ? dockerClient() : undefined;
      const warn = (line: string) => log.warn(line);
      const pools = await resolvePools(config, opts.configFile, { docker, dockerReason, warn });
      const stateDir = resolve(config.stateDir);
      // Every store opened on this connection marks what it appends and ignores what it cannot
      // verify (ARCHITECTURE.md, "Event marks"). The key itself is never logged.
      const eventKey = loadOrCreateEventKey(stateDir);
      bindIntegrity(nc, { key: eventKey.key });
      log.info({ keyFile: eventKey.file, keyId: eventKey.key.id, created: eventKey.created }, "event key");
      runtimes.process = await createRuntime("process", {
        instance: config.instance,
        log,
        stateDir: join(stateDir, "process", config.instance),
      });
      // Docker is watched whenever it answers, so containers of a pool that moved to process are reaped too.
      if (docker) runtimes.docker = await createRuntime("docker", { instance: config.instance, log, docker });
      // The corral CA and this instance's certificate: agents are dialled over mTLS with it.
      const identities = await AgentIdentities.open(stateDir, config.instance);
      const { cp, report } = await ControlPlane.start({
        nc,
        instance: config.instance,
        pools,
        runtimes,
        log,
        beforeBoot: (cp) => metrics?.follow(cp),
        identities,
        initKeys: initKeysOf(config),
      });
      const sessions = cp.sessions;
      if (!sessions) throw new Error("the daemon's control plane has no sessions to its agents");
      exec = createExec({
        nc,
        store: cp.store,
        sessions,
        agents: cp.host,
        ownsAgent: (agentId) => cp.ownsAgent(agentId),
        log,
      });
      await exec.start();
      const worldview = await DaemonWorldview.open(nc, cp.store, log);
      let daemon: Daemon | undefined;
      const api =
        opts.serveApi === false
          ? undefined
          : await startApi(nc, cp, {
              log,
              instance: config.instance,
              status: async (pool) => poolStatus(cp, await worldview.now(), pool),
              instances: async () => runningInstances(await worldview.now()),
              exec,
              onDown: async () => {
                try {
                  await cp.closeAll("corral down");
                } finally {
                  // Even when a pool failed to close (its agents were removed all the same).
                  setImmediate(() => daemon?.onDown());
                }
              },
            });
      metrics?.serve(() => worldview.seq);
      const all = Object.values(runtimes) as Runtime[];
      daemon = new Daemon(nc, cp, exec, report, api, worldview, all, log, metrics);
      log.info({ instance: config.instance, ...report }, "corral is up");
      return daemon;
    } catch (err) {
      await metrics?.close();
      await Promise.allSettled([exec?.close(), ...Object.values(runtimes).map((r) => r?.close())]);
      await nc.close();
      throw err;
    }
  }

  async status(pool: string) {
    return poolStatus(this.cp, await this.worldview.now(), pool);
  }

  /** Stops serving. Agents keep running unless `stopAgents` (then pools close and agents stop). */
  async stop(opts: { stopAgents?: boolean } = {}): Promise<void> {
    await this.metrics?.close();
    await this.api?.stop().catch(() => {});
    await this.exec.close();
    let failure: unknown;
    await this.cp.stop(opts).catch((err) => (failure = err));
    await this.worldview.close();
    await Promise.allSettled(this.runtimes.map((r) => r.close()));
    await this.nc.drain().catch(() => {});
    if (failure) throw failure;
    this.log.info({ stopAgents: opts.stopAgents === true }, "corral stopped");
  }
}

/**
 * Refuses to start while a daemon answers for `instance` on this NATS (`npm start` in a second
 * terminal, `corral up` twice): both would take the same agents over and share the instance's
 * queue group, each supervising what the other does. Two started within the same moment (before
 * either serves its API) are not told apart.
 */
async function refuseIfRunning(nc: NatsConnection, instance: string, log: Logger): Promise<void> {
  try {
    const running = await new CorralClient(nc).info(instance, { timeoutMs: 2_000 });
    throw new InstanceRunningError(
      `instance ${instance} already runs on this NATS: pid ${running.pid} on ${running.host}, up since ` +
        `${running.since}. Stop it first (Ctrl-C where it runs, or \`corral down\`), or give this ` +
        "one another `instance` in its corral.yaml",
    );
  } catch (err) {
    if (err instanceof InstanceRunningError) throw err;
    if (err instanceof ApiError && err.code === "no_daemon") return;
    // A daemon too busy to answer, or a NATS user without the right to ask: start, but say so.
    log.warn({ instance, err: (err as Error).message }, "cannot tell whether this instance already runs");
  }
}

async function connectWithRetry(
  url: string,
  auth: NatsAuth | undefined,
  waitMs: number,
  log: Logger,
): Promise<NatsConnection> {
  const until = Date.now() + waitMs;
  for (;;) {
    try {
      return await connectNats(url, { name: "corral-daemon", reconnect: true, auth, role: "daemon" });
    } catch (err) {
      if (Date.now() >= until) throw err;
      log.info({ url: redactUrl(url) }, "waiting for NATS");
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
