import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import {
  bindProbe,
  PortAllocationCancelledError,
  PortAllocator,
  PortConfigError,
  PortConflictError,
  type PortRange,
  PortsExhaustedError,
  parsePortConfig,
  portEnv,
  portLetter,
  portUrls,
} from "../src/ports/index.ts";
import { trackProcess } from "./helpers/teardown.ts";

// ---- helpers: real sockets only ------------------------------------------------------------

const range = (low: number, size: number): PortRange => ({ low, high: low + size - 1 });

/**
 * A block of `size` consecutive ports in 42000–43999 that are free right now, at a random offset
 * so test files running in parallel on this machine rarely meet.
 */
async function freeBlock(size: number): Promise<PortRange> {
  for (let tries = 0; tries < 20; tries++) {
    const low = 42_000 + Math.floor(Math.random() * (2_000 - size));
    const ports = Array.from({ length: size }, (_, i) => low + i);
    if ((await Promise.all(ports.map(bindProbe))).every(Boolean)) return range(low, size);
  }
  throw new Error(`no free block of ${size} ports in 42000-43999`);
}

/** Another program (a child node process) listening on the given host:port pairs until killed. */
async function holdPorts(binds: Array<[port: number, host: string]>): Promise<ChildProcess> {
  const script = `
    const net = require("node:net");
    const binds = JSON.parse(process.argv[1]);
    let left = binds.length;
    for (const [port, host] of binds) net.createServer().listen({ port, host }, () => {
      if (--left === 0) process.stdout.write("ready\\n");
    });`;
  const child = spawn(process.execPath, ["-e", script, JSON.stringify(binds)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  trackProcess(child, "port holder", { signal: "SIGKILL" });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`port holder exited early (${code})`)));
  });
  return child;
}

async function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen({ port: 0, host: "::1" }, () => s.close(() => resolve(true)));
  });
}

// ---- config ----------------------------------------------------------------------------------

describe("parsePortConfig", () => {
  it("accepts ranges, a single port, and trims the hostUrl's trailing slashes", () => {
    assert.deepEqual(parsePortConfig({ range: "8000-9000", perAgent: 2 }), {
      low: 8000,
      high: 9000,
      perAgent: 2,
    });
    assert.deepEqual(parsePortConfig({ range: "8000", perAgent: 1 }), { low: 8000, high: 8000, perAgent: 1 });
    assert.deepEqual(parsePortConfig({ range: 8080, perAgent: 1 }), { low: 8080, high: 8080, perAgent: 1 });
    assert.deepEqual(parsePortConfig({ range: " 8000 - 8001 ", perAgent: 2 }), {
      low: 8000,
      high: 8001,
      perAgent: 2,
    });
    assert.deepEqual(parsePortConfig({ range: "1-65535", perAgent: 3, hostUrl: "http://host/" }), {
      low: 1,
      high: 65535,
      perAgent: 3,
      hostUrl: "http://host",
    });
    assert.equal(
      parsePortConfig({ range: "1-2", hostUrl: "https://10.0.0.7//" }).hostUrl,
      "https://10.0.0.7",
    );
    // documented defaults: 8000-9000, 2 per agent
    assert.deepEqual(parsePortConfig({}), { low: 8000, high: 9000, perAgent: 2 });
  });

  const bad: Array<[input: unknown, field: string, message: RegExp]> = [
    [{ range: "9000-8000" }, "ports.range", /"9000-8000": low \(9000\) must be <= high \(8000\)/],
    [{ range: "8000-70000" }, "ports.range", /port 70000 is outside 1-65535/],
    [{ range: "0-10" }, "ports.range", /port 0 is outside 1-65535/],
    [{ range: "abc" }, "ports.range", /expected "LOW-HIGH", got "abc"/],
    [{ range: "80-90-100" }, "ports.range", /expected "LOW-HIGH"/],
    [{ range: "-80" }, "ports.range", /expected "LOW-HIGH"/],
    [{ range: ["80", "90"] }, "ports.range", /expected "LOW-HIGH"/],
    [{ range: "8000-8002", perAgent: 0 }, "ports.perAgent", /must be an integer >= 1/],
    [{ range: "8000-8002", perAgent: 1.5 }, "ports.perAgent", /must be an integer >= 1/],
    [{ range: "8000-8002", perAgent: "2" }, "ports.perAgent", /must be an integer >= 1, got "2"/],
    [{ range: "8000-8002", perAgent: 5 }, "ports.perAgent", /5 exceeds the range size 3/],
    [{ range: "8000", perAgent: 1, hostUrl: "not a url" }, "ports.hostUrl", /not a URL/],
    [{ range: "8000", perAgent: 1, hostUrl: 42 }, "ports.hostUrl", /not a URL/],
    [{ range: "8000", perAgent: 1, hostUrl: "ftp://host" }, "ports.hostUrl", /must be http\(s\)/],
    [{ range: "8000", perAgent: 1, hostUrl: "http://host:9000" }, "ports.hostUrl", /scheme and host only/],
    [{ range: "8000", perAgent: 1, hostUrl: "http://host/base" }, "ports.hostUrl", /scheme and host only/],
    [{ range: "8000-8001", perAgnet: 2 }, "ports.perAgnet", /unknown field/],
    [null, "ports", /expected an object/],
    ["8000-9000", "ports", /expected an object/],
  ];
  for (const [input, field, message] of bad) {
    it(`rejects ${JSON.stringify(input)} naming ${field}`, () => {
      assert.throws(
        () => parsePortConfig(input),
        (e: unknown) =>
          e instanceof PortConfigError &&
          e.field === field &&
          e.message.startsWith(`${field}: `) &&
          message.test(e.message),
      );
    });
  }

  it("uses the caller's field path", () => {
    assert.throws(
      () => parsePortConfig({ range: "x" }, "pools.web.ports"),
      (e: unknown) => e instanceof PortConfigError && e.field === "pools.web.ports.range",
    );
  });
});

