import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CorralClient } from "../src/api/client.ts";
import { createRuntime } from "../src/runtime/index.ts";
import { bin, corral, root } from "./helpers/cli.ts";
import { until, writeConfig } from "./helpers/daemon.ts";
import { startTestNats } from "./helpers/nats.ts";
import { onTeardown, tempDir, trackProcess } from "./helpers/teardown.ts";

/**
 * `corral up` in a terminal: Ctrl-C reaches its whole process group. The daemon stops serving
 * and exits cleanly, no stack trace; its agents (process groups of their own) keep running for
 * the next `corral up`, and `corral down` is what stops them.
 */
describe("corral up and Ctrl-C", () => {
  it("SIGINT to its process group: exits 0, agents kept; corral down then stops them", async () => {
    const nats = await startTestNats();
    const dir = tempDir("up-");
    const instance = `up-${process.pid}`;
    const stateDir = join(dir, "state");
    const config = writeConfig(dir, {
      instance,
      stateDir,
      pools: {
        p: {
          runtime: "process",
          min: 1,
          max: 1,
          warm: 1,
          template: { command: [process.execPath, "-e", "setInterval(() => {}, 1 << 30)"] },
        },
      },
    });
    const runtime = () =>
      createRuntime("process", { instance, stateDir: join(stateDir, "process", instance) });
    onTeardown("agents of the instance", async () => {
      const rt = await runtime();
      for (const i of await rt.list()) await rt.remove(i.id);
      await rt.close();
    });
    const env = { ...process.env, NATS_URL: nats.url, NO_COLOR: "1" };
    const proc = spawn(process.execPath, [bin, "up", "--config", config], {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // leads its own process group, as a shell's foreground job does
    });
    trackProcess(proc, "corral up", { signal: "SIGINT", group: true });
    let stderr = "";
    proc.stderr?.on("data", (d) => {
      stderr += d;
    });
    proc.stdout?.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    const client = new CorralClient(await nats.connect());
    await until("one idle agent", async () => (await client.status("p")).metrics?.idle === 1, 60_000);
    const rt = await runtime();
    const [agent] = await rt.list();
    await rt.close();
    assert.ok(agent?.pid, "the agent runs as a process");

    process.kill(-(proc.pid as number), "SIGINT");
    assert.equal(await exited, 0, stderr);
    assert.doesNotMatch(stderr, /^\s+at .+[(:]\d+/m, "no stack trace");
    assert.doesNotThrow(() => process.kill(agent.pid as number, 0), "the agent outlives the daemon");

    const down = await corral(["down", "--config", config], { NATS_URL: nats.url });
    assert.equal(down.code, 0, down.stderr);
    await until("the agent stopped", () => {
      try {
        process.kill(agent.pid as number, 0);
        return false;
      } catch {
        return true;
      }
    });
  });
});
