/** One difference between two plain values: where (a dotted path) and what it was and became. */
export interface Change {
  path: string;
  from: unknown;
  to: unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * What changed from `a` to `b` (plain data: a machine's context), leaf by leaf: objects are
 * walked key by key, anything else (arrays included) is compared whole. A diff, not a dump.
 */
export function changes(a: unknown, b: unknown, path = ""): Change[] {
  if (a === b) return [];
  if (isRecord(a) && isRecord(b)) {
    const out: Change[] = [];
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) out.push(...changes(a[k], b[k], path ? `${path}.${k}` : k));
    return out;
  }
  if (Array.isArray(a) && Array.isArray(b) && JSON.stringify(a) === JSON.stringify(b)) return [];
  return [{ path, from: a, to: b }];
}

/** A machine's state value as one name: `requested`, `ready.idle`. */
export function stateName(value: unknown): string {
  if (typeof value === "string") return value;
  if (isRecord(value)) {
    return Object.entries(value)
      .map(([k, v]) => `${k}.${stateName(v)}`)
      .join(",");
  }
  return String(value);
}
