import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { type Logger, silentLogger } from "../log.ts";
import { AGENTD_PORT, invalidAgentd } from "./agentd-launch.ts";
import { agentdContainer } from "./docker-agentd.ts";
import {
  consumeJsonLines,
  eventKey,
  normaliseDockerEvent,
  type RawDockerEvent,
  RecentKeys,
} from "./docker-events.ts";
import { engineMessage, isUnreachable, RuntimeError, type RuntimeErrorCode, statusOf } from "./errors.ts";
import {
  containerName,
  DEFAULT_STOP_GRACE_MS,
  LABEL_AGENT,
  LABEL_AGENTD_PORT,
  LABEL_GENERATION,
  LABEL_INSTANCE,
  LABEL_POOL,
  labelFilters,
  labelsFor,
  ownedBy,
  toInstanceState,
} from "./labels.ts";
import { LiveView } from "./live-view.ts";
import { isAlive } from "./proc.ts";
import { checkSpec, identityEnv } from "./spec.ts";
import type {
  AgentdEndpoint,
  CreateSpec,
  InstanceState,
  Runtime,
  RuntimeEvent,
  RuntimeInstance,
} from "./types.ts";

export interface DockerRuntimeOptions {
  instance: string;
  /** Default: a client from DOCKER_HOST / the default socket. */
  docker: Docker;
  log?: Logger;
  /** Full re-list period (repairs anything the event stream missed). Default 10 s. */
  relistMs?: number;
  /**
   * How far before "now" the event stream starts after each list. 0 on a local socket (one
   * clock); default 2 s for a TCP engine, whose clock may be a little off ours.
   */
  sinceSlackMs?: number;
  /**
   * false: no /events stream, the view comes from re-lists alone (for socket proxies that
   * block /events; the tests use it to prove the re-list path). Default true.
   */
  eventStream?: boolean;
}

/** How long start/stop/remove wait for their own event before asking the engine directly. */
const SETTLE_MS = 2000;
/** Where agent ports are published unless a pool says otherwise (`ports.bind`): loopback only. */
export const DEFAULT_BIND = "127.0.0.1";

/**
 * Agents as Docker containers. The live view behind `isRunning` is fed by the engine's event
 * stream (filtered to this instance's labels) and by a full re-list every `relistMs` and after
 * every reconnect: Docker only replays its last 1,000 events.
 *
 * With `agentd` the container's main process (under tini) is agentd, run from corral's package
 * mounted read-only (docker-agentd.ts) and listening on AGENTD_PORT at the container's own IP.
 */
export class DockerRuntime implements Runtime {
  readonly kind = "docker" as const;
  readonly instance: string;
  readonly docker: Docker;
  private readonly log: Logger;
  private readonly pids = new Map<string, number>();
  private readonly view: LiveView;
  private readonly seen = new RecentKeys();
  private readonly relistMs: number;
  private readonly sinceSlackMs: number;
  private readonly eventStream: boolean;
  private closed = false;
  private stream?: Readable;
  private relistTimer?: NodeJS.Timeout;
  private relisting: Promise<void> = Promise.resolve();
  private relistBusy = false;
  private readyPromise?: Promise<void>;

  constructor(opts: DockerRuntimeOptions) {
    this.instance = opts.instance;
    this.docker = opts.docker;
    this.log = opts.log ?? silentLogger;
    this.view = new LiveView(this.log);
    this.relistMs = opts.relistMs ?? 10_000;
    const local = Boolean((this.docker.modem as { socketPath?: unknown }).socketPath);
    this.sinceSlackMs = opts.sinceSlackMs ?? (local ? 0 : 2000);
    this.eventStream = opts.eventStream ?? true;
  }

  /** Resolves once the first list is in the view and the event stream is open. */
  ready(): Promise<void> {
    if (!this.readyPromise) {
      this.readyPromise = new Promise<void>((resolve, reject) => void this.watch(resolve, reject));
      this.readyPromise.catch(() => {
        this.readyPromise = undefined; // a later call tries again (the engine may come back)
      });
    }
    return this.readyPromise;
  }

