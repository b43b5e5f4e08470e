import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SnapshotFrom } from "xstate";
import { commandAggregate, commandMachine } from "../machines/command.ts";
import { execRequest } from "../src/api/requests.ts";
import { createdInput, execMsg } from "../src/cp/exec/payload.ts";
import { eventsFor, fold } from "./helpers/decider.ts";

/**
 * The command machine as exec uses it: what a restarted daemon re-runs (`resume`) for a command
 * in each state, and the CommandCreated an exec request becomes.
 */

const ref = { kind: "command", id: "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b" } as const;
const T0 = 1_000_000;
const req = execRequest.parse({
  leaseId: "a-1.0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c",
  leaseToken: "secret-token-123",
  argv: ["node", "-e", "1"],
  env: { A: "b" },
  stdin: "in",
  timeoutMs: 5_000,
});

describe("exec on the command machine", () => {
  const ev = eventsFor(ref);
  const { data } = createdInput("a-1", req);
  const created = ev("CommandCreated", data, T0);
  const sent = ev("CommandSent", { attempt: 1 }, T0 + 1);
  const acked = ev("CommandAcked", { attempt: 1 }, T0 + 2);
  const resume = (s: SnapshotFrom<typeof commandMachine>) => commandAggregate.resume?.(s) ?? [];
  const dispatchOf = (attempt: number) => [
    { type: "dispatch", params: { agentId: "a-1", action: "exec", payload: data.payload, attempt } },
  ];

  it("an exec request is stored small: argv, env, stdin, timeout and lease; the acked deadline covers the timeout", () => {
    assert.deepEqual(data.payload, {
      leaseId: req.leaseId,
      argv: ["node", "-e", "1"],
      env: { A: "b" },
      stdin: "in",
      timeoutMs: 5_000,
    });
    assert.equal(JSON.stringify(data.payload).includes(req.leaseToken), false, "no lease token");
    assert.deepEqual(data.timeouts, { pending: 10_000, sent: 10_000, acked: 20_000 });
    assert.deepEqual(execMsg(ref.id, data.payload ?? {}), {
      t: "exec",
      id: ref.id,
      argv: ["node", "-e", "1"],
      env: { A: "b" },
      stdin: new TextEncoder().encode("in"),
      timeoutMs: 5_000,
    });
  });

  it("after a restart a pending, sent or acked command is dispatched again, with its current attempt", () => {
    assert.deepEqual(resume(fold(commandMachine, [created])), dispatchOf(1));
    assert.deepEqual(resume(fold(commandMachine, [created, sent])), dispatchOf(1));
    assert.deepEqual(resume(fold(commandMachine, [created, sent, acked])), dispatchOf(1));
    const retried = fold(commandMachine, [
      created,
      sent,
      ev("CommandTimedOut", { deadline: T0 + 1 + 10_000 }, T0 + 10_001),
    ]);
    assert.deepEqual(resume(retried), dispatchOf(2));
  });

  it("a final command is not dispatched again", () => {
    const done = ev("CommandCompleted", { result: { exitCode: 0, durationMs: 1, truncated: false } }, T0 + 3);
    assert.deepEqual(resume(fold(commandMachine, [created, sent, acked, done])), []);
    const failed = ev("CommandFailed", { error: "timed out", code: "timeout" }, T0 + 3);
    assert.deepEqual(resume(fold(commandMachine, [created, sent, acked, failed])), []);
  });

  it("a stored payload that is not an exec's is refused by name, never sent", () => {
    assert.throws(() => execMsg(ref.id, { argv: [] }), /argv/);
  });
});
