import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { findExecutable, findNatsServer } from "../src/nats/binary.ts";
import { NatsUnreachableError, natsAnswers } from "../src/nats/connect.ts";
import { ensureNats } from "../src/nats/ensure.ts";
import { type InstallHost, installPlan, obtainNatsServer } from "../src/nats/install.ts";
import { freePort } from "../src/nats/server.ts";
import { corral, root } from "./helpers/cli.ts";
import { onTeardown, tempDir, trackProcess } from "./helpers/teardown.ts";

const temp = (prefix: string) => tempDir(`install-${prefix}-`);

function host(over: Partial<InstallHost> & { commands?: string[] } = {}): InstallHost {
  const { commands = ["apt-get"], ...rest } = over;
  return {
    platform: "linux",
    isRoot: true,
    has: (c) => commands.includes(c),
    sudoWithoutPassword: () => false,
    env: { PATH: "/nonexistent" },
    ...rest,
  };
}

describe("how nats-server gets installed (decision only, nothing is run)", () => {
  it("Debian/Ubuntu as root: apt-get update, then install, announced as one line", () => {
    const plan = installPlan(host());
    assert.equal(plan.kind, "run");
    assert.ok(plan.kind === "run");
    assert.deepEqual(plan.steps, [
      ["apt-get", "update", "-qq"],
      ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nats-server"],
    ]);
    assert.deepEqual(plan.env, { DEBIAN_FRONTEND: "noninteractive" });
    assert.equal(
      plan.line,
      "apt-get update -qq && apt-get install -y -qq --no-install-recommends nats-server",
    );
  });

  it("not root but passwordless sudo: the same through sudo -n", () => {
    const plan = installPlan(
      host({ isRoot: false, commands: ["apt-get", "sudo"], sudoWithoutPassword: () => true }),
    );
    assert.ok(plan.kind === "run");
    assert.deepEqual(plan.steps[1], [
      "sudo",
      "-n",
      "env",
      "DEBIAN_FRONTEND=noninteractive",
      "apt-get",
      "install",
      "-y",
      "-qq",
      "--no-install-recommends",
      "nats-server",
    ]);
    assert.match(plan.line, /^sudo -n apt-get update -qq && sudo -n apt-get install /);
  });

  it("not root and sudo wants a password: the commands to run by hand", () => {
    const plan = installPlan(host({ isRoot: false, commands: ["apt-get", "sudo"] }));
    assert.deepEqual(plan, {
      kind: "manual",
      why: "not root and sudo asks for a password",
      commands: ["sudo apt-get update && sudo apt-get install -y nats-server"],
    });
  });

  it("CORRAL_NO_INSTALL=1 turns installing off (0 or empty does not)", () => {
    const off = installPlan(host({ env: { CORRAL_NO_INSTALL: "1" } }));
    assert.equal(off.kind, "manual");
    assert.ok(off.kind === "manual");
    assert.equal(off.why, "CORRAL_NO_INSTALL is set");
    assert.equal(installPlan(host({ env: { CORRAL_NO_INSTALL: "0" } })).kind, "run");
    assert.equal(installPlan(host({ env: { CORRAL_NO_INSTALL: "" } })).kind, "run");
    const mac = installPlan(
      host({ platform: "darwin", isRoot: false, commands: ["brew"], env: { CORRAL_NO_INSTALL: "yes" } }),
    );
    assert.equal(mac.kind, "manual");
  });

  it("macOS: brew install, never as root, and not without Homebrew", () => {
    const plan = installPlan(host({ platform: "darwin", isRoot: false, commands: ["brew"] }));
    assert.ok(plan.kind === "run");
    assert.deepEqual(plan.steps, [["brew", "install", "nats-server"]]);
    assert.equal(plan.line, "brew install nats-server");
    const root = installPlan(host({ platform: "darwin", commands: ["brew"] }));
    assert.ok(root.kind === "manual");
    assert.equal(root.why, "Homebrew does not run as root");
    const none = installPlan(host({ platform: "darwin", isRoot: false, commands: [] }));
    assert.ok(none.kind === "manual");
    assert.match(none.why, /Homebrew is not installed/);
    assert.deepEqual(none.commands, ["brew install nats-server"]);
  });

  it("anything else (no apt-get, not macOS): every way, by hand", () => {
    const plan = installPlan(host({ commands: ["dnf"] }));
    assert.ok(plan.kind === "manual");
    assert.match(plan.why, /no package manager corral knows/);
    assert.match(plan.commands.join("\n"), /apt-get install nats-server[\s\S]*brew install nats-server/);
  });
});

describe("finding nats-server", () => {
  it("looks in PATH and in the sbin beside each bin (Debian puts it in /usr/sbin)", () => {
    const d = temp("find");
    mkdirSync(join(d, "usr", "bin"), { recursive: true });
    mkdirSync(join(d, "usr", "sbin"), { recursive: true });
    const exe = join(d, "usr", "sbin", "nats-server");
    writeFileSync(exe, "#!/bin/false\n");
    assert.equal(findNatsServer(join(d, "usr", "bin")), undefined, "not executable yet");
    chmodSync(exe, 0o755);
    assert.equal(findNatsServer(join(d, "usr", "bin")), exe);
    assert.equal(findNatsServer(`/nonexistent:${join(d, "usr", "bin")}/`), exe);
    assert.equal(findNatsServer(join(d, "usr")), undefined, "only a bin has an sbin beside it");
    assert.equal(findExecutable("node", join(d, "usr", "bin")), undefined);
  });
});

