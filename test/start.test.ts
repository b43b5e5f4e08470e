import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CorralClient } from "../src/api/client.ts";
import { DEFAULT_CONFIG } from "../src/config/default.ts";
import { connectNats, natsAnswers } from "../src/nats/connect.ts";
import { freePort } from "../src/nats/server.ts";
import { createRuntime } from "../src/runtime/index.ts";
import type { RuntimeKind } from "../src/runtime/types.ts";
import { bin, root } from "./helpers/cli.ts";
import { portBlock, until, writeConfig } from "./helpers/daemon.ts";
import { dockerAvailable } from "./helpers/docker.ts";
import { tempDir, trackProcess } from "./helpers/teardown.ts";

/**
 * What `npm start` runs, end to end: no NATS answering, so it starts its own; the built-in pool
 * (here under an instance name and port block of the test's own, so it can never touch a
 * developer's `npm start`) gets warm; an agent is acquired and answers HTTP; Ctrl-C stops it all.
 */
describe("corral start (npm start)", () => {
  it("starts NATS, warms the default pool, serves a lease, and Ctrl-C leaves nothing running", async () => {
    const dir = tempDir("start-");
    const url = `nats://127.0.0.1:${await freePort()}`;
    const instance = `start-${process.pid}`;
    const pool = DEFAULT_CONFIG.pools.default;
    const config = writeConfig(dir, {
      instance,
      pools: { default: { ...pool, ports: { ...pool.ports, range: portBlock(10) } } },
    });
    const proc = spawn(process.execPath, [bin, "start", "--data-dir", dir, "--config", config], {
      cwd: root,
      env: { ...process.env, NATS_URL: url, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    // A failed assertion still stops it the way a user would (Ctrl-C: pools closed, agents gone,
    // its nats-server stopped); SIGKILL only if that hangs.
    trackProcess(proc, "corral start", { signal: "SIGINT", graceMs: 60_000 });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d) => {
      stdout += d;
    });
    proc.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    await until("two idle agents on screen", () => /active 0 idle 2 total 2/.test(stdout), 60_000);
    assert.match(stdout, new RegExp(`corral is up · NATS ${url}`));
    const nc = await connectNats(url, { name: "start-test" });
    try {
      const client = new CorralClient(nc);
      const lease = await client.acquire("default", { timeoutMs: 10_000 });
      const hello = (await (await fetch(lease.urls[0] as string)).json()) as { agent: string };
      assert.equal(hello.agent, lease.agentId);
      await client.release(lease.leaseId);
    } finally {
      await nc.close();
    }
    proc.kill("SIGINT");
    assert.equal(await exited, 0, stderr);
    assert.match(stdout, /stopped; nothing left running/);
    assert.equal(await natsAnswers(url, 300), false, "the nats-server it started is stopped");
    // Whichever runtime it chose (docker when an engine answered it), none has an agent left.
    const kinds: RuntimeKind[] = (await dockerAvailable()).ok ? ["docker", "process"] : ["process"];
    for (const kind of kinds) {
      const rt = await createRuntime(kind, { instance, stateDir: join(dir, "process", instance) });
      assert.deepEqual(await rt.list(), [], `no ${kind} agent left by label`);
      await rt.close();
    }
  });
});