  async create(spec: CreateSpec): Promise<RuntimeInstance> {
    checkSpec(spec, this.instance, dockerRule(spec));
    await this.ready();
    const t = spec.template;
    const name = containerName(spec);
    const image = t.image ?? ""; // dockerRule refused a spec without one
    const agentd = spec.agentd ? agentdContainer({ ...spec, agentd: spec.agentd }, image) : undefined;
    const env = { ...identityEnv(spec), ...t.env, ...spec.env, ...agentd?.env };
    const exposed: Record<string, object> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    // Loopback unless the pool's config says otherwise (ports.bind): an agent is not for the network.
    const hostIp = spec.bind ?? DEFAULT_BIND;
    for (const p of spec.ports) {
      exposed[`${p}/tcp`] = {};
      bindings[`${p}/tcp`] = [{ HostIp: hostIp, HostPort: String(p) }];
    }
    const limits = t.limits ?? {};
    const opts: Docker.ContainerCreateOptions = {
      name,
      Image: image,
      // With agentd, it is the main process and the template's command its child.
      ...(agentd ? { Entrypoint: agentd.entrypoint, Cmd: agentd.cmd } : { Cmd: t.command }),
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      Labels: labelsFor(spec, agentd ? AGENTD_PORT : undefined),
      ExposedPorts: exposed,
      // `docker stop` without a timeout (e.g. from remove()) uses this grace.
      StopTimeout: Math.ceil((t.stopGraceMs ?? DEFAULT_STOP_GRACE_MS) / 1000),
      HostConfig: {
        // tini as PID 1: forwards SIGTERM and reaps, so `sleep` and friends stop on time.
        Init: true,
        PortBindings: bindings,
        // Mounts rather than Binds: no `a:b:ro` string escaping, and a missing source is an
        // error instead of an empty directory docker creates for you.
        Mounts: [
          ...(t.mounts ?? []).map((m) => ({
            Type: "bind" as const,
            Source: m.source,
            Target: m.target,
            ReadOnly: m.readOnly ?? false,
          })),
          ...(agentd?.mounts ?? []),
        ],
        RestartPolicy: { Name: "no" }, // the pool supervisor decides about restarts
        ...(limits.memoryMb !== undefined && { Memory: Math.round(limits.memoryMb * 1024 * 1024) }),
        ...(limits.cpus !== undefined && { NanoCpus: Math.round(limits.cpus * 1e9) }),
        ...(limits.pids !== undefined && { PidsLimit: limits.pids }),
      },
    };
    if (t.workdir) opts.WorkingDir = t.workdir;
    try {
      const c = await this.docker.createContainer(opts);
      return {
        id: c.id,
        instance: spec.instance,
        poolId: spec.poolId,
        agentId: spec.agentId,
        generation: spec.generation,
        state: "created",
        name,
        createdAt: Date.now(),
      };
    } catch (err) {
      const msg = engineMessage(err);
      if (statusOf(err) === 404 && /no such image/i.test(msg)) {
        throw new RuntimeError("image_missing", `image ${t.image} is not on the docker engine: ${msg}`, {
          image: t.image,
        });
      }
      if (statusOf(err) === 409) {
        const existingId = /by container "?([0-9a-f]{12,64})/.exec(msg)?.[1];
        throw new RuntimeError("already_exists", `container ${name} already exists: ${msg}`, {
          name,
          existingId,
        });
      }
      throw this.wrap(err, "create_failed", `create ${name}`);
    }
  }

  async start(id: string): Promise<void> {
    const full = await this.owned(id);
    if (!full) throw new RuntimeError("not_found", `no container ${id}`, { id });
    const mark = this.view.mark();
    try {
      await this.docker.getContainer(full).start();
    } catch (err) {
      const status = statusOf(err);
      if (status === 304) return; // already running
      const msg = engineMessage(err);
      if (status === 404) throw new RuntimeError("not_found", `no container ${id}: ${msg}`, { id });
      if (/port is already allocated|address already in use/i.test(msg)) {
        // The container stays Created: the caller removes it (or the reaper will).
        throw new RuntimeError("port_in_use", `start ${id}: ${msg}`, { id });
      }
      throw this.wrap(err, "start_failed", `start ${id}`);
    }
    // Return once the live view has the start (or an immediate death), so isRunning agrees.
    await this.settle(full, (s) => s === "running" || s === "exited" || s === "dead", mark);
    await this.rememberPid(full);
  }

