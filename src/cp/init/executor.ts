import type { Logger } from "pino";
import type { DoneMsg, ErrorMsg, FromAgent, InitStep, OpMsg } from "../../agentd/protocol.ts";
import type { AggregateRef } from "../../events/envelope.ts";
import { silentLogger } from "../../log.ts";
import type { Input } from "../actor-host.ts";
import { type Cause, causedBy } from "../caused-by.ts";
import type { Scheduler } from "../scheduler.ts";
import type { InitPlan, PlanStep } from "./plan.ts";
import {
  fromDone,
  fromError,
  type StepFailReason,
  type StepResult,
  skippedStep,
  stepFailure,
} from "./step-result.ts";

/**
 * Runs an init plan over one agent's session and records every fact on the agent: InitStarted,
 * then per step InitStepStarted and InitStepCompleted or InitStepFailed, then InitCompleted or
 * InitFailed. Each offer names the session's generation; a refusal means the agent moved on
 * (another generation, recycled, failed) and the plan stops without a word.
 *
 * Re-running it on a reconnect does nothing twice: a step agentd's hello-ack lists as done is
 * recorded as skipped and not sent, `agent-ready` is skipped while the command runs, and a step
 * that is sent again keeps its command id, so agentd answers from its result cache. A command
 * that started while an earlier step never completed is `init_bypassed`: the agent is untrusted.
 */

type HelloAck = Extract<FromAgent, { t: "hello-ack" }>;
type OutMsg = Extract<FromAgent, { t: "out" }>;

/** The part of an AgentSession (src/cp/session/) the plan uses. */
export interface InitSession {
  readonly agentId: string;
  readonly generation: number;
  readonly hello: Pick<HelloAck, "initDone" | "commandRunning" | "commandStarts" | "commandExit">;
  run(msg: OpMsg, on?: { ack?(): void; output?(o: OutMsg): void }): Promise<DoneMsg | ErrorMsg>;
  cancel(id: string): void;
  readonly closed: Promise<string>;
  /** The event the session's readiness follows: the plan's first fact names it as its cause. */
  readonly cause?: Cause;
}

export interface InitDeps {
  session: InitSession;
  plan: InitPlan;
  /** The actor host's `offer`: accepted (and the event stored), or refused because the agent moved on. */
  offer(ref: AggregateRef, input: Input): Promise<{ accepted: boolean; event?: Cause }>;
  /** Durations and step timeouts. */
  clock: Pick<Scheduler, "now" | "arm" | "disarm">;
  log?: Logger;
}

export type InitOutcome =
  | { outcome: "completed" }
  | { outcome: "failed"; step: InitStep; reason: Exclude<StepFailReason, "session_lost"> }
  /** The session ended mid-step: recorded as a failed step, not a failed plan; the next session runs it again. */
  | { outcome: "session_lost"; step: InitStep }
  | { outcome: "untrusted" }
  /** The agent refused an input (it moved on): nothing more was recorded. */
  | { outcome: "refused"; input: string };

/** The command id of a step: the same on every run of this generation, so agentd never runs it twice. */
export function stepCommandId(generation: number, step: InitStep): string {
  return `init-${generation}-${step}`;
}

/** What the plan's deadline allows beyond its steps' timeouts (offers, a slow store). */
export const PLAN_MARGIN_MS = 10_000;

