// The behaviour every Runtime must show, as node:test cases, run against real engines by
// test/runtime-docker.test.ts and test/runtime-process.test.ts. Test-only code (nothing in the
// daemon imports it); it lives beside the interface so a new runtime gets the same checks.
import assert from "node:assert/strict";
import { request } from "node:http";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import type {
  AgentTemplate,
  CreateSpec,
  Runtime,
  RuntimeEvent,
  RuntimeInstance,
} from "../../src/runtime/types.ts";
import { onTeardown } from "./teardown.ts";

export interface ConformanceHarness {
  /** Suite title, e.g. "docker runtime". */
  name: string;
  /** A new runtime object for `instance`, ready (a second call is a "restarted daemon"). */
  open(instance: string): Promise<Runtime>;
  /** hello-agent (reads CORRAL_PORT_A). */
  hello(): AgentTemplate;
  /** `sleep 1000` (dies on SIGTERM only if something delivers it: docker needs --init). */
  sleep(): AgentTemplate;
  /** Ignores SIGTERM, then answers HTTP on CORRAL_PORT_A (so a test can wait for it): only SIGKILL ends it. */
  ignoresTerm(): AgentTemplate;
  /** Kill the agent with SIGKILL behind the runtime's back (`docker kill`, kill(-pgid)). */
  killFromOutside(inst: RuntimeInstance): Promise<void>;
  /** Remove everything labelled with this instance; called once at the end. */
  cleanup(instance: string): Promise<void>;
}

/** Node code for `ignoresTerm`: SIGTERM ignored first, then HTTP on CORRAL_PORT_A says it is so. */
export const IGNORES_TERM_JS =
  "process.on('SIGTERM', () => {}); require('node:http').createServer((_, res) => res.end('ok')).listen(process.env.CORRAL_PORT_A)";

/**
 * How long a condition may take before a wait gives up: a bound for a loaded 2-core machine (a
 * container start there can take seconds), not a speed claim — a passing wait returns at once.
 */
export const WAIT_MS = 20_000;

/** Events of one subscription, with a bounded wait for the one you expect. */
export class EventLog {
  readonly events: RuntimeEvent[] = [];
  private readonly sub: { close(): void };
  private readonly waiters = new Set<() => void>();

  constructor(rt: Runtime) {
    this.sub = rt.events((e) => {
      this.events.push(e);
      for (const w of [...this.waiters]) w();
    });
  }

  waitFor(pred: (e: RuntimeEvent) => boolean, timeoutMs = WAIT_MS, what = "event"): Promise<RuntimeEvent> {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = this.events.find(pred);
        if (!e) return;
        done();
        resolve(e);
      };
      const timer = setTimeout(() => {
        done();
        const seen = this.events.map((e) => `${e.type}:${e.id.slice(0, 12)}`).join(", ");
        reject(new Error(`no ${what} within ${timeoutMs} ms (saw: ${seen || "nothing"})`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  close(): void {
    this.sub.close();
  }
}

/** Polls `pred` every 25 ms; throws after `timeoutMs` with `what`. */
export async function waitUntil(
  pred: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A port nobody holds right now on 0.0.0.0 (what `docker -p` binds). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "0.0.0.0", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * GET http://127.0.0.1:<port><path>, retried until `timeoutMs`. Each attempt has its own short
 * timeout: docker-proxy accepts a connection before the agent listens and then stalls it.
 */
export async function httpGet(
  port: number,
  path = "/",
  timeoutMs = WAIT_MS,
): Promise<{ status: number; body: string }> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      return await getOnce(port, path, 400);
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`GET :${port}${path} failed for ${timeoutMs} ms: ${String(last)}`);
}

function getOnce(port: number, path: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("attempt timed out")));
    req.on("error", reject);
    req.end();
  });
}

