import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect } from "node:tls";
import type { FromAgent } from "../src/agentd/protocol.ts";
import { type IssuedCert, loadOrCreateCa } from "../src/identity/ca.ts";
import { writeIdentityFiles } from "../src/identity/files.ts";
import { controlPlaneName } from "../src/identity/names.ts";
import { controlPlaneClientOptions } from "../src/identity/tls.ts";
import { AgentdChannel } from "./helpers/agentd-channel.ts";
import { tempDir, trackProcess } from "./helpers/teardown.ts";

/**
 * agentd as it runs (src/agentd/main.ts): a process configured by its environment, listening
 * with strict mTLS. Only the control plane's certificate (the corral CA, the pinned CN,
 * clientAuth) gets a frame; SIGTERM stops the agent's command and exits 0.
 */

const root = join(import.meta.dirname, "..");
const INSTANCE = "test-cp";

interface Identities {
  caPem: string;
  cp: IssuedCert;
  /** Same CN, another CA. */
  strangerCa: IssuedCert;
  /** Same CA, another CN. */
  otherCn: IssuedCert;
  /** Same CA and CN, but made for a server (serverAuth), not a client. */
  noClientAuth: IssuedCert;
  identityDir: string;
}

let ids: Identities;

before(async () => {
  const ca = await loadOrCreateCa(tempDir("ca-"));
  const other = await loadOrCreateCa(tempDir("other-ca-"));
  const identityDir = tempDir("identity-");
  writeIdentityFiles(identityDir, await ca.issueAgent({ poolId: "pool-1", agentId: "agent-1" }), ca.certPem);
  ids = {
    caPem: ca.certPem,
    cp: await ca.issueControlPlane(INSTANCE),
    strangerCa: await other.issueControlPlane(INSTANCE),
    otherCn: await ca.issueControlPlane("someone-else"),
    noClientAuth: await ca.issueCustom({
      cn: controlPlaneName(INSTANCE),
      uris: [],
      eku: ["serverAuth"],
      validityMs: 3600_000,
    }),
    identityDir,
  };
});

interface Running {
  child: ChildProcess;
  port: number;
  stateDir: string;
  home: string;
  stderr: () => string;
}

