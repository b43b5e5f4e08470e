import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { RuntimeError } from "../src/runtime/errors.ts";
import { helloAgentTemplate } from "../src/runtime/hello.ts";
import { isAlive, readProcStat } from "../src/runtime/proc.ts";
import { ProcessRuntime } from "../src/runtime/process.ts";
import type { ProcessRecord } from "../src/runtime/process-state.ts";
import type { CreateSpec } from "../src/runtime/types.ts";
import {
  freePort,
  httpGet,
  IGNORES_TERM_JS,
  runtimeConformance,
  WAIT_MS,
  waitUntil,
} from "./helpers/runtime-conformance.ts";
import { onTeardown, tempDir, trackProcess } from "./helpers/teardown.ts";

const root = tempDir("process-");
const stateDirOf = (instance: string) => join(root, instance);

/** Kills what a test instance left running (liveness-checked, never a bare pid) and its files. */
function cleanup(instance: string): void {
  const rt = new ProcessRuntime({ instance, stateDir: stateDirOf(instance) });
  for (const rec of rt.state.readAll()) {
    if (rec.pid !== undefined && isAlive(rec.pid, rec.procStart)) {
      try {
        process.kill(-rec.pid, "SIGKILL");
      } catch {}
    }
  }
  rmSync(stateDirOf(instance), { recursive: true, force: true });
}

