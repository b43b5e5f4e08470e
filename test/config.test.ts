import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { stringify } from "yaml";
import { ConfigError, loadConfig } from "../src/config/load.ts";
import { corral } from "./helpers/cli.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { tempDir } from "./helpers/teardown.ts";

/** Each bad file, and the one line its error must contain: the field path and what is wrong. */
const BAD: [name: string, body: string, expected: string][] = [
  ["unknown field", stringify({ pools: { a: { maxx: 3 } } }), "pools.a: unknown field(s): maxx"],
  [
    "min over max",
    stringify({ pools: { a: { min: 5, max: 2 } } }),
    "pools.a.min: min (5) must be <= max (2)",
  ],
  [
    "warm over max",
    stringify({ pools: { a: { warm: 9, max: 2 } } }),
    "pools.a.warm: warm (9) must be <= max (2)",
  ],
  [
    "bad duration",
    stringify({ pools: { a: { idleTimeout: "5 minutes" } } }),
    'pools.a.idleTimeout: "5 minutes" is not a duration',
  ],
  [
    "reversed port range",
    stringify({ pools: { a: { ports: { range: "9000-8000" } } } }),
    'pools.a.ports.range: "9000-8000": low (9000) must be <= high (8000)',
  ],
  [
    "port out of range",
    stringify({ pools: { a: { ports: { range: "8000-70000" } } } }),
    "pools.a.ports.range: port 70000 is outside 1-65535",
  ],
  [
    "perAgent larger than the range",
    stringify({ pools: { a: { ports: { range: "8000-8001", perAgent: 3 } } } }),
    "pools.a.ports.perAgent: 3 exceeds the range size 2",
  ],
  [
    "perAgent zero",
    stringify({ pools: { a: { ports: { range: "8000-8001", perAgent: 0 } } } }),
    "pools.a.ports.perAgent",
  ],
  ["no pools", stringify({ pools: {} }), "pools: at least one pool is needed"],
  ["pools missing", stringify({ instance: "x" }), "pools: expected a map of pool name to pool settings"],
  ["bad pool name", stringify({ pools: { "a.b": {} } }), 'pools: pool name "a.b": use 1-64 characters'],
  ["bad runtime", stringify({ pools: { a: { runtime: "k8s" } } }), "pools.a.runtime:"],
  ["empty command", stringify({ pools: { a: { template: { command: [] } } } }), "pools.a.template.command:"],
  [
    "bad mount",
    stringify({ pools: { a: { template: { command: ["x"], mounts: ["/only-source"] } } } }),
    'pools.a.template.mounts.0: "/only-source" is not SOURCE:TARGET[:ro|rw]',
  ],
  ["bad instance", stringify({ instance: "a b", pools: { a: {} } }), "instance: 1-64 characters"],
  [
    "leaseTtl over maxLeaseTtl",
    stringify({ pools: { a: { leaseTtl: "2h" } } }),
    "pools.a.leaseTtl: leaseTtl (7200000 ms) must be <= maxLeaseTtl (3600000 ms)",
  ],
  [
    "ports.bind not an address",
    stringify({ pools: { a: { ports: { bind: "everywhere" } } } }),
    'pools.a.ports.bind: must be an IP address such as 127.0.0.1 or 0.0.0.0, got "everywhere"',
  ],
  ["not YAML", "pools: [a\n  b: {", "not valid YAML"],
];

describe("corral.yaml validation", () => {
  let dir: string;
  before(() => {
    dir = tempDir("config-");
  });

  const file = (name: string, body: string) => {
    const path = join(dir, `${name.replace(/\W+/g, "-")}.yaml`);
    writeFileSync(path, body);
    return path;
  };

  for (const [name, body, expected] of BAD) {
    it(`${name}: a ConfigError naming the file and the field`, () => {
      const path = file(name, body);
      assert.throws(
        () => loadConfig(path),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.ok(e.message.startsWith(path), e.message);
          assert.ok(
            e.message.includes(expected),
            `${JSON.stringify(e.message)} lacks ${JSON.stringify(expected)}`,
          );
          return true;
        },
      );
    });
  }

  it("every problem of one file is listed, not just the first", () => {
    const path = file("many", stringify({ pools: { a: { warm: -1, idleTimeout: "soon", extra: 1 } } }));
    assert.throws(
      () => loadConfig(path),
      (e: ConfigError) => {
        const fields = e.issues.map((i) => i.split(":")[0]).sort();
        assert.deepEqual(fields, ["pools.a", "pools.a.idleTimeout", "pools.a.warm"], e.message);
        return true;
      },
    );
  });

  it("a missing file says it cannot be read", () => {
    assert.throws(() => loadConfig(join(dir, "nope.yaml")), /nope\.yaml: cannot read/);
  });

  it("a good file gets its defaults and durations in ms", () => {
    const cfg = loadConfig(
      file(
        "good",
        stringify({
          instance: "ci",
          pools: { a: { max: 3, idleTimeout: "2m", ports: { range: "8000-8009", hostUrl: "http://h//" } } },
        }),
      ),
    );
    const a = cfg.pools.a;
    assert.ok(a);
    assert.equal(a.idleTimeout, 120_000);
    assert.equal(a.runtime, "auto");
    assert.deepEqual(a.ports, { low: 8000, high: 8009, perAgent: 2, hostUrl: "http://h" });
    assert.equal(a.maxLeaseTtl, 3_600_000, "leases are capped at 1 h unless the file says otherwise");
    const open = loadConfig(
      file("open", stringify({ pools: { b: { maxLeaseTtl: "10m", ports: { bind: "0.0.0.0" } } } })),
    ).pools.b;
    assert.equal(open?.maxLeaseTtl, 600_000);
    assert.equal(open?.ports?.bind, "0.0.0.0");
  });

  it("`corral up` with a bad file exits 2, naming the field, before touching NATS", async () => {
    const path = file("cli", stringify({ pools: { a: { min: 4, max: 2 } } }));
    // A NATS URL nobody answers on: touched first, it would exit 3 (not reachable), not 2.
    const r = await corral(["up", "--config", path], { NATS_URL: "nats://127.0.0.1:1" });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /pools\.a\.min: min \(4\) must be <= max \(2\)/);
  });
});

describe("corral up: runtime availability is checked against the config", () => {
  let t: TestNats;
  let dir: string;
  before(async () => {
    t = await startTestNats();
    dir = tempDir("config-rt-");
  });

  it("a docker pool with no engine is a usage error naming the pool's runtime field", async () => {
    const path = join(dir, "docker.yaml");
    writeFileSync(
      path,
      stringify({ instance: "cfg-docker", stateDir: dir, pools: { d: { runtime: "docker" } } }),
    );
    const r = await corral(["up", "--config", path], {
      NATS_URL: t.url,
      DOCKER_HOST: `unix://${join(dir, "no-such-docker.sock")}`,
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /pools\.d\.runtime: docker, but no Docker engine answers/);
  });
});
