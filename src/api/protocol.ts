/**
 * The request/reply contract on `corral.api.>`: JSON bodies, so any NATS client (or the `nats`
 * CLI) can call it. A failure is always `{ "error": { "code", "message" } }`. Every pool endpoint
 * is on the pool's own subject, answered only by the daemon that runs that pool; a lease id names
 * its agent, whose first event names the pool (`AgentRequested.data.poolId`). The request
 * schemas are apart, in requests.ts, so a client (the CLI) answers without loading zod.
 */

export const API_PREFIX = "corral.api";

export const subjects = {
  acquire: (pool: string) => `${API_PREFIX}.pool.${pool}.acquire`,
  release: (pool: string) => `${API_PREFIX}.pool.${pool}.release`,
  renew: (pool: string) => `${API_PREFIX}.pool.${pool}.renew`,
  cancel: (pool: string) => `${API_PREFIX}.pool.${pool}.cancel`,
  status: (pool: string) => `${API_PREFIX}.pool.${pool}.status`,
  close: (pool: string) => `${API_PREFIX}.pool.${pool}.close`,
  exec: (pool: string) => `${API_PREFIX}.pool.${pool}.exec`,
  /** Answered by every daemon (no queue group): a client gathers the replies (scatter-gather). */
  poolsList: `${API_PREFIX}.pools.list`,
  /** Addressed to one instance: nothing that stops agents goes to whichever daemon answers first. */
  down: (instance: string) => `${API_PREFIX}.daemon.${instance}.down`,
  /** Addressed to one instance: which daemon runs it (a second one asks before it starts). */
  info: (instance: string) => `${API_PREFIX}.daemon.${instance}.info`,
} as const;

/** The daemon that runs an instance, as it says itself (`info`). */
export interface DaemonInfo {
  instance: string;
  pid: number;
  host: string;
  /** ISO time it came up. */
  since: string;
  version: string;
  pools: string[];
}

/** How long an acquire waits for a free agent unless it says otherwise (ms). */
export const DEFAULT_ACQUIRE_TIMEOUT_MS = 30_000;

export interface AcquireReply {
  leaseId: string;
  /** Proves the holder on release and renew; shown once (the stream keeps only its hash). */
  leaseToken: string;
  pool: string;
  agentId: string;
  generation: number;
  ports: number[];
  urls: string[];
  /** Environment the agent sees for its ports (CORRAL_PORT_A …). */
  env: Record<string, string>;
  expiresAt: string;
  ttlMs: number;
  /** How to reach the agent from this host. */
  reach: { runtime: "docker" | "process"; instanceId: string; host: string };
  /** The correlation of the events this acquire caused: `corral trace <correlationId>` (a daemon before it sends none). */
  correlationId?: string;
}

/** How long an exec may run unless it says otherwise (ms); agentd stops it then. */
export const DEFAULT_EXEC_TIMEOUT_MS = 10 * 60_000;
export const MAX_EXEC_TIMEOUT_MS = 12 * 60 * 60_000;
/** What an exec may wait for its agent to be reachable before it fails (ms): a reconnect. */
export const EXEC_REACH_MS = 30_000;
/**
 * Exit code of a command agentd stopped at its timeout (`timedOut: true`): the one coreutils'
 * timeout(1) gives, so a script tells it from the command's own exit codes as it would there.
 */
export const EXEC_TIMEOUT_EXIT_CODE = 124;

/**
 * A command's live output, on NATS core (not the stream): each chunk as it comes, raw bytes, with
 * header OUT_STREAM_HEADER = stdout | stderr; last an end marker: header OUT_END_HEADER, the
 * outcome as JSON (ExecEnd). Subscribe before sending the exec (with your own commandId).
 */
export const outSubject = (commandId: string) => `corral.out.${commandId}`;
export const OUT_STREAM_HEADER = "Corral-Stream";
export const OUT_END_HEADER = "Corral-End";

/** The reply of exec: the last 64 KiB of each stream as UTF-8 text (invalid bytes replaced). */
export interface ExecReply {
  commandId: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** Either stream had more than its tail. */
  truncated: boolean;
  /** agentd stopped it at `timeoutMs` (exitCode is then EXEC_TIMEOUT_EXIT_CODE). */
  timedOut?: boolean;
  /** The correlation of the command's events (absent when answered by the end marker alone). */
  correlationId?: string;
}

/** The end marker's JSON body on outSubject: how the command ended. */
export type ExecEnd =
  | { exitCode: number; durationMs: number; truncated: boolean; timedOut?: boolean }
  | { error: { code: string; message: string } };

/** What release and renew need: the lease id and the token its acquire returned. */
export interface LeaseRef {
  leaseId: string;
  leaseToken: string;
}

/** One daemon's answer on `poolsList`. */
export interface PoolsReply {
  instance: string;
  pools: unknown[];
  /** Every instance this daemon knows to run an open pool (the client stops once all answered). */
  instances?: string[];
}

export interface ErrorReply {
  error: { code: string; message: string };
}

export function isErrorReply(v: unknown): v is ErrorReply {
  return typeof v === "object" && v !== null && "error" in v;
}