  /**
   * The container's main process as this host sees it, when it does (a local engine, corral not
   * itself in a container): lets isRunning notice a death before the engine's event arrives.
   */
  private async rememberPid(id: string): Promise<void> {
    try {
      const pid = (await this.docker.getContainer(id).inspect()).State.Pid;
      if (pid > 0 && isAlive(pid)) this.pids.set(id, pid);
    } catch {
      // not essential: isRunning falls back to the event-fed view
    }
  }

  async stop(id: string, graceMs?: number): Promise<void> {
    const full = await this.owned(id);
    if (!full) return;
    // Without a grace the engine uses the container's StopTimeout (the template's grace).
    const opts = graceMs === undefined ? {} : { t: Math.ceil(Math.max(0, graceMs) / 1000) };
    try {
      await this.docker.getContainer(full).stop(opts);
    } catch (err) {
      const status = statusOf(err);
      if (status === 304 || status === 404) return; // not running / gone: stopped is stopped
      throw this.wrap(err, "stop_failed", `stop ${id}`);
    }
    await this.settle(full, (s) => s !== "running");
  }

  async remove(id: string): Promise<void> {
    const full = await this.owned(id);
    if (!full) return;
    await this.stop(full); // graceful first; force below catches whatever is left
    try {
      this.pids.delete(full);
      await this.docker.getContainer(full).remove({ force: true, v: true });
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return;
      if (status === 409 && /already in progress/i.test(engineMessage(err))) return;
      throw this.wrap(err, "remove_failed", `remove ${id}`);
    }
    await this.settle(full, (s) => s === undefined);
  }

  async inspect(id: string): Promise<RuntimeInstance | null> {
    const info = await this.inspectOwned(id);
    return info ? fromInspect(info) : null;
  }

