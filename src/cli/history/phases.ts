import type { ReplayStep } from "./fold.ts";

/** One stretch of an agent's life in one phase, from the event that began it to the one that ended it. */
export interface PhaseSpan {
  phase: string;
  generation: number;
  /** Event time (ms) it began, and the stream sequence of that event. */
  from: number;
  fromSeq: number;
  /** Event time it ended; null while it lasts (or for a final state). */
  to: number | null;
  ms: number | null;
  endedBy: { type: string; seq: number } | null;
  /** A final state (stopped, failed): it has no duration, the agent's life ended there. */
  final?: true;
}

/** `ready.idle` → `idle`: the phases the worldview and `corral status` name. */
function phaseOf(state: string): string {
  return state.startsWith("ready.") ? state.slice("ready.".length) : state;
}

function generationOf(context: unknown): number {
  const g = (context as { generation?: unknown } | null)?.generation;
  return typeof g === "number" ? g : 0;
}

/** The phases an agent went through, from its replayed steps (refused and skipped ones change nothing). */
export function phaseSpans(steps: readonly ReplayStep[]): PhaseSpan[] {
  const spans: PhaseSpan[] = [];
  for (const s of steps) {
    if (s.refused || s.skipped || s.at === undefined) continue;
    const phase = phaseOf(s.state);
    const open = spans.at(-1);
    if (open?.phase === phase) continue;
    if (open) {
      open.to = s.at;
      open.ms = s.at - open.from;
      open.endedBy = { type: s.type, seq: s.seq };
    }
    spans.push({
      phase,
      generation: generationOf(s.context),
      from: s.at,
      fromSeq: s.seq,
      to: null,
      ms: null,
      endedBy: null,
      ...(s.status === "active" ? {} : { final: true as const }),
    });
  }
  return spans;
}

/** `0.21 s`, `3.1 s`, `2 min 5 s`, `1 h 3 min`. */
export function duration(ms: number): string {
  const s = ms / 1000;
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
