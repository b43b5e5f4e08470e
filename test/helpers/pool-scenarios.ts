import assert from "node:assert/strict";
import { join } from "node:path";
import { afterEach, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { type ApiError, CorralClient } from "../../src/api/client.ts";
import type { AcquireReply } from "../../src/api/protocol.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import { statusOf } from "../../src/runtime/errors.ts";
import { createRuntime, dockerClient, helloAgentTemplate, SLEEP } from "../../src/runtime/index.ts";
import { isAlive } from "../../src/runtime/proc.ts";
import type { Runtime, RuntimeKind } from "../../src/runtime/types.ts";
import { EventStore } from "../../src/store/event-store.ts";
import { type DaemonProcess, portBlock, spawnDaemon, until, writeConfig } from "./daemon.ts";
import { startTestNats, type TestNats } from "./nats.ts";
import { onTeardown, tempDir } from "./teardown.ts";

interface AgentRow {
  id: string;
  phase: string;
  generation: number;
  recycles: number;
  ports: number[];
  leaseId: string | null;
}

/**
 * The pool scenarios of issue 3, run against a real daemon process (`corral up`) and a real
 * runtime: the same scenarios for docker and for local processes.
 */
export function poolScenarios(kind: RuntimeKind, skip: string | false): void {
  describe(`pools on the ${kind} runtime (daemon process, real NATS)`, { skip }, () => {
    let t: TestNats;
    let nc: NatsConnection;
    let client: CorralClient;
    let dir: string;
    const daemons: DaemonProcess[] = [];

    before(async () => {
      t = await startTestNats();
      nc = await t.connect();
      client = new CorralClient(nc);
      dir = tempDir(`pool-${kind}-`);
    });
    afterEach(() => {
      // Every scenario ends with `down`: a daemon still running means the test failed. Show why.
      for (const d of daemons.splice(0)) {
        if (d.proc.exitCode !== null || d.proc.signalCode !== null) continue;
        process.stderr.write(
          `\n--- corral up still running after a failed test:\n${d.logs.slice(-60).join("\n")}\n`,
        );
        d.proc.kill("SIGKILL");
      }
    });

    const runtimeFor = (instance: string): Promise<Runtime> =>
      createRuntime(kind, { instance, stateDir: join(dir, instance, "process", instance) });

    /** Writes a config for a fresh instance and starts `corral up` on it. */
    async function daemonWith(
      spec: Record<string, unknown>,
    ): Promise<{ pool: string; instance: string; file: string; d: DaemonProcess }> {
      // Pools and instances are global on a stream: each test gets names of its own.
      const instance = `t${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
      const pool = `${kind}-${instance}`;
      // Whatever a failed test leaves of it, by its own instance labels only; registered before its
      // daemons, so it runs after they are stopped (a daemon would replace what is removed).
      onTeardown(`agents of instance ${instance}`, async () => {
        const rt = await runtimeFor(instance);
        for (const i of await rt.list()) await rt.remove(i.id);
        await rt.close();
      });
      const file = writeConfig(join(dir, instance), {
        instance,
        stateDir: join(dir, instance),
        pools: { [pool]: { runtime: kind, maintenanceInterval: "300ms", startTimeout: "30s", ...spec } },
      });
      const d = await spawnDaemon(file, t.url);
      daemons.push(d);
      return { pool, instance, file, d };
    }

    /** Every stored event of the pool's agents, in stream order (agent ids start with the pool's name). */
    async function poolAgentEvents(pool: string): Promise<Envelope[]> {
      const store = await EventStore.open(nc);
      const out: Envelope[] = [];
      try {
        for await (const b of store.read({ filter: "corral.evt.agent.>" })) {
          for (const r of b) {
            assert.equal(r.error, undefined, `readable event at seq ${r.seq}`);
            if (r.event?.aggregate.id.startsWith(`${pool}-`)) out.push(r.event);
          }
        }
      } finally {
        store.close();
      }
      return out;
    }

    const agents = async (pool: string) => (await client.status(pool)).agents as unknown as AgentRow[];
    const idle = async (n: number, pool: string) =>
      until(
        `${n} idle agents`,
        async () => (await agents(pool)).filter((a) => a.phase === "idle").length >= n,
        60_000,
      );

    it("pool of 3: acquire, HTTP from the host to the agent's CORRAL_PORT_A, release, recycle after maxLeases", async () => {
      const { pool, instance, d } = await daemonWith({
        min: 0,
        max: 3,
        warm: 3,
        recycle: { maxLeases: 2 },
        ports: { range: portBlock(20), perAgent: 2, hostUrl: "http://127.0.0.1/" },
      });
      await idle(3, pool);
      const lease = await client.acquire(pool, { timeoutMs: 5_000, holder: "test" });
      assert.equal(lease.ports.length, 2);
      assert.equal(lease.urls[0], `http://127.0.0.1:${lease.ports[0]}`, "hostUrl trailing slash trimmed");
      assert.equal(lease.env.CORRAL_PORT_A, String(lease.ports[0]));
      assert.equal(lease.env.AVAILABLE_LOCALHOST_URL_B, `http://127.0.0.1:${lease.ports[1]}`);
      const hello = (await (await fetch(lease.urls[0] as string)).json()) as { agent: string };
      assert.equal(hello.agent, lease.agentId, "the agent answers from the host on its port");
      await client.release(lease);
      await assert.rejects(client.release(lease), (e: ApiError) => e.code === "lease_not_active");

      // 3 agents × maxLeases 2: the 7th lease can only come after a recycle.
      for (let i = 0; i < 6; i++) {
        const l = await client.acquire(pool, { timeoutMs: 30_000 });
        await client.release(l);
      }
      const recycled = await until(
        "a recycled agent",
        async () => (await agents(pool)).find((a) => a.recycles >= 1 && a.phase === "idle"),
        60_000,
      );
      assert.ok(recycled.generation >= 2);
      // The new generation serves too.
      const again = await client.acquire(pool, { timeoutMs: 30_000 });
      const body = (await (await fetch(`http://127.0.0.1:${again.ports[0]}/`)).json()) as { agent: string };
      assert.equal(body.agent, again.agentId);
      await client.release(again);
      const store = await EventStore.open(nc);
      const reasons: string[] = [];
      for await (const b of store.read({ filter: `corral.evt.pool.${pool}` })) {
        for (const r of b)
          if (r.event?.type === "PoolAgentRecycled")
            reasons.push((r.event.data as { reason: string }).reason);
      }
      store.close();
      assert.ok(reasons.includes("max-leases"), `recycle decisions recorded: ${reasons}`);

      await client.down(instance);
      assert.equal(await d.exited, 0);
      const rt = await runtimeFor(instance);
      assert.deepEqual(await rt.list(), [], "nothing left by label after down");
      await rt.close();
    });

    it("100 concurrent acquires on max 10, SIGKILL mid-storm, restart: one event per acquire and per release, one agent per lease, nothing leaked", async () => {
      const spec = {
        min: 2,
        max: 10,
        warm: 4,
        leaseTtl: "60s",
        ports: { range: portBlock(60), perAgent: 2 },
      };
      const first = await daemonWith(spec);
      const pool = first.pool;
      await idle(4, pool);
      const granted = new Map<string, AcquireReply>();
      const releasing = new Set<string>(); // release sent; its reply may be lost with the daemon
      const released = new Set<string>();
      const unexpected: unknown[] = [];
      let stop = false;
      const storm = Array.from({ length: 100 }, async () => {
        while (!stop) {
          try {
            const l = await client.acquire(pool, { timeoutMs: 8_000 });
            granted.set(l.leaseId, l);
            await new Promise((r) => setTimeout(r, Math.random() * 20));
            releasing.add(l.leaseId);
            await client.release(l, pool);
            released.add(l.leaseId);
          } catch (err) {
            // Only losing the daemon may end a client: anything else is a defect.
            if (!isConnectionLoss(err)) unexpected.push(err);
            return;
          }
        }
      });
      await until("the storm under way", () => (released.size >= 50 ? true : undefined), 60_000);
      first.d.proc.kill("SIGKILL");
      await first.d.exited;
      stop = true;
      await Promise.all(storm);
      assert.deepEqual(unexpected, [], "clients saw only connection-loss errors");
      assert.ok(granted.size >= 50, `the storm granted leases (${granted.size})`);

      const second = await spawnDaemon(first.file, t.url);
      daemons.push(second);
      // Nothing lost: every lease a client was told about and had not given back is still
      // granted; one whose release was under way is either granted or released, never gone.
      for (const [id, lease] of granted) {
        if (released.has(id)) continue;
        if (!releasing.has(id)) {
          await client.release(lease, pool);
          released.add(id);
          continue;
        }
        await client.release(lease, pool).then(
          () => released.add(id),
          (e: ApiError) => {
            assert.equal(e.code, "lease_not_active", e.message);
            assert.match(e.message, /is released/);
            released.add(id);
          },
        );
      }
      // The stream, not the agents' rows, proves it: per lease, one grant and at most one end;
      // per released lease exactly grant + release; no agent granted while it holds a lease.
      const byLease = new Map<string, string[]>();
      const open = new Map<string, string>(); // agent → the lease it holds
      for (const e of await poolAgentEvents(pool)) {
        const data = e.data as { leaseId?: string };
        if (e.type === "AgentFailed") open.delete(e.aggregate.id);
        if (!data.leaseId) continue;
        byLease.set(data.leaseId, [...(byLease.get(data.leaseId) ?? []), e.type]);
        if (e.type === "AgentLeased") {
          assert.equal(
            open.get(e.aggregate.id),
            undefined,
            `${e.aggregate.id} granted ${data.leaseId} while in a lease`,
          );
          assert.ok(data.leaseId.startsWith(`${e.aggregate.id}.`), "the lease id names its agent");
          open.set(e.aggregate.id, data.leaseId);
        } else if (e.type !== "AgentLeaseRenewed") {
          assert.equal(
            open.get(e.aggregate.id),
            data.leaseId,
            `${e.type} for a lease ${e.aggregate.id} does not hold`,
          );
          open.delete(e.aggregate.id);
        }
      }
      for (const id of granted.keys())
        assert.ok(byLease.has(id), `lease ${id} told to a client is on the stream`);
      for (const [id, types] of byLease) {
        assert.equal(types.filter((x) => x === "AgentLeased").length, 1, `${id}: ${types.join(", ")}`);
        assert.ok(types.length <= 2, `${id}: ${types.join(", ")}`);
        if (released.has(id)) assert.deepEqual(types, ["AgentLeased", "AgentReleased"], id);
      }
      // A grant whose reply died with the daemon is still held by its agent (60 s TTL) or ended.
      const rows = await agents(pool);
      for (const [agent, lease] of open) {
        assert.equal(
          rows.find((a) => a.id === agent)?.leaseId,
          lease,
          `open lease ${lease} held by its agent`,
        );
      }
      // Warm target restored, every instance by label belongs to a live agent (orphans reaped). A
      // grant whose reply died with the daemon has a token no one knows: it holds its agent until
      // its TTL (or `down`), so the warm target is what the other agents allow.
      for (const lease of open.values()) {
        const known = granted.get(lease);
        if (known) await client.release(known, pool);
      }
      const unknowable = [...open.values()].filter((l) => !granted.has(l)).length;
      await idle(Math.min(4, spec.max - unknowable), pool);
      const rt = await runtimeFor(first.instance);
      await until("instances match live agents", async () => {
        const live = (await agents(pool)).filter(
          (a) => !["stopping", "recycling", "starting"].includes(a.phase),
        );
        const inst = await rt.list();
        const owners = new Set(inst.map((i) => i.agentId));
        return inst.length === live.length && live.every((a) => owners.has(a.id)) ? true : undefined;
      });
      await client.down(first.instance);
      assert.equal(await second.exited, 0);
      assert.deepEqual(await rt.list(), [], "no instance left by label at the end");
      await rt.close();
    });

    it("SIGKILL mid-spawn and mid-recycle, then restart: warm restored, nothing doubled or leaked", async () => {
      const spec = {
        min: 0,
        max: 4,
        warm: 3,
        recycle: { maxLeases: 1 },
        ports: { range: portBlock(20), perAgent: 1 },
      };
      // Mid-spawn: killed right after it is up, while its first agents are being created.
      const first = await daemonWith(spec);
      first.d.proc.kill("SIGKILL");
      await first.d.exited;
      const second = await spawnDaemon(first.file, t.url);
      daemons.push(second);
      await idle(3, first.pool);
      // Mid-recycle: every lease ends in a recycle (maxLeases 1); kill while they run.
      const leases = await Promise.all(
        [0, 1, 2].map(() => client.acquire(first.pool, { timeoutMs: 10_000 })),
      );
      await Promise.all(leases.map((l) => client.release(l)));
      second.proc.kill("SIGKILL");
      await second.exited;
      const third = await spawnDaemon(first.file, t.url);
      daemons.push(third);
      await idle(3, first.pool);
      const rows = await agents(first.pool);
      assert.ok(rows.length <= spec.max, `never past max (${rows.length})`);
      const ports = rows.flatMap((a) => a.ports);
      assert.equal(new Set(ports).size, ports.length, `no port held twice: ${ports}`);
      const rt = await runtimeFor(first.instance);
      await until("one instance per live agent", async () => {
        const live = (await agents(first.pool)).filter((a) => a.phase === "idle" || a.phase === "leased");
        const inst = await rt.list();
        const owners = inst.map((i) => i.agentId);
        return inst.length === live.length &&
          new Set(owners).size === owners.length &&
          live.every((a) => owners.includes(a.id))
          ? true
          : undefined;
      });
      // Every lease of the storm ended in a recycle: the recycled agents serve again.
      const l = await client.acquire(first.pool, { timeoutMs: 10_000 });
      const body = (await (await fetch(`http://127.0.0.1:${l.ports[0]}/`)).json()) as { agent: string };
      assert.equal(body.agent, l.agentId);
      await client.release(l);
      await client.down(first.instance);
      assert.equal(await third.exited, 0);
      assert.deepEqual(await rt.list(), [], "no instance left by label at the end");
      await rt.close();
    });

    it("corral up stopped by SIGTERM leaves its agents running; the next one adopts them", async () => {
      const { pool, instance, file, d } = await daemonWith({
        min: 0,
        max: 3,
        warm: 2,
        template: sleepTemplate(kind),
      });
      await idle(2, pool);
      const before = (await agents(pool)).map((a) => a.id).sort();
      d.proc.kill("SIGTERM");
      assert.equal(await d.exited, 0);
      const rt = await runtimeFor(instance);
      const running = (await rt.list()).filter((i) => i.state === "running");
      assert.deepEqual(running.map((i) => i.agentId).sort(), before, "agents outlive the daemon");
      const next = await spawnDaemon(file, t.url);
      daemons.push(next);
      const up = JSON.parse(next.logs.find((l) => l.includes('"corral is up"')) as string) as {
        adopted: number;
      };
      assert.equal(up.adopted, 2);
      await idle(2, pool);
      assert.deepEqual(
        (await agents(pool)).map((a) => a.id).sort(),
        before,
        "the same agents, none respawned",
      );
      assert.deepEqual(
        (await rt.list()).map((i) => i.id).sort(),
        running.map((i) => i.id).sort(),
        "the same instances",
      );
      await client.down(instance);
      assert.equal(await next.exited, 0);
      assert.deepEqual(await rt.list(), []);
      await rt.close();
    });

    it("a lease that is not renewed expires and its agent is recycled; a renewed one lives on", async () => {
      const { pool, instance, d } = await daemonWith({
        min: 0,
        max: 2,
        warm: 2,
        leaseTtl: "1500ms",
        template: sleepTemplate(kind),
      });
      await idle(2, pool);
      const kept = await client.acquire(pool, { timeoutMs: 5_000 });
      const dropped = await client.acquire(pool, { timeoutMs: 5_000 });
      const renewing = setInterval(() => void client.renew(kept).catch(() => {}), 400);
      try {
        await until(
          "the dropped lease's agent recycled",
          async () => {
            const a = (await agents(pool)).find((r) => r.id === dropped.agentId);
            return a && a.recycles >= 1 && a.phase === "idle";
          },
          20_000,
        );
        await assert.rejects(client.release(dropped), (e: ApiError) => /expired/.test(e.message));
        const k = (await agents(pool)).find((r) => r.id === kept.agentId);
        assert.equal(k?.leaseId, kept.leaseId, "the renewed lease still holds its agent");
      } finally {
        clearInterval(renewing);
      }
      await client.release(kept);
      await client.down(instance);
      await d.exited;
    });

    it("ports run out: the spawn that gets none fails visibly, and the pool serves with what it has", async () => {
      const { pool, instance, d } = await daemonWith({
        min: 0,
        max: 3,
        warm: 3,
        ports: { range: portBlock(4), perAgent: 2 },
      });
      await idle(2, pool);
      const status = await until("a failed spawn in the status", async () => {
        const s = (await client.status(pool)) as {
          spawnFailures?: number;
          lastSpawnFailure?: { code: string };
        };
        return (s.spawnFailures ?? 0) >= 1 ? s : undefined;
      });
      assert.equal(status.lastSpawnFailure?.code, "ports_exhausted");
      const store = await EventStore.open(nc);
      const failed: string[] = [];
      for await (const b of store.read({ filter: `corral.evt.pool.${pool}` }))
        for (const r of b)
          if (r.event?.type === "PoolSpawnFailed") failed.push((r.event.data as { code: string }).code);
      store.close();
      assert.ok(failed.includes("ports_exhausted"), `PoolSpawnFailed events: ${failed}`);
      const l = await client.acquire(pool, { timeoutMs: 5_000 });
      const hello = (await (await fetch(`http://127.0.0.1:${l.ports[0]}/`)).json()) as { agent: string };
      assert.equal(hello.agent, l.agentId);
      await client.release(l);
      assert.equal(
        (await agents(pool)).filter((a) => a.phase === "idle").length,
        2,
        "never more than the ports allow",
      );
      await client.down(instance);
      assert.equal(await d.exited, 0);
    });

    it("acquire times out, can be cancelled, and a closed pool says so", async () => {
      const { pool, instance, d } = await daemonWith({
        min: 0,
        max: 1,
        warm: 1,
        template: sleepTemplate(kind),
      });
      await idle(1, pool);
      const held = await client.acquire(pool, { timeoutMs: 5_000 });
      // The daemon's own reply to its 300 ms timeout: the NATS request alone would end later, and
      // in a TimeoutError, not this ApiError.
      await assert.rejects(
        client.acquire(pool, { timeoutMs: 300 }),
        (e: ApiError) => e.code === "timeout" && e.message.includes(`pool ${pool}`),
      );
      const waiting = client.acquire(pool, { timeoutMs: 20_000, requestId: "req-1" });
      // A cancel before the daemon has the request says cancelled: false and changes nothing.
      const cancelled = await until("the waiting acquire cancelled", async () => {
        const reply = await client.cancel(pool, "req-1");
        return reply.cancelled ? reply : undefined;
      });
      assert.deepEqual(cancelled, { requestId: "req-1", cancelled: true });
      await assert.rejects(waiting, (e: ApiError) => e.code === "cancelled");
      await client.close(pool, { revokeLeases: true });
      await assert.rejects(
        client.acquire(pool, { timeoutMs: 1_000 }),
        (e: ApiError) => e.code === "pool_closed" && e.message === `pool is closed: ${pool}`,
      );
      await assert.rejects(client.release(held), (e: ApiError) => e.code === "lease_not_active");
      await client.down(instance);
      await d.exited;
    });

    it("50 concurrent acquires on max 10: never more than 10 leases, never one agent in two", async () => {
      const { pool, instance, d } = await daemonWith({
        min: 0,
        max: 10,
        warm: 10,
        template: sleepTemplate(kind),
      });
      await idle(10, pool);
      const holding = new Set<string>();
      let most = 0;
      let grants = 0;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          const l = await client.acquire(pool, { timeoutMs: 30_000 });
          assert.ok(!holding.has(l.agentId), `agent ${l.agentId} in two leases`);
          holding.add(l.agentId);
          grants++;
          most = Math.max(most, holding.size);
          await new Promise((r) => setTimeout(r, 50));
          holding.delete(l.agentId);
          await client.release(l);
        }),
      );
      assert.equal(grants, 50);
      assert.ok(most <= 10, `at most 10 at once (saw ${most})`);
      assert.equal(most, 10, "all 10 agents were in use at once");
      await client.down(instance);
      await d.exited;
    });

    it("an agent that died while idle is caught, never leased, and replaced", async () => {
      const { pool, instance, d } = await daemonWith({
        min: 0,
        max: 2,
        warm: 2,
        ports: { range: portBlock(10), perAgent: 1 },
      });
      await idle(2, pool);
      const rt = await runtimeFor(instance);
      const victim = (await rt.list())[0];
      assert.ok(victim);
      await killFromOutside(kind, victim.id, victim.pid);
      // Whatever notices first (the runtime's die event, or the health check on grant), the
      // leases handed out are all on running agents.
      for (let i = 0; i < 4; i++) {
        const l = await client.acquire(pool, { timeoutMs: 30_000 });
        const r = await fetch(`http://127.0.0.1:${l.ports[0]}/`);
        assert.equal(((await r.json()) as { agent: string }).agent, l.agentId);
        await client.release(l);
      }
      await until(
        "a replacement",
        async () =>
          !(await agents(pool)).some((a) => a.id === victim.agentId) &&
          (await agents(pool)).filter((a) => a.phase === "idle").length === 2,
      );
      await rt.close();
      await client.down(instance);
      await d.exited;
    });
  });
}

