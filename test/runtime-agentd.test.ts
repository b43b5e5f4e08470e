import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { connect, type TLSSocket } from "node:tls";
import { encodeFrame, FrameDecoder } from "../src/agentd/frames.ts";
import { loadOrCreateCa } from "../src/identity/ca.ts";
import { writeIdentityFiles } from "../src/identity/files.ts";
import { canonicalAgentName, controlPlaneName } from "../src/identity/names.ts";
import { controlPlaneClientOptions, describeAgentPeer, type TlsIdentity } from "../src/identity/tls.ts";
import { AGENTD_PORT, chooseAgentdArgs, PACKAGE_ROOT } from "../src/runtime/agentd-launch.ts";
import { dockerClient } from "../src/runtime/detect.ts";
import { DockerRuntime } from "../src/runtime/docker.ts";
import { mountedNode } from "../src/runtime/docker-agentd.ts";
import { NODE_IMAGE, SLEEP } from "../src/runtime/docker-image.ts";
import { hostNodeFiles } from "../src/runtime/node-rootfs.ts";
import { descendantsOf, isAlive, readProcStat } from "../src/runtime/proc.ts";
import { ProcessRuntime } from "../src/runtime/process.ts";
import { tarChunks } from "../src/runtime/tar.ts";
import type { AgentTemplate, CreateSpec, Runtime } from "../src/runtime/types.ts";
import { dockerSkip, removeByInstance, testImage } from "./helpers/docker.ts";
import { WAIT_MS, waitUntil } from "./helpers/runtime-conformance.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

const skipDocker = await dockerSkip();
const root = tempDir("agentd-rt-");
const instance = `ad-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const pool = `pool-${instance}`;
const ca = await loadOrCreateCa(join(root, "ca"));
const cp = await ca.issueControlPlane(instance);
const cpIdentity: TlsIdentity = { certPem: cp.certPem, keyPem: cp.keyPem, caPem: ca.certPem };
let gen = 0;

/** A spec whose agentd holds a fresh identity for (pool, agentId), issued by the test's CA. */
async function agentdSpec(agentId: string, template: AgentTemplate): Promise<CreateSpec> {
  const identityDir = join(root, "identities", agentId);
  writeIdentityFiles(identityDir, await ca.issueAgent({ poolId: pool, agentId }), ca.certPem);
  return {
    instance,
    poolId: pool,
    agentId,
    generation: ++gen,
    template,
    env: {},
    ports: [],
    agentd: { identityDir, cpCN: controlPlaneName(instance) },
  };
}

/** Polls `fn` every 25 ms until it gives a value; throws naming `what` after WAIT_MS. */
async function eventually<T>(fn: () => Promise<T | undefined> | T | undefined, what: string): Promise<T> {
  const until = Date.now() + WAIT_MS;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

type Frame = { t?: unknown; id?: unknown; [k: string]: unknown };

/** The control plane's side, reduced to what these tests need: TLS, frames, hello, ops. */
class Dialled {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];

  private constructor(readonly socket: TLSSocket) {
    socket.on("data", (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk).frames) {
        if (typeof f === "object" && f !== null) this.frames.push({ ...f });
      }
    });
  }

  static open(at: { host: string; port: number }): Promise<Dialled | undefined> {
    return new Promise((resolve) => {
      const socket = connect({ ...controlPlaneClientOptions(cpIdentity), host: at.host, port: at.port });
      socket.once("secureConnect", () => resolve(new Dialled(socket)));
      socket.once("error", () => resolve(undefined)); // not listening yet: the caller tries again
    });
  }

  send(msg: unknown): void {
    this.socket.write(encodeFrame(msg));
  }

  next(pred: (m: Frame) => boolean, what: string): Promise<Frame> {
    return eventually(() => this.frames.find(pred), `${what} from agentd`);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Dials the instance's endpoint once it has one: TLS, hello, welcome, then agent-ready. */
async function dialAndStart(rt: Runtime, id: string, agentId: string) {
  const endpoint = await eventually(async () => (await rt.endpoint(id)) ?? undefined, "an agentd endpoint");
  const conn = await eventually(
    () => Dialled.open(endpoint),
    `TLS to agentd at ${endpoint.host}:${endpoint.port}`,
  );
  const peer = describeAgentPeer(conn.socket);
  conn.send({ t: "hello", v: 1, agentId });
  const ack = await conn.next((m) => m.t === "hello-ack", "hello-ack");
  conn.send({ t: "welcome" });
  conn.send({ t: "op", id: `ready-${agentId}`, op: "agent-ready", args: {} });
  const done = await conn.next(
    (m) => m.id === `ready-${agentId}` && (m.t === "done" || m.t === "error"),
    "agent-ready's answer",
  );
  return { endpoint, conn, peer, ack, done };
}

describe("which agentd a runtime starts", () => {
  it("the build when it is not older than the sources, else the sources through tsx (as bin/corral.js)", () => {
    const pkg = join(root, "pkg");
    mkdirSync(join(pkg, "src", "agentd"), { recursive: true });
    mkdirSync(join(pkg, "dist", "src", "agentd"), { recursive: true });
    writeFileSync(join(pkg, "src", "agentd", "main.ts"), "");
    writeFileSync(join(pkg, "dist", "src", "agentd", "main.js"), "");
    const t0 = Date.now() / 1000;
    utimesSync(join(pkg, "src", "agentd", "main.ts"), t0, t0);
    utimesSync(join(pkg, "dist", "src", "agentd", "main.js"), t0 + 10, t0 + 10);
    assert.deepEqual(chooseAgentdArgs(pkg, false), [join("dist", "src", "agentd", "main.js")]);
    // Sources newer than the build (or CORRAL_FROM_SOURCE=1): tsx, which must be inside the root.
    utimesSync(join(pkg, "src", "agentd", "main.ts"), t0 + 20, t0 + 20);
    assert.throws(() => chooseAgentdArgs(pkg, false), /tsx .* is outside corral's package root/);
    const [flag, loader, entry] = chooseAgentdArgs(PACKAGE_ROOT, true);
    assert.deepEqual([flag, entry], ["--import", join("src", "agentd", "main.ts")]);
    assert.ok(existsSync(join(PACKAGE_ROOT, loader ?? "")), `tsx's loader at ${loader}`);
  });
});

