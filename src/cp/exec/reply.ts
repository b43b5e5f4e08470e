import type { CommandContext } from "../../../machines/command.ts";
import { EXEC_TIMEOUT_EXIT_CODE, type ExecEnd, type ExecReply } from "../../api/protocol.ts";
import { z } from "../../vendor/zod.ts";
import type { ActorView } from "../actor-host.ts";
import type { PoolError } from "../errors.ts";
import type { AgentResult } from "./dispatcher.ts";
import { CommandCancelledError, CommandFailedError } from "./errors.ts";

/** How an exec ended, for its caller: the reply, or the error to answer with. */
export type ExecOutcome = { reply: ExecReply } | { error: PoolError };

const text = new TextDecoder(); // not fatal: invalid UTF-8 becomes U+FFFD

/**
 * The outcome of a command whose aggregate is final: from the frame agentd ended it with (its
 * tails), or, without one (a deadline failed it, or it ended before this daemon started), from
 * what the aggregate stored.
 */
export function outcomeOf(view: ActorView<CommandContext>, frame: AgentResult | undefined): ExecOutcome {
  const commandId = view.ref.id;
  if (frame?.t === "done") {
    return {
      reply: {
        commandId,
        exitCode: frame.exitCode,
        stdout: text.decode(frame.stdoutTail),
        stderr: text.decode(frame.stderrTail),
        durationMs: frame.durationMs,
        truncated: frame.truncated,
      },
    };
  }
  if (frame?.code === "timeout") {
    return {
      reply: {
        commandId,
        exitCode: EXEC_TIMEOUT_EXIT_CODE,
        stdout: frame.stdoutTail ? text.decode(frame.stdoutTail) : "",
        stderr: frame.stderrTail ? text.decode(frame.stderrTail) : "",
        durationMs: frame.durationMs ?? 0,
        truncated: frame.truncated ?? false,
        timedOut: true,
      },
    };
  }
  if (view.value === "cancelled") {
    return { error: new CommandCancelledError(commandId, view.context.error ?? "cancelled") };
  }
  if (frame) return { error: new CommandFailedError(commandId, `${frame.code}: ${frame.message}`) };
  const stored = storedResult(view.context.result);
  if (view.value === "completed" && stored) {
    return { reply: { commandId, ...stored, stdout: "", stderr: "" } };
  }
  return { error: new CommandFailedError(commandId, view.context.error ?? `ended ${String(view.value)}`) };
}

/** The end marker on the command's output subject. */
export function endOf(outcome: ExecOutcome): ExecEnd {
  if ("error" in outcome) return { error: { code: outcome.error.code, message: outcome.error.message } };
  const { exitCode, durationMs, truncated, timedOut } = outcome.reply;
  return timedOut ? { exitCode, durationMs, truncated, timedOut } : { exitCode, durationMs, truncated };
}

/** CommandCompleted.result as the dispatcher stores it (dispatcher.ts). */
const completedResult = z.object({
  exitCode: z.number().int(),
  durationMs: z.number(),
  truncated: z.boolean(),
});

function storedResult(r: unknown): z.infer<typeof completedResult> | undefined {
  const parsed = completedResult.safeParse(r);
  return parsed.success ? parsed.data : undefined;
}
