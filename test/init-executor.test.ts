import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Agentd } from "../src/agentd/agentd.ts";
import { PLAN_MARGIN_MS, runInitPlan } from "../src/cp/init/executor.ts";
import { type InitPlan, initPlan } from "../src/cp/init/plan.ts";
import { TimerScheduler } from "../src/cp/scheduler.ts";
import type { StoredInit } from "../src/events/template-init.ts";
import { PlainAgentd } from "./helpers/agentd-plain.ts";
import { tempDir } from "./helpers/teardown.ts";

/**
 * The init plan run by runInitPlan against a real agentd engine over loopback TCP: the facts it
 * records, what agentd did (files, the clone, the agent's command), and that running it again on
 * a new session does nothing twice.
 */

const AGENT = "agent-1";

interface Recorded {
  type: string;
  data: Record<string, unknown>;
}

/** The actor host's `offer` as the executor sees it: records what it accepts, refuses `refuse`. */
function recorder(refuse: (type: string) => boolean = () => false) {
  const events: Recorded[] = [];
  return {
    events,
    types: () => events.map((e) => e.type),
    offer: async (_ref: unknown, input: { type: string; data: unknown }) => {
      if (refuse(input.type)) return { accepted: false };
      events.push({ type: input.type, data: input.data as Record<string, unknown> });
      return { accepted: true };
    },
  };
}

/** A bare repository with one commit (file README), as a template's `git.repo`. */
function bareRepo(root: string): string {
  const bare = join(root, "project.git");
  const work = join(root, "seed");
  const git = (...args: string[]) =>
    execFileSync(
      "git",
      ["-c", "user.name=t", "-c", "user.email=t@e", "-c", "init.defaultBranch=main", ...args],
      {
        stdio: "pipe",
      },
    );
  git("init", "--bare", bare);
  git("init", work);
  execFileSync("sh", ["-c", `echo hello > ${JSON.stringify(join(work, "README"))}`]);
  git("-C", work, "add", "README");
  git("-C", work, "commit", "-m", "first");
  git("-C", work, "push", bare, "HEAD:main");
  return bare;
}

/** An agentd whose agent command counts its starts in a file, served over loopback. */
async function startAgentd(t: TestContext, root: string, exitCode?: number) {
  const home = join(root, "home");
  mkdirSync(home, { recursive: true });
  const starts = join(root, "starts");
  const then = exitCode === undefined ? "setInterval(() => {}, 1000)" : `process.exit(${exitCode})`;
  const counter = `require("fs").appendFileSync(${JSON.stringify(starts)}, "x"); ${then}`;
  const agentd = new Agentd({
    agentId: AGENT,
    poolId: "p",
    stateDir: join(root, "state"),
    home,
    agentCommand: [process.execPath, "-e", counter],
    commandOutput: "ignore",
    killGraceMs: 200,
  });
  const served = await PlainAgentd.serve(agentd);
  t.after(() => served.close());
  const commandStarts = () => (existsSync(starts) ? readFileSync(starts, "utf8").length : 0);
  return { served, home, commandStarts };
}

function run(session: Awaited<ReturnType<PlainAgentd["session"]>>, plan: InitPlan, rec = recorder()) {
  const clock = new TimerScheduler();
  return { rec, result: runInitPlan({ session, plan, offer: rec.offer, clock }) };
}

