import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { dockerClient } from "../src/runtime/detect.ts";
import { DockerRuntime } from "../src/runtime/docker.ts";
import { ensureNodeImage, NODE_IMAGE, nodeScript, SLEEP } from "../src/runtime/docker-image.ts";
import { RuntimeError } from "../src/runtime/errors.ts";
import { helloAgentTemplate } from "../src/runtime/hello.ts";
import {
  LABEL_AGENT,
  LABEL_GENERATION,
  LABEL_INSTANCE,
  LABEL_MANAGED,
  LABEL_POOL,
} from "../src/runtime/labels.ts";
import type { CreateSpec } from "../src/runtime/types.ts";
import { dockerSkip, removeByInstance, runLabels, testImage, trackContainer } from "./helpers/docker.ts";
import { IGNORES_TERM_JS, runtimeConformance, WAIT_MS, waitUntil } from "./helpers/runtime-conformance.ts";
import { onTeardown } from "./helpers/teardown.ts";

describe("docker runtime", { skip: await dockerSkip() }, () => {
  const docker = dockerClient();
  const open = async (instance: string) => {
    await testImage(docker); // imported once, before the first agent needs it
    const rt = new DockerRuntime({ instance, docker });
    await rt.ready();
    return rt;
  };

  runtimeConformance({
    name: "docker runtime",
    open,
    hello: () => helloAgentTemplate("docker"),
    sleep: () => ({ image: NODE_IMAGE, command: SLEEP }),
    ignoresTerm: () => ({ image: NODE_IMAGE, command: nodeScript(IGNORES_TERM_JS) }),
    killFromOutside: async (inst) => {
      await docker.getContainer(inst.id).kill({ signal: "SIGKILL" });
    },
    cleanup: async (instance) => {
      await removeByInstance(docker, instance);
    },
  });

  describe("docker specifics", () => {
    const instance = `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}-d`;
    const spec = (agentId: string, over: Partial<CreateSpec["template"]> = {}): CreateSpec => ({
      instance,
      poolId: "pool-d",
      agentId,
      generation: 1,
      template: { image: NODE_IMAGE, command: SLEEP, ...over },
      env: { EXTRA: "yes" },
      ports: [],
    });
    let rt: DockerRuntime;

    it("builds the node image by docker import from this host's node when it is missing, and reuses it", async () => {
      const name = `corral-test/node-build:${process.pid}`;
      try {
        assert.equal(await ensureNodeImage(docker, name), name);
        const built = await docker.getImage(name).inspect();
        assert.equal(await ensureNodeImage(docker, name), name);
        assert.equal((await docker.getImage(name).inspect()).Id, built.Id, "not rebuilt");
        // The host's node runs in it, on PATH, resolving names and users; its exit status comes back.
        const c = await docker.createContainer({
          Image: name,
          Cmd: nodeScript(
            "require('dns').lookup('localhost', (e) => process.exit(e || require('os').userInfo().username !== 'root' ? 1 : 7))",
          ),
          Labels: runLabels(),
        });
        const removed = trackContainer(docker, c.id);
        await c.start();
        assert.equal((await c.wait()).StatusCode, 7);
        await removed();
      } finally {
        await docker.getImage(name).remove({ force: true });
      }
      rt = await open(instance);
      onTeardown(`docker instance ${instance}`, async () => {
        await rt.close();
        await removeByInstance(docker, instance);
      });
    });

    it("a missing image is a typed error naming the image", async () => {
      const image = `corral-test/does-not-exist:${process.pid}`;
      await assert.rejects(rt.create(spec("no-image", { image })), (err: unknown) => {
        assert.ok(err instanceof RuntimeError);
        assert.equal(err.code, "image_missing");
        assert.equal(err.details.image, image);
        assert.match(err.message, /does-not-exist/);
        return true;
      });
      assert.deepEqual(await rt.list({ agentId: "no-image" }), []);
    });

    it("labels, --init, env, limits and port bindings reach the container's config", async () => {
      const inst = await rt.create({
        ...spec("limited", {
          limits: { memoryMb: 64, cpus: 0.5, pids: 32 },
          stopGraceMs: 3000,
          workdir: "/tmp",
        }),
        ports: [18_999],
      });
      const info = await docker.getContainer(inst.id).inspect();
      assert.equal(info.Name, `/corral-${instance}-limited-1`);
      assert.deepEqual(
        [LABEL_MANAGED, LABEL_INSTANCE, LABEL_POOL, LABEL_AGENT, LABEL_GENERATION].map(
          (l) => info.Config.Labels[l],
        ),
        ["true", instance, "pool-d", "limited", "1"],
      );
      assert.equal(info.HostConfig.Init, true);
      assert.equal(info.HostConfig.Memory, 64 * 1024 * 1024);
      assert.equal(info.HostConfig.NanoCpus, 500_000_000);
      assert.equal(info.HostConfig.PidsLimit, 32);
      // Loopback by default (issue 7): an agent's ports are not published to the network.
      assert.deepEqual(info.HostConfig.PortBindings, {
        "18999/tcp": [{ HostIp: "127.0.0.1", HostPort: "18999" }],
      });
      assert.equal((info.Config as { StopTimeout?: number }).StopTimeout, 3);
      assert.equal(info.Config.WorkingDir, "/tmp");
      assert.ok(info.Config.Env.includes("EXTRA=yes"));
      assert.ok(info.Config.Env.includes("CORRAL_AGENT_ID=limited"));
      await rt.remove(inst.id);
    });

    it("ports are published on all addresses only when the pool's ports.bind says so", async () => {
      const inst = await rt.create({ ...spec("open", {}), ports: [18_998], bind: "0.0.0.0" });
      const info = await docker.getContainer(inst.id).inspect();
      assert.deepEqual(info.HostConfig.PortBindings, {
        "18998/tcp": [{ HostIp: "0.0.0.0", HostPort: "18998" }],
      });
      await rt.remove(inst.id);
    });

    it("never touches a container it does not own", async () => {
      const c = await docker.createContainer({ Image: NODE_IMAGE, Cmd: SLEEP, Labels: runLabels() });
      trackContainer(docker, c.id);
      assert.equal(await rt.inspect(c.id), null);
      await assert.rejects(
        rt.remove(c.id),
        (err: unknown) => err instanceof RuntimeError && err.code === "not_owned",
      );
      await assert.rejects(
        rt.stop(c.id),
        (err: unknown) => err instanceof RuntimeError && err.code === "not_owned",
      );
      assert.equal((await docker.getContainer(c.id).inspect()).State.Status, "created", "still there");
    });

    it("start of an unknown id is not_found; stop/remove of one are no-ops", async () => {
      const ghost = "0".repeat(64);
      await assert.rejects(
        rt.start(ghost),
        (err: unknown) => err instanceof RuntimeError && err.code === "not_found",
      );
      await rt.stop(ghost);
      await rt.remove(ghost);
      assert.equal(await rt.inspect(ghost), null);
    });

    it("stats of a running container report memory and pids; of a stopped one, null", async () => {
      const inst = await rt.create(spec("stats"));
      await rt.start(inst.id);
      const s = await rt.stats(inst.id);
      assert.ok(s && (s.memoryBytes ?? 0) > 0, `memoryBytes: ${JSON.stringify(s)}`);
      assert.ok((s.pids ?? 0) >= 2, "tini + sleep");
      await rt.stop(inst.id, 0);
      assert.equal(await rt.stats(inst.id), null);
      await rt.remove(inst.id);
    });

    it("after the event stream breaks it re-lists and reconnects (no 10 s wait for the next re-list)", async () => {
      const watcher = new DockerRuntime({ instance, docker, relistMs: 60_000 });
      await watcher.ready();
      const seen: string[] = [];
      const sub = watcher.events((e) => seen.push(`${e.type}${e.reconciled ? "(reconciled)" : ""}:${e.id}`));
      try {
        // What an engine restart or a proxy timeout looks like from here: the stream just ends.
        (watcher as unknown as { stream?: { destroy(): void } }).stream?.destroy();
        const inst = await rt.create(spec("during-the-gap"));
        await rt.start(inst.id);
        await waitUntil(() => watcher.isRunning(inst.id), WAIT_MS, "the watcher to see it running");
        assert.ok(
          seen.some((e) => e.startsWith("start") && e.endsWith(inst.id)),
          `events: ${seen}`,
        );
        await docker.getContainer(inst.id).kill();
        await waitUntil(() => !watcher.isRunning(inst.id), WAIT_MS, "live events again after the reconnect");
        await rt.remove(inst.id);
      } finally {
        sub.close();
        await watcher.close();
      }
    });

    it("the periodic re-list alone keeps the view right (reconciled start, die, destroy)", async () => {
      // No event stream: only re-lists can inform this view.
      const blind = new DockerRuntime({ instance, docker, relistMs: 200, eventStream: false });
      await blind.ready();
      const seen: string[] = [];
      const sub = blind.events((e) => seen.push(`${e.type}${e.reconciled ? "(reconciled)" : ""}`));
      try {
        const inst = await rt.create(spec("behind-its-back"));
        await rt.start(inst.id);
        await waitUntil(() => blind.isRunning(inst.id), WAIT_MS, "the re-list to show it running");
        await docker.getContainer(inst.id).kill();
        await waitUntil(() => !blind.isRunning(inst.id), WAIT_MS, "the re-list to show it dead");
        await rt.remove(inst.id);
        await waitUntil(
          () => seen.includes("destroy(reconciled)"),
          WAIT_MS,
          `a reconciled destroy (seen: ${seen})`,
        );
        // A re-list may also fall between create and start ("create(reconciled)" first).
        assert.deepEqual(
          seen.filter((e) => !e.startsWith("create")),
          ["start(reconciled)", "die(reconciled)", "destroy(reconciled)"],
        );
      } finally {
        sub.close();
        await blind.close();
      }
    });
  });
});
