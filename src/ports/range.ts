import { isIP } from "node:net";
/**
 * The port-pool config: which host ports a pool may hand out, how many per agent, and the URL
 * clients use to reach them. Every error names the field it is about, so a bad settings file
 * points at the line to fix.
 */

export interface PortRange {
  low: number;
  high: number;
}

export interface PortConfig extends PortRange {
  perAgent: number;
  /** Scheme and host only, no trailing slash: URLs are built as `${hostUrl}:${port}`. */
  hostUrl?: string;
  /** Host address docker publishes agent ports on; absent means 127.0.0.1 (runtime/docker.ts). */
  bind?: string;
}

/** The documented defaults (as in the reference system): range 8000-9000, 2 ports per agent. */
export const DEFAULT_PORT_RANGE = "8000-9000";
export const DEFAULT_PORTS_PER_AGENT = 2;

const MIN_PORT = 1;
const MAX_PORT = 65_535;
const KNOWN_KEYS = new Set(["range", "perAgent", "hostUrl", "bind"]);

export class PortConfigError extends Error {
  override name = "PortConfigError";
  constructor(
    /** Dotted path of the offending field, e.g. `ports.range`. */
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}

export const rangeSize = (r: PortRange): number => r.high - r.low + 1;

export const formatRange = (r: PortRange): string => (r.low === r.high ? `${r.low}` : `${r.low}-${r.high}`);

/** `http://host///` → `http://host`; a trailing slash would otherwise give `http://host/:8000`. */
export const trimTrailingSlashes = (url: string): string => url.replace(/\/+$/, "");

/** `"8000-9000"`, `"8000"` (a range of one) or a bare number (YAML reads `range: 8000` as one). */
export function parsePortRange(input: unknown, field = "ports.range"): PortRange {
  const text = typeof input === "number" ? String(input) : input;
  if (typeof text !== "string") {
    throw new PortConfigError(field, `expected "LOW-HIGH", got ${describe(input)}`);
  }
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(text);
  if (!m) throw new PortConfigError(field, `expected "LOW-HIGH", got ${JSON.stringify(text)}`);
  const lowText = m[1]!;
  const highText = m[2] ?? lowText;
  for (const p of [lowText, highText]) {
    const n = Number(p);
    if (n < MIN_PORT || n > MAX_PORT) {
      throw new PortConfigError(field, `port ${p} is outside ${MIN_PORT}-${MAX_PORT}`);
    }
  }
  const low = Number(lowText);
  const high = Number(highText);
  if (low > high) {
    throw new PortConfigError(field, `${JSON.stringify(text)}: low (${low}) must be <= high (${high})`);
  }
  return { low, high };
}

/** Scheme and host only (http or https); trailing slashes trimmed. */
export function parseHostUrl(input: unknown, field = "ports.hostUrl"): string {
  if (typeof input !== "string") throw new PortConfigError(field, `not a URL: ${describe(input)}`);
  const trimmed = trimTrailingSlashes(input.trim());
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new PortConfigError(field, `not a URL: ${JSON.stringify(input)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new PortConfigError(field, `must be http(s), got ${JSON.stringify(url.protocol)}`);
  }
  // Anything after the host would land before `:port` and break every URL built from it.
  if (url.port !== "" || url.pathname !== "/" || url.search || url.hash || url.username || url.password) {
    throw new PortConfigError(
      field,
      `must be scheme and host only (no port, path, query or credentials), got ${JSON.stringify(input)}`,
    );
  }
  return url.origin;
}

/**
 * `{ range: "8000-9000", perAgent: 2, hostUrl?: "http://host" }` → `{ low, high, perAgent, hostUrl? }`.
 * Missing `range` / `perAgent` take the documented defaults; unknown keys are rejected so a typo
 * (`perAgnet`) does not silently fall back to a default.
 */
export function parsePortConfig(input: unknown, field = "ports"): PortConfig {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new PortConfigError(field, `expected an object like { range: "8000-9000", perAgent: 2 }`);
  }
  const o = input as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN_KEYS.has(key)) {
      throw new PortConfigError(`${field}.${key}`, `unknown field (expected range, perAgent, hostUrl, bind)`);
    }
  }
  const range = parsePortRange(o.range ?? DEFAULT_PORT_RANGE, `${field}.range`);
  const perAgent = o.perAgent ?? DEFAULT_PORTS_PER_AGENT;
  if (typeof perAgent !== "number" || !Number.isInteger(perAgent) || perAgent < 1) {
    throw new PortConfigError(`${field}.perAgent`, `must be an integer >= 1, got ${describe(perAgent)}`);
  }
  if (perAgent > rangeSize(range)) {
    throw new PortConfigError(`${field}.perAgent`, `${perAgent} exceeds the range size ${rangeSize(range)}`);
  }
  const config: PortConfig = { ...range, perAgent };
  if (o.hostUrl !== undefined) config.hostUrl = parseHostUrl(o.hostUrl, `${field}.hostUrl`);
  if (o.bind !== undefined) {
    if (typeof o.bind !== "string" || isIP(o.bind) === 0) {
      throw new PortConfigError(
        `${field}.bind`,
        `must be an IP address such as 127.0.0.1 or 0.0.0.0, got ${describe(o.bind)}`,
      );
    }
    config.bind = o.bind;
  }
  return config;
}

/** For messages: strings quoted, numbers as written (NaN stays NaN), anything else as JSON. */
function describe(v: unknown): string {
  if (typeof v === "number" || typeof v === "bigint" || v === undefined) return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
