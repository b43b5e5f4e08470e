import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import Docker from "dockerode";
import { type RuntimeDeps, reconcileRuntime, recordReapDegraded } from "../src/cp/reconciler.ts";
import { dockerClient } from "../src/runtime/detect.ts";
import { DockerRuntime } from "../src/runtime/docker.ts";
import { NODE_IMAGE, SLEEP } from "../src/runtime/docker-image.ts";
import { ProcessRuntime } from "../src/runtime/process.ts";
import type { Runtime } from "../src/runtime/types.ts";
import { EventStore } from "../src/store/event-store.ts";
import { dockerSkip, removeByInstance, testImage } from "./helpers/docker.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { type AgentHost, openAgentHost, spyDeps } from "./helpers/reap-host.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/**
 * The start-up reap (src/cp/reconciler.ts) against real runtimes and a real nats-server: a
 * runtime that cannot be listed reaps nothing and says so (ReapDegraded on host/<instance>); one
 * that can be listed fails the agents whose instance is gone, evicts them and frees their ports,
 * and removes what only carries our labels — in every state, created too.
 */
const skipDocker = await dockerSkip();

describe("start-up reap (real NATS, real runtimes)", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let hosts: AgentHost;
  const root = tempDir("reap-");

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

  let n = 0;
  /** A fresh daemon instance name and a pool of its own (the reaper judges only its own pools). */
  const fresh = () => {
    const instance = `reap-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    return { instance, pool: `pool-${instance}`, agent: (name: string) => `${name}-${++n}-${instance}` };
  };

  /** Reaps `rt` for `pool` with ReapDegraded stored for real and every other dep recorded. */
  async function reap(rt: Runtime, instance: string, pool: string) {
    const spy = spyDeps();
    const deps: RuntimeDeps = {
      ...spy.deps,
      degraded: (kind, reason) => recordReapDegraded(store, instance, kind, reason),
    };
    const report = await reconcileRuntime(rt, hosts.host, hosts.log, (p) => p === pool, deps);
    const hostEvents = (await store.readAggregate({ kind: "host", id: instance })).map((r) => r.event);
    return { report, calls: spy.calls, hostEvents };
  }

  const unlistable: [string, RegExp, (instance: string) => Runtime][] = [
    [
      "docker engine that does not answer",
      /docker engine unreachable/,
      (instance) =>
        new DockerRuntime({ instance, docker: new Docker({ socketPath: join(root, "no-engine.sock") }) }),
    ],
    [
      "process state dir that cannot be read",
      /ENOTDIR/,
      (instance) => {
        const dir = join(root, instance);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, "instances"), "not a directory"); // readdir fails: ENOTDIR
        return new ProcessRuntime({ instance, stateDir: dir });
      },
    ],
  ];
  for (const [what, reason, make] of unlistable) {
    it(`a ${what}: ReapDegraded stored, nothing failed, evicted or released`, async () => {
      const { instance, pool, agent: name } = fresh();
      const rt = make(instance);
      const agent = await hosts.startedAgent(rt.kind, pool, name("unseen"), "0".repeat(64));
      const before = await hosts.stateOf(agent);
      const { report, calls, hostEvents } = await reap(rt, instance, pool);
      assert.match(report.degraded ?? "", reason, "the report says why the reap was degraded");
      assert.deepEqual([report.adopted, report.removed, report.gone], [0, 0, 0]);
      assert.deepEqual(
        hostEvents.map((e) => [e?.type, e?.data]),
        [["ReapDegraded", { runtime: rt.kind, reason: report.degraded }]],
      );
      assert.equal(await hosts.stateOf(agent), before, "the agent was not failed");
      assert.deepEqual(calls, [], "no registration evicted, no port released");
      await rt.close();
    });
  }

  it("a process runtime that can be listed: the agent whose process is gone fails, is evicted, frees its ports", async () => {
    const { instance, pool, agent: name } = fresh();
    const rt = new ProcessRuntime({ instance, stateDir: join(root, instance) });
    await rt.ready();
    const agent = await hosts.startedAgent("process", pool, name("gone"), "p-000000000000");
    const { report, calls, hostEvents } = await reap(rt, instance, pool);
    assert.equal(report.degraded, undefined);
    assert.equal(report.gone, 1);
    assert.deepEqual(hostEvents, [], "no ReapDegraded");
    assert.equal(await hosts.stateOf(agent), "failed");
    const failed = (await hosts.eventsOf(agent)).filter((e) => e.type === "AgentFailed");
    assert.deepEqual(
      failed.map((e) => (e.data as { code: string }).code),
      ["gone"],
    );
    assert.deepEqual(calls, [
      ["onDestroyed", agent.id, agent.generation],
      ["release", agent.id],
    ]);
    await rt.close();
  });

  describe("docker", { skip: skipDocker }, () => {
    const docker = dockerClient();
    const { instance, pool, agent: name } = fresh();
    const other = `${instance}-other`;
    onTeardown(`reap containers of ${instance}`, async () => {
      await removeByInstance(docker, instance);
      await removeByInstance(docker, other);
    });

    it("reaps by our labels in every state (created, running, exited), adopts the current instance, leaves others' alone", async () => {
      await testImage(docker);
      const rt = new DockerRuntime({ instance, docker });
      const theirs = new DockerRuntime({ instance: other, docker });
      await rt.ready();
      await theirs.ready();
      const spec = (runtimeInstance: string, agentId: string) => ({
        instance: runtimeInstance,
        poolId: pool,
        agentId,
        generation: 1,
        template: { image: NODE_IMAGE, command: SLEEP },
        env: {},
        ports: [],
      });
      const created = await rt.create(spec(instance, "orphan-created"));
      const running = await rt.create(spec(instance, "orphan-running"));
      await rt.start(running.id);
      const exited = await rt.create(spec(instance, "orphan-exited"));
      await rt.start(exited.id);
      await rt.stop(exited.id, 0);
      const keptId = name("kept");
      const current = await rt.create(spec(instance, keptId));
      await rt.start(current.id);
      const foreign = await theirs.create(spec(other, "not-ours"));
      const kept = await hosts.startedAgent("docker", pool, keptId, current.id);
      const keptState = await hosts.stateOf(kept);
      const gone = await hosts.startedAgent("docker", pool, name("gone"), "f".repeat(64));

      const { report, calls } = await reap(rt, instance, pool);
      assert.deepEqual([report.adopted, report.removed, report.gone], [1, 3, 1]);
      assert.deepEqual(
        (await rt.list()).map((i) => i.id),
        [current.id],
        "only the current instance is left",
      );
      for (const id of [created.id, running.id, exited.id]) assert.equal(await rt.inspect(id), null);
      assert.equal((await theirs.inspect(foreign.id))?.state, "created", "another instance's is untouched");
      assert.equal(await hosts.stateOf(kept), keptState, "the adopted agent goes on");
      assert.equal(await hosts.stateOf(gone), "failed");
      assert.deepEqual(calls, [
        ["onDestroyed", gone.id, gone.generation],
        ["release", gone.id],
      ]);
      await rt.close();
      await theirs.close();
    });
  });
});
