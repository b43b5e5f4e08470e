import type { Logger } from "pino";
import type { DispatchParams } from "../../../machines/command.ts";
import type { DoneMsg, ErrorMsg } from "../../agentd/protocol.ts";
import type { Input, Offer } from "../actor-host.ts";
import type { EffectHandlers } from "../effects.ts";
import type { OutputPublisher } from "./output.ts";
import { EXEC_ACTION, execMsg, leaseOfPayload } from "./payload.ts";
import type { AgentQueues, QueuedCommand } from "./queue.ts";
import type { ExecSession, ExecSessions } from "./session-port.ts";

export type AgentResult = DoneMsg | ErrorMsg;

type CommandReport =
  | Input<"CommandSent">
  | Input<"CommandAcked">
  | Input<"CommandCompleted">
  | Input<"CommandFailed">;
/** How a command reports to its aggregate: the offer of the effect that last dispatched it. */
type Report = (input: CommandReport) => Promise<Offer>;

export interface DispatcherDeps {
  sessions: ExecSessions;
  queues: AgentQueues;
  output: OutputPublisher;
  log: Logger;
}

/**
 * Seed 001's dispatcher on corral's command machine: the machine's `dispatch` effect puts a
 * command in its agent's queue; whatever is queued goes out on the agent's session as soon as
 * it has one (now, or when a session becomes ready). Acks, output and the result come back on
 * the session and become CommandSent / CommandAcked / CommandCompleted | CommandFailed.
 *
 * Never run twice: a command id names one command for good and agentd runs an id at most once
 * (src/agentd/protocol.ts), so sending it again — after a lost session, a missed ack deadline or a
 * daemon restart (the aggregate's `resume`) — re-attaches to it or gets its cached result.
 */
export class ExecDispatcher {
  /** Each command's last report path, and the frame that ended it until its aggregate settles. */
  private readonly reports = new Map<string, Report>();
  private readonly results = new Map<string, AgentResult>();
  private closed = false;

  constructor(private readonly deps: DispatcherDeps) {
    deps.sessions.onReady((s) => this.pump(s.agentId));
  }

  effects(): EffectHandlers {
    return {
      dispatch: (p: DispatchParams, ctx) =>
        this.dispatch(ctx.aggregate.id, p, (input) => ctx.offer(ctx.aggregate, { ...input })),
      cancelOnAgent: (p: { agentId: string }, ctx) => {
        this.deps.sessions.get(p.agentId)?.cancel(ctx.aggregate.id);
      },
    };
  }

  /** The frame that ended `commandId`, once: its aggregate is final and the reply takes it. */
  takeResult(commandId: string): AgentResult | undefined {
    const r = this.results.get(commandId);
    this.results.delete(commandId);
    this.reports.delete(commandId);
    return r;
  }

  close(): void {
    this.closed = true;
  }

  private dispatch(id: string, p: DispatchParams, report: Report): void {
    if (p.action !== EXEC_ACTION)
      throw new Error(`exec dispatches only "${EXEC_ACTION}" commands, not "${p.action}"`);
    const c = this.deps.queues.take(p.agentId, id);
    c.msg ??= execMsg(id, p.payload);
    c.leaseId ??= leaseOfPayload(p.payload);
    c.attempt = p.attempt;
    this.reports.set(id, report);
    if (c.sentOn && this.deps.sessions.get(c.agentId) === c.sentOn) {
      // A retry (no ack by the deadline) while its frame is with agentd on a live session: sending
      // it again there would only re-attach to it; this attempt is on its way like the last.
      void this.record(c, { type: "CommandSent", data: { attempt: c.attempt } });
      return;
    }
    c.sentOn = undefined;
    this.pump(c.agentId);
  }

  /** Sends every queued command of the agent that is not out on its current session. */
  private pump(agentId: string): void {
    if (this.closed) return;
    const session = this.deps.sessions.get(agentId);
    if (!session) return; // the session's onReady pumps again
    for (const c of this.deps.queues.of(agentId)) {
      if (c.msg && c.sentOn !== session) this.send(session, c);
    }
  }

  private send(session: ExecSession, c: QueuedCommand): void {
    if (!c.msg) return;
    c.sentOn = session;
    let run: Promise<AgentResult>;
    try {
      run = session.run(c.msg, {
        ack: () => void this.record(c, { type: "CommandAcked", data: { attempt: c.attempt } }),
        output: (o) => this.deps.output.chunk(o),
      });
    } catch (err) {
      run = Promise.reject(err);
    }
    // Offered now, before any ack can be: the host keeps one aggregate's inputs in order.
    void this.record(c, { type: "CommandSent", data: { attempt: c.attempt } });
    run.then(
      (result) => this.finish(c, result),
      (err: unknown) => {
        if (c.sentOn !== session) return;
        // The session ended first: the next one gets the command again (agentd re-attaches).
        // Never back onto the session that failed it, should it still be the current one.
        this.deps.log.info({ err, command: c.id, agent: c.agentId }, "session lost while a command ran");
        c.sentOn = undefined;
        if (this.deps.sessions.get(c.agentId) !== session) this.pump(c.agentId);
      },
    );
  }

  private async finish(c: QueuedCommand, r: AgentResult): Promise<void> {
    this.results.set(c.id, r);
    const input: CommandReport =
      r.t === "done"
        ? {
            type: "CommandCompleted",
            data: { result: { exitCode: r.exitCode, durationMs: r.durationMs, truncated: r.truncated } },
          }
        : { type: "CommandFailed", data: { error: failure(c, r), code: r.code } };
    const offer = await this.record(c, input);
    // Refused: the aggregate ended otherwise (its deadline passed first); that outcome stands.
    if (!offer?.accepted) this.results.delete(c.id);
  }

  /** Reports to the command's aggregate; a refusal is expected (it moved on), anything else logged. */
  private async record(c: QueuedCommand, input: CommandReport): Promise<Offer | undefined> {
    const report = this.reports.get(c.id);
    if (!report || this.closed) return undefined;
    try {
      const offer = await report(input);
      if (!offer.accepted) this.deps.log.debug({ command: c.id, type: input.type }, "command report refused");
      return offer;
    } catch (err) {
      this.deps.log.error({ err, command: c.id, type: input.type }, "command report not recorded");
      return undefined;
    }
  }
}

/** What CommandFailed stores: agentd's message, and for a timeout the time it was given. */
function failure(c: QueuedCommand, r: ErrorMsg): string {
  if (r.code === "timeout" && c.msg?.timeoutMs)
    return `timed out after ${c.msg.timeoutMs} ms; agentd stopped it`;
  return r.message || r.code;
}
