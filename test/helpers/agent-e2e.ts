import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CorralClient } from "../../src/api/client.ts";
import { createRuntime, NODE_IMAGE } from "../../src/runtime/index.ts";
import type { RuntimeKind } from "../../src/runtime/types.ts";
import { keyFileIn } from "../../src/store/key-file.ts";
import { corral, type Run } from "./cli.ts";
import { type DaemonProcess, spawnDaemon, until, writeConfig } from "./daemon.ts";
import { startTestNats, type TestNats } from "./nats.ts";
import { onTeardown, tempDir } from "./teardown.ts";

/**
 * One corral instance of an end-to-end test of the agent side (issue 9): a config file, a daemon
 * process (`corral up`, restartable after a SIGKILL), the CLI and the API client against it, and
 * a shared dir the agents write their traces into (docker: mounted at /e2e).
 */
export interface E2eWorld {
  kind: RuntimeKind;
  pool: string;
  instance: string;
  /** Its corral.yaml. */
  config: string;
  /** Host path of the dir the agents write into. */
  shared: string;
  /** Its own nats-server: each daemon marks events with its own key, which another world's CLI reads as forged. */
  nats: TestNats;
  daemon: DaemonProcess;
  client: CorralClient;
  /** `corral <args>` with this world's NATS and lease-token dir. */
  cli(args: string[], during?: Parameters<typeof corral>[2]): Promise<Run>;
  /** SIGKILLs the daemon (its agents go on) and starts a new one on the same config. */
  restart(): Promise<void>;
  /** Lines of a file in the shared dir (none when it does not exist). */
  lines(name: string): string[];
}

/** Where the agents see the shared dir. */
export function sharedPath(kind: RuntimeKind, hostDir: string): string {
  return kind === "docker" ? "/e2e" : hostDir;
}

/** `node -e` that appends one line to `<shared>/<name>`, after `delayMs`; then exits (or sleeps forever). */
export function appendScript(shared: string, name: string, opts: { delayMs?: number; stay?: boolean } = {}) {
  const file = JSON.stringify(`${shared}/${name}`);
  const write = `require("fs").appendFileSync(${file}, "x\\n")`;
  const then = opts.stay ? "setInterval(() => {}, 1 << 30)" : "";
  return ["node", "-e", `setTimeout(() => { ${write}; ${then} }, ${opts.delayMs ?? 0})`];
}

/** A bare git repo with one commit (README.md), made with the host's git. */
export function bareRepo(dir: string): string {
  const work = join(dir, "src-work");
  const bare = join(dir, "origin.git");
  const git = (cwd: string, ...args: string[]) =>
    execFileSync("git", args, {
      cwd,
      env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" },
      stdio: "pipe",
    });
  mkdirSync(work, { recursive: true });
  git(work, "init", "-q", "-b", "main");
  execFileSync("node", ["-e", `require("fs").writeFileSync("README.md", "hello\\n")`], { cwd: work });
  git(work, "add", "README.md");
  git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first");
  git(dir, "clone", "-q", "--bare", work, bare);
  return bare;
}

export interface PoolSpec {
  /** The template's init plan (corral.yaml form), given the shared dir's path in the agent. */
  init?: (shared: string) => Record<string, unknown>;
  /** The agent's own command; default: append to started-<agentId>.log, then sleep. */
  command?: string[];
  max?: number;
}

