import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { CorralClient } from "../src/api/client.ts";
import type { AcquireReply } from "../src/api/protocol.ts";
import { createRuntime } from "../src/runtime/index.ts";
import { EventStore } from "../src/store/event-store.ts";
import { corral } from "./helpers/cli.ts";
import { type DaemonProcess, spawnDaemon, until, writeConfig } from "./helpers/daemon.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/*
 * exec end to end: `corral up` with a process pool whose agents run agentd, the control plane's
 * sessions to them over mTLS, the CLI as a user runs it; then a daemon SIGKILLed mid-command and
 * started again.
 */

describe("exec through a daemon (corral up, process agents with agentd, real NATS)", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let client: CorralClient;
  let store: EventStore;
  let dir: string;
  let file: string;
  let d: DaemonProcess;
  const tag = `${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const instance = `x${tag}`;
  const pool = `px${tag}`;

  before(async () => {
    t = await startTestNats();
    nc = await t.connect("exec-daemon-test");
    client = new CorralClient(nc);
    store = await EventStore.open(nc);
    dir = tempDir("exec-daemon-");
    onTeardown(`agents of instance ${instance}`, async () => {
      const rt = await createRuntime("process", { instance, stateDir: join(dir, "process", instance) });
      for (const i of await rt.list()) await rt.remove(i.id);
      await rt.close();
    });
    file = writeConfig(dir, {
      instance,
      stateDir: dir,
      pools: {
        [pool]: { runtime: "process", min: 1, max: 1, warm: 1, template: { command: ["sleep", "100000"] } },
      },
    });
    d = await spawnDaemon(file, t.url);
  });
  after(async () => {
    store?.close();
    await t.cleanup();
  });

  const idle = () =>
    until(
      "an idle agent",
      async () => ((await client.status(pool)).agents ?? []).some((a) => a.phase === "idle"),
      60_000,
    );

  it("corral exec <lease> -- node -e 'console.log(1)' prints 1 and exits 0", async () => {
    await idle();
    const nats = { NATS_URL: t.url };
    const acquired = await corral(["acquire", pool, "--json"], nats);
    assert.equal(acquired.code, 0, acquired.stderr);
    const lease = JSON.parse(acquired.stdout) as AcquireReply;
    const r = await corral(["exec", lease.leaseId, "--", "node", "-e", "console.log(1)"], nats);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, "1\n");
    assert.equal(r.code, 0);
    const failing = await corral(["exec", lease.leaseId, "--", "node", "-e", "process.exit(9)"], nats);
    assert.equal(failing.code, 9);
    await client.release(lease, pool);
  });

  it("SIGKILL the daemon mid-exec and start it again: the command runs once, its output goes on, the call ends with its exit code", async () => {
    await idle();
    const lease = await client.acquire(pool);
    const marks = join(dir, "marks.log");
    const go = join(dir, "go");
    const append = (text: string) => `fs.appendFileSync(${JSON.stringify(marks)}, ${JSON.stringify(text)})`;
    // Runs until the test says go: after the next daemon has its session to the agent again.
    const script =
      `const fs = require('fs'); ${append("start\n")}; console.log('a'); ` +
      `const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(go)})) { clearInterval(t); ${append("end\n")}; console.log('b'); process.exit(3) } }, 100)`;
    const chunks: string[] = [];
    const call = client.exec(lease, {
      pool,
      argv: ["node", "-e", script],
      onOutput: (_s, data) => chunks.push(new TextDecoder().decode(data)),
    });
    await until("the command started", () => chunks.includes("a\n"));
    const connected = await sessionsConnected(lease.agentId);
    d.proc.kill("SIGKILL");
    await d.exited;
    d = await spawnDaemon(file, t.url);
    await until(
      "a new session to the agent",
      async () => (await sessionsConnected(lease.agentId)) > connected,
    );
    await new Promise((r) => setTimeout(r, 2_000)); // registered, and the command sent again
    writeFileSync(go, "");
    const r = await call;
    assert.equal(r.exitCode, 3);
    assert.deepEqual(chunks, ["a\n", "b\n"]);
    assert.equal(readFileSync(marks, "utf8"), "start\nend\n", "ran once");
  });

  async function sessionsConnected(agentId: string): Promise<number> {
    const records = await store.readAggregate({ kind: "session", id: agentId });
    return records.filter((r) => r.event?.type === "SessionConnected").length;
  }
});