/**
 * A stand-in for apt-get on a PATH of its own: records each call, and on `install` puts a link to
 * the real nats-server beside itself — the whole install path, without touching this machine.
 */
function fakeAptGet(opts: { fail?: string } = {}): { dir: string; calls: () => string[] } {
  const real = findNatsServer();
  assert.ok(real, "these tests need a real nats-server to link to");
  const dir = temp("apt");
  const log = join(dir, "calls.log");
  const script = join(dir, "apt-get");
  writeFileSync(
    script,
    `#!${process.execPath}
const fs = require("node:fs");
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, [process.env.DEBIAN_FRONTEND, ...args].join(" ") + "\\n");
${
  opts.fail
    ? `if (args[0] === "install") { console.error(${JSON.stringify(opts.fail)}); process.exit(100); }`
    : `if (args[0] === "install") fs.symlinkSync(${JSON.stringify(real)}, ${JSON.stringify(join(dir, "nats-server"))});`
}
`,
  );
  chmodSync(script, 0o755);
  return {
    dir,
    calls: () => readFileSync(log, "utf8").split("\n").filter(Boolean),
  };
}

function rootHostOn(dir: string, env: NodeJS.ProcessEnv = {}): InstallHost {
  return host({
    has: (c) => findExecutable(c, dir) !== undefined,
    env: { PATH: dir, ...env },
  });
}

describe("installing nats-server when it is missing (a fake apt-get, the real nats-server)", () => {
  it("announces one line, runs apt-get update and install, then starts the server it installed", async () => {
    const apt = fakeAptGet();
    const said: string[] = [];
    const url = `nats://127.0.0.1:${await freePort()}`;
    const nats = await ensureNats({
      url,
      dataDir: temp("data"),
      host: rootHostOn(apt.dir),
      say: (line) => said.push(line),
    });
    const stop = onTeardown("the nats-server ensureNats started", () => nats.stop());
    try {
      assert.deepEqual(said, [
        "corral: nats-server is not installed; installing it: apt-get update -qq && apt-get install -y -qq --no-install-recommends nats-server",
      ]);
      assert.deepEqual(apt.calls(), [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends nats-server",
      ]);
      assert.ok(nats.started, "started a server of its own");
      assert.equal(await natsAnswers(nats.url), true);
    } finally {
      await stop();
    }
  });

  it("already installed: nothing is run, nothing said", async () => {
    const apt = fakeAptGet();
    symlinkSync(findNatsServer() as string, join(apt.dir, "nats-server"));
    const said: string[] = [];
    const got = await obtainNatsServer(rootHostOn(apt.dir), (l) => said.push(l));
    assert.deepEqual(got, { binary: join(apt.dir, "nats-server") });
    assert.deepEqual(said, []);
    assert.throws(() => apt.calls(), /ENOENT/, "apt-get never ran");
  });

  it("a failed install: why (apt-get's last lines) and the commands to run, as a NATS-unreachable error", async () => {
    const apt = fakeAptGet({ fail: "E: Unable to locate package nats-server" });
    const url = `nats://127.0.0.1:${await freePort()}`;
    await assert.rejects(
      ensureNats({ url, dataDir: temp("data"), host: rootHostOn(apt.dir), say: () => {} }),
      (err: unknown) => {
        assert.ok(err instanceof NatsUnreachableError);
        assert.match(
          err.message,
          /installing it failed: `apt-get install -y -qq --no-install-recommends nats-server` exited 100/,
        );
        assert.match(err.message, /E: Unable to locate package nats-server/);
        assert.match(
          err.advice ?? "",
          /^Install it, then run this again:\n {2}sudo apt-get update && sudo apt-get install -y nats-server\n/,
        );
        return true;
      },
    );
  });
});

describe("corral start without NATS and without nats-server", () => {
  it("CORRAL_NO_INSTALL=1: exits 3 with the exact commands, installs nothing, no contradictory hint", async () => {
    const apt = fakeAptGet();
    const url = `nats://127.0.0.1:${await freePort()}`;
    const r = await corral(["start", "--data-dir", temp("data")], {
      NATS_URL: url,
      PATH: apt.dir,
      CORRAL_NO_INSTALL: "1",
    });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(
      r.stderr,
      [
        `corral: NATS is not reachable at ${url}: nothing answers there and nats-server is not installed (CORRAL_NO_INSTALL is set).`,
        "Install it, then run this again:",
        "  sudo apt-get update && sudo apt-get install -y nats-server",
        "or run one in Docker:         docker run -p 4222:4222 nats:2.9 -js",
        "or use an existing server:    NATS_URL=nats://host:4222",
        "",
      ].join("\n"),
    );
    assert.doesNotMatch(r.stderr, /npm start/);
    assert.throws(() => apt.calls(), /ENOENT/, "apt-get never ran");
  });
});

describe("npm test without nats-server", () => {
  it("stops before any test with one line naming what is missing", async () => {
    const p = spawn(process.execPath, [join(root, "scripts", "test.js"), "test/nats-install.test.ts"], {
      cwd: root,
      env: { ...process.env, PATH: "/nonexistent", CORRAL_NO_INSTALL: "1" },
    });
    trackProcess(p, "npm test without nats-server");
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      err += d;
    });
    const code = await new Promise((r) => p.once("close", r));
    assert.equal(code, 1);
    assert.equal(out, "", "no test ran");
    assert.equal(
      err,
      "npm test: nats-server is not installed (CORRAL_NO_INSTALL is set); install it: sudo apt-get install nats-server (Debian, Ubuntu)\n",
    );
  });
});