/** A fresh instance with one pool of `kind` (warm 1) and its daemon, up. */
export async function e2eWorld(kind: RuntimeKind, spec: PoolSpec = {}): Promise<E2eWorld> {
  const nats = await startTestNats();
  const natsUrl = nats.url;
  const instance = `e${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const pool = `${kind === "docker" ? "d" : "p"}-${instance}`;
  const dir = tempDir(`e2e-${kind}-`);
  const shared = join(dir, "shared");
  mkdirSync(shared, { recursive: true });
  chmodSync(shared, 0o777); // a container's user may not be ours
  const home = join(dir, "home");
  mkdirSync(home, { recursive: true });
  const inAgent = sharedPath(kind, shared);
  const started = `require("fs").appendFileSync(${JSON.stringify(inAgent)} + "/started-" + process.env.CORRAL_AGENT_ID + ".log", "x\\n"); setInterval(() => {}, 1 << 30)`;
  const template: Record<string, unknown> = {
    command: spec.command ?? ["node", "-e", started],
    // The process runtime hands agentd the daemon's HOME: the init plan must not write to ours.
    env: kind === "process" ? { HOME: home } : {},
    ...(kind === "docker" ? { image: NODE_IMAGE, mounts: [{ source: shared, target: "/e2e" }] } : {}),
    ...(spec.init ? { init: spec.init(inAgent) } : {}),
  };
  const stateDir = join(dir, "state");
  // Whatever the daemon leaves running, by this instance's labels; registered before the daemon so
  // it runs after the daemon is stopped (a live daemon would replace what is removed).
  onTeardown(`agents of ${instance}`, async () => {
    const rt = await createRuntime(kind, { instance, stateDir: join(stateDir, "process", instance) });
    for (const i of await rt.list()) await rt.remove(i.id);
    await rt.close();
  });
  const file = writeConfig(dir, {
    instance,
    stateDir,
    pools: {
      [pool]: {
        runtime: kind,
        min: 0,
        max: spec.max ?? 1,
        warm: 1,
        maintenanceInterval: "300ms",
        startTimeout: "30s",
        template,
      },
    },
  });
  const env = {
    NATS_URL: natsUrl,
    NO_COLOR: "1",
    XDG_STATE_HOME: join(dir, "xdg"),
    CORRAL_EVENT_KEY_FILE: keyFileIn(stateDir),
  };
  const world: E2eWorld = {
    kind,
    pool,
    instance,
    config: file,
    shared,
    nats,
    daemon: await spawnDaemon(file, natsUrl),
    client: new CorralClient(await nats.connect()),
    cli: (args, during) => corral(args, env, during),
    async restart() {
      world.daemon.proc.kill("SIGKILL");
      await world.daemon.exited;
      world.daemon = await spawnDaemon(file, natsUrl);
    },
    lines(name) {
      const f = join(shared, name);
      return existsSync(f) ? readFileSync(f, "utf8").split("\n").filter(Boolean) : [];
    },
  };
  return world;
}

export interface AgentRow {
  id: string;
  phase: string;
  generation: number;
  init?: { state: string; step?: string; index?: number; of?: number };
  registration?: { state: string; reason?: string };
  session?: string;
}

export async function agentsOf(w: E2eWorld): Promise<AgentRow[]> {
  return (await w.client.status(w.pool)).agents as unknown as AgentRow[];
}

/** The first agent of the pool in `phase` (waits up to `ms`). */
export function agentIn(w: E2eWorld, phase: string, ms = 60_000): Promise<AgentRow> {
  return until(
    `an agent of ${w.pool} ${phase}`,
    async () => (await agentsOf(w)).find((a) => a.phase === phase),
    ms,
  );
}

interface TailedEvent {
  type: string;
  data: Record<string, unknown>;
}

/** `corral events tail -a <aggregate> --json`: the aggregate's events, oldest first. */
export async function tail(w: E2eWorld, aggregate: string, n = 200): Promise<TailedEvent[]> {
  const r = await w.cli(["events", "tail", "-a", aggregate, "-n", String(n), "--json"]);
  assert.equal(r.code, 0, `events tail -a ${aggregate}: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const rec = JSON.parse(l) as { event?: TailedEvent; error?: unknown };
      assert.ok(rec.event, `a readable event: ${l}`);
      return rec.event;
    });
}

/** Types of `events` from the first Init* on, Init* only. */
export function initStory(events: TailedEvent[]): string[] {
  return events.map((e) => e.type).filter((t) => t.startsWith("Init"));
}
