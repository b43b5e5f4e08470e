import { type ErrorCode, RESULT_CACHE_SIZE, type ResultMsg } from "./protocol.ts";
import type { RunResult } from "./run.ts";

/** The final answers of the last `max` commands, by id (oldest forgotten first). */
export class ResultCache {
  private readonly byId = new Map<string, ResultMsg>();

  constructor(private readonly max = RESULT_CACHE_SIZE) {}

  get(id: string): ResultMsg | undefined {
    return this.byId.get(id);
  }

  set(result: ResultMsg): void {
    this.byId.delete(result.id);
    this.byId.set(result.id, result);
    while (this.byId.size > this.max) {
      const oldest = this.byId.keys().next().value;
      if (oldest === undefined) break;
      this.byId.delete(oldest);
    }
  }
}

/** A run's outcome as the answer the control plane gets. */
export function resultOf(id: string, r: RunResult, what = "command"): ResultMsg {
  const tails = { stdoutTail: r.stdoutTail, stderrTail: r.stderrTail, truncated: r.truncated };
  switch (r.outcome) {
    case "exited":
      return { t: "done", id, exitCode: r.exitCode, durationMs: r.durationMs, ...tails };
    case "timeout":
      return {
        t: "error",
        id,
        code: "timeout",
        message: `${what} timed out`,
        durationMs: r.durationMs,
        ...tails,
      };
    case "cancelled":
      return {
        t: "error",
        id,
        code: "cancelled",
        message: `${what} cancelled`,
        durationMs: r.durationMs,
        ...tails,
      };
    case "spawn_failed":
      return { t: "error", id, code: "spawn_failed", message: r.message ?? `${what} did not start` };
  }
}

export function errorResult(id: string, code: ErrorCode, message: string): ResultMsg {
  return { t: "error", id, code, message };
}
