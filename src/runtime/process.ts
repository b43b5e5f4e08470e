import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  mkdirSync,
  openSync,
  rmSync,
  statSync,
} from "node:fs";
import { constants as osConstants } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { KeyedQueue } from "../keyed-queue.ts";
import { type Logger, silentLogger } from "../log.ts";
import { agentdArgs, agentdEnv, invalidAgentd, PACKAGE_ROOT, rootedArgs } from "./agentd-launch.ts";
import { RuntimeError } from "./errors.ts";
import { containerName, DEFAULT_STOP_GRACE_MS } from "./labels.ts";
import { LiveView } from "./live-view.ts";
import {
  type Descendant,
  descendantsOf,
  type EnvLeader,
  groupIsOurs,
  groupUsage,
  isAlive,
  leadersWithEnv,
  ProcLiveness,
  readProcStat,
  signalGroup,
} from "./proc.ts";
import { agentdPort, copyIdentity, killSurvivors } from "./process-agentd.ts";
import { type ProcessRecord, StateDir } from "./process-state.ts";
import { checkSpec, identityEnv } from "./spec.ts";
import type {
  AgentdEndpoint,
  AgentdSpec,
  CreateSpec,
  InstanceState,
  Runtime,
  RuntimeEvent,
  RuntimeInstance,
} from "./types.ts";

export interface ProcessRuntimeOptions {
  instance: string;
  /** Default `.corral/process/<instance>` under the current directory. */
  stateDir?: string;
  /** How often state files and /proc are re-read (adopted agents, other writers). Default 500 ms. */
  pollMs?: number;
  log?: Logger;
}

/**
 * The daemon's variables an agent inherits; everything else it gets from the template and the
 * spec, as in a container. Keeps the daemon's own secrets (NATS credentials, …) out of agents.
 */
const INHERITED_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM"];

/** After the final SIGKILL, how long to wait for the kernel to confirm the group is gone. */
const KILL_CONFIRM_MS = 2000;
/** Set in every agent process: the id of the record it belongs to. */
const RUNTIME_ID_ENV = "CORRAL_RUNTIME_ID";

function killQuietly(pgid: number): void {
  try {
    signalGroup(pgid, "SIGKILL");
  } catch {
    // EPERM: not ours after all
  }
}

interface Child {
  pid: number;
  /** The exit code as `docker` reports it: the status, or 128 + signal number. */
  exited: Promise<number>;
}

/**
 * Agents as local processes, each the leader of its own process group (detached), outliving the
 * daemon. State files under `<stateDir>/instances/` record what exists; a record's pid is only
 * believed while /proc shows the same process (same start time), so a reused pid is never taken
 * for our agent. Limits and mounts do not apply here; `oom` is never reported.
 *
 * With `agentd` the agent process is agentd (node, from corral's package), which starts the
 * template's command as its child; its identity is copied to `<work>/<agent>/.corral/identity-<gen>`
 * (files 0400) and it writes `<stateDir>/agentd/<id>/agentd.json` (`endpoint`). Both go with
 * remove(), which keeps `<stateDir>/logs/<agent>-<generation>.log` (post-mortems) and the per-agent
 * work dir (shared by an agent's generations); both are the operator's to prune.
 */
export class ProcessRuntime implements Runtime {
  readonly kind = "process" as const;
  readonly instance: string;
  readonly state: StateDir;
  private readonly log: Logger;
  private readonly view: LiveView;
  private readonly pollMs: number;
  private readonly lock = new KeyedQueue();
  /** Agents this object spawned whose exit it has not recorded yet: their `die` carries a code. */
  private readonly children = new Map<string, Child>();
  private closed = false;
  private pollTimer?: NodeJS.Timeout;
  private started = false;
  private readonly pids = new Map<string, number>();
  private readonly liveness = new ProcLiveness();

  constructor(opts: ProcessRuntimeOptions) {
    this.instance = opts.instance;
    this.state = new StateDir(resolve(opts.stateDir ?? join(".corral", "process", safeName(opts.instance))));
    this.log = opts.log ?? silentLogger;
    this.view = new LiveView(this.log);
    this.pollMs = opts.pollMs ?? 500;
  }