// ---- allocator -------------------------------------------------------------------------------

describe("PortAllocator (real bind probes)", () => {
  it("hands out the lowest free ports first", async () => {
    const r = await freeBlock(10);
    const ports = new PortAllocator();
    assert.deepEqual(await ports.allocate("a", r, 2), [r.low, r.low + 1]);
    assert.deepEqual(await ports.allocate("b", r, 3), [r.low + 2, r.low + 3, r.low + 4]);
    assert.equal(ports.owner(r.low + 3), "b");
    assert.deepEqual(ports.portsOf("a"), [r.low, r.low + 1]);
    assert.deepEqual(ports.portsOf("nobody"), []);
  });

  it("skips ports another program holds (0.0.0.0, 127.0.0.1 and, when present, ::1)", async () => {
    const r = await freeBlock(10);
    const v6 = await ipv6Loopback();
    const binds: Array<[number, string]> = [
      [r.low + 1, "0.0.0.0"],
      [r.low + 2, "127.0.0.1"],
    ];
    if (v6) binds.push([r.low + 3, "::1"]);
    const holder = await holdPorts(binds);
    const ports = new PortAllocator();
    const got = await ports.allocate("a", r, 2);
    assert.deepEqual(got, [r.low, v6 ? r.low + 4 : r.low + 3]);
    holder.kill("SIGKILL");
    await new Promise((resolve) => holder.once("exit", resolve));
    // once the other program is gone, its ports are free again
    assert.deepEqual(await ports.allocate("b", r, 1), [r.low + 1]);
  });

  it("50 concurrent allocations of 2 from a range of 100: all distinct; the 51st is exhausted and leaks nothing", async () => {
    const r = await freeBlock(100);
    const ports = new PortAllocator();
    const owners = Array.from({ length: 50 }, (_, i) => `agent-${i}`);
    const started = performance.now();
    const results = await Promise.all(owners.map((o) => ports.allocate(o, r, 2)));
    const elapsed = performance.now() - started;
    const all = results.flat();
    assert.equal(new Set(all).size, 100);
    assert.ok(all.every((p) => p >= r.low && p <= r.high));
    results.forEach((got, i) => {
      assert.equal(got.length, 2);
      for (const p of got) assert.equal(ports.owner(p), owners[i]);
      assert.deepEqual(ports.portsOf(owners[i]!), got);
    });
    assert.equal(ports.held().size, 100);
    assert.ok(elapsed < 5_000, `50×2 allocations took ${elapsed.toFixed(0)} ms`);

    const err = await ports.allocate("agent-50", r, 2).then(
      () => assert.fail("expected PortsExhaustedError"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PortsExhaustedError);
    assert.equal(err.owner, "agent-50");
    assert.deepEqual(err.range, r);
    assert.equal(err.needed, 2);
    assert.equal(err.available, 0);
    assert.equal(ports.held().size, 100);
    assert.deepEqual(ports.portsOf("agent-50"), []);

    // nothing leaked: free one agent's ports and the next allocation gets exactly those
    const freed = ports.release("agent-7");
    assert.deepEqual(await ports.allocate("agent-50", r, 2), freed);
  });

  it("a partly satisfied allocation that fails gives back what it had found", async () => {
    const r = await freeBlock(3);
    const ports = new PortAllocator();
    await ports.allocate("a", r, 2);
    await assert.rejects(
      ports.allocate("b", r, 2),
      (e: unknown) => e instanceof PortsExhaustedError && e.available === 1,
    );
    assert.deepEqual(ports.portsOf("b"), []);
    assert.deepEqual(await ports.allocate("c", r, 1), [r.high]);
  });

  it("release returns what it freed, and the next allocation gets the lowest freed ports back", async () => {
    const r = await freeBlock(6);
    const ports = new PortAllocator();
    await ports.allocate("a", r, 2);
    await ports.allocate("b", r, 2);
    await ports.allocate("c", r, 2);
    assert.deepEqual(ports.release("b"), [r.low + 2, r.low + 3]);
    assert.deepEqual(ports.release("a"), [r.low, r.low + 1]);
    assert.deepEqual(ports.release("a"), []);
    assert.deepEqual(ports.release("unknown"), []);
    assert.deepEqual(await ports.allocate("d", r, 3), [r.low, r.low + 1, r.low + 2]);
  });

  it("re-allocating an owner releases its old ports first, so the pool never shrinks", async () => {
    const r = await freeBlock(4);
    const ports = new PortAllocator();
    const a = await ports.allocate("a", r, 2);
    const b = await ports.allocate("b", r, 2);
    for (let i = 0; i < 10; i++) assert.deepEqual(await ports.allocate("a", r, 2), a); // re-created agent
    assert.deepEqual(ports.portsOf("b"), b);
    assert.equal(ports.held().size, 4);
  });

  it("pools with overlapping ranges on one allocator never share a port", async () => {
    const block = await freeBlock(30);
    const web = range(block.low, 20);
    const api = range(block.low + 10, 20); // web and api share 10 ports
    const ports = new PortAllocator();
    // 40 ports asked for, 30 exist: the overlap is fought over and some calls must fail
    const owners = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? `web-${i}` : `api-${i}`));
    const results = await Promise.allSettled(
      owners.map((o) => ports.allocate(o, o.startsWith("web") ? web : api, 2)),
    );
    const granted = results.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
    assert.equal(new Set(granted).size, granted.length);
    assert.equal(granted.length, 30);
    assert.deepEqual([...ports.held().keys()].sort(), [...granted].sort());
    results.forEach((r, i) => {
      const owner = owners[i]!;
      if (r.status === "rejected") {
        assert.ok(r.reason instanceof PortsExhaustedError, String(r.reason));
        assert.deepEqual(ports.portsOf(owner), []);
        return;
      }
      const own = owner.startsWith("web") ? web : api;
      for (const p of r.value)
        assert.ok(p >= own.low && p <= own.high, `${owner} got ${p} outside its range`);
    });
  });

  it("restore() marks replayed ports held without probing; conflicts are refused and change nothing", async () => {
    const r = await freeBlock(6);
    const ports = new PortAllocator();
    ports.restore("x", [r.low, r.low + 1]);
    assert.equal(ports.owner(r.low), "x");
    assert.deepEqual(await ports.allocate("y", r, 2), [r.low + 2, r.low + 3]);

    assert.throws(
      () => ports.restore("z", [r.low + 4, r.low + 2]),
      (e: unknown) =>
        e instanceof PortConflictError && e.conflicts.get(r.low + 2) === "y" && /held by "y"/.test(e.message),
    );
    assert.equal(ports.owner(r.low + 4), undefined);
    assert.deepEqual(ports.portsOf("z"), []);

    ports.restore("x", [r.low, r.low + 1]); // idempotent replay
    ports.restore("x", [r.low + 5]); // a later fact replaces the earlier one, like allocate
    assert.deepEqual(ports.portsOf("x"), [r.low + 5]);
    assert.deepEqual([...ports.held().keys()], [r.low + 2, r.low + 3, r.low + 5]);
  });

  it("restore() wins over an allocation still probing the same port", async () => {
    const r = await freeBlock(4);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const ports = new PortAllocator({
      probe: async (p) => {
        await gate;
        return bindProbe(p);
      },
    });
    const pending = ports.allocate("a", r, 2); // reserves low, low+1 and waits on the gate
    ports.restore("replayed", [r.low]);
    open();
    assert.deepEqual(await pending, [r.low + 1, r.low + 2]);
    assert.equal(ports.owner(r.low), "replayed");
  });

  it("the latest allocate/release for an owner wins; the superseded call rejects and holds nothing", async () => {
    const r = await freeBlock(6);
    const ports = new PortAllocator();
    const first = ports.allocate("a", r, 2);
    const second = ports.allocate("a", r, 2);
    await assert.rejects(first, PortAllocationCancelledError);
    assert.deepEqual(await second, [r.low, r.low + 1]);

    const third = ports.allocate("b", r, 2);
    assert.deepEqual(ports.release("b"), []); // nothing committed yet, but the allocation is cancelled
    await assert.rejects(third, PortAllocationCancelledError);
    assert.deepEqual(ports.portsOf("b"), []);
    assert.equal(ports.held().size, 2);
  });

  it("does not give up while another allocation's probes may still hand a port back", async () => {
    const r = await freeBlock(3);
    await holdPorts([[r.low + 1, "0.0.0.0"]]);
    const ports = new PortAllocator();
    const a = ports.allocate("a", r, 3); // reserves all 3; low+1 is held elsewhere → a fails
    const c = ports.allocate("c", r, 1); // nothing free yet, but a is still probing → waits
    const [ra, rc] = await Promise.allSettled([a, c]);
    assert.ok(ra.status === "rejected" && ra.reason instanceof PortsExhaustedError);
    assert.equal(ra.reason.available, 2);
    assert.equal(ra.reason.heldByOthers, 1);
    assert.deepEqual(rc.status === "fulfilled" && rc.value, [r.low]);
    assert.deepEqual([...ports.held()], [[r.low, "c"]]);
  });

  it("rejects a bad range or count", async () => {
    const ports = new PortAllocator();
    await assert.rejects(ports.allocate("a", { low: 10, high: 5 }, 1), RangeError);
    await assert.rejects(ports.allocate("a", { low: 0, high: 5 }, 1), RangeError);
    await assert.rejects(ports.allocate("a", { low: 42000, high: 42001 }, -1), RangeError);
    assert.deepEqual(await ports.allocate("a", { low: 42000, high: 42001 }, 0), []);
  });
});