  /** The engine's inspect of a container of this instance; null when there is none. */
  private async inspectOwned(id: string): Promise<Docker.ContainerInspectInfo | null> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(id).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw this.wrap(err, "engine_error", `inspect ${id}`);
    }
    return ownedBy(info.Config.Labels, this.instance) ? info : null;
  }

  /** The container's IP and the agentd port its label names; null unless it runs with agentd. */
  async endpoint(id: string): Promise<AgentdEndpoint | null> {
    const info = await this.inspectOwned(id);
    if (!info) return null;
    const port = Number(info.Config.Labels[LABEL_AGENTD_PORT]);
    const address = fromInspect(info).address;
    if (!Number.isInteger(port) || port < 1 || port > 65535 || !address) return null;
    return { host: address, port };
  }

  async list(filter: { poolId?: string; agentId?: string } = {}): Promise<RuntimeInstance[]> {
    try {
      const rows = await this.docker.listContainers({
        all: true, // every state: Created-never-started containers leak otherwise
        filters: { label: labelFilters(this.instance, filter) },
      });
      return rows.map(fromListRow);
    } catch (err) {
      throw this.wrap(err, "engine_error", "list containers");
    }
  }

  events(onEvent: (e: RuntimeEvent) => void): { close(): void } {
    const sub = this.view.subscribe(onEvent);
    this.ready().catch((err: unknown) => this.log.error({ err }, "docker runtime could not start watching"));
    return sub;
  }

  /** Engine stats; `stream: false` takes two samples (~1 s) so cpuPercent is a real rate. */
  async stats(id: string): Promise<{ memoryBytes?: number; cpuPercent?: number; pids?: number } | null> {
    const full = await this.owned(id);
    if (!full) return null;
    let s: Docker.ContainerStats;
    try {
      s = await this.docker.getContainer(full).stats({ stream: false });
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw this.wrap(err, "engine_error", `stats ${id}`);
    }
    const mem = s.memory_stats;
    if (!mem?.usage && !s.pids_stats?.current) return null; // not running: the engine sends zeros
    const out: { memoryBytes?: number; cpuPercent?: number; pids?: number } = {};
    if (mem?.usage !== undefined) {
      // What `docker stats` shows: usage minus reclaimable page cache.
      const cache = (mem.stats as Record<string, number> | undefined)?.inactive_file ?? mem.stats?.cache ?? 0;
      out.memoryBytes = Math.max(0, mem.usage - cache);
    }
    const cpuDelta = s.cpu_stats.cpu_usage.total_usage - (s.precpu_stats?.cpu_usage?.total_usage ?? 0);
    const sysDelta = (s.cpu_stats.system_cpu_usage ?? 0) - (s.precpu_stats?.system_cpu_usage ?? 0);
    const cpus = s.cpu_stats.online_cpus ?? s.cpu_stats.cpu_usage.percpu_usage?.length ?? 1;
    if (sysDelta > 0 && s.precpu_stats?.system_cpu_usage) out.cpuPercent = (cpuDelta / sysDelta) * cpus * 100;
    if (s.pids_stats?.current !== undefined) out.pids = s.pids_stats.current;
    return out;
  }

  isRunning(id: string): boolean {
    if (!this.view.isRunning(id)) return false;
    const pid = this.pids.get(id);
    if (pid === undefined || isAlive(pid)) return true;
    this.pids.delete(id);
    return false;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.relistTimer);
    this.stream?.destroy();
    this.view.clear();
    await this.relisting.catch(() => {});
  }

  // --- watching --------------------------------------------------------------------------

  /** Until closed: list, open the stream from just before the list, consume; on a gap, again. */
  private async watch(onReady: () => void, onFail: (err: unknown) => void): Promise<void> {
    if (!this.eventStream) {
      try {
        await this.relist(true);
      } catch (err) {
        onFail(unreachable(err));
        return;
      }
      this.relistTimer = setInterval(() => this.periodicRelist(), this.relistMs);
      this.relistTimer.unref();
      onReady();
      return;
    }
    let first = true;
    let backoff = 500;
    while (!this.closed) {
      // LESSONS: take the stream's start time before listing, so nothing falls in between.
      const since = Math.round(Date.now() - this.sinceSlackMs) / 1000; // the engine takes fractional seconds
      try {
        await this.relist(first);
        const stream = (await this.docker.getEvents({
          since,
          filters: { type: ["container"], label: labelFilters(this.instance) },
        })) as unknown as Readable;
        if (this.closed) {
          stream.destroy();
          break;
        }
        this.stream = stream;
        if (first) {
          first = false;
          this.relistTimer = setInterval(() => this.periodicRelist(), this.relistMs);
          this.relistTimer.unref();
          onReady();
        }
        backoff = 500;
        await consumeJsonLines(stream, (raw) => this.onRaw(raw));
        this.stream = undefined;
        if (this.closed) break;
        this.log.warn("docker event stream ended; re-listing and reconnecting");
        await delay(250);
      } catch (err) {
        if (first) {
          onFail(unreachable(err));
          return;
        }
        this.log.warn({ err: engineMessage(err), retryMs: backoff }, "docker event stream failed; retrying");
        await delay(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
    // Closed before the first list and stream were up: ready() must not hang.
    if (first) onFail(new RuntimeError("engine_error", "docker runtime closed before it was ready"));
  }

  private onRaw(raw: RawDockerEvent): void {
    if (this.closed || !this.seen.add(eventKey(raw))) return;
    const e = normaliseDockerEvent(raw);
    if (e) this.view.observe(e);
  }

  /** Lists run one after another; each takes its own mark, so none joins a stale answer. */
  private relist(quiet: boolean): Promise<void> {
    const run = async () => {
      const mark = this.view.mark();
      const listed = await this.list();
      if (!this.closed) this.view.reconcile(listed, mark, { quiet });
    };
    const next = this.relisting.catch(() => {}).then(run);
    this.relisting = next;
    return next;
  }

  private periodicRelist(): void {
    if (this.relistBusy || this.closed) return;
    this.relistBusy = true;
    this.relist(false)
      .catch((err: unknown) => this.log.warn({ err: engineMessage(err) }, "docker re-list failed"))
      .finally(() => {
        this.relistBusy = false;
      });
  }

  /** Wait for our own operation's event; if it does not come in time, ask the engine. */
  private async settle(
    id: string,
    pred: (s: InstanceState | undefined) => boolean,
    after?: number,
  ): Promise<void> {
    if (this.eventStream && (await this.view.waitFor(id, pred, SETTLE_MS, after))) return;
    const mark = this.view.mark();
    this.view.reconcileOne(id, await this.inspect(id), mark);
  }

  /** The full id of one of this instance's containers, undefined if none; refuses others'. */
  private async owned(id: string): Promise<string | undefined> {
    await this.ready();
    if (this.view.knows(id)) return id;
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(id).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.wrap(err, "engine_error", `inspect ${id}`);
    }
    if (!ownedBy(info.Config.Labels, this.instance)) {
      // LESSONS: a reaper that killed what it did not own. Never touch other containers.
      throw new RuntimeError(
        "not_owned",
        `container ${id} does not belong to corral instance ${this.instance}`,
        {
          id,
          instance: info.Config.Labels?.[LABEL_INSTANCE],
        },
      );
    }
    return info.Id;
  }

  private wrap(err: unknown, code: RuntimeErrorCode, what: string): RuntimeError {
    if (err instanceof RuntimeError) return err;
    if (isUnreachable(err)) {
      return new RuntimeError(
        "engine_unreachable",
        `${what}: docker engine unreachable: ${engineMessage(err)}`,
        {},
        { cause: err },
      );
    }
    return new RuntimeError(
      code,
      `${what}: ${engineMessage(err)}`,
      { status: statusOf(err) },
      { cause: err },
    );
  }
}

/** The docker runtime's own rules for a spec, beyond validateSpec. */
function dockerRule(spec: CreateSpec): string | undefined {
  if (!spec.template.image) return "template.image is required for docker";
  if (!spec.agentd) return undefined;
  if (spec.ports.includes(AGENTD_PORT)) return `port ${AGENTD_PORT} is agentd's inside the container`;
  return invalidAgentd(spec.agentd);
}

/** The first list or stream failed: whatever the cause, this engine cannot be watched. */
function unreachable(err: unknown): RuntimeError {
  return new RuntimeError(
    "engine_unreachable",
    `cannot watch docker containers: ${engineMessage(err)}`,
    {},
    { cause: err },
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function identity(labels: Record<string, string> | undefined) {
  const l = labels ?? {};
  return {
    instance: l[LABEL_INSTANCE] ?? "",
    poolId: l[LABEL_POOL] ?? "",
    agentId: l[LABEL_AGENT] ?? "",
    generation: Number(l[LABEL_GENERATION] ?? Number.NaN),
  };
}

function fromListRow(c: Docker.ContainerInfo): RuntimeInstance {
  const state = toInstanceState(c.State);
  const inst: RuntimeInstance = { id: c.Id, ...identity(c.Labels), state, createdAt: c.Created * 1000 };
  const name = c.Names?.[0]?.replace(/^\//, "");
  if (name) inst.name = name;
  // The list has no exit code field; its Status text does ("Exited (137) 5 seconds ago").
  const code = /^Exited \((-?\d+)\)/.exec(c.Status ?? "")?.[1];
  if (code !== undefined && (state === "exited" || state === "dead")) inst.exitCode = Number(code);
  return inst;
}

function fromInspect(info: Docker.ContainerInspectInfo): RuntimeInstance {
  const state = toInstanceState(info.State.Status);
  const inst: RuntimeInstance = {
    id: info.Id,
    ...identity(info.Config.Labels),
    state,
    name: info.Name.replace(/^\//, ""),
    createdAt: Date.parse(info.Created),
  };
  if (info.State.Pid > 0) inst.pid = info.State.Pid;
  if (state === "exited" || state === "dead") inst.exitCode = info.State.ExitCode;
  const started = Date.parse(info.State.StartedAt);
  if (started > 0) inst.startedAt = started; // "0001-01-01T00:00:00Z" when never started
  const networks = Object.values(info.NetworkSettings?.Networks ?? {});
  const ip = networks.find((n) => n.IPAddress)?.IPAddress;
  if (state === "running" && ip) inst.address = ip;
  return inst;
}