  /** Creates the state dir, loads what exists into the live view, starts watching. */
  async ready(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    this.state.ensure();
    this.adoptStrays();
    this.view.reconcile(this.remember(this.listSync()), this.view.mark(), { quiet: true });
    this.pollTimer = setInterval(() => this.poll(), this.pollMs);
    this.pollTimer.unref();
  }

  async create(spec: CreateSpec): Promise<RuntimeInstance> {
    checkSpec(spec, this.instance, spec.agentd ? invalidAgentd(spec.agentd) : undefined);
    await this.ready();
    const t = spec.template;
    const agentWork = join(this.state.workDir, safeName(spec.agentId));
    // Each agent's home is its own work dir (unless its template names one): its init plan's
    // files, ssh keys and clones never land in the home of whoever runs the daemon.
    const env: Record<string, string> = {
      ...inheritedEnv(),
      HOME: agentWork,
      ...identityEnv(spec),
      ...t.env,
      ...spec.env,
    };
    const [exe = "", ...args] = t.command;
    const command = [resolveExecutable(exe, env.PATH ?? ""), ...args];
    const name = containerName(spec);
    const clash = this.state
      .readAll()
      .find(
        (r) => r.instance === this.instance && r.agentId === spec.agentId && r.generation === spec.generation,
      );
    if (clash) {
      // The docker runtime refuses a second container of one name; so do we.
      throw new RuntimeError("already_exists", `${name} already exists as ${clash.id}`, {
        name,
        existingId: clash.id,
      });
    }
    const id = `p-${randomBytes(6).toString("hex")}`;
    const cwd = t.workdir ?? agentWork;
    mkdirSync(agentWork, { recursive: true });
    mkdirSync(cwd, { recursive: true });
    const base = {
      v: 1 as const,
      id,
      instance: spec.instance,
      poolId: spec.poolId,
      agentId: spec.agentId,
      generation: spec.generation,
      name,
      cwd,
      logPath: join(this.state.logsDir, `${safeName(spec.agentId)}-${spec.generation}.log`),
      stopGraceMs: t.stopGraceMs ?? DEFAULT_STOP_GRACE_MS,
      state: "created" as const,
      createdAt: Date.now(),
    };
    const rec: ProcessRecord = spec.agentd
      ? { ...base, ...this.agentdLaunch({ ...spec, agentd: spec.agentd }, id, agentWork, command, env) }
      : { ...base, command, env };
    this.state.write(rec);
    this.view.observe({ type: "create", id, ...metaOf(rec), at: rec.createdAt });
    return toInstance(rec);
  }

  /**
   * agentd as the agent process, the template's command its child: the identity copied into the
   * agent's work dir, a state dir for its agentd.json, a port on loopback of the kernel's choosing.
   */
  private agentdLaunch(
    spec: CreateSpec & { agentd: AgentdSpec },
    id: string,
    agentWork: string,
    command: string[],
    env: Record<string, string>,
  ): Pick<ProcessRecord, "command" | "env" | "agentdState" | "identityDir"> {
    const identityDir = join(agentWork, ".corral", `identity-${spec.generation}`);
    copyIdentity(spec.agentd.identityDir, identityDir);
    const agentdState = join(this.state.root, "agentd", id);
    mkdirSync(agentdState, { recursive: true, mode: 0o700 });
    return {
      command: [process.execPath, ...rootedArgs(agentdArgs(), PACKAGE_ROOT)],
      env: {
        ...env,
        ...agentdEnv(spec, { identityDir, listen: "127.0.0.1:0", stateDir: agentdState, command }),
      },
      agentdState,
      identityDir,
    };
  }

