import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { initPlan, POST_INIT_GRACE_MS, repoDirName } from "../src/cp/init/plan.ts";
import { initKeysOf, keyDigest } from "../src/cp/init/template.ts";
import { resolvePools } from "../src/daemon/pools.ts";
import { PoolCreated } from "../src/events/pool.ts";
import { DEFAULT_POST_INIT_TIMEOUT_MS, DEFAULT_STEP_TIMEOUT_MS } from "../src/events/template-init.ts";

/** The init plan from a pool template: its fields in corral.yaml, the stored form, the steps. */

const PRIVATE_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-material-123\n-----END OPENSSH PRIVATE KEY-----\n";

const fullInit = {
  config: { files: [{ path: ".config/agent.toml", content: "x = 1\n", mode: "0600" }] },
  git: { repo: "/srv/git/project.git", ref: "main" },
  ssh: { knownHosts: ["github.com ssh-ed25519 AAAA"], keys: [{ name: "id_ed25519", content: PRIVATE_KEY }] },
  postInit: { argv: ["npm", "ci"], timeout: "2m" },
  stepTimeout: "45s",
};

const fileWith = (init: unknown) => ({
  pools: { a: { runtime: "process", template: { command: ["x"], init } } },
});

async function storedConfig(init: unknown) {
  const cfg = parseConfig(fileWith(init));
  return { cfg, pool: (await resolvePools(cfg, "corral.yaml", {})).a };
}

