import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { RuntimeKind } from "../../src/runtime/types.ts";
import {
  agentIn,
  agentsOf,
  appendScript,
  bareRepo,
  type E2eWorld,
  e2eWorld,
  initStory,
  sharedPath,
  tail,
} from "./agent-e2e.ts";
import { until } from "./daemon.ts";
import { tempDir } from "./teardown.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `corral acquire --json`: the lease id (its token kept in the world's XDG state dir). */
async function acquire(w: E2eWorld): Promise<string> {
  const r = await w.cli(["acquire", w.pool, "--json", "--timeout", "30s"]);
  assert.equal(r.code, 0, `acquire: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { leaseId: string }).leaseId;
}

/** Every Init* step started is completed, in order, between InitStarted{stepCount} and InitCompleted. */
function assertCompletedPlan(events: Awaited<ReturnType<typeof tail>>, steps: string[]): void {
  const fromStart = events.slice(events.findIndex((e) => e.type === "InitStarted"));
  const story = initStory(fromStart);
  const expected = [
    "InitStarted",
    ...steps.flatMap(() => ["InitStepStarted", "InitStepCompleted"]),
    "InitCompleted",
  ];
  assert.deepEqual(story.slice(0, expected.length), expected, `init story: ${story.join(", ")}`);
  assert.equal(fromStart[0]?.data.stepCount, steps.length);
  const names = fromStart.filter((e) => e.type === "InitStepStarted").map((e) => e.data.name);
  assert.deepEqual(names.slice(0, steps.length), steps);
}

/**
 * Issue 9's agent side end to end: a daemon process (`corral up`), real NATS, real TLS between the
 * control plane and each agent's agentd, the CLI as a user runs it. The same scenarios on docker
 * and on local processes, but for git: corral's node image has no git, so the git step runs on the
 * process runtime only.
 */
export function agentSideScenarios(kind: RuntimeKind, skip: string | false): void {
  describe(`the agent side on the ${kind} runtime (daemon process, real NATS, mTLS)`, { skip }, () => {
    it("an init plan runs in order to ready; exec prints, fails with the command's code, stderr to stderr", async () => {
      const repoDir = tempDir("e2e-repo-");
      const steps =
        kind === "process"
          ? ["config", "git", "post-init", "agent-ready"]
          : ["config", "post-init", "agent-ready"];
      const w = await e2eWorldFor(kind, (shared) => ({
        config: { files: [{ path: "e2e/config.txt", content: "configured\n" }] },
        ...(kind === "process" ? { git: { repo: bareRepo(repoDir), dir: "repo" } } : {}),
        postInit: { argv: appendScript(shared, "post-init.log") },
      }));
      const agent = await agentIn(w, "idle");
      const events = await tail(w, `agent/${agent.id}`);
      const types = events.map((e) => e.type);
      assert.ok(types.indexOf("AgentRegistered") >= 0, `registered: ${types.join(", ")}`);
      assert.ok(types.indexOf("AgentRegistered") < types.indexOf("InitStarted"), "registered before init");
      assertCompletedPlan(events, steps);
      assert.equal(w.lines("post-init.log").length, 1, "post-init ran once");
      assert.equal(w.lines(`started-${agent.id}.log`).length, 1, "the agent's command started once");
      if (kind === "process") {
        const home = join(w.shared, "..", "home");
        assert.equal(readFileSync(join(home, "e2e", "config.txt"), "utf8"), "configured\n");
        assert.ok(existsSync(join(home, "repo", "README.md")), "the repo is cloned into the home");
      }
      // The worldview carries session, registration and init per agent.
      const wv = await w.cli(["worldview", "--json"]);
      assert.equal(wv.code, 0, wv.stderr);
      const view = JSON.parse(wv.stdout) as { state: { agents: { live: Record<string, unknown>[] } } };
      const row = findAgent(view, agent.id);
      assert.deepEqual(row.registration, { state: "registered" }, JSON.stringify(row));
      assert.equal((row.init as { state: string }).state, "completed", JSON.stringify(row.init));
      assert.ok(row.session !== undefined, `session in ${JSON.stringify(row)}`);

      const lease = await acquire(w);
      const one = await w.cli(["exec", lease, "--", "node", "-e", "console.log(1)"]);
      assert.deepEqual([one.code, one.stdout, one.stderr], [0, "1\n", ""]);
      const bad = await w.cli(["exec", lease, "--", "node", "-e", "console.error('oops'); process.exit(3)"]);
      assert.deepEqual([bad.code, bad.stdout], [3, ""]);
      assert.match(bad.stderr, /oops/);
      const rel = await w.cli(["release", lease]);
      assert.equal(rel.code, 0, rel.stderr);
      await down(w);
    });

    it("SIGKILL mid-init and mid-exec, restart: re-dialled, post-init once, the command started once, run once", async () => {
      const w = await e2eWorldFor(kind, (shared) => ({
        postInit: { argv: appendScript(shared, "post-init.log", { delayMs: 3_000 }) },
      }));
      // Mid-init: post-init under way, and `corral status` says so.
      const initing = await until(
        "post-init under way",
        async () =>
          (await agentsOf(w)).find((a) => a.init?.state === "running" && a.init.step === "post-init"),
        60_000,
      );
      const st = await w.cli(["status", w.pool]);
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, /init \d\/\d post-init/, st.stdout);
      await w.restart();
      const agent = await agentIn(w, "idle");
      assert.equal(agent.id, initing.id, "the same agent reaches ready");
      await sleep(500);
      assert.equal(w.lines("post-init.log").length, 1, "post-init ran once across the restart");
      assert.equal(w.lines(`started-${agent.id}.log`).length, 1, "the agent's command started once");
      const session = (await tail(w, `session/${agent.id}`)).map((e) => e.type);
      assert.ok(
        session.filter((s) => s === "SessionConnected").length >= 2,
        `re-dialled: ${session.join(", ")}`,
      );

      // Mid-exec: the command was sent (acked) when the daemon dies; it ends once, the CLI gets its end.
      const lease = await acquire(w);
      const exec = w.cli([
        "exec",
        lease,
        "--",
        ...appendScript(sharedPath(kind, w.shared), "exec.log", { delayMs: 2_000 }),
      ]);
      await until(
        "the command acked",
        async () => (await tail(w, "command", 20)).some((e) => e.type === "CommandAcked"),
        30_000,
      );
      await w.restart();
      const done = await exec;
      assert.equal(done.code, 0, `exec across a restart: ${done.stderr}`);
      await sleep(2_500); // a second run would have appended by now
      assert.equal(w.lines("exec.log").length, 1, "the command ran once");
      await down(w);
    });

    if (kind === "process") {
      it("init failing at git: InitStepFailed + InitFailed, and the pool replaces the agent", async () => {
        const missing = join(tempDir("e2e-norepo-"), "missing.git");
        const w = await e2eWorldFor(kind, () => ({ git: { repo: missing, dir: "repo" } }));
        const first = await until(
          "a failed agent",
          async () => {
            const a = (await agentsOf(w))[0];
            if (!a) return undefined;
            const ev = await tail(w, `agent/${a.id}`);
            return ev.some((e) => e.type === "InitFailed") ? { id: a.id, ev } : undefined;
          },
          60_000,
        ).catch(async (err: unknown) => {
          throw new Error(`${String(err)}\n${await whatHappened(w)}`);
        });
        const story = initStory(first.ev);
        assert.deepEqual(
          story.slice(0, 3),
          ["InitStarted", "InitStepStarted", "InitStepFailed"],
          story.join(", "),
        );
        const failed = first.ev.find((e) => e.type === "InitStepFailed");
        assert.equal(failed?.data.name, "git", JSON.stringify(failed));
        assert.equal(failed?.data.reason, "exit_code");
        assert.match(String(failed?.data.detail), /missing\.git/, "the detail carries git's stderr");
        assert.ok(story.includes("InitFailed"));
        // The failed agent ends and the pool spawns another in its place.
        await until(
          "a replacement agent",
          async () =>
            (await tail(w, `pool/${w.pool}`)).some(
              (e) => e.type === "PoolAgentSpawned" && e.data.agentId !== first.id,
            ),
          30_000,
        );
        await down(w);
      });
    }
  });
}

function e2eWorldFor(
  kind: RuntimeKind,
  init: (shared: string) => Record<string, unknown>,
): Promise<E2eWorld> {
  return e2eWorld(kind, { init });
}

function findAgent(view: { state: { agents: { live: Record<string, unknown>[] } } }, id: string) {
  const row = view.state.agents.live.find((a) => a.id === id);
  assert.ok(row, `agent ${id} in the worldview: ${JSON.stringify(view.state.agents.live)}`);
  return row;
}

/** The pool's agents, their event types and the daemon's last log lines, for a failure message. */
async function whatHappened(w: E2eWorld): Promise<string> {
  const agents = await agentsOf(w);
  const stories = await Promise.all(
    agents.map(async (a) => (await tail(w, `agent/${a.id}`)).map((e) => e.type)),
  );
  return `agents ${JSON.stringify(agents)}\nevents ${JSON.stringify(stories)}\n${w.daemon.logs.slice(-30).join("\n")}`;
}

/** `corral down`: every pool closed, every agent stopped, the daemon exits. */
async function down(w: E2eWorld): Promise<void> {
  const r = await w.cli(["down", "--config", w.config]);
  assert.equal(r.code, 0, `down: ${r.stderr}`);
  await w.daemon.exited;
  await w.nats.cleanup();
}