  start(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      await this.ready();
      const rec = this.own(id);
      if (!rec || rec.state === "removing")
        throw new RuntimeError("not_found", `no process agent ${id}`, { id });
      if (rec.state === "running" && rec.pid !== undefined && isAlive(rec.pid, rec.procStart)) return;
      await this.spawn(rec);
    });
  }

  stop(id: string, graceMs?: number): Promise<void> {
    return this.lock.run(id, () => this.stopLocked(id, graceMs));
  }

  remove(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      const rec = this.own(id);
      if (!rec) return;
      // Marked first: a daemon that dies mid-remove leaves a record the reaper finishes.
      this.state.write({ ...rec, state: "removing" });
      await this.stopLocked(id);
      this.state.delete(id);
      for (const dir of [rec.agentdState, rec.identityDir])
        if (dir) rmSync(dir, { recursive: true, force: true });
      this.children.delete(id);
      this.view.observe({ type: "destroy", id, ...metaOf(rec), at: Date.now() });
    });
  }

  async inspect(id: string): Promise<RuntimeInstance | null> {
    const rec = this.own(id);
    return rec ? toInstance(rec) : null;
  }

  async list(filter: { poolId?: string; agentId?: string } = {}): Promise<RuntimeInstance[]> {
    return this.listSync(filter);
  }

  /** 127.0.0.1 and the port agentd wrote, once the record's own agentd process wrote it. */
  async endpoint(id: string): Promise<AgentdEndpoint | null> {
    const rec = this.own(id);
    if (!rec?.agentdState || rec.pid === undefined || !isAlive(rec.pid, rec.procStart)) return null;
    const port = agentdPort(rec.agentdState, rec.pid);
    return port === undefined ? null : { host: "127.0.0.1", port };
  }

  events(onEvent: (e: RuntimeEvent) => void): { close(): void } {
    const sub = this.view.subscribe(onEvent);
    void this.ready();
    return sub;
  }

  /** RSS and process count of the agent's whole process group, from /proc. No CPU figure. */
  async stats(id: string): Promise<{ memoryBytes?: number; cpuPercent?: number; pids?: number } | null> {
    const rec = this.own(id);
    if (!rec || rec.pid === undefined || !isAlive(rec.pid, rec.procStart)) return null;
    const usage = groupUsage(rec.pid);
    return usage ? { memoryBytes: usage.rssBytes, pids: usage.pids } : {};
  }

  isRunning(id: string): boolean {
    if (!this.view.isRunning(id)) return false;
    // The view hears of an exit a moment after it happens (exit event, poll); /proc knows now.
    const pid = this.children.get(id)?.pid ?? this.pids.get(id);
    return pid === undefined || this.liveness.alive(pid);
  }

  /** Stops watching. Agents keep running; their exits are left for the next daemon to notice. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.pollTimer);
    this.view.clear();
    this.liveness.close();
  }

  // --- internals -------------------------------------------------------------------------

  private own(id: string): ProcessRecord | undefined {
    const rec = this.state.read(id);
    return rec?.instance === this.instance ? rec : undefined;
  }

  /**
   * At start: agent processes of this instance that their records do not name, because the
   * daemon died between spawning one and writing its pid. One whose record still wants a
   * process is adopted (the one running the record's command, or the only one); those whose
   * record is gone or being removed are killed. With a live recorded process, the others are
   * left alone: they are its own detached helpers (they inherit the environment).
   */
  private adoptStrays(): void {
    const byRecord = new Map<string, EnvLeader[]>();
    for (const p of leadersWithEnv(RUNTIME_ID_ENV)) {
      if (p.env.get("CORRAL_INSTANCE") !== this.instance) continue;
      byRecord.set(p.value, [...(byRecord.get(p.value) ?? []), p]);
    }
    for (const [id, found] of byRecord) {
      const rec = this.own(id);
      if (!rec || rec.state === "removing") {
        for (const p of found) {
          this.log.info({ pid: p.pid, id }, "killing an agent process no record owns");
          killQuietly(p.pid);
        }
        continue;
      }
      if (rec.pid !== undefined && isAlive(rec.pid, rec.procStart)) continue;
      const same = (p: EnvLeader) =>
        p.argv.length === rec.command.length && p.argv.every((a, i) => a === rec.command[i]);
      // A lone stray whose argv differs (a script behind a shebang) is taken only for a record
      // that was being started; after an exit it is more likely a helper that outlived it.
      // agentd's argv is known exactly (no shebang): only it is taken, never a command it started.
      const lone = found.length === 1 && rec.state !== "exited" && !rec.agentdState ? found[0] : undefined;
      const pick = found.find(same) ?? lone;
      if (!pick) continue;
      this.log.info({ pid: pick.pid, id, agent: rec.agentId }, "adopting an agent process its record missed");
      const next: ProcessRecord = { ...rec, state: "running", pid: pick.pid, procStart: pick.startTime };
      next.startedAt ??= Date.now();
      delete next.exitCode;
      delete next.exitedAt;
      this.state.write(next);
    }
  }

  /** Keeps the pids of running instances for the instant check in isRunning. */
  private remember(list: RuntimeInstance[]): RuntimeInstance[] {
    this.pids.clear();
    for (const i of list) if (i.state === "running" && i.pid !== undefined) this.pids.set(i.id, i.pid);
    this.liveness.keepOnly(
      new Set([...this.pids.values(), ...[...this.children.values()].map((c) => c.pid)]),
    );
    return list;
  }

  private listSync(filter: { poolId?: string; agentId?: string } = {}): RuntimeInstance[] {
    return this.state
      .readAll()
      .filter(
        (r) =>
          r.instance === this.instance &&
          (filter.poolId === undefined || r.poolId === filter.poolId) &&
          (filter.agentId === undefined || r.agentId === filter.agentId),
      )
      .map(toInstance);
  }

  /** Catches what no exit event tells us: adopted agents dying, other writers' records. */
  private poll(): void {
    if (this.closed) return;
    try {
      const mark = this.view.mark();
      this.view.reconcile(this.remember(this.listSync()), mark, { skip: (id) => this.children.has(id) });
    } catch (err) {
      this.log.warn({ err }, "process runtime poll failed");
    }
  }

  private async spawn(rec: ProcessRecord): Promise<void> {
    mkdirSync(rec.cwd, { recursive: true });
    const fd = openSync(rec.logPath, "a", 0o600);
    let child: ChildProcess;
    try {
      child = spawn(rec.command[0] ?? "", rec.command.slice(1), {
        cwd: rec.cwd,
        // Names the record in the process itself: a daemon killed between this spawn and the
        // record's write leaves a process only its environment can tie back (adoptStrays).
        env: { ...rec.env, [RUNTIME_ID_ENV]: rec.id },
        detached: true, // own session and process group: stop() signals -pid, and no SIGHUP from us
        stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd); // the child has its own copy
    }
    try {
      await new Promise<void>((ok, fail) => {
        child.once("spawn", ok);
        child.once("error", fail);
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new RuntimeError(
        code === "ENOENT" || code === "EACCES" ? "executable_missing" : "start_failed",
        `start ${rec.id} (${rec.command[0]}): ${(err as Error).message}`,
        { id: rec.id },
        { cause: err },
      );
    }
    child.on("error", (err) => this.log.warn({ err, id: rec.id }, "agent process error"));
    const pid = child.pid as number;
    // Read before this tick ends: libuv cannot have reaped it yet, so /proc still has it.
    const procStart = readProcStat(pid)?.startTime;
    const exited = new Promise<number>((done) => {
      child.once("exit", (code, signal) =>
        done(code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0)),
      );
    });
    this.children.set(rec.id, { pid, exited });
    child.unref(); // the daemon may exit; the agent lives on
    void exited.then((code) => {
      if (this.closed) return;
      this.lock
        .run(rec.id, () => this.recordExit(rec.id, pid, code))
        .catch((err: unknown) => {
          this.log.warn({ err, id: rec.id }, "recording agent exit failed");
        });
    });
    const next: ProcessRecord = { ...rec, state: "running", pid, startedAt: Date.now() };
    if (procStart !== undefined) next.procStart = procStart;
    delete next.exitCode;
    delete next.exitedAt;
    this.state.write(next);
    this.view.observe({ type: "start", id: rec.id, ...metaOf(rec), at: next.startedAt as number });
  }

  /** Under the id's lock. Idempotent; a `die` only for the pid the record still names. */
  private recordExit(id: string, pid: number, exitCode: number | undefined): void {
    if (this.children.get(id)?.pid === pid) this.children.delete(id);
    const rec = this.own(id);
    if (!rec || rec.pid !== pid) return;
    const at = Date.now();
    if (rec.state === "running") {
      const next: ProcessRecord = { ...rec, state: "exited", exitedAt: at };
      if (exitCode !== undefined) next.exitCode = exitCode;
      this.state.write(next);
    }
    this.view.observe({ type: "die", id, ...metaOf(rec), at, ...(exitCode !== undefined && { exitCode }) });
  }

  /** Under the id's lock: SIGTERM the group, wait the grace, SIGKILL the group. */
  /**
   * What agentd started runs in groups of its own and carries the record's id: when agentd died
   * first (killed from outside, crashed), those are no longer below it, but still found here.
   */
  private killLeftBehind(rec: ProcessRecord): void {
    if (!rec.agentdState) return;
    for (const p of leadersWithEnv(RUNTIME_ID_ENV)) {
      if (p.value === rec.id && p.env.get("CORRAL_INSTANCE") === this.instance) killQuietly(p.pid);
    }
  }

  private async stopLocked(id: string, graceMs?: number): Promise<void> {
    const rec = this.own(id);
    if (!rec || rec.pid === undefined || rec.state === "created") return;
    const pid = rec.pid;
    const child = this.children.get(id)?.pid === pid ? this.children.get(id) : undefined;
    const wasAlive = isAlive(pid, rec.procStart);
    // agentd stops the command it started within the grace; whatever it left, in groups of their
    // own, is found while agentd lives (after, they are PID 1's children) and killed after it.
    const below = new Map<number, Descendant>();
    const note = () => {
      if (rec.agentdState) for (const d of descendantsOf(pid)) below.set(d.pid, d);
    };
    if (wasAlive) {
      note();
      signalGroup(pid, "SIGTERM");
      if (!(await waitDead(pid, rec.procStart, graceMs ?? rec.stopGraceMs))) {
        note();
        signalGroup(pid, "SIGKILL");
        if (!(await waitDead(pid, rec.procStart, KILL_CONFIRM_MS))) {
          throw new RuntimeError("stop_failed", `process ${pid} of ${id} survived SIGKILL`, { id, pid });
        }
      }
    } else if (rec.state !== "running") {
      this.killLeftBehind(rec); // exited earlier and already recorded: only what it left
      return;
    }
    // Members that outlived their leader (a shell's background jobs) — only while the group id
    // provably still names our group (see groupIsOurs): never a stranger that reused the pid.
    if (groupIsOurs(pid, rec.procStart)) signalGroup(pid, "SIGKILL");
    // A stop returns once what it killed is gone (a loaded machine runs a SIGKILLed process late).
    for (const d of killSurvivors(below.values())) await waitDead(d.pid, d.startTime, KILL_CONFIRM_MS);
    this.killLeftBehind(rec);
    const code = child ? await Promise.race([child.exited, delay(1000).then(() => undefined)]) : undefined;
    this.recordExit(id, pid, code);
    if (wasAlive) this.view.observe({ type: "stop", id, ...metaOf(rec), at: Date.now() });
  }
}

function toInstance(rec: ProcessRecord): RuntimeInstance {
  const alive = rec.pid !== undefined && rec.state !== "created" && isAlive(rec.pid, rec.procStart);
  // "running" on disk means "we started it"; only /proc says whether it still is.
  const state: InstanceState = rec.state === "running" && !alive ? "exited" : rec.state;
  const inst: RuntimeInstance = {
    id: rec.id,
    instance: rec.instance,
    ...metaOf(rec),
    state,
    name: rec.name,
    createdAt: rec.createdAt,
  };
  if (alive) {
    inst.pid = rec.pid;
    inst.address = "127.0.0.1";
  }
  if (rec.startedAt !== undefined) inst.startedAt = rec.startedAt;
  if (state === "exited" && rec.exitCode !== undefined) inst.exitCode = rec.exitCode;
  return inst;
}

function metaOf(rec: ProcessRecord): { poolId: string; agentId: string; generation: number } {
  return { poolId: rec.poolId, agentId: rec.agentId, generation: rec.generation };
}

function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of INHERITED_ENV) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}

/** Absolute path of argv[0]: a path is taken relative to our cwd, a bare name looked up in PATH. */
function resolveExecutable(cmd: string, path: string): string {
  const candidates = cmd.includes("/")
    ? [resolve(cmd)]
    : path
        .split(delimiter)
        .filter(Boolean)
        .map((dir) => join(dir, cmd));
  const found = candidates.find(isExecutableFile);
  if (!found) {
    throw new RuntimeError(
      "executable_missing",
      cmd.includes("/") ? `not an executable file: ${cmd}` : `${cmd} not found on PATH (${path})`,
      { command: cmd },
    );
  }
  return found;
}

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function safeName(s: string): string {
  return s.replace(/[^\w.-]/g, "_");
}

async function waitDead(pid: number, startTime: number | undefined, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (isAlive(pid, startTime)) {
    if (Date.now() >= until) return false;
    await delay(20);
  }
  return true;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