// ---- env -------------------------------------------------------------------------------------

describe("portEnv / portUrls", () => {
  it("names ports A, B, … and builds URLs without a doubled slash", () => {
    assert.deepEqual(portEnv([8000, 8001], "http://host/"), {
      CORRAL_PORT_A: "8000",
      AVAILABLE_LOCALHOST_PORT_A: "8000",
      CORRAL_URL_A: "http://host:8000",
      AVAILABLE_LOCALHOST_URL_A: "http://host:8000",
      CORRAL_PORT_B: "8001",
      AVAILABLE_LOCALHOST_PORT_B: "8001",
      CORRAL_URL_B: "http://host:8001",
      AVAILABLE_LOCALHOST_URL_B: "http://host:8001",
    });
    assert.deepEqual(portEnv([8000]), { CORRAL_PORT_A: "8000", AVAILABLE_LOCALHOST_PORT_A: "8000" });
    assert.deepEqual(portUrls([8000, 8001], "https://h.example//"), [
      "https://h.example:8000",
      "https://h.example:8001",
    ]);
    assert.deepEqual(portUrls([8000]), []);
    for (const v of Object.values(portEnv([1, 2, 3], "http://x/"))) assert.ok(!v.includes("/:"));
  });

  it("goes past Z to AA, AB, …", () => {
    assert.deepEqual([0, 25, 26, 27, 51, 52, 701, 702].map(portLetter), [
      "A",
      "Z",
      "AA",
      "AB",
      "AZ",
      "BA",
      "ZZ",
      "AAA",
    ]);
    const env = portEnv(Array.from({ length: 28 }, (_, i) => 9000 + i));
    assert.equal(env.CORRAL_PORT_Z, "9025");
    assert.equal(env.CORRAL_PORT_AA, "9026");
    assert.equal(env.AVAILABLE_LOCALHOST_PORT_AB, "9027");
  });
});
