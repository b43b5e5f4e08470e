import { clock, compact } from "../format.ts";
import type { Change } from "./changes.ts";
import type { ReplayStep } from "./fold.ts";

/** `generation: 0 → 1, ports: [] → [5001,5002]`. */
export function formatChanges(cs: readonly Change[]): string {
  return cs.map((c) => `${c.path}: ${show(c.from, c.path)} → ${show(c.to, c.path)}`).join(", ");
}

/** Context fields that hold a time (epoch ms): `createdAt`, `deadline`, `lease.expiresAt`, `spawnPausedUntil`. */
const TIME_FIELD = /(At|deadline|Until)$/;

function show(v: unknown, path: string): string {
  if (v === undefined) return "-";
  // A time reads better as one: shown as the clock time the event lines use (0 stays 0: unset).
  if (typeof v === "number" && v > 0 && TIME_FIELD.test(path)) return clock(v);
  return compact(v);
}

/** One step as a line: `seq time type → state  changes  ⇒ effects`. */
export function formatStep(s: ReplayStep): string {
  const head = `${String(s.seq).padStart(6)} ${clock(s.at ?? s.time)}  ${s.type.padEnd(22)}`;
  if (s.skipped) return `${head} skipped (${s.skipped.reason}): ${s.skipped.message}`;
  if (s.refused) return `${head} refused in ${s.state}: the machine does not take it there`;
  const effects = s.effects.length > 0 ? `  ⇒ ${s.effects.join(", ")}` : "";
  const changed = s.changes.length > 0 ? `  ${formatChanges(s.changes)}` : "";
  return `${head} → ${s.state.padEnd(14)}${changed}${effects}`.trimEnd();
}

/** The `--json` line of a step: everything but the full context (the changes say what moved). */
export function stepJson(s: ReplayStep): string {
  const { context: _context, at, time, ...rest } = s;
  return JSON.stringify({
    ...rest,
    time: new Date(time).toISOString(),
    ...(at === undefined ? {} : { at: new Date(at).toISOString() }),
  });
}