describe("agentd in the process runtime", () => {
  const rt = new ProcessRuntime({ instance, stateDir: join(root, "process"), pollMs: 200 });
  onTeardown(`process agents of ${instance}`, async () => {
    for (const i of await rt.list()) await rt.remove(i.id);
    await rt.close();
  });

  /** The command agentd started (`sleep 1000`), found below agentd in the process tree. */
  function commandOf(agentdPid: number) {
    const argv0 = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "";
    const below = descendantsOf(agentdPid);
    return { below, command: below.find((d) => argv0(d.pid).endsWith("/sleep")) };
  }

  it("agentd is the agent process and answers TLS as the agent; the command is its child; stop leaves nothing", async () => {
    await rt.ready();
    const agentId = `p1-${instance}`;
    const inst = await rt.create(await agentdSpec(agentId, { command: ["sleep", "1000"] }));
    const rec = rt.state.read(inst.id);
    assert.ok(rec?.identityDir && rec.agentdState);
    for (const f of ["agent.crt", "agent.key", "ca.crt"]) {
      assert.equal(statSync(join(rec.identityDir, f)).mode & 0o777, 0o400, `${f} is read-only`);
    }
    assert.equal(await rt.endpoint(inst.id), null, "no endpoint before it runs");
    await rt.start(inst.id);
    const { endpoint, conn, peer, ack, done } = await dialAndStart(rt, inst.id, agentId);
    assert.equal(endpoint.host, "127.0.0.1");
    const written = JSON.parse(readFileSync(join(rec.agentdState, "agentd.json"), "utf8"));
    const pid = (await rt.inspect(inst.id))?.pid ?? 0;
    assert.deepEqual(written, { port: endpoint.port, pid });
    assert.equal(peer.peerCN, canonicalAgentName(pool, agentId));
    assert.equal(peer.peerCN !== null && peer.chain, "ok");
    assert.deepEqual([ack.agentId, ack.poolId], [agentId, pool]);
    assert.equal(done.t, "done", `agent-ready: ${JSON.stringify(done)}`);
    const { below, command } = commandOf(pid);
    assert.ok(command, "the template's command runs under agentd");

    conn.close();
    await rt.stop(inst.id);
    assert.equal(isAlive(pid), false, "agentd is gone");
    // It removes its agentd.json as the last step of a graceful stop: the command ended within
    // agentd's grace, and agentd within the runtime's.
    assert.equal(existsSync(join(rec.agentdState, "agentd.json")), false, "agentd stopped gracefully");
    assert.equal((await rt.inspect(inst.id))?.exitCode, 0);
    for (const d of below) assert.equal(isAlive(d.pid, d.startTime), false, `pid ${d.pid} is gone`);
    assert.equal(await rt.endpoint(inst.id), null);
    await rt.remove(inst.id);
    assert.equal(existsSync(rec.identityDir), false, "the identity copy goes with the instance");
    assert.equal(existsSync(rec.agentdState), false);
  });

  it("a restarted daemon adopts agentd, leaves its command alone, and finds its endpoint; the command carries agentd's CORRAL_RUNTIME_ID", async () => {
    await rt.ready();
    const agentId = `p3-${instance}`;
    const inst = await rt.create(await agentdSpec(agentId, { command: ["sleep", "1000"] }));
    await rt.start(inst.id);
    const first = await dialAndStart(rt, inst.id, agentId);
    first.conn.close();
    const pid = (await rt.inspect(inst.id))?.pid ?? 0;
    const { command } = commandOf(pid);
    assert.ok(command, "the template's command runs under agentd");
    const next = new ProcessRuntime({ instance, stateDir: join(root, "process"), pollMs: 200 });
    try {
      await next.ready();
      assert.equal((await next.inspect(inst.id))?.pid, pid, "agentd adopted as the agent process");
      assert.deepEqual(await next.endpoint(inst.id), first.endpoint);
      assert.equal(isAlive(command.pid, command.startTime), true, "its command neither killed nor adopted");
    } finally {
      await next.close();
    }
    // The command carries its record's id (agentd hands it on): never adopted in agentd's place
    // (above), and found when agentd is gone before it (below).
    const environ = readFileSync(`/proc/${command.pid}/environ`, "utf8");
    await rt.remove(inst.id);
    assert.match(environ, new RegExp(`(^|\\0)CORRAL_RUNTIME_ID=${inst.id}(\\0|$)`));
  });

  it("a command that outlived its agentd (killed from outside) is killed when its instance is removed", async () => {
    await rt.ready();
    const agentId = `p6-${instance}`;
    const inst = await rt.create(await agentdSpec(agentId, { command: ["sleep", "1000"] }));
    await rt.start(inst.id);
    (await dialAndStart(rt, inst.id, agentId)).conn.close();
    const pid = (await rt.inspect(inst.id))?.pid ?? 0;
    const { command } = commandOf(pid);
    assert.ok(command, "the template's command runs under agentd");
    process.kill(-pid, "SIGKILL"); // agentd's group only: the command's is its own
    await waitUntil(() => !isAlive(pid), WAIT_MS, "agentd gone");
    assert.equal(isAlive(command.pid, command.startTime), true, "the command outlived agentd");
    await rt.remove(inst.id);
    assert.equal(isAlive(command.pid, command.startTime), false, "removed with its instance");
  });

  it("a stop without grace SIGKILLs agentd, and the command it ran in a group of its own goes too", async () => {
    await rt.ready();
    const agentId = `p4-${instance}`;
    const inst = await rt.create(await agentdSpec(agentId, { command: ["sleep", "1000"] }));
    await rt.start(inst.id);
    (await dialAndStart(rt, inst.id, agentId)).conn.close();
    const pid = (await rt.inspect(inst.id))?.pid ?? 0;
    const { below, command } = commandOf(pid);
    assert.ok(command, "the template's command runs under agentd");
    assert.equal(readProcStat(command.pid)?.pgrp, command.pid, "in a process group of its own");
    await rt.stop(inst.id, 0);
    assert.equal(isAlive(pid), false, "agentd is gone");
    for (const d of below) assert.equal(isAlive(d.pid, d.startTime), false, `pid ${d.pid} is gone`);
    await rt.remove(inst.id);
  });

  it("without agentd in the spec the template's command is the agent process, and there is no endpoint", async () => {
    await rt.ready();
    const { agentd: _, ...plain } = await agentdSpec(`p5-${instance}`, { command: ["sleep", "1000"] });
    const inst = await rt.create(plain);
    await rt.start(inst.id);
    const pid = (await rt.inspect(inst.id))?.pid ?? 0;
    assert.deepEqual(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(1, -1), ["1000"]);
    assert.match(readFileSync(`/proc/${pid}/cmdline`, "utf8"), /^\S*\/sleep\0/);
    assert.equal(await rt.endpoint(inst.id), null);
    await rt.remove(inst.id);
  });

  it("an identity dir without the agent's key is refused at create", async () => {
    const spec = await agentdSpec(`p2-${instance}`, { command: ["sleep", "1000"] });
    const empty = join(root, "empty-identity");
    writeIdentityFiles(empty, await ca.issueAgent({ poolId: pool, agentId: "x" }), ca.certPem);
    rmSync(join(empty, "agent.key"));
    await assert.rejects(
      rt.create({ ...spec, agentd: { identityDir: empty, cpCN: "cp" } }),
      /lacks agent\.key/,
    );
    assert.deepEqual(await rt.list({ agentId: spec.agentId }), []);
  });
});