/** Starts agentd (`argv` is how node runs it) and waits for its agentd.json. */
async function startAgentd(argv: string[], agentCommand?: string[]): Promise<Running> {
  const stateDir = tempDir("state-");
  const home = tempDir("home-");
  const env = {
    ...process.env,
    HOME: home,
    CORRAL_AGENTD_DIR: ids.identityDir,
    CORRAL_AGENTD_CP_CN: controlPlaneName(INSTANCE),
    CORRAL_AGENTD_LISTEN: "127.0.0.1:0",
    CORRAL_AGENTD_STATE: stateDir,
    CORRAL_AGENTD_GRACE_MS: "500",
    CORRAL_AGENT_ID: "agent-1",
    CORRAL_POOL: "pool-1",
    ...(agentCommand ? { CORRAL_AGENT_COMMAND: JSON.stringify(agentCommand) } : {}),
  };
  const child = spawn(process.execPath, argv, { cwd: root, env, stdio: ["ignore", "ignore", "pipe"] });
  trackProcess(child, "agentd");
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const portFile = join(stateDir, "agentd.json");
  const deadline = Date.now() + 60_000;
  while (!existsSync(portFile)) {
    if (child.exitCode !== null) throw new Error(`agentd exited ${child.exitCode}: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`no agentd.json within 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const written = JSON.parse(readFileSync(portFile, "utf8")) as { port: number; pid: number };
  assert.equal(written.pid, child.pid);
  return { child, port: written.port, stateDir, home, stderr: () => stderr };
}

/** A TLS client with `cert` (none: no client certificate); resolves with its channel and every message agentd sent it. */
async function dial(port: number, cert: IssuedCert | undefined) {
  const options = cert
    ? controlPlaneClientOptions({ certPem: cert.certPem, keyPem: cert.keyPem, caPem: ids.caPem })
    : { ca: ids.caPem, rejectUnauthorized: false };
  const socket = connect({ port, host: "127.0.0.1", ...options });
  const got: FromAgent[] = [];
  const channel = new AgentdChannel(socket);
  channel.onMessage((m) => got.push(m));
  await new Promise<void>((resolve) => {
    socket.once("secureConnect", resolve);
    socket.once("close", resolve); // refused in the handshake
  });
  return { channel, got, socket };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function waitFor(got: FromAgent[], pred: (m: FromAgent) => boolean, what: string): Promise<FromAgent> {
  const deadline = Date.now() + 15_000;
  return new Promise((resolve, reject) => {
    const poll = () => {
      const m = got.find(pred);
      if (m) return resolve(m);
      if (Date.now() > deadline) return reject(new Error(`no ${what}; got ${got.map((g) => g.t).join(",")}`));
      setTimeout(poll, 10);
    };
    poll();
  });
}

describe("agentd over mTLS (src/agentd/main.ts)", () => {
  let agentd: Running;
  before(async () => {
    agentd = await startAgentd(
      ["--import", "tsx", "src/agentd/main.ts"],
      ["sh", "-c", "echo $$ > agent.pid; exec sleep 60"],
    );
  });
  after(() => {
    agentd.child.kill("SIGKILL");
  });

  it("the control plane's certificate gets hello-ack and runs an exec", async () => {
    const { channel, got } = await dial(agentd.port, ids.cp);
    channel.send({ t: "hello", v: 1, agentId: "agent-1" });
    const ack = await waitFor(got, (m) => m.t === "hello-ack", "hello-ack");
    assert.deepEqual(ack, {
      t: "hello-ack",
      agentId: "agent-1",
      poolId: "pool-1",
      initDone: [],
      commandRunning: false,
      commandStarts: 0,
    });
    channel.send({ t: "exec", id: "e1", argv: ["sh", "-c", "echo $HOME"] });
    const done = await waitFor(got, (m) => m.t === "done" && m.id === "e1", "done");
    assert.equal(done.t === "done" && Buffer.from(done.stdoutTail).toString(), `${agentd.home}\n`);
    channel.close();
  });

  // Each refusal is logged with why; the peer learns only that the connection closed.
  for (const [what, cert, why] of [
    ["a certificate from another CA", () => ids.strangerCa, /TLS handshake refused/],
    [
      "a certificate with another CN",
      () => ids.otherCn,
      /peer refused.*CN mismatch|CN mismatch.*peer refused/,
    ],
    // OpenSSL itself refuses a client certificate made for servers only (its purpose check).
    ["a certificate without clientAuth", () => ids.noClientAuth, /TLS handshake refused|no clientAuth EKU/],
    ["no certificate", () => undefined, /TLS handshake refused/],
  ] as const) {
    it(`${what} is refused before any frame`, async () => {
      const logBefore = agentd.stderr().length;
      const { channel, got, socket } = await dial(agentd.port, cert());
      if (!socket.destroyed) channel.send({ t: "hello", v: 1, agentId: "agent-1" });
      const closed = await Promise.race([channel.closed.then(() => true), sleep(10_000).then(() => false)]);
      assert.equal(closed, true, `agentd kept the connection open; it sent ${JSON.stringify(got)}`);
      assert.deepEqual(got, []);
      const logged = () => why.test(agentd.stderr().slice(logBefore)); // written a moment after the close
      for (let i = 0; i < 100 && !logged(); i++) await sleep(50);
      assert.ok(logged(), agentd.stderr().slice(logBefore));
    });
  }

  it("SIGTERM stops the agent's command and exits 0, removing agentd.json", async () => {
    const { channel, got } = await dial(agentd.port, ids.cp);
    channel.send({ t: "hello", v: 1, agentId: "agent-1" });
    channel.send({ t: "op", id: "ready", op: "agent-ready", args: {} });
    await waitFor(got, (m) => m.t === "done" && m.id === "ready", "agent-ready done");
    const pidFile = join(agentd.home, "agent.pid");
    const started = () => existsSync(pidFile) && readFileSync(pidFile, "utf8").endsWith("\n");
    for (let i = 0; i < 500 && !started(); i++) {
      await sleep(20);
    }
    const pid = Number(readFileSync(pidFile, "utf8"));
    const exited = new Promise<number | null>((r) => agentd.child.once("exit", (code) => r(code)));
    agentd.child.kill("SIGTERM");
    assert.equal(await exited, 0, agentd.stderr());
    assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, "the agent's command outlived agentd");
    assert.equal(existsSync(join(agentd.stateDir, "agentd.json")), false);
    assert.doesNotMatch(agentd.stderr(), /PRIVATE KEY/);
    await channel.closed;
  });
});

describe("agentd built by tsc runs under plain node", () => {
  it("compiles src/agentd/main.ts and its imports, starts, and answers the control plane", {
    timeout: 170_000,
  }, async () => {
    const out = tempDir("build-");
    const tsc = join(root, "node_modules/typescript/bin/tsc");
    // main.ts and what it imports, with the build's module settings; types are npx tsc's job.
    const flags = [
      "--noCheck",
      "--outDir",
      out,
      "--rootDir",
      root,
      "--module",
      "NodeNext",
      "--target",
      "ES2022",
    ];
    const more = ["--rewriteRelativeImportExtensions", "--allowImportingTsExtensions", "--skipLibCheck"];
    execFileSync(process.execPath, [tsc, ...flags, ...more, "--types", "node", "src/agentd/main.ts"], {
      cwd: root,
    });
    symlinkSync(join(root, "node_modules"), join(out, "node_modules"));
    const agentd = await startAgentd([join(out, "src/agentd/main.js")]);
    try {
      const { channel, got } = await dial(agentd.port, ids.cp);
      channel.send({ t: "ping" });
      await waitFor(got, (m) => m.t === "pong", "pong");
      channel.close();
    } finally {
      agentd.child.kill("SIGKILL");
    }
  });
});
