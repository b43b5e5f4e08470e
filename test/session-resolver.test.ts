import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ActorView } from "../src/cp/actor-host.ts";
import { runtimeResolver } from "../src/cp/session/runtime-resolver.ts";
import type { AgentdEndpoint, RuntimeInstance } from "../src/runtime/types.ts";

/** The dialer's resolve over the runtimes: address from the endpoint, labels from the instance. */

const view = (context: Record<string, unknown>): ActorView => ({
  ref: { kind: "agent", id: "a1" },
  seq: 3,
  value: "connecting",
  context,
  status: "active",
});

const instance = (over: Partial<RuntimeInstance> = {}): RuntimeInstance => ({
  id: "i-1",
  instance: "cp",
  poolId: "p",
  agentId: "a1",
  generation: 2,
  state: "running",
  ...over,
});

function resolverWith(
  context: Record<string, unknown>,
  inst: RuntimeInstance | null,
  endpoint: AgentdEndpoint | null,
) {
  const asked: string[] = [];
  const runtime = {
    inspect: async (id: string) => {
      asked.push(id);
      return inst;
    },
    endpoint: async () => endpoint,
  };
  const resolve = runtimeResolver({ get: async () => view(context) }, { docker: runtime });
  return { resolve, asked };
}

describe("runtime resolver", () => {
  const ctx = { runtime: "docker", instanceId: "i-1", poolId: "p", generation: 2 };

  it("gives the endpoint's address and the instance's labels", async () => {
    const { resolve, asked } = resolverWith(ctx, instance(), { host: "172.17.0.5", port: 7070 });
    assert.deepEqual(await resolve("a1"), {
      address: "172.17.0.5:7070",
      labels: { poolId: "p", agentId: "a1", generation: 2 },
    });
    assert.deepEqual(asked, ["i-1"]);
  });

  it("brackets an IPv6 host", async () => {
    const { resolve } = resolverWith(ctx, instance(), { host: "::1", port: 7070 });
    assert.equal((await resolve("a1"))?.address, "[::1]:7070");
  });

  it("is null without a running instance, an endpoint, an instance id or the runtime", async () => {
    const endpoint = { host: "127.0.0.1", port: 1 };
    assert.equal(await resolverWith(ctx, instance({ state: "exited" }), endpoint).resolve("a1"), null);
    assert.equal(await resolverWith(ctx, null, endpoint).resolve("a1"), null);
    assert.equal(await resolverWith(ctx, instance(), null).resolve("a1"), null);
    assert.equal(await resolverWith({ ...ctx, instanceId: null }, instance(), endpoint).resolve("a1"), null);
    assert.equal(
      await resolverWith({ ...ctx, runtime: "process" }, instance(), endpoint).resolve("a1"),
      null,
    );
  });
});