describe("agentd in the docker runtime", { skip: skipDocker }, () => {
  const docker = dockerClient();
  const rt = new DockerRuntime({ instance, docker });
  onTeardown(`containers of ${instance}`, async () => {
    await rt.close();
    await removeByInstance(docker, instance);
  });

  async function runsAgentd(template: AgentTemplate, agentId: string) {
    await testImage(docker);
    await rt.ready();
    const inst = await rt.create(await agentdSpec(agentId, template));
    await rt.start(inst.id);
    const { endpoint, conn, peer, ack, done } = await dialAndStart(rt, inst.id, agentId);
    const info = await docker.getContainer(inst.id).inspect();
    assert.deepEqual(endpoint, { host: (await rt.inspect(inst.id))?.address, port: AGENTD_PORT });
    assert.deepEqual(info.HostConfig.PortBindings ?? {}, {}, "agentd's port is not published");
    assert.equal(peer.peerCN, canonicalAgentName(pool, agentId));
    assert.deepEqual([ack.agentId, ack.poolId], [agentId, pool]);
    assert.equal(done.t, "done", `agent-ready: ${JSON.stringify(done)}`);
    conn.close();
    return inst;
  }

  it("corral's image: agentd runs from corral's files by the image's node, answers TLS at the container's IP; stop and remove leave nothing", async () => {
    const agentId = `d1-${instance}`;
    const inst = await runsAgentd({ image: NODE_IMAGE, command: SLEEP }, agentId);
    const top: { Processes: string[][] } = await docker.getContainer(inst.id).top();
    assert.ok(
      top.Processes.some((p) => p.join(" ").includes("setInterval")),
      `the template's command runs: ${JSON.stringify(top.Processes)}`,
    );
    await rt.stop(inst.id);
    const stopped = await rt.inspect(inst.id);
    assert.deepEqual([stopped?.state, stopped?.exitCode], ["exited", 0], "agentd stopped gracefully");
    assert.equal(await rt.endpoint(inst.id), null);
    await rt.remove(inst.id);
    assert.equal(await rt.inspect(inst.id), null);
    assert.deepEqual(await rt.list({ agentId }), []);
  });

  it("without agentd in the spec the template's command is the container's, and there is no endpoint", async () => {
    await testImage(docker);
    await rt.ready();
    const { agentd: _, ...plain } = await agentdSpec(`d3-${instance}`, { image: NODE_IMAGE, command: SLEEP });
    const inst = await rt.create(plain);
    await rt.start(inst.id);
    const info = await docker.getContainer(inst.id).inspect();
    assert.deepEqual(info.Config.Cmd, SLEEP);
    assert.equal(await rt.endpoint(inst.id), null);
    await rt.remove(inst.id);
  });

  it("an image without node: this host's node is mounted with its loader and libraries", async () => {
    const image = `corral-test/no-node:${process.pid}`;
    const stream = await docker.importImage(
      Readable.from(tarChunks([{ type: "dir", path: "tmp", mode: 0o1777 }])),
      { repo: image.split(":")[0], tag: image.split(":")[1] } as object,
    );
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())),
    );
    onTeardown(`image ${image}`, () =>
      docker
        .getImage(image)
        .remove({ force: true })
        .then(() => {}),
    );
    // Its own command can use the same node: the image has nothing else to run.
    const node = mountedNode(hostNodeFiles()).argv;
    const inst = await runsAgentd(
      { image, command: [...node, "-e", "setInterval(() => {}, 1 << 30)"] },
      `d2-${instance}`,
    );
    await rt.remove(inst.id);
    assert.equal(await rt.inspect(inst.id), null);
  });
});
