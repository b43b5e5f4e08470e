import type { DoneMsg, ErrorMsg } from "../../agentd/protocol.ts";

/** What one init step came to, in the words of InitStepCompleted / InitStepFailed (src/events/agent.ts). */

export type StepFailReason = "exit_code" | "timeout" | "error" | "session_lost";

export type StepResult =
  | { ok: true; completed: { exitCode: number; durationMs: number; skipped: boolean } }
  | {
      ok: false;
      failed: { reason: StepFailReason; detail: string; exitCode: number | null; durationMs: number };
    };

/** InitStepFailed.detail's limit: the head line plus as much of the end of stderr as fits. */
export const MAX_DETAIL_CHARS = 4096;

export function skippedStep(): StepResult {
  return { ok: true, completed: { exitCode: 0, durationMs: 0, skipped: true } };
}

export function stepFailure(
  reason: StepFailReason,
  detail: string,
  exitCode: number | null,
  durationMs: number,
): StepResult {
  return { ok: false, failed: { reason, detail: clip(detail), exitCode, durationMs: ms(durationMs) } };
}

/** agentd's `done`: exit code 0 completes the step, any other fails it with the end of stderr. */
export function fromDone(d: DoneMsg): StepResult {
  if (d.exitCode === 0)
    return { ok: true, completed: { exitCode: 0, durationMs: ms(d.durationMs), skipped: false } };
  return stepFailure(
    "exit_code",
    withStderr(`exit code ${d.exitCode}`, d.stderrTail),
    d.exitCode,
    d.durationMs,
  );
}

/** agentd's `error` for the step (its own timeout, spawn failure, op failure, ...). */
export function fromError(e: ErrorMsg, elapsedMs: number): StepResult {
  const reason = e.code === "timeout" ? "timeout" : "error";
  return stepFailure(
    reason,
    withStderr(`${e.code}: ${e.message}`, e.stderrTail),
    null,
    e.durationMs ?? elapsedMs,
  );
}

/** `head`, then as much of the end of stderr as fits in MAX_DETAIL_CHARS. */
export function withStderr(head: string, stderr: Uint8Array | undefined): string {
  const text = stderr && stderr.length > 0 ? new TextDecoder().decode(stderr).trimEnd() : "";
  if (text === "") return clip(head);
  const top = clip(head).slice(0, MAX_DETAIL_CHARS / 2);
  const room = MAX_DETAIL_CHARS - top.length - 1;
  return `${top}\n${text.length > room ? text.slice(text.length - room) : text}`;
}

function clip(s: string): string {
  return s.length > MAX_DETAIL_CHARS ? s.slice(0, MAX_DETAIL_CHARS) : s;
}

function ms(n: number): number {
  return Math.max(0, Math.round(n));
}