describe("process runtime", () => {
  runtimeConformance({
    name: "process runtime",
    open: async (instance) => {
      const rt = new ProcessRuntime({ instance, stateDir: stateDirOf(instance), pollMs: 200 });
      await rt.ready();
      return rt;
    },
    hello: () => helloAgentTemplate("process"),
    sleep: () => ({ command: ["sleep", "1000"] }),
    ignoresTerm: () => ({ command: [process.execPath, "-e", IGNORES_TERM_JS] }),
    killFromOutside: async (inst) => {
      process.kill(-(inst.pid as number), "SIGKILL");
    },
    cleanup: async (instance) => cleanup(instance),
  });

  describe("process specifics", () => {
    const instance = `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}-p`;
    const rt = new ProcessRuntime({ instance, stateDir: stateDirOf(instance), pollMs: 200 });
    let gen = 0;
    const spec = (agentId: string, command: string[]): CreateSpec => ({
      instance,
      poolId: "pool-p",
      agentId,
      generation: ++gen,
      template: { command, env: { FROM_TEMPLATE: "t", OVERRIDDEN: "template" } },
      env: { OVERRIDDEN: "spec" },
      ports: [],
    });
    onTeardown(`process instance ${instance}`, async () => {
      await rt.close();
      cleanup(instance);
    });

    it("the built-in agent as a local process listens on loopback only (issue 7)", async () => {
      await rt.ready();
      const port = await freePort();
      const inst = await rt.create({
        ...spec("loopback", []),
        template: helloAgentTemplate("process"),
        env: { CORRAL_PORT_A: String(port) },
        ports: [port],
      });
      await rt.start(inst.id);
      await httpGet(port, "/", WAIT_MS);
      // Any other address of this host (when it has one) is refused.
      const outside = Object.values(networkInterfaces())
        .flat()
        .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
      if (outside) {
        const refused = await new Promise<boolean>((resolve) => {
          const sock = connect({ host: outside, port }, () => {
            sock.destroy();
            resolve(false);
          });
          sock.once("error", () => resolve(true));
        });
        assert.ok(refused, `nothing answers on ${outside}:${port}`);
      }
      await rt.remove(inst.id);
    });

    it("a missing executable is a typed error at create, and nothing is recorded", async () => {
      await rt.ready();
      await assert.rejects(rt.create(spec("ghost", ["corral-no-such-binary-xyz"])), (err: unknown) => {
        assert.ok(err instanceof RuntimeError);
        assert.equal(err.code, "executable_missing");
        return true;
      });
      assert.deepEqual(await rt.list(), []);
    });

    it("runs in its own process group, in its work dir (its HOME too), with merged env, logging to its file", async () => {
      const inst = await rt.create(
        spec("env-check", [
          "sh",
          "-c",
          'echo "$FROM_TEMPLATE $OVERRIDDEN $CORRAL_AGENT_ID $(pwd) $HOME"; sleep 1000',
        ]),
      );
      await rt.start(inst.id);
      const running = await rt.inspect(inst.id);
      assert.ok(running?.pid);
      const stat = readProcStat(running.pid);
      assert.equal(stat?.pgrp, running.pid, "leader of its own group");
      const rec = rt.state.read(inst.id) as ProcessRecord;
      await waitUntil(() => readFileSync(rec.logPath, "utf8").includes("env-check"), WAIT_MS, "the log line");
      assert.equal(
        readFileSync(rec.logPath, "utf8").trim(),
        `t spec env-check ${join(stateDirOf(instance), "work", "env-check")} ${join(stateDirOf(instance), "work", "env-check")}`,
      );
      await rt.remove(inst.id);
      assert.equal(isAlive(running.pid, stat?.startTime), false);
    });

    it("a recorded pid now held by another process is never taken for the agent", async () => {
      const inst = await rt.create(spec("reused-pid", ["sleep", "1000"]));
      // Forge what a crash + pid reuse looks like: the record names a live pid (this test
      // process) whose start time is not the one recorded at spawn.
      const rec = rt.state.read(inst.id) as ProcessRecord;
      const me = readProcStat(process.pid);
      assert.ok(me);
      const forged: ProcessRecord = {
        ...rec,
        state: "running",
        pid: process.pid,
        procStart: me.startTime - 1,
      };
      writeFileSync(join(rt.state.instancesDir, `${inst.id}.json`), JSON.stringify(forged));
      assert.equal((await rt.inspect(inst.id))?.state, "exited");
      assert.equal((await rt.inspect(inst.id))?.pid, undefined);
      await waitUntil(() => rt.isRunning(inst.id) === false, WAIT_MS, "isRunning false");
      await rt.stop(inst.id, 100); // must not signal us (we would die of SIGTERM here)
      await rt.remove(inst.id);
      assert.equal(isAlive(process.pid), true);
    });

    it("a second create of the same agent generation is refused (as docker's name clash)", async () => {
      const s = spec("twice", ["sleep", "1000"]);
      const first = await rt.create(s);
      await assert.rejects(
        rt.create(s),
        (err: unknown) => err instanceof RuntimeError && err.code === "already_exists",
      );
      await rt.remove(first.id);
    });

    it("stats read the agent's group from /proc", async () => {
      const inst = await rt.create(spec("stats", ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]));
      await rt.start(inst.id);
      await waitUntil(async () => ((await rt.stats(inst.id))?.pids ?? 0) >= 3, WAIT_MS, "sh + two sleeps");
      const s = await rt.stats(inst.id);
      assert.ok((s?.memoryBytes ?? 0) > 0);
      await rt.stop(inst.id, 500);
      assert.equal(await rt.stats(inst.id), null);
      await rt.remove(inst.id);
    });

    it("a process spawned just before a crash is adopted, never started twice; one no record owns is killed", async () => {
      const inst = await rt.create(spec("crashed-mid-start", ["sleep", "1000"]));
      const rec = rt.state.read(inst.id) as ProcessRecord;
      // What a daemon SIGKILLed between spawn and writing the pid leaves: a live agent process
      // (its own group, the record's command and env) and a record that still says "created".
      const spawnLike = (id: string) => {
        const c = spawn(rec.command[0] as string, rec.command.slice(1), {
          env: { ...rec.env, CORRAL_RUNTIME_ID: id },
          detached: true,
          stdio: "ignore",
        });
        c.unref();
        trackProcess(c, `agent process ${id}`, { signal: "SIGKILL", group: true });
        return c.pid as number;
      };
      /** Past exec: a pid is alive from the fork, but its group and environment are the agent's only after. */
      const execd = (pid: number, id: string) => {
        try {
          return readFileSync(`/proc/${pid}/environ`, "utf8").includes(`CORRAL_RUNTIME_ID=${id}\0`);
        } catch {
          return false;
        }
      };
      const stray = spawnLike(inst.id);
      const orphan = spawnLike("p-no-such-record");
      await waitUntil(
        () => execd(stray, inst.id) && execd(orphan, "p-no-such-record"),
        WAIT_MS,
        "both processes running the agent's command",
      );
      assert.equal(rt.state.read(inst.id)?.state, "created");
      const next = new ProcessRuntime({ instance, stateDir: stateDirOf(instance), pollMs: 200 });
      await next.ready();
      try {
        const adopted = await next.inspect(inst.id);
        assert.equal(adopted?.state, "running");
        assert.equal(adopted?.pid, stray, "the process the crash left is the agent's");
        await next.start(inst.id); // what the resumed start step does: nothing, it runs
        assert.equal((await next.inspect(inst.id))?.pid, stray);
        assert.equal(membersOf(stray).length, 1);
        await waitUntil(() => !isAlive(orphan), WAIT_MS, "the orphan killed");
        await next.remove(inst.id);
        assert.equal(isAlive(stray), false);
      } finally {
        await next.close();
      }
    });

    it("stop also ends group members that outlive the leader", async () => {
      // The shell exits on SIGTERM; its background sleep ignores SIGTERM and would linger.
      const inst = await rt.create(spec("leftovers", ["sh", "-c", "(trap '' TERM; exec sleep 1000) & wait"]));
      await rt.start(inst.id);
      const pid = (await rt.inspect(inst.id))?.pid as number;
      await waitUntil(() => membersOf(pid).length >= 2, WAIT_MS, "the background sleep");
      await rt.stop(inst.id, 1000);
      await waitUntil(() => membersOf(pid).length === 0, WAIT_MS, "the whole group to be gone");
      await rt.remove(inst.id);
    });
  });
});

function membersOf(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readProcStat(Number(name));
    if (st && st.pgrp === pgid && st.state !== "Z") out.push(Number(name));
  }
  return out;
}
