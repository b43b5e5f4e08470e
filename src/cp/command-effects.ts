import type { DispatchParams } from "../../machines/command.ts";
import type { AggregateRef } from "../events/envelope.ts";
import type { Input } from "./actor-host.ts";
import type { EffectHandlers } from "./effects.ts";

/** How commands reach agents. The demo uses in-process agents; agentd's session implements it later. */
export interface AgentChannel {
  /** Hands the command over; throws if the agent cannot be reached (the deadline then retries). */
  deliver(agentId: string, command: { commandId: string } & Omit<DispatchParams, "agentId">): Promise<void>;
  cancel(agentId: string, commandId: string): Promise<void>;
}

/** What an agent reports about a command; the dispatcher turns each into an input. */
export type AgentReport =
  | { commandId: string; kind: "ack"; attempt: number }
  | { commandId: string; kind: "done"; result?: unknown }
  | { commandId: string; kind: "fail"; error: string };

/** Effects of the command machine: deliver, then record CommandSent; cancel on the agent. */
export function commandEffects(channel: AgentChannel): EffectHandlers {
  return {
    dispatch: async (p: DispatchParams, ctx) => {
      await channel.deliver(p.agentId, {
        commandId: ctx.aggregate.id,
        action: p.action,
        payload: p.payload,
        attempt: p.attempt,
      });
      await ctx.offer(ctx.aggregate, { type: "CommandSent", data: { attempt: p.attempt } });
    },
    cancelOnAgent: async (p: { agentId: string }, ctx) => {
      await channel.cancel(p.agentId, ctx.aggregate.id);
    },
  };
}

/** Maps an agent's report to the input for its command aggregate. */
export function reportToInput(report: AgentReport): { ref: AggregateRef; input: Input } {
  const ref: AggregateRef = { kind: "command", id: report.commandId };
  switch (report.kind) {
    case "ack":
      return { ref, input: { type: "CommandAcked", data: { attempt: report.attempt } } };
    case "done":
      return { ref, input: { type: "CommandCompleted", data: { result: report.result } } };
    case "fail":
      return { ref, input: { type: "CommandFailed", data: { error: report.error } } };
  }
}