describe("init template: corral.yaml to the stored form", () => {
  it("stores SSH keys by digest only: the key's content is in no part of the pool's stored config", async () => {
    const { cfg, pool } = await storedConfig(fullInit);
    const init = pool?.template.init;
    assert.deepEqual(init?.ssh?.keys, [{ name: "id_ed25519", sha256: keyDigest(PRIVATE_KEY) }]);
    assert.equal(init?.config?.files[0]?.mode, 0o600);
    assert.equal(init?.postInit?.timeoutMs, 120_000);
    assert.equal(init?.stepTimeoutMs, 45_000);
    assert.equal(init?.git?.mode, "clone");
    const event = PoolCreated.schema.parse({ config: pool, instance: "default" });
    assert.ok(!JSON.stringify(event).includes("secret-key-material"), "the key reached the event");
    // The daemon keeps the content apart, by digest, for the ssh step.
    assert.equal(initKeysOf(cfg).get(keyDigest(PRIVATE_KEY)), PRIVATE_KEY);
  });

  it("an event that carries a key's content is refused by PoolCreated's schema", async () => {
    const { pool } = await storedConfig(fullInit);
    const leaky = structuredClone(pool) as unknown as { template: { init: { ssh: { keys: object[] } } } };
    leaky.template.init.ssh.keys = [{ name: "id_ed25519", content: PRIVATE_KEY }];
    const r = PoolCreated.schema.safeParse({ config: leaky, instance: "default" });
    assert.equal(r.success, false);
  });

  const BAD: [string, unknown, string][] = [
    [
      "absolute config path",
      { config: { files: [{ path: "/etc/passwd", content: "" }] } },
      "pools.a.template.init.config.files.0.path: must be relative to the home, no '..'",
    ],
    [
      "path out of the home",
      { config: { files: [{ path: "a/../../x", content: "" }] } },
      "pools.a.template.init.config.files.0.path: must be relative to the home, no '..'",
    ],
    [
      "a mode that is not octal",
      { config: { files: [{ path: "a", content: "", mode: "0999" }] } },
      "pools.a.template.init.config.files.0.mode",
    ],
    [
      "a repo read as an option",
      { git: { repo: "--upload-pack=x" } },
      "pools.a.template.init.git.repo: must not start with '-'",
    ],
    ["unknown git mode", { git: { repo: "r", mode: "copy" } }, "pools.a.template.init.git.mode"],
    [
      "known_hosts line break",
      { ssh: { knownHosts: ["a\nb"] } },
      "pools.a.template.init.ssh.knownHosts.0: must be one line",
    ],
    [
      "two keys with one name",
      {
        ssh: {
          keys: [
            { name: "k", content: PRIVATE_KEY },
            { name: "k", content: PRIVATE_KEY },
          ],
        },
      },
      "pools.a.template.init.ssh.keys: two keys with one name",
    ],
    [
      "key name with a slash",
      { ssh: { keys: [{ name: "../k", content: PRIVATE_KEY }] } },
      "pools.a.template.init.ssh.keys.0.name: must be a plain file name",
    ],
    ["empty post-init argv", { postInit: { argv: [] } }, "pools.a.template.init.postInit.argv"],
    ["unknown init field", { gitt: {} }, "pools.a.template.init: unknown field(s): gitt"],
  ];
  for (const [name, init, expected] of BAD) {
    it(`refuses ${name}, naming the field (and never a key's content)`, () => {
      const err = (() => {
        try {
          parseConfig(fileWith(init));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      assert.ok(err instanceof ConfigError, "expected a ConfigError");
      assert.ok(
        err.issues.some((i) => i.startsWith(expected)),
        `expected an issue starting with ${JSON.stringify(expected)}, got ${JSON.stringify(err.issues)}`,
      );
      assert.ok(!err.message.includes("secret-key-material"));
    });
  }
});

describe("init plan", () => {
  it("runs config, git, ssh, post-init, agent-ready in that order, with the template's arguments", async () => {
    const { cfg, pool } = await storedConfig(fullInit);
    const plan = initPlan(pool?.template.init, initKeysOf(cfg));
    assert.deepEqual(
      plan.steps.map((s) => s.name),
      ["config", "git", "ssh", "post-init", "agent-ready"],
    );
    const ops = plan.steps.map((s) => ("op" in s ? s.op : s.fault));
    assert.deepEqual(ops, [
      { op: "config", args: { files: [{ path: ".config/agent.toml", content: "x = 1\n", mode: 0o600 }] } },
      { op: "git", args: { repo: "/srv/git/project.git", dir: "project", ref: "main" } },
      {
        op: "ssh",
        args: {
          knownHosts: ["github.com ssh-ed25519 AAAA"],
          keys: [{ name: "id_ed25519", content: PRIVATE_KEY }],
        },
      },
      { op: "post-init", args: { argv: ["npm", "ci"], timeoutMs: 120_000 } },
      { op: "agent-ready", args: {} },
    ]);
    // The configured step timeout; post-init its own, plus the grace that lets agentd answer first.
    assert.deepEqual(
      plan.steps.map((s) => s.timeoutMs),
      [45_000, 45_000, 45_000, 120_000 + POST_INIT_GRACE_MS, 45_000],
    );
  });

  it("leaves out what the template does not configure; agent-ready is always there", () => {
    assert.deepEqual(
      initPlan(undefined).steps.map((s) => s.name),
      ["agent-ready"],
    );
    const plan = initPlan({ git: { repo: "r", mode: "clone" }, postInit: { argv: ["true"] } });
    assert.deepEqual(
      plan.steps.map((s) => [s.name, s.timeoutMs]),
      [
        ["git", DEFAULT_STEP_TIMEOUT_MS],
        ["post-init", DEFAULT_POST_INIT_TIMEOUT_MS + POST_INIT_GRACE_MS],
        ["agent-ready", DEFAULT_STEP_TIMEOUT_MS],
      ],
    );
    assert.equal(DEFAULT_STEP_TIMEOUT_MS, 30_000);
    assert.equal(DEFAULT_POST_INIT_TIMEOUT_MS, 600_000);
  });

  it("a key whose content this daemon does not have makes the ssh step a fault that names the key only", () => {
    const sha256 = keyDigest(PRIVATE_KEY);
    const plan = initPlan({ ssh: { keys: [{ name: "deploy", sha256 }] } }, new Map());
    const ssh = plan.steps[0];
    assert.ok(ssh && "fault" in ssh);
    assert.equal(ssh.fault, "ssh key deploy: its content is not in this daemon's config");
    assert.ok(!ssh.fault.includes(sha256));
  });

  it("a worktree is agentd's git op in worktree mode", () => {
    const git = initPlan({ git: { repo: "/srv/r.git", mode: "worktree" } }).steps[0];
    assert.ok(git && "op" in git);
    assert.deepEqual(git.op, { op: "git", args: { repo: "/srv/r.git", dir: "r", mode: "worktree" } });
  });

  it("names the clone's directory as git would", () => {
    assert.equal(repoDirName("https://example.com/org/project.git"), "project");
    assert.equal(repoDirName("git@github.com:org/tool.git"), "tool");
    assert.equal(repoDirName("/srv/git/plain/"), "plain");
    assert.equal(repoDirName("/"), "repo");
  });
});