/** Registers the shared scenarios under one `describe`. */
export function runtimeConformance(h: ConformanceHarness): void {
  const instance = `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let gen = 0;
  const spec = (agentId: string, template: AgentTemplate, ports: number[] = []): CreateSpec => ({
    instance,
    poolId: "pool-t",
    agentId,
    generation: ++gen,
    template,
    env: ports[0] === undefined ? {} : { CORRAL_PORT_A: String(ports[0]) },
    ports,
  });
  const opened: Runtime[] = [];
  const open = async (inst = instance) => {
    // Registered on first use: a suite that never runs (no engine) has nothing to undo.
    if (opened.length === 0) {
      onTeardown(`${h.name} instance ${instance}`, async () => {
        await Promise.allSettled(opened.map((rt) => rt.close()));
        await h.cleanup(instance);
      });
    }
    const rt = await h.open(inst);
    opened.push(rt);
    return rt;
  };

  describe(`${h.name}: shared scenarios (instance ${instance})`, () => {
    it("create → created; start → running; hello answers; stop → die + stop; remove twice", async () => {
      const rt = await open();
      const log = new EventLog(rt);
      const port = await freePort();
      const inst = await rt.create(spec("hello-1", h.hello(), [port]));
      assert.equal(inst.state, "created");
      const listed = await rt.list();
      assert.deepEqual(
        listed.map((i) => [i.id, i.state, i.agentId, i.poolId, i.generation]),
        [[inst.id, "created", "hello-1", "pool-t", inst.generation]],
      );
      assert.equal(rt.isRunning(inst.id), false);

      await rt.start(inst.id);
      await log.waitFor((e) => e.type === "start" && e.id === inst.id, WAIT_MS, "start event");
      await waitUntil(() => rt.isRunning(inst.id), WAIT_MS, "isRunning");
      assert.equal((await rt.inspect(inst.id))?.state, "running");
      const res = await httpGet(port, "/");
      assert.equal(res.status, 200);
      const body = JSON.parse(res.body) as {
        agent: string;
        pool: string;
        generation: number;
        ports: number[];
      };
      assert.deepEqual(body, {
        agent: "hello-1",
        pool: "pool-t",
        generation: inst.generation,
        ports: [port],
      });
      assert.equal((await httpGet(port, "/healthz")).status, 200);

      await rt.stop(inst.id);
      const die = await log.waitFor((e) => e.type === "die" && e.id === inst.id, WAIT_MS, "die event");
      assert.equal(die.exitCode, 0, "hello-agent exits 0 on SIGTERM");
      await log.waitFor((e) => e.type === "stop" && e.id === inst.id, WAIT_MS, "stop event");
      assert.equal(rt.isRunning(inst.id), false);
      const stopped = await rt.inspect(inst.id);
      assert.equal(stopped?.state, "exited");
      assert.equal(stopped?.exitCode, 0);
      await rt.stop(inst.id); // idempotent

      await rt.remove(inst.id);
      await log.waitFor((e) => e.type === "destroy" && e.id === inst.id, WAIT_MS, "destroy event");
      assert.deepEqual(await rt.list(), []);
      assert.equal(await rt.inspect(inst.id), null);
      await rt.remove(inst.id); // idempotent: unknown id is fine
      log.close();
    });

    it("sleep 1000 ends on SIGTERM, well within the grace (docker: --init delivers it), exit 143", async () => {
      const rt = await open();
      const inst = await rt.create(spec("sleeper", h.sleep()));
      await rt.start(inst.id);
      await waitUntil(() => rt.isRunning(inst.id), WAIT_MS, "isRunning");
      const t0 = Date.now();
      await rt.stop(inst.id, 60_000);
      const took = Date.now() - t0;
      // Undelivered, SIGTERM would leave it to the SIGKILL after 60 s (and exit 137).
      assert.ok(took < 30_000, `stop took ${took} ms with a 60 s grace: SIGTERM was not delivered`);
      assert.equal((await rt.inspect(inst.id))?.exitCode, 143, "died of SIGTERM, not SIGKILL");
      assert.equal(rt.isRunning(inst.id), false);
      await rt.remove(inst.id);
    });

    it("an agent that ignores SIGTERM is SIGKILLed after the grace it is given, exit 137", async () => {
      const rt = await open();
      const port = await freePort();
      // Its template's grace is 60 s: a stop that took that one, not the 1 s given, shows.
      const inst = await rt.create(spec("stubborn", { ...h.ignoresTerm(), stopGraceMs: 60_000 }, [port]));
      await rt.start(inst.id);
      await httpGet(port); // it answers once it ignores SIGTERM
      const t0 = Date.now();
      await rt.stop(inst.id, 1000);
      const took = Date.now() - t0;
      assert.ok(took >= 900, `stop took ${took} ms: the grace was not honoured`);
      assert.ok(took < 30_000, `stop took ${took} ms: the template's 60 s grace, not the 1 s given`);
      assert.equal((await rt.inspect(inst.id))?.exitCode, 137);
      await rt.remove(inst.id);
    });

    it("a created-never-started agent is listed (the reaper must see it) and removable", async () => {
      const rt = await open();
      const log = new EventLog(rt);
      const inst = await rt.create(spec("never-started", h.sleep()));
      const found = await rt.list({ agentId: "never-started" });
      assert.deepEqual(
        found.map((i) => [i.id, i.state]),
        [[inst.id, "created"]],
      );
      assert.equal((await rt.inspect(inst.id))?.state, "created");
      await rt.remove(inst.id);
      assert.deepEqual(await rt.list({ agentId: "never-started" }), []);
      await log.waitFor((e) => e.type === "destroy" && e.id === inst.id, WAIT_MS, "destroy event");
      log.close();
    });

    it("killed from outside → die event, isRunning false, inspect says exited", async () => {
      const rt = await open();
      const log = new EventLog(rt);
      const inst = await rt.create(spec("victim", h.sleep()));
      await rt.start(inst.id);
      await waitUntil(() => rt.isRunning(inst.id), WAIT_MS, "isRunning");
      const running = await rt.inspect(inst.id);
      assert.ok(running?.pid, "a running agent has a pid");
      await h.killFromOutside(running);
      const die = await log.waitFor((e) => e.type === "die" && e.id === inst.id, WAIT_MS, "die event");
      assert.equal(die.exitCode, 137);
      await waitUntil(() => !rt.isRunning(inst.id), WAIT_MS, "isRunning to turn false");
      assert.equal((await rt.inspect(inst.id))?.state, "exited");
      await rt.remove(inst.id);
      log.close();
    });

    it("a restarted daemon (new runtime object, same instance) adopts running agents", async () => {
      const first = await open();
      const port = await freePort();
      const a = await first.create(spec("survivor", h.hello(), [port]));
      const b = await first.create(spec("adopted-victim", h.sleep()));
      await first.start(a.id);
      await first.start(b.id);
      await waitUntil(() => first.isRunning(a.id) && first.isRunning(b.id), WAIT_MS, "both running");
      await first.close(); // the daemon goes away; agents must not

      assert.equal(
        JSON.parse((await httpGet(port)).body).agent,
        "survivor",
        "agent outlived its runtime object",
      );
      const second = await open();
      const log = new EventLog(second);
      const listed = await second.list();
      assert.deepEqual(
        listed.map((i) => [i.id, i.state]).sort(),
        [
          [a.id, "running"],
          [b.id, "running"],
        ].sort(),
      );
      assert.equal(second.isRunning(a.id), true, "the live view is loaded when the runtime is ready");
      assert.equal(second.isRunning(b.id), true);

      const bNow = await second.inspect(b.id);
      assert.ok(bNow?.pid);
      await h.killFromOutside(bNow);
      await log.waitFor((e) => e.type === "die" && e.id === b.id, WAIT_MS, "die of the adopted agent");
      await waitUntil(() => !second.isRunning(b.id), WAIT_MS, "isRunning(b) false");

      await second.stop(a.id);
      assert.equal(second.isRunning(a.id), false);
      assert.equal((await second.inspect(a.id))?.state, "exited");
      await assert.rejects(getOnceQuick(port), "the agent no longer answers");
      await second.remove(a.id);
      await second.remove(b.id);
      assert.deepEqual(await second.list(), []);
      log.close();
    });

    it("lists only its own instance's agents and filters by pool and agent", async () => {
      const rt = await open();
      const other = await open(`${instance}-other`);
      const x = await rt.create({ ...spec("x", h.sleep()), poolId: "pool-x" });
      const y = await rt.create({ ...spec("y", h.sleep()), poolId: "pool-y" });
      try {
        assert.deepEqual(
          (await rt.list({ poolId: "pool-x" })).map((i) => i.id),
          [x.id],
        );
        assert.deepEqual(
          (await rt.list({ agentId: "y" })).map((i) => i.id),
          [y.id],
        );
        assert.deepEqual(await other.list(), [], "another instance sees none of ours");
        assert.equal(await other.inspect(x.id), null, "nor can it inspect them");
      } finally {
        await rt.remove(x.id);
        await rt.remove(y.id);
        await h.cleanup(`${instance}-other`);
      }
    });
  });
}

function getOnceQuick(port: number): Promise<unknown> {
  return getOnce(port, "/", 500);
}
