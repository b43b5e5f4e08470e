import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { watchRuntime } from "../src/cp/reconciler.ts";
import { dockerClient } from "../src/runtime/detect.ts";
import { DockerRuntime } from "../src/runtime/docker.ts";
import { NODE_IMAGE, SLEEP } from "../src/runtime/docker-image.ts";
import { ProcessRuntime } from "../src/runtime/process.ts";
import type { AgentTemplate, CreateSpec, Runtime } from "../src/runtime/types.ts";
import { EventStore } from "../src/store/event-store.ts";
import { dockerSkip, removeByInstance, testImage } from "./helpers/docker.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { type AgentHost, openAgentHost, spyDeps, type TestAgent } from "./helpers/reap-host.ts";
import { WAIT_MS, waitUntil } from "./helpers/runtime-conformance.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

const skipDocker = await dockerSkip();

/**
 * Live runtime events → what the control plane does (src/cp/reconciler.ts watchRuntime), with
 * real instances changed behind the runtime's back: a start or an unpause of an agent's current
 * instance dials it; a die fails the agent; a destroy fails it, evicts it and frees its ports.
 */
describe("runtime events → dial / destroy / fail (real NATS, real runtimes)", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let hosts: AgentHost;

  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    store = await EventStore.open(nc);
    hosts = await openAgentHost(store);
  });
  after(async () => {
    await hosts.close();
    store.close();
    await t.cleanup();
  });

  /** Watches `rt` for the host's agents; the deps' calls are recorded. */
  function watch(rt: Runtime) {
    const spy = spyDeps();
    const sub = watchRuntime(rt, hosts.host, hosts.log, spy.deps);
    return { calls: spy.calls, close: () => sub.close() };
  }

  const has = (calls: unknown[][], call: unknown[]) =>
    calls.some((c) => JSON.stringify(c) === JSON.stringify(call));

  async function failure(agent: TestAgent): Promise<{ code: string; message: string }> {
    let found: { code: string; message: string } | undefined;
    await waitUntil(
      async () => {
        const e = (await hosts.eventsOf(agent)).find((x) => x.type === "AgentFailed");
        found = e?.data as { code: string; message: string } | undefined;
        return found !== undefined;
      },
      WAIT_MS,
      `AgentFailed on ${agent.id}`,
    );
    return found ?? { code: "", message: "" };
  }

  function scenario(kind: "docker" | "process", rt: () => Promise<Runtime>, template: AgentTemplate) {
    const instance = `ev-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const pool = `pool-${instance}`;
    const spec = (agentId: string): CreateSpec => ({
      instance,
      poolId: pool,
      agentId,
      generation: 1,
      template,
      env: {},
      ports: [],
    });

    it(`${kind}: start of the current instance dials; another instance of the agent does not; a die fails it`, async () => {
      const r = await rt();
      const w = watch(r);
      try {
        const current = await r.create(spec(`a-${instance}`));
        const stale = await r.create({ ...spec(`a-${instance}`), generation: 2 });
        const agent = await hosts.startedAgent(kind, pool, `a-${instance}`, current.id);
        await r.start(stale.id);
        await r.start(current.id);
        await waitUntil(() => has(w.calls, ["onDial", agent.id, 1]), WAIT_MS, "onDial");
        assert.deepEqual(w.calls, [["onDial", agent.id, 1]], "one dial, for the current instance only");
        const running = await r.inspect(current.id);
        assert.ok(running?.pid);
        process.kill(running.pid, "SIGKILL"); // behind the runtime's back
        const failed = await failure(agent);
        assert.equal(failed.code, "exited");
        assert.match(failed.message, /exited with code 137/);
        assert.deepEqual(w.calls, [["onDial", agent.id, 1]], "a die neither dials nor evicts");
        await r.remove(stale.id);
        await r.remove(current.id);
      } finally {
        w.close();
      }
    });

    it(`${kind}: a destroy evicts the agent, frees its ports and fails it`, async () => {
      const r = await rt();
      const w = watch(r);
      try {
        const inst = await r.create(spec(`b-${instance}`));
        const agent = await hosts.startedAgent(kind, pool, `b-${instance}`, inst.id);
        await r.remove(inst.id);
        await waitUntil(() => has(w.calls, ["release", agent.id]), WAIT_MS, "release");
        assert.deepEqual(w.calls, [
          ["onDestroyed", agent.id, 1],
          ["release", agent.id],
        ]);
        const failed = await failure(agent);
        assert.equal(failed.message, "instance was removed");
      } finally {
        w.close();
      }
    });
    return instance;
  }

  describe("process", () => {
    const root = tempDir("events-");
    const opened: ProcessRuntime[] = [];
    const instance = scenario(
      "process",
      async () => {
        const r = new ProcessRuntime({ instance, stateDir: join(root, "p"), pollMs: 200 });
        await r.ready();
        opened.push(r);
        return r;
      },
      { command: ["sleep", "1000"] },
    );
    onTeardown("event test process runtimes", async () => {
      for (const r of opened) {
        for (const i of await r.list()) await r.remove(i.id);
        await r.close();
      }
    });
  });

  describe("docker", { skip: skipDocker }, () => {
    const docker = dockerClient();
    const opened: DockerRuntime[] = [];
    const instance = scenario(
      "docker",
      async () => {
        await testImage(docker);
        const r = new DockerRuntime({ instance, docker });
        await r.ready();
        opened.push(r);
        return r;
      },
      { image: NODE_IMAGE, command: SLEEP },
    );
    onTeardown("event test containers", async () => {
      await Promise.all(opened.map((r) => r.close()));
      await removeByInstance(docker, instance);
    });

    it("docker: pause says nothing; unpause of the current instance dials again", async () => {
      const r = new DockerRuntime({ instance, docker });
      await r.ready();
      opened.push(r);
      const w = watch(r);
      try {
        const inst = await r.create({
          instance,
          poolId: `pool-${instance}`,
          agentId: `c-${instance}`,
          generation: 1,
          template: { image: NODE_IMAGE, command: SLEEP },
          env: {},
          ports: [],
        });
        const agent = await hosts.startedAgent("docker", `pool-${instance}`, `c-${instance}`, inst.id);
        await r.start(inst.id);
        await waitUntil(() => w.calls.length === 1, WAIT_MS, "the start's dial");
        await docker.getContainer(inst.id).pause();
        await waitUntil(async () => (await r.inspect(inst.id))?.state === "paused", WAIT_MS, "paused");
        await docker.getContainer(inst.id).unpause();
        await waitUntil(() => w.calls.length === 2, WAIT_MS, "the unpause's dial");
        assert.deepEqual(w.calls, [
          ["onDial", agent.id, 1],
          ["onDial", agent.id, 1],
        ]);
        await r.remove(inst.id);
      } finally {
        w.close();
      }
    });
  });
});
