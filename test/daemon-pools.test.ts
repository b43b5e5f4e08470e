import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import Docker from "dockerode";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { resolvePools } from "../src/daemon/pools.ts";
import { HELLO_AGENT_PATH, NODE_IMAGE } from "../src/runtime/index.ts";

/**
 * An engine API that answers, but runs containers of another platform: the built-in node image
 * cannot be made for it. Only the calls corral makes before it gives up are answered.
 */
function otherPlatformEngine(): Promise<{ server: Server; docker: Docker; calls: string[] }> {
  const calls: string[] = [];
  const server = createServer((req, res) => {
    calls.push(`${req.method} ${req.url}`);
    const json = (status: number, body: unknown) =>
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.url?.endsWith("/_ping")) return res.writeHead(200).end("OK");
    if (req.url?.endsWith("/version")) return json(200, { Os: "windows", Arch: "amd64", Version: "fake" });
    if (req.url?.includes("/images/")) return json(404, { message: "No such image" });
    json(500, { message: `fake engine: ${req.method} ${req.url} is not answered here` });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, docker: new Docker({ host: "127.0.0.1", port, protocol: "http" }), calls });
    }),
  );
}

const pool = (runtime: string, extra: object = {}) => ({
  runtime,
  min: 0,
  max: 2,
  warm: 1,
  ports: { range: "9100-9109", perAgent: 1 },
  ...extra,
});

describe("pools whose built-in image cannot be made", () => {
  let engine: Awaited<ReturnType<typeof otherPlatformEngine>>;
  before(async () => {
    engine = await otherPlatformEngine();
  });
  after(() => new Promise<void>((r) => engine.server.close(() => r())));

  it("runtime auto: agents run as local processes, said in one warning line for all such pools", async () => {
    const cfg = parseConfig({ pools: { a: pool("auto"), b: pool("auto") } });
    const warnings: string[] = [];
    const pools = await resolvePools(cfg, "corral.yaml", {
      docker: engine.docker,
      warn: (l) => warnings.push(l),
    });
    assert.equal(pools.a?.runtime, "process");
    assert.equal(pools.b?.runtime, "process");
    assert.deepEqual(pools.a?.template.command, [process.execPath, HELLO_AGENT_PATH]);
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.equal(
      warnings[0],
      `cannot make ${NODE_IMAGE}: the engine runs windows/amd64 containers; this host's node is linux/${process.arch === "x64" ? "amd64" : process.arch}; agents of pool a, b run as local processes`,
    );
    assert.equal(engine.calls.filter((c) => c.endsWith("/version")).length, 1, "asked once for both pools");
  });

  it("runtime docker: refused before anything starts, saying why and what to do", async () => {
    const cfg = parseConfig({ pools: { d: pool("docker") } });
    await assert.rejects(resolvePools(cfg, "corral.yaml", { docker: engine.docker }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(
        err.message,
        /^corral\.yaml: pools\.d\.runtime: docker, but cannot make corral\/node:[^:]+: the engine runs windows\/amd64 containers; .*; use process or auto, or give a template$/,
      );
      return true;
    });
  });

  it("a pool with an image of its own does not need the built-in one", async () => {
    const before = engine.calls.length;
    const cfg = parseConfig({
      pools: { own: pool("auto", { template: { image: "my/agent:1", command: ["run"] } }) },
    });
    const pools = await resolvePools(cfg, "corral.yaml", { docker: engine.docker });
    assert.equal(pools.own?.runtime, "docker");
    assert.deepEqual(engine.calls.slice(before), [], "the engine was not asked");
  });
});

describe("pools without a Docker engine", () => {
  it("runtime auto: agents run as local processes, said in one warning line naming why", async () => {
    const cfg = parseConfig({ pools: { a: pool("auto"), b: pool("auto"), p: pool("process") } });
    const warnings: string[] = [];
    const pools = await resolvePools(cfg, "corral.yaml", {
      dockerReason: "docker engine at the default socket (/var/run/docker.sock) is unreachable: no such file",
      warn: (l) => warnings.push(l),
    });
    assert.equal(pools.a?.runtime, "process");
    assert.equal(pools.b?.runtime, "process");
    assert.deepEqual(warnings, [
      "docker engine at the default socket (/var/run/docker.sock) is unreachable: no such file; agents of pool a, b run as local processes",
    ]);
  });

  it("only process pools: nothing to say", async () => {
    const warnings: string[] = [];
    await resolvePools(parseConfig({ pools: { p: pool("process") } }), "corral.yaml", {
      dockerReason: "no engine",
      warn: (l) => warnings.push(l),
    });
    assert.deepEqual(warnings, []);
  });
});
