import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { writeIdentityFiles } from "../src/identity/files.ts";
import { readySessions, type SessionWorld, sessionWorld, until } from "./helpers/session-world.ts";
import { stopProcess, tempDir, trackProcess } from "./helpers/teardown.ts";

/**
 * The dialer against agentd as it runs (src/agentd/main.ts, a child process): a session, a
 * command, then agentd killed with SIGKILL and started again at another port — the break is
 * recorded, the dialer follows the instance to its new address, and the same certificate is
 * welcomed again without a second registration.
 */

const root = join(import.meta.dirname, "..");
const session = (id: string) => ({ kind: "session", id }) as const;
const agent = (id: string) => ({ kind: "agent", id }) as const;

describe("sessions to agentd as a process", () => {
  let w: SessionWorld;
  before(async () => {
    w = await sessionWorld();
  });

  async function startAgentd(agentId: string, identityDir: string, stateDir: string) {
    const portFile = join(stateDir, "agentd.json");
    rmSync(portFile, { force: true });
    const env = {
      ...process.env,
      HOME: tempDir("home-"),
      CORRAL_AGENTD_DIR: identityDir,
      CORRAL_AGENTD_CP_CN: w.controlPlaneCN,
      CORRAL_AGENTD_LISTEN: "127.0.0.1:0",
      CORRAL_AGENTD_STATE: stateDir,
      CORRAL_AGENT_ID: agentId,
      CORRAL_POOL: "p",
    };
    const child = spawn(process.execPath, ["--import", "tsx", "src/agentd/main.ts"], {
      cwd: root,
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    trackProcess(child, "agentd");
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    await until(`agentd.json (${stderr})`, () => existsSync(portFile) || child.exitCode !== null, 60_000);
    assert.equal(child.exitCode, null, stderr);
    const { port } = JSON.parse(readFileSync(portFile, "utf8")) as { port: number };
    w.targets.set(agentId, { address: `127.0.0.1:${port}`, labels: { poolId: "p", agentId, generation: 1 } });
    return { child, port };
  }

  it("runs a command, survives agentd's SIGKILL and restart at another port, and is welcomed again", async () => {
    const id = await w.newAgent();
    const identityDir = tempDir("identity-");
    writeIdentityFiles(identityDir, await w.ca.issueAgent({ poolId: "p", agentId: id }), w.ca.certPem);
    const stateDir = tempDir("state-");
    const first: { child: ChildProcess; port: number } = await startAgentd(id, identityDir, stateDir);

    const sessions = w.sessions({
      options: {
        backoff: { startMs: 50, capMs: 200, giveUpMs: 60_000 },
        redialDelayMs: 10,
        handshakeTimeoutMs: 10_000,
      },
    });
    const ready = readySessions(sessions);
    sessions.dial(id, 1);
    await until("ready", () => ready.length === 1, 30_000);
    const done = await ready[0]!.run({
      t: "exec",
      id: "hi-1",
      argv: [process.execPath, "-e", "process.stdout.write('hi')"],
    });
    assert.equal(done.t, "done");
    assert.equal(done.t === "done" && Buffer.from(done.stdoutTail).toString(), "hi");

    await stopProcess(first.child, { signal: "SIGKILL" });
    await until("broken", async () => (await w.typesOf(session(id))).includes("SessionBroken"));
    const second = await startAgentd(id, identityDir, stateDir);
    assert.notEqual(second.port, first.port);
    await until("ready again", () => ready.length === 2, 60_000);

    const events = await w.eventsOf(session(id));
    assert.deepEqual(
      events.map((e) => e.type),
      [
        "SessionConnecting",
        "SessionConnected",
        "SessionBroken",
        "SessionConnecting",
        "SessionConnecting",
        "SessionConnected",
      ],
    );
    assert.equal(events[3]?.data.address, `127.0.0.1:${first.port}`);
    assert.equal(events[4]?.data.address, `127.0.0.1:${second.port}`);
    assert.equal(events[5]?.data.thumbprint, events[1]?.data.thumbprint);
    assert.equal((await w.typesOf(agent(id))).filter((t) => t === "AgentRegistered").length, 1);
    await sessions.close();
  });
});
