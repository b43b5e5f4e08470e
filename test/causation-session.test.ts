import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { Agentd } from "../src/agentd/agentd.ts";
import { runInitPlan } from "../src/cp/init/executor.ts";
import { initPlan } from "../src/cp/init/plan.ts";
import { TimerScheduler } from "../src/cp/scheduler.ts";
import type { CorralEvent } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { PlainAgentd } from "./helpers/agentd-plain.ts";
import { readySessions, type SessionWorld, sessionWorld, until } from "./helpers/session-world.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/*
 * The session side of issue 11's causation audit, with the real dialer (test/causation-audit.test.ts
 * runs the simulated one): a dial's facts follow the event that asked for it and then each other,
 * admission's verdict follows SessionConnected, a broken session's re-dial follows SessionBroken,
 * and the init plan's facts follow what made the session ready.
 */

describe("causation through sessions and init plans", () => {
  let w: SessionWorld;
  before(async () => {
    w = await sessionWorld();
  });

  const eventsOf = async (ref: AggregateRef): Promise<CorralEvent[]> =>
    (await w.store.readAggregate(ref)).flatMap((r) => (r.event ? [r.event] : []));
  /** The event `e` names as its cause, and the correlation it must carry. */
  const expectCause = (e: CorralEvent | undefined, cause: CorralEvent | undefined, what: string) => {
    assert.ok(e && cause, what);
    assert.equal(e.causationId, cause.id, `${what}: its cause`);
    assert.equal(e.correlationId, cause.correlationId ?? cause.id, `${what}: its cause's correlation`);
  };

  it("dial → connecting → connected → registered; broken → connecting again → connected; the session's cause", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const sessions = w.sessions();
    const ready = readySessions(sessions);
    const started = (await eventsOf({ kind: "agent", id })).find((e) => e.type === "AgentStarted");
    sessions.dial(id, 1, started);
    await until("ready", () => ready.length === 1);
    peer.dropConnections();
    await until("ready again", () => ready.length === 2);
    await sessions.close();

    const [connecting, connected, broken, again, reconnected] = await eventsOf({ kind: "session", id });
    expectCause(connecting, started, "SessionConnecting");
    expectCause(connected, connecting, "SessionConnected");
    expectCause(broken, connected, "SessionBroken");
    expectCause(again, broken, "the re-dial's SessionConnecting");
    expectCause(reconnected, again, "the re-dial's SessionConnected");
    const registered = (await eventsOf({ kind: "agent", id })).find((e) => e.type === "AgentRegistered");
    expectCause(registered, connected, "AgentRegistered");
    assert.equal(ready[0]?.cause?.id, registered?.id, "a registered session follows its registration");
    assert.equal(ready[1]?.cause?.id, reconnected?.id, "one welcomed again follows its SessionConnected");
  });

  it("an init plan's facts follow the session's cause, then each other", async () => {
    const root = tempDir("causation-init-");
    const home = join(root, "home");
    mkdirSync(home, { recursive: true });
    const agentd = new Agentd({
      agentId: "a-1",
      poolId: "p",
      stateDir: join(root, "state"),
      home,
      agentCommand: [process.execPath, "-e", "setInterval(() => {}, 1000)"],
      commandOutput: "ignore",
      killGraceMs: 200,
    });
    const served = await PlainAgentd.serve(agentd);
    onTeardown("agentd", () => served.close()); // agentd and its agent's command with it
    const session = Object.assign(await served.session("a-1", 1), {
      cause: { id: "registered-1", correlationId: "spawn-1" },
    });
    const recorded: { type: string; causationId?: string; correlationId?: string; id: string }[] = [];
    const offer = async (
      _ref: AggregateRef,
      input: { type: string; causationId?: string; correlationId?: string },
    ) => {
      const event = { ...input, id: `e${recorded.length + 1}` };
      recorded.push(event);
      return { accepted: true, event };
    };
    const plan = initPlan({ config: { files: [{ path: "a.txt", content: "a" }] } });
    const outcome = await runInitPlan({ session, plan, offer, clock: new TimerScheduler() });
    assert.equal(outcome.outcome, "completed");
    assert.deepEqual(
      recorded.map((e) => [e.type, e.causationId, e.correlationId]),
      [
        ["InitStarted", "registered-1", "spawn-1"],
        ["InitStepStarted", "e1", "spawn-1"],
        ["InitStepCompleted", "e2", "spawn-1"],
        ["InitStepStarted", "e3", "spawn-1"],
        ["InitStepCompleted", "e4", "spawn-1"],
        ["InitCompleted", "e5", "spawn-1"],
      ],
    );
  });
});