describe("init executor against a real agentd", () => {
  it("runs every step in order, then again on a new session without doing anything twice", async (t) => {
    const root = tempDir("init-exec-");
    const repo = bareRepo(root);
    const { served, home, commandStarts } = await startAgentd(t, root);
    const init: StoredInit = {
      config: { files: [{ path: ".config/a.toml", content: "a = 1\n" }] },
      git: { repo, ref: "main", mode: "clone" },
      ssh: { knownHosts: ["example.com ssh-ed25519 AAAAC3Nz"] },
      postInit: { argv: ["sh", "-c", "echo run >> post-init.log"] },
    };
    const plan = initPlan(init);

    const first = await served.session(AGENT, 1);
    const before = Date.now();
    const one = run(first, plan);
    assert.deepEqual(await one.result, { outcome: "completed" });
    assert.deepEqual(one.rec.types(), [
      "InitStarted",
      ...plan.steps.flatMap(() => ["InitStepStarted", "InitStepCompleted"]),
      "InitCompleted",
    ]);
    const { deadline, ...started } = (one.rec.events[0]?.data ?? {}) as { deadline?: number };
    assert.deepEqual(started, { generation: 1, stepCount: 5 });
    // The plan must end within its steps' timeouts plus the margin, counted from its start.
    const budget = plan.steps.reduce((t, s) => t + s.timeoutMs, 0) + PLAN_MARGIN_MS;
    assert.ok(deadline !== undefined && deadline >= before + budget && deadline <= Date.now() + budget);
    const completed = one.rec.events.filter((e) => e.type === "InitStepCompleted");
    assert.deepEqual(
      completed.map((e) => [e.data.name, e.data.index, e.data.exitCode, e.data.skipped]),
      [
        ["config", 0, 0, false],
        ["git", 1, 0, false],
        ["ssh", 2, 0, false],
        ["post-init", 3, 0, false],
        ["agent-ready", 4, 0, false],
      ],
    );
    assert.equal(readFileSync(join(home, ".config/a.toml"), "utf8"), "a = 1\n");
    assert.equal(readFileSync(join(home, "project/README"), "utf8"), "hello\n");
    assert.match(readFileSync(join(home, ".ssh/known_hosts"), "utf8"), /example\.com/);
    await waitFor(() => commandStarts() === 1);

    // A reconnect: agentd's hello-ack says what ran; the plan records each step as skipped.
    first.drop();
    const second = await served.session(AGENT, 1);
    assert.deepEqual(second.hello.initDone, ["config", "git", "ssh", "post-init", "agent-ready"]);
    assert.equal(second.hello.commandRunning, true);
    const two = run(second, plan);
    assert.deepEqual(await two.result, { outcome: "completed" });
    const again = two.rec.events.filter((e) => e.type === "InitStepCompleted");
    assert.ok(again.length === 5 && again.every((e) => e.data.skipped === true));
    assert.deepEqual(second.sent, [], "nothing was sent to agentd");
    assert.equal(readFileSync(join(home, "post-init.log"), "utf8"), "run\n", "post-init ran once");
    assert.equal(commandStarts(), 1, "the agent's command started once");
  });

  it("after an agentd restart only agent-ready runs again (boot); a command that ended fails the plan", async (t) => {
    const root = tempDir("init-exec-");
    const plan = initPlan({ postInit: { argv: ["sh", "-c", "echo run >> post-init.log"] } });
    const before = await startAgentd(t, root);
    assert.deepEqual(await run(await before.served.session(AGENT, 1), plan).result, { outcome: "completed" });
    await waitFor(() => before.commandStarts() === 1);
    await before.served.close();

    // A new agentd over the same state dir: its markers say what ran, its command is not running.
    const after = await startAgentd(t, root);
    const session = await after.served.session(AGENT, 1);
    assert.deepEqual([session.hello.commandRunning, session.hello.commandStarts], [false, 0]);
    assert.deepEqual(await run(session, plan).result, { outcome: "completed" });
    assert.deepEqual(session.sent, ["agent-ready"]);
    assert.equal(readFileSync(join(after.home, "post-init.log"), "utf8"), "run\n");
    await waitFor(() => after.commandStarts() === 2);

    // A command that started and ended in this agentd's life: the agent is dead, the plan fails.
    const dying = await startAgentd(t, tempDir("init-exec-"), 3);
    const s1 = await dying.served.session(AGENT, 1);
    assert.deepEqual(await run(s1, initPlan(undefined)).result, { outcome: "completed" });
    await waitFor(() => dying.commandStarts() === 1);
    let s2 = await dying.served.session(AGENT, 1);
    while (s2.hello.commandRunning) s2 = await dying.served.session(AGENT, 1);
    const { rec, result } = run(s2, initPlan(undefined));
    assert.deepEqual(await result, { outcome: "failed", step: "agent-ready", reason: "error" });
    assert.equal(rec.events[2]?.data.detail, "the agent's command exited with code 3");
    assert.deepEqual(s2.sent, []);
  });

  it("a session lost mid-step is a failed step, not a failed plan; the next session finishes it once", async (t) => {
    const root = tempDir("init-exec-");
    const { served, home, commandStarts } = await startAgentd(t, root);
    const plan = initPlan({ postInit: { argv: ["sh", "-c", "sleep 0.5; echo run >> post-init.log"] } });
    const first = await served.session(AGENT, 1);
    const one = run(first, plan);
    await waitFor(() => first.sent.includes("post-init"));
    first.drop();
    assert.deepEqual(await one.result, { outcome: "session_lost", step: "post-init" });
    assert.deepEqual(one.rec.types(), ["InitStarted", "InitStepStarted", "InitStepFailed"]);
    assert.equal(one.rec.events[2]?.data.reason, "session_lost");

    const second = await served.session(AGENT, 1);
    const two = run(second, plan);
    assert.deepEqual(await two.result, { outcome: "completed" });
    assert.deepEqual(second.sent, ["post-init", "agent-ready"]);
    assert.equal(readFileSync(join(home, "post-init.log"), "utf8"), "run\n", "post-init ran once");
    await waitFor(() => commandStarts() === 1);
  });

  it("a bad repo fails the git step with its exit code and stderr, and the plan; agent-ready never runs", async (t) => {
    const root = tempDir("init-exec-");
    const { served, commandStarts } = await startAgentd(t, root);
    const plan = initPlan({ git: { repo: join(root, "no-such-repo.git"), mode: "clone" } });
    const session = await served.session(AGENT, 3);
    const { rec, result } = run(session, plan);
    assert.deepEqual(await result, { outcome: "failed", step: "git", reason: "exit_code" });
    assert.deepEqual(rec.types(), ["InitStarted", "InitStepStarted", "InitStepFailed", "InitFailed"]);
    const failed = rec.events[2]?.data ?? {};
    assert.equal(failed.generation, 3);
    assert.equal(failed.name, "git");
    assert.equal(failed.reason, "exit_code");
    assert.notEqual(failed.exitCode, 0);
    assert.match(String(failed.detail), /^exit code \d+\n/);
    assert.match(String(failed.detail), /no-such-repo\.git/, "git's stderr is in the detail");
    assert.ok(String(failed.detail).length <= 4096);
    assert.deepEqual(rec.events[3]?.data, {
      generation: 3,
      step: "git",
      reason: "exit_code",
      detail: failed.detail,
    });
    assert.deepEqual(session.sent, ["git"]);
    assert.equal(commandStarts(), 0);
  });

  it("a step that times out is cancelled and fails the plan with reason timeout", async (t) => {
    const root = tempDir("init-exec-");
    const { served, home } = await startAgentd(t, root);
    const plan: InitPlan = {
      steps: [
        {
          name: "post-init",
          timeoutMs: 300,
          op: {
            op: "post-init",
            args: { argv: ["sh", "-c", "sleep 5; echo late > late.log"], timeoutMs: 60_000 },
          },
        },
      ],
    };
    const session = await served.session(AGENT, 1);
    const { rec, result } = run(session, plan);
    assert.deepEqual(await result, { outcome: "failed", step: "post-init", reason: "timeout" });
    assert.equal(rec.events[2]?.data.detail, "no answer within 300 ms");
    assert.equal(rec.events.at(-1)?.type, "InitFailed");
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!existsSync(join(home, "late.log")), "the cancelled step did not go on");
  });

  it("agentd's own post-init timeout is reason timeout too, with the step's stderr", async (t) => {
    const root = tempDir("init-exec-");
    const { served } = await startAgentd(t, root);
    const plan = initPlan({ postInit: { argv: ["sh", "-c", "echo starting >&2; sleep 5"], timeoutMs: 300 } });
    const { rec, result } = run(await served.session(AGENT, 1), plan);
    assert.deepEqual(await result, { outcome: "failed", step: "post-init", reason: "timeout" });
    assert.match(String(rec.events[2]?.data.detail), /^timeout: .*\nstarting$/s);
  });

  it("a command started while an earlier step never completed is init_bypassed: untrusted, no plan", async (t) => {
    const root = tempDir("init-exec-");
    const { served, commandStarts } = await startAgentd(t, root);
    // Something started the agent's command without the plan's config step.
    const rogue = await served.session(AGENT, 1);
    await rogue.run({ t: "op", id: "rogue", op: "agent-ready", args: {} });
    await waitFor(() => commandStarts() === 1);
    const plan = initPlan({ config: { files: [{ path: "a", content: "" }] } });
    const session = await served.session(AGENT, 1);
    const { rec, result } = run(session, plan);
    assert.deepEqual(await result, { outcome: "untrusted" });
    assert.deepEqual(rec.events, [
      {
        type: "AgentUntrusted",
        data: {
          generation: 1,
          reason: "init_bypassed",
          detail: "the agent's command started before init step(s) config completed",
        },
      },
    ]);
    assert.deepEqual(session.sent, []);
  });

  it("stops quietly when the agent refuses an input (it moved on): nothing more is sent or recorded", async (t) => {
    const root = tempDir("init-exec-");
    const { served, home } = await startAgentd(t, root);
    const plan = initPlan({
      config: { files: [{ path: "a.txt", content: "x" }] },
      postInit: { argv: ["true"] },
    });
    const session = await served.session(AGENT, 1);
    const rec = recorder((type) => type === "InitStepCompleted");
    const { result } = run(session, plan, rec);
    assert.deepEqual(await result, { outcome: "refused", input: "InitStepCompleted" });
    assert.deepEqual(rec.types(), ["InitStarted", "InitStepStarted"]);
    assert.deepEqual(session.sent, ["config"]);
    assert.ok(existsSync(join(home, "a.txt")));
  });

  it("a step the plan cannot send (a key not in this daemon's config) fails as an error without reaching agentd", async (t) => {
    const root = tempDir("init-exec-");
    const { served } = await startAgentd(t, root);
    const plan = initPlan({ ssh: { keys: [{ name: "deploy", sha256: "0".repeat(64) }] } });
    const session = await served.session(AGENT, 1);
    const { rec, result } = run(session, plan);
    assert.deepEqual(await result, { outcome: "failed", step: "ssh", reason: "error" });
    assert.equal(rec.events[2]?.data.detail, "ssh key deploy: its content is not in this daemon's config");
    assert.deepEqual(session.sent, []);
  });
});

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}
