import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { silentLogger } from "../src/log.ts";
import { RuntimeError } from "../src/runtime/errors.ts";
import { SimulatedRuntime, type SimulatedRuntimeOptions } from "../src/runtime/simulated.ts";
import { faultDrawer } from "../src/runtime/simulated-faults.ts";
import type { CreateSpec } from "../src/runtime/types.ts";
import { until } from "./helpers/daemon.ts";
import { poolConfig } from "./helpers/events.ts";
import { markedTestNats } from "./helpers/nats.ts";

const spec = (agentId: string): CreateSpec => ({
  instance: "sim",
  poolId: "p",
  agentId,
  generation: 1,
  template: poolConfig().template,
  env: {},
  ports: [],
});

/** Which of `n` creates fail on a runtime made with `opts`. */
async function failingCreates(n: number, opts: SimulatedRuntimeOptions): Promise<number[]> {
  const rt = new SimulatedRuntime("sim", opts);
  const failed: number[] = [];
  for (let i = 0; i < n; i++) {
    await rt.create(spec(`a${i}`)).catch((err: unknown) => {
      assert.ok(err instanceof RuntimeError && err.code === "create_failed", String(err));
      failed.push(i);
    });
  }
  assert.equal(rt.size, n - failed.length, "a failed create leaves no instance");
  return failed;
}

describe("simulated runtime: latency and failures, seeded", () => {
  it("the same seed fails the same calls; another seed fails others, at about the rate asked", async () => {
    const a = await failingCreates(400, { failureRate: { create: 0.25 }, seed: 7 });
    const b = await failingCreates(400, { failureRate: { create: 0.25 }, seed: 7 });
    const c = await failingCreates(400, { failureRate: { create: 0.25 }, seed: 8 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.ok(a.length > 60 && a.length < 140, `${a.length} of 400 failed at a rate of 0.25`);
  });

  it("each operation draws from its own stream: other calls in between change nothing", () => {
    const faults = { failureRate: { start: 0.5 }, latency: { start: [5, 50] as const }, seed: 3 };
    const alone = faultDrawer(faults);
    const mixed = faultDrawer(faults);
    const starts = (draw: typeof alone, interleave: boolean) =>
      Array.from({ length: 50 }, () => {
        if (interleave) {
          draw("create");
          draw("inspect");
        }
        return draw("start");
      });
    const plain = starts(alone, false);
    assert.deepEqual(starts(mixed, true), plain);
    for (const d of plain) assert.ok(d.delayMs >= 5 && d.delayMs <= 50, `delay ${d.delayMs} within [5, 50]`);
    assert.ok(new Set(plain.map((d) => d.delayMs)).size > 40, "a range draws different delays");
  });

  it("a call takes its latency; a failed start leaves the instance created, a failed inspect says nothing", async () => {
    const rt = new SimulatedRuntime("sim", {
      latency: { create: 40 },
      failureRate: { start: 1, inspect: 1 },
    });
    const t0 = performance.now();
    const inst = await rt.create(spec("a"));
    assert.ok(performance.now() - t0 >= 39, "create waited its 40 ms");
    await assert.rejects(rt.start(inst.id), (e: RuntimeError) => e.code === "start_failed");
    assert.equal(rt.isRunning(inst.id), false);
    assert.equal((await rt.list())[0]?.state, "created");
    await assert.rejects(rt.inspect(inst.id), (e: RuntimeError) => e.code === "engine_error");
    assert.deepEqual(rt.failed, { create: 0, start: 1, stop: 0, remove: 0, inspect: 1 });
  });

  it("refuses a rate outside 0..1 and a reversed range, naming the field", () => {
    assert.throws(() => new SimulatedRuntime("sim", { failureRate: { stop: 2 } }), /failureRate\.stop: 2/);
    assert.throws(() => new SimulatedRuntime("sim", { latency: { remove: [9, 3] } }), /latency\.remove/);
  });

  it("cannot be chosen for real agents: corral.yaml has no simulated runtime", () => {
    assert.throws(
      () => parseConfig({ pools: { a: { runtime: "simulated" } } }),
      (e: Error) => e instanceof ConfigError && /pools\.a\.runtime/.test(e.message),
    );
  });
});

describe("300 warm agents on the simulated runtime survive a restart of the control plane", () => {
  const nats = markedTestNats();

  const N = 300;
  const config: PoolConfig = poolConfig({
    min: N,
    max: N,
    warm: N,
    idleTimeoutMs: 0,
    maintenanceIntervalMs: 5_000,
    startTimeoutMs: 60_000,
  });
  const start = (runtime: SimulatedRuntime) =>
    ControlPlane.start({
      nc: nats.nc,
      instance: runtime.instance,
      pools: { modest: config },
      runtimes: { process: runtime },
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
    });
  const idle = (cp: ControlPlane) => cp.pool("modest").status().counts.idle ?? 0;

  it("serves acquires after the restart and never leases an agent twice", async (t) => {
    const runtime = new SimulatedRuntime("modest", { latency: { create: [0, 3], start: [0, 3] }, seed: 11 });
    const first = (await start(runtime)).cp;
    let second: ControlPlane | undefined;
    t.after(async () => {
      await second?.stop({ stopAgents: true });
    });
    await until(`${N} idle`, () => idle(first) === N, 15_000);
    const held = await Promise.all(
      Array.from({ length: N / 2 }, () => first.pool("modest").acquire({ timeoutMs: 5_000 })),
    );
    await first.host.idle();
    await first.stop();

    const restarted = await start(runtime);
    second = restarted.cp;
    assert.equal(restarted.report.recovered.agents, N);
    assert.equal(restarted.report.recovered.leases, N / 2);
    assert.equal(restarted.report.adopted, N, "every instance adopted, none created again");
    const sup = second.pool("modest");
    const more = await Promise.all(Array.from({ length: N / 2 }, () => sup.acquire({ timeoutMs: 5_000 })));
    const agents = [...held, ...more].map((g) => g.agentId);
    assert.equal(new Set(agents).size, N, "every lease on its own agent");
    await assert.rejects(
      sup.acquire({ timeoutMs: 200 }),
      (e: Error & { code?: string }) => e.code === "timeout",
    );
    // A lease granted before the restart is still its holder's to release.
    const old = held[0] as (typeof held)[number];
    await sup.release(old.leaseId, old.leaseToken);
    const again = await sup.acquire({ timeoutMs: 5_000 });
    assert.equal(again.agentId, old.agentId);
    assert.equal(runtime.calls.create, N, "no agent spawned twice");
  });
});