/** What a client sees when the daemon it talks to dies: no responder, or no reply in time. */
function isConnectionLoss(err: unknown): boolean {
  const e = err as ApiError;
  return e?.code === "no_daemon" || (e?.code === "timeout" && /^no reply on/.test(e.message));
}

function sleepTemplate(kind: RuntimeKind) {
  const hello = helloAgentTemplate(kind);
  return kind === "docker" ? { image: hello.image, command: SLEEP } : { command: ["sleep", "100000"] };
}

async function killFromOutside(kind: RuntimeKind, id: string, pid?: number): Promise<void> {
  if (kind === "docker") {
    const container = dockerClient().getContainer(id);
    await container.kill(); // through the engine API: no docker CLI needed
    // The daemon may notice the death and remove the container first: gone is dead too.
    const running = () =>
      container.inspect().then(
        (c) => c.State.Running,
        (err: unknown) => (statusOf(err) === 404 ? false : Promise.reject(err)),
      );
    await until("the container dead", async () => !(await running()), 10_000);
  } else {
    assert.ok(pid, "process instances have a pid");
    process.kill(-pid, "SIGKILL");
    // A signal is delivered when the process next runs: wait until it has died (or is a zombie).
    await until("the process dead", () => !isAlive(pid), 10_000);
  }
}
