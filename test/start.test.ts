import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CorralClient } from "../src/api/client.ts";
import { DEFAULT_CONFIG } from "../src/config/default.ts";
import { connectNats, natsAnswers } from "../src/nats/connect.ts";
import { localAuthFor } from "../src/nats/local-auth.ts";
import { freePort } from "../src/nats/server.ts";
import { createRuntime } from "../src/runtime/index.ts";
import type { RuntimeKind } from "../src/runtime/types.ts";
import { bin, root } from "./helpers/cli.ts";
import { portBlock, until, writeConfig } from "./helpers/daemon.ts";
import { dockerAvailable } from "./helpers/docker.ts";
import { onTeardown, tempDir, trackProcess } from "./helpers/teardown.ts";

/**
 * What `npm start` runs, end to end, stopped the way a terminal stops it: Ctrl-C goes to the
 * whole foreground process group, so `corral start` runs here as the leader of a group of its
 * own and the signals go to that group. No NATS answers at first, so it starts its own; each test
 * has an instance name and port block of its own, so it can never touch a developer's `npm start`.
 */

interface Started {
  proc: ChildProcess;
  dir: string;
  url: string;
  instance: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
  /** The nats-server it started, found by its store directory. */
  natsPid: number;
}

/** The live processes (zombies count as gone) whose argv has `arg`, and their process groups. */
function processesWithArg(arg: string): { pid: number; pgid: number }[] {
  const found: { pid: number; pgid: number }[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (!argv.includes(arg)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const [state, , pgid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state !== "Z") found.push({ pid: Number(name), pgid: Number(pgid) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Whether `pid` has a handler installed for signal number `sig` (SigCgt in /proc/<pid>/status). */
function catches(pid: number, sig: number): boolean {
  try {
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & (1n << BigInt(sig - 1))) !== 0n;
  } catch {
    return false;
  }
}

function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

const signalGroup = (proc: ChildProcess, sig: NodeJS.Signals) => process.kill(-(proc.pid as number), sig);

/** Runs `corral start` until `ready` is on screen; `again` runs it again on the same data and config. */
async function startCorral(pools: Record<string, unknown>, ready: RegExp, again?: Started): Promise<Started> {
  const dir = again?.dir ?? tempDir("start-");
  const url = again?.url ?? `nats://127.0.0.1:${await freePort()}`;
  const instance = again?.instance ?? `start-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const config = writeConfig(dir, { instance, pools });
  const proc = spawn(process.execPath, [bin, "start", "--data-dir", dir, "--config", config], {
    cwd: root,
    env: { ...process.env, NATS_URL: url, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // leads its own process group, as a shell's foreground job does
  });
  // A failed assertion still stops it as a user would (Ctrl-C to its group: pools closed, agents
  // gone, its nats-server stopped); SIGKILL only if that hangs.
  trackProcess(proc, "corral start", { signal: "SIGINT", group: true, graceMs: 60_000 });
  let stdout = "";
  let stderr = "";
  proc.stdout?.on("data", (d) => {
    stdout += d;
  });
  proc.stderr?.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  await until(`${ready} on screen`, () => ready.test(stdout), 90_000);
  const nats = processesWithArg(join(dir, "nats"));
  assert.equal(nats.length, 1, `one nats-server with the store ${join(dir, "nats")}`);
  const natsPid = (nats[0] as { pid: number }).pid;
  // Whatever a test leaves (after a forced exit: agents), its runtime removes, by label.
  if (!again)
    onTeardown("agents of the instance", async () => {
      for (const kind of await kinds()) {
        const rt = await createRuntime(kind, { instance, stateDir: join(dir, "process", instance) });
        for (const i of await rt.list()) {
          // The stubborn agents ignore SIGTERM: end their process groups first, by pid.
          if (kind === "process" && i.pid) signalPid(-i.pid, "SIGKILL");
          await rt.remove(i.id);
        }
        await rt.close();
      }
    });
  return { proc, dir, url, instance, stdout: () => stdout, stderr: () => stderr, exited, natsPid };
}

async function kinds(): Promise<RuntimeKind[]> {
  return (await dockerAvailable()).ok ? ["docker", "process"] : ["process"];
}

/** Agents of `instance` on every runtime, by label (docker) or state dir (process), with pids. */
async function agentsOf(s: Started): Promise<{ kind: RuntimeKind; id: string; pid?: number }[]> {
  const out: { kind: RuntimeKind; id: string; pid?: number }[] = [];
  for (const kind of await kinds()) {
    const rt = await createRuntime(kind, {
      instance: s.instance,
      stateDir: join(s.dir, "process", s.instance),
    });
    for (const i of await rt.list()) out.push({ kind, id: i.id, pid: i.pid });
    await rt.close();
  }
  return out;
}

const noStack = (stderr: string) =>
  assert.doesNotMatch(stderr, /^\s+at .+[(:]\d+/m, `a stack trace:\n${stderr}`);

/** A pool of plain processes that ignore SIGTERM: stopping them takes the whole grace. */
const STUBBORN = {
  stubborn: {
    runtime: "process",
    min: 1,
    max: 1,
    warm: 1,
    template: {
      command: [process.execPath, "-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1 << 30)"],
      stopGrace: "60s",
    },
  },
};

describe("corral start (npm start)", () => {
  it("Ctrl-C to the process group with a lease held: agents gone, then its nats-server; no stack trace", async () => {
    const pool = DEFAULT_CONFIG.pools.default;
    const s = await startCorral(
      { default: { ...pool, ports: { ...pool.ports, range: portBlock(10) } } },
      /active 0 idle 2 total 2/,
    );
    assert.match(s.stdout(), new RegExp(`corral is up · NATS ${s.url}`));
    const corralGroup = s.proc.pid;
    assert.notEqual(
      processesWithArg(join(s.dir, "nats"))[0]?.pgid,
      corralGroup,
      "nats-server in a group of its own",
    );
    // Its server takes corral's users only (src/nats/corral-nats.conf): this is a client.
    const nc = await connectNats(s.url, { name: "start-test", auth: localAuthFor("client", s.dir) });
    try {
      const lease = await new CorralClient(nc).acquire("default", { timeoutMs: 10_000 });
      const hello = (await (await fetch(lease.urls[0] as string)).json()) as { agent: string };
      assert.equal(hello.agent, lease.agentId);
    } finally {
      await nc.close();
    }
    const agents = await agentsOf(s);
    assert.ok(agents.length >= 2, "two warm, and maybe a third on its way to refill the warm pool");

    signalGroup(s.proc, "SIGINT");
    assert.equal(await s.exited, 0, s.stderr());
    assert.match(s.stdout(), /stopped; nothing left running/);
    noStack(s.stderr());
    assert.deepEqual(await agentsOf(s), [], "no agent left by label");
    for (const a of agents)
      if (a.pid) assert.equal(alive(a.pid), false, `agent ${a.id} (pid ${a.pid}) is gone`);
    assert.equal(alive(s.natsPid), false, "the nats-server it started is gone");
    assert.deepEqual(processesWithArg(join(s.dir, "nats")), []);
    assert.equal(await natsAnswers(s.url, 300), false);
    // Last: the daemon had stopped (every agent gone) before the server was told to stop.
    const log = s.stderr();
    assert.ok(
      log.indexOf("corral stopped") >= 0 &&
        log.indexOf("corral stopped") < log.indexOf("stopped nats-server"),
    );
  });

  it("a second Ctrl-C exits at once, says what may be left, and its nats-server still stops", async () => {
    const s = await startCorral(STUBBORN, /active 0 idle 1 total 1/);
    // Idle as soon as it runs: until node has run its first line, SIGTERM still ends it at once,
    // the stop is over before the second Ctrl-C and that one finds no handler (a loaded machine).
    const [agent] = await agentsOf(s);
    await until(
      "the stubborn agent ignores SIGTERM",
      () => agent?.pid !== undefined && catches(agent.pid, 15),
    );
    signalGroup(s.proc, "SIGINT");
    await until("the stop under way", () => /stopping: closing pools/.test(s.stdout()));
    signalGroup(s.proc, "SIGINT");
    assert.equal(await s.exited, 130);
    assert.match(
      s.stderr(),
      new RegExp(`SIGINT again.*agents of instance "${s.instance}" may still run`, "is"),
    );
    noStack(s.stderr());
    await until("its nats-server stopped by the watchdog", () => !alive(s.natsPid));
  });

  it("SIGKILL of corral: the watchdog stops its nats-server; the next start takes the agents over", async () => {
    const pools = {
      plain: {
        runtime: "process",
        min: 1,
        max: 1,
        warm: 1,
        template: { command: [process.execPath, "-e", "setInterval(() => {}, 1 << 30)"] },
      },
    };
    const s = await startCorral(pools, /active 0 idle 1 total 1/);
    const agents = await agentsOf(s);
    s.proc.kill("SIGKILL");
    await s.exited;
    await until("its nats-server stopped by the watchdog", () => !alive(s.natsPid));
    assert.equal(await natsAnswers(s.url, 300), false);
    // The agent outlives a SIGKILL (nothing in corral runs then); the next start adopts it ...
    const next = await startCorral(pools, /active 0 idle 1 total 1/, s);
    assert.deepEqual(await agentsOf(next), agents, "the same agent, adopted");
    // ... and its Ctrl-C stops it.
    signalGroup(next.proc, "SIGINT");
    assert.equal(await next.exited, 0, next.stderr());
    assert.deepEqual(await agentsOf(next), []);
    for (const a of agents)
      if (a.pid) assert.equal(alive(a.pid), false, `agent ${a.id} (pid ${a.pid}) is gone`);
    assert.equal(alive(next.natsPid), false);
  });
});