export async function runInitPlan(deps: InitDeps): Promise<InitOutcome> {
  const { session, plan, clock } = deps;
  const log = (deps.log ?? silentLogger).child({ agent: session.agentId, generation: session.generation });
  const generation = session.generation;
  // Each fact is caused by the one before it, the first by what made the session ready.
  let cause = session.cause;
  const offer = async (input: Input): Promise<boolean> => {
    const offered = await deps.offer(
      { kind: "agent", id: session.agentId },
      { ...input, ...causedBy(cause) },
    );
    if (offered.event) cause = offered.event;
    return offered.accepted;
  };

  const bypassed = bypassedSteps(plan, session.hello);
  if (bypassed.length > 0) {
    const detail = `the agent's command started before init step(s) ${bypassed.join(", ")} completed`;
    log.warn({ steps: bypassed }, "init bypassed: agent untrusted");
    const data = { generation, reason: "init_bypassed" as const, detail };
    return (await offer({ type: "AgentUntrusted", data }))
      ? { outcome: "untrusted" }
      : refused("AgentUntrusted");
  }

  const began = clock.now();
  const of = plan.steps.length;
  // The agent fails if the plan has not ended by then: every step's own timeout, plus a margin.
  const deadline = began + plan.steps.reduce((t, s) => t + s.timeoutMs, 0) + PLAN_MARGIN_MS;
  if (!(await offer({ type: "InitStarted", data: { generation, stepCount: of, deadline } })))
    return refused("InitStarted");
  for (const [index, step] of plan.steps.entries()) {
    const { name } = step;
    if (!(await offer({ type: "InitStepStarted", data: { generation, name, index, of } })))
      return refused("InitStepStarted");
    const result = knownResult(step, session.hello) ?? (await runStep(deps, step));
    if (result.ok) {
      const data = { generation, name, index, ...result.completed };
      if (!(await offer({ type: "InitStepCompleted", data }))) return refused("InitStepCompleted");
      continue;
    }
    const { reason, detail, exitCode } = result.failed;
    log.info({ step: name, reason, exitCode }, "init step failed");
    if (!(await offer({ type: "InitStepFailed", data: { generation, name, index, ...result.failed } })))
      return refused("InitStepFailed");
    if (reason === "session_lost") return { outcome: "session_lost", step: name };
    if (!(await offer({ type: "InitFailed", data: { generation, step: name, reason, detail } })))
      return refused("InitFailed");
    return { outcome: "failed", step: name, reason };
  }
  const durationMs = Math.max(0, Math.round(clock.now() - began));
  if (!(await offer({ type: "InitCompleted", data: { generation, durationMs } })))
    return refused("InitCompleted");
  return { outcome: "completed" };
}

function refused(input: string): InitOutcome {
  return { outcome: "refused", input };
}

/** Steps before agent-ready that never completed although the agent's command was started. */
export function bypassedSteps(plan: InitPlan, hello: InitSession["hello"]): InitStep[] {
  if (!hello.commandRunning && hello.commandStarts === 0) return [];
  const done = new Set(hello.initDone);
  return plan.steps.map((s) => s.name).filter((n) => n !== "agent-ready" && !done.has(n));
}

/**
 * A step's result as agentd's hello-ack already tells it, or undefined when it must be sent. A
 * step with a marker is done. agent-ready goes by the command itself: running, it is done; started
 * in this agentd's life and ended, the agent is dead (agentd's cached answer would say "started");
 * never started here (fresh, or agentd restarted), it is sent.
 */
function knownResult(step: PlanStep, hello: InitSession["hello"]): StepResult | undefined {
  if (step.name !== "agent-ready") return hello.initDone.includes(step.name) ? skippedStep() : undefined;
  if (hello.commandRunning) return skippedStep();
  if (hello.commandStarts > 0)
    return stepFailure("error", `the agent's command ${ended(hello.commandExit)}`, null, 0);
  return undefined;
}

function ended(exit: InitSession["hello"]["commandExit"]): string {
  if (exit?.signal) return `was killed by ${exit.signal}`;
  return exit?.exitCode === undefined || exit.exitCode === null
    ? "ended"
    : `exited with code ${exit.exitCode}`;
}

/** Sends one step and waits for its answer, its timeout or the end of the session; never throws. */
async function runStep(deps: InitDeps, step: PlanStep): Promise<StepResult> {
  const { session, clock } = deps;
  const began = clock.now();
  const elapsed = () => Math.max(0, Math.round(clock.now() - began));
  if ("fault" in step) return stepFailure("error", step.fault, null, 0);
  const id = stepCommandId(session.generation, step.name);
  const timerKey = `init:${session.agentId}:${id}`;
  const timedOut = new Promise<"timeout">((resolve) =>
    clock.arm(timerKey, began + step.timeoutMs, () => resolve("timeout")),
  );
  try {
    const answer = await Promise.race([session.run({ t: "op", id, ...step.op }), timedOut]);
    if (answer === "timeout") {
      session.cancel(id);
      return stepFailure("timeout", `no answer within ${step.timeoutMs} ms`, null, elapsed());
    }
    return answer.t === "done" ? fromDone(answer) : fromError(answer, elapsed());
  } catch (err) {
    if (await sessionEnded(session, err))
      return stepFailure("session_lost", "the session ended", null, elapsed());
    return stepFailure("error", `the step threw: ${(err as Error).message}`, null, elapsed());
  } finally {
    clock.disarm(timerKey);
  }
}

/** Whether `run` rejected because the session ended (SessionLostError, or `closed` settled). */
async function sessionEnded(session: InitSession, err: unknown): Promise<boolean> {
  if (err instanceof Error && err.name === "SessionLostError") return true;
  const settled = new Promise<false>((resolve) => setImmediate(() => resolve(false)));
  return Promise.race([session.closed.then(() => true), settled]);
}
