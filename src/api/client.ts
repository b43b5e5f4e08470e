import { randomUUID } from "node:crypto";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import type { z } from "zod";
import { isValidId } from "../events/envelope.ts";
import { agentOfLease } from "../events/lease-id.ts";
import { eventSubject } from "../store/subjects.ts";
import {
  jetstreamManager,
  NoRespondersError,
  RequestError,
  ServiceErrorCodeHeader,
  ServiceErrorHeader,
  TimeoutError,
} from "../vendor/nats.ts";
import {
  type AcquireReply,
  type DaemonInfo,
  DEFAULT_ACQUIRE_TIMEOUT_MS,
  DEFAULT_EXEC_TIMEOUT_MS,
  EXEC_REACH_MS,
  type ExecEnd,
  type ExecReply,
  isErrorReply,
  type LeaseRef,
  OUT_END_HEADER,
  OUT_STREAM_HEADER,
  outSubject,
  type PoolsReply,
  subjects,
} from "./protocol.ts";
import type {
  acquireRequest,
  cancelRequest,
  closeRequest,
  downRequest,
  execRequest,
  leaseRequest,
  renewRequest,
} from "./requests.ts";

/**
 * A typed client for corral's pool API (`corral.api.>`, JSON request/reply). Every failure —
 * an error reply from the daemon, no daemon at all, no reply in time — is an `ApiError` whose
 * `code` is the stable, machine-readable part.
 */

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/*
 * Reply shapes of the endpoints other than acquire, as src/api/service.ts builds them. They belong
 * in protocol.ts beside AcquireReply; until they move there, they live here. A correlationId names
 * the events the request caused (`corral trace <correlationId>`); a daemon before it sends none.
 */
export interface ReleaseReply {
  leaseId: string;
  agentId: string;
  pool: string;
  correlationId?: string;
}
export interface RenewReply {
  leaseId: string;
  /** ISO 8601. */
  expiresAt: string;
  correlationId?: string;
}
export interface CancelReply {
  requestId: string;
  /** False when no acquire with that id was waiting (already granted, failed, or never seen). */
  cancelled: boolean;
}
export interface CloseReply {
  pool: string;
  state: string;
  correlationId?: string;
}
export interface DownReply {
  stopped: boolean;
}

/** One pool's status. Every field is optional: readers render what the daemon sends. */
export interface PoolStatus {
  pool?: string;
  state?: string;
  metrics?: PoolMetrics;
  agents?: AgentStatus[];
  waiters?: number;
  [key: string]: unknown;
}
export interface PoolMetrics {
  active?: number;
  idle?: number;
  total?: number;
  totalLeases?: number;
  totalRecycles?: number;
  spawned?: number;
  terminated?: number;
  lastScaleEvent?: { at: number | string; direction: string } | null;
  [key: string]: unknown;
}
export interface AgentStatus {
  id?: string;
  phase?: string;
  generation?: number;
  ports?: number[];
  leasesServed?: number;
  [key: string]: unknown;
}

export type AcquireOptions = Omit<z.input<typeof acquireRequest>, "timeoutMs"> & { timeoutMs?: number };

export type ExecOptions = Omit<z.input<typeof execRequest>, "leaseId" | "leaseToken"> & {
  /** The lease's pool; default: read from the lease's agent (see `poolOfLease`). */
  pool?: string;
  /** The command's live output as it comes (subscribed before the request is sent). */
  onOutput?(stream: "stdout" | "stderr", data: Uint8Array): void;
  /** With onOutput: the daemon stopped before answering; the call now waits for the next one. */
  onDaemonStopped?(): void;
};

export interface ClientOptions {
  /** How long to wait for a reply to an ordinary request (ms). */
  timeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** Gathering every daemon's pools ends after this long without another reply. */
export const GATHER_QUIET_MS = 250;
/** Once every instance the replies name has answered, this long more for any other. */
export const GATHER_GRACE_MS = 40;
/** Closing a pool (and `down`) waits until its agents have stopped, which takes a while. */
export const DEFAULT_SLOW_TIMEOUT_MS = 60_000;

const utf8 = new TextEncoder();

export class CorralClient {
  readonly timeoutMs: number;

  constructor(
    private readonly nc: NatsConnection,
    opts: ClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  /**
   * Waits up to `timeoutMs` for a free agent of `pool` and leases it. The NATS request waits that
   * long plus one ordinary request timeout, so the daemon's own `timeout` error (which names the
   * pool) reaches the caller rather than a bare client-side timeout racing it.
   */
  async acquire(pool: string, opts: AcquireOptions = {}): Promise<AcquireReply> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS;
    const body: z.input<typeof acquireRequest> = { ...opts, timeoutMs };
    return this.request(subjects.acquire(poolToken(pool)), body, timeoutMs + this.timeoutMs, pool);
  }

  /**
   * Ends a lease: its id and the token its acquire returned (an AcquireReply will do). Without
   * `pool`, the lease's pool is read from its first event.
   */
  async release(lease: LeaseRef, pool?: string): Promise<ReleaseReply> {
    const body: z.input<typeof leaseRequest> = { leaseId: lease.leaseId, leaseToken: lease.leaseToken };
    const p = poolToken(pool ?? (await this.poolOfLease(lease.leaseId)));
    return this.request(subjects.release(p), body, this.timeoutMs, p);
  }

  /** Extends a lease by `ttlMs` from now (default: the lease's own TTL). */
  async renew(lease: LeaseRef, ttlMs?: number, pool?: string): Promise<RenewReply> {
    const body: z.input<typeof renewRequest> = { leaseId: lease.leaseId, leaseToken: lease.leaseToken };
    if (ttlMs !== undefined) body.ttlMs = ttlMs;
    const p = poolToken(pool ?? (await this.poolOfLease(lease.leaseId)));
    return this.request(subjects.renew(p), body, this.timeoutMs, p);
  }

  /**
   * Runs `argv` in the leased agent and resolves with its exit code and output tails once it
   * ended. The request waits as long as the command may run plus the time to reach its agent.
   * With `onOutput`, the output subject of the command (its id: `commandId`, else a new UUID) is
   * subscribed first, so no chunk is missed; every chunk arrives before the reply. Then the call
   * also outlives the daemon it asked: if that one stops first, the command goes on in its agent
   * and the next daemon's end marker ends the call (stdout and stderr then empty: they streamed).
   */
  async exec(lease: LeaseRef, opts: ExecOptions): Promise<ExecReply> {
    const { pool, onOutput, onDaemonStopped, ...req } = opts;
    const p = poolToken(pool ?? (await this.poolOfLease(lease.leaseId)));
    const body: z.input<typeof execRequest> = {
      ...req,
      leaseId: lease.leaseId,
      leaseToken: lease.leaseToken,
    };
    const timeoutMs = (req.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS) + EXEC_REACH_MS + this.timeoutMs;
    if (!onOutput) return this.request(subjects.exec(p), body, timeoutMs, p);
    const commandId = body.commandId ?? randomUUID();
    body.commandId = commandId;
    let ended: (end: ExecEnd) => void = () => {};
    const end = new Promise<ExecEnd>((resolve) => {
      ended = resolve;
    });
    const sub = this.nc.subscribe(outSubject(commandId), {
      callback: (err, m) => {
        if (err) return;
        const stream = m.headers?.get(OUT_STREAM_HEADER);
        if (stream === "stdout" || stream === "stderr") onOutput(stream, m.data);
        else if (m.headers?.get(OUT_END_HEADER)) ended(parseEnd(m));
      },
    });
    try {
      const reply = this.request<ExecReply>(subjects.exec(p), body, timeoutMs, p);
      return await replyOrEnd(reply, end, { commandId, timeoutMs, onDaemonStopped });
    } finally {
      sub.unsubscribe();
    }
  }

  /**
   * The pool a lease belongs to: a lease id names its agent (events/lease-id.ts), and the agent's
   * first event (AgentRequested) names its pool — one direct read, no scan.
   */
  async poolOfLease(leaseId: string): Promise<string> {
    const agentId = agentOfLease(leaseId);
    if (!agentId) {
      throw new ApiError(
        "bad_request",
        `invalid lease id ${JSON.stringify(leaseId)}: use the id acquire returned (<agent id>.<uuid>)`,
      );
    }
    // Imported here, as only this lookup reads the stream: `corral status` loads no event codec.
    const [{ decodeEvent }, { DEFAULT_STREAM }] = await Promise.all([
      import("../codec/msgpack.ts"),
      import("../store/stream.ts"),
    ]);
    const jsm = await jetstreamManager(this.nc);
    const first = await jsm.direct
      .getMessage(DEFAULT_STREAM.name, { seq: 1, next_by_subj: eventSubject({ kind: "agent", id: agentId }) })
      .catch((err: unknown) => {
        throw new ApiError("request_failed", `cannot look up lease ${leaseId}: ${(err as Error).message}`);
      });
    if (!first) throw new ApiError("lease_not_found", `no lease ${leaseId} (no agent ${agentId})`);
    const event = decodeEvent(first.data, { seq: first.seq, subject: first.subject });
    if (event.type !== "AgentRequested")
      throw new ApiError(
        "lease_not_found",
        `no lease ${leaseId} (agent ${agentId} starts with ${event.type})`,
      );
    return event.data.poolId;
  }

  /** Stops a waiting acquire that was sent with this `requestId`. */
  async cancel(pool: string, requestId: string): Promise<CancelReply> {
    const body: z.input<typeof cancelRequest> = { requestId };
    return this.request(subjects.cancel(poolToken(pool)), body, this.timeoutMs, pool);
  }

  async status(pool: string): Promise<PoolStatus> {
    return this.request(subjects.status(poolToken(pool)), {}, this.timeoutMs, pool);
  }

  /** The status of every pool of every daemon on this NATS (see `daemons`), daemon by daemon. */
  async pools(): Promise<PoolStatus[]> {
    return (await this.daemons()).flatMap((d) => d.pools as PoolStatus[]);
  }

  /**
   * Every daemon's pools: each daemon answers `pools.list` (no queue group), and the replies are
   * gathered until every instance a reply names as running an open pool has answered, or none
   * came for GATHER_QUIET_MS (an instance that is down). No daemon at all is `no_daemon`.
   */
  async daemons(timeoutMs = this.timeoutMs): Promise<PoolsReply[]> {
    const subject = subjects.poolsList;
    const replies: PoolsReply[] = [];
    const expected = new Set<string>();
    try {
      const msgs = await this.nc.requestMany(subject, utf8.encode("{}"), {
        strategy: "stall",
        stall: GATHER_QUIET_MS,
        maxWait: timeoutMs,
      });
      const it = msgs[Symbol.asyncIterator]();
      let grace: Promise<"grace"> | undefined;
      for (;;) {
        const next = await (grace ? Promise.race([it.next(), grace]) : it.next());
        if (next === "grace" || next.done) break;
        const reply = decodeReply<Partial<PoolsReply>>(subject, next.value);
        if (!Array.isArray(reply.pools)) throw new ApiError("bad_reply", "pools reply has no pools list");
        replies.push({ instance: String(reply.instance ?? ""), pools: reply.pools });
        const answered = new Set(replies.map((r) => r.instance));
        for (const i of reply.instances ?? []) if (typeof i === "string") expected.add(i);
        // Everyone the stream names has answered: a daemon it does not name (another key, a pool
        // opened since) still gets a short grace, not the full quiet window.
        if (!grace && [...expected].every((i) => answered.has(i))) {
          grace = new Promise((r) => setTimeout(() => r("grace"), GATHER_GRACE_MS));
        }
      }
      void it.return?.(); // ends the subscription; its pending next() settles with it
    } catch (err) {
      throw err instanceof ApiError ? err : requestFailure(subject, timeoutMs, err);
    }
    if (replies.length === 0) throw requestFailure(subject, timeoutMs, new NoRespondersError(subject));
    return replies.sort((a, b) => a.instance.localeCompare(b.instance));
  }

  /** No new leases; resolves once the pool's agents have stopped. */
  async close(
    pool: string,
    opts: { revokeLeases?: boolean; timeoutMs?: number; correlationId?: string } = {},
  ): Promise<CloseReply> {
    const body: z.input<typeof closeRequest> = {
      revokeLeases: opts.revokeLeases ?? false,
      correlationId: opts.correlationId,
    };
    return this.request(
      subjects.close(poolToken(pool)),
      body,
      opts.timeoutMs ?? DEFAULT_SLOW_TIMEOUT_MS,
      pool,
    );
  }

  /** Closes every pool of `instance` and stops its daemon (it exits after replying). */
  down(instance: string, opts: { timeoutMs?: number } = {}): Promise<DownReply> {
    if (!isValidId(instance) || instance.length > 64) {
      throw new ApiError("bad_request", `invalid instance name ${JSON.stringify(instance)}`);
    }
    const body: z.input<typeof downRequest> = { instance };
    return this.request(subjects.down(instance), body, opts.timeoutMs ?? DEFAULT_SLOW_TIMEOUT_MS);
  }

  /** Which daemon runs `instance`; `no_daemon` when none does. */
  info(instance: string, opts: { timeoutMs?: number } = {}): Promise<DaemonInfo> {
    if (!isValidId(instance) || instance.length > 64) {
      throw new ApiError("bad_request", `invalid instance name ${JSON.stringify(instance)}`);
    }
    return this.request(subjects.info(instance), {}, opts.timeoutMs ?? this.timeoutMs);
  }

  /**
   * One request, one reply. For a pool's subject, "no responders" is told apart: NATS answers
   * and a daemon runs, but none serves this pool (`unknown_pool`), or no daemon at all.
   */
  private async request<T>(
    subject: string,
    body: unknown,
    timeoutMs = this.timeoutMs,
    pool?: string,
  ): Promise<T> {
    let msg: Msg;
    try {
      msg = await this.nc.request(subject, utf8.encode(JSON.stringify(body)), { timeout: timeoutMs });
    } catch (err) {
      const failure = requestFailure(subject, timeoutMs, err);
      if (failure.code === "no_daemon" && pool !== undefined) throw await this.noPool(pool, failure);
      throw failure;
    }
    return decodeReply<T>(subject, msg);
  }

  /** `unknown_pool` when some daemon answers (naming the pools there are), else `noDaemon`. */
  private async noPool(pool: string, noDaemon: ApiError): Promise<ApiError> {
    const daemons = await this.daemons(Math.min(this.timeoutMs, 2_000)).catch(() => []);
    if (daemons.length === 0) return noDaemon;
    const names = daemons.flatMap((d) => d.pools.map((p) => String((p as PoolStatus).pool))).sort();
    return new ApiError(
      "unknown_pool",
      `no daemon serves pool ${pool} (pools: ${names.join(", ") || "none"})`,
    );
  }
}

/** After an exec's end marker, how long its reply may take before the marker answers instead. */
const EXEC_END_GRACE_MS = 2_000;

/**
 * An exec's reply; or, once its daemon stopped (`shutting_down`, or no reply after the end
 * marker), the end marker the daemon that finished the command published.
 */
async function replyOrEnd(
  reply: Promise<ExecReply>,
  end: Promise<ExecEnd>,
  opts: { commandId: string; timeoutMs: number; onDaemonStopped?(): void },
): Promise<ExecReply> {
  const settled = reply.then(
    (r) => ({ reply: r }),
    (err: unknown) => ({ err }),
  );
  const within = <T>(p: Promise<T>, ms: number) =>
    Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);
  const first = await Promise.race([settled, end.then((e) => ({ end: e }))]);
  if ("reply" in first) return first.reply;
  if ("end" in first) {
    const late = await within(settled, EXEC_END_GRACE_MS);
    return late && "reply" in late ? late.reply : replyOfEnd(first.end, opts.commandId);
  }
  if (!(first.err instanceof ApiError && first.err.code === "shutting_down")) throw first.err;
  opts.onDaemonStopped?.();
  const e = await within(end, opts.timeoutMs);
  if (!e) throw first.err;
  return replyOfEnd(e, opts.commandId);
}

function replyOfEnd(end: ExecEnd, commandId: string): ExecReply {
  if ("error" in end) throw new ApiError(end.error.code, end.error.message);
  return { commandId, ...end, stdout: "", stderr: "" };
}

/** The end marker's outcome; one that is not what the daemon publishes is `bad_reply`. */
function parseEnd(m: Msg): ExecEnd {
  let v: unknown;
  try {
    v = m.json();
  } catch {
    v = undefined;
  }
  if (typeof v === "object" && v !== null) {
    if (
      "exitCode" in v &&
      typeof v.exitCode === "number" &&
      "durationMs" in v &&
      typeof v.durationMs === "number"
    ) {
      const truncated = "truncated" in v && v.truncated === true;
      const timedOut = "timedOut" in v && v.timedOut === true;
      return { exitCode: v.exitCode, durationMs: v.durationMs, truncated, ...(timedOut ? { timedOut } : {}) };
    }
    const e = "error" in v ? v.error : undefined;
    if (typeof e === "object" && e !== null && "code" in e && typeof e.code === "string") {
      const message = "message" in e && typeof e.message === "string" ? e.message : e.code;
      return { error: { code: e.code, message } };
    }
  }
  return { error: { code: "bad_reply", message: "the command's end marker is not one corral publishes" } };
}

/** A pool name becomes one subject token: a dot or wildcard in it would address other subjects. */
function poolToken(pool: string): string {
  if (!isValidId(pool)) {
    throw new ApiError(
      "bad_request",
      `invalid pool name ${JSON.stringify(pool)}: use 1-128 characters of A-Z a-z 0-9 _ -`,
    );
  }
  return pool;
}

function requestFailure(subject: string, timeoutMs: number, err: unknown): ApiError {
  // nats-core wraps "no responders" in a RequestError; a timeout comes bare.
  const noResponders =
    err instanceof NoRespondersError ||
    (err instanceof RequestError && (err.isNoResponders() || err.cause instanceof NoRespondersError));
  if (noResponders) {
    return new ApiError("no_daemon", `no corral daemon answers on ${subject} — is \`corral up\` running?`);
  }
  if (err instanceof TimeoutError) {
    return new ApiError("timeout", `no reply on ${subject} within ${timeoutMs} ms`);
  }
  return new ApiError("request_failed", `request on ${subject} failed: ${(err as Error)?.message ?? err}`);
}

/** The JSON body, or the ApiError it (or the micro error headers) carries. */
function decodeReply<T>(subject: string, msg: Msg): T {
  const headerCode = msg.headers?.get(ServiceErrorCodeHeader) ?? "";
  let body: unknown;
  try {
    body = msg.data.length > 0 ? msg.json() : undefined;
  } catch {
    body = undefined;
  }
  if (isErrorReply(body)) {
    const e = (body as { error: unknown }).error as { code?: unknown; message?: unknown } | null;
    const code = typeof e?.code === "string" && e.code ? e.code : headerCode || "error";
    const message =
      typeof e?.message === "string" ? e.message : (msg.headers?.get(ServiceErrorHeader) ?? "unknown error");
    throw new ApiError(code, message);
  }
  if (headerCode) {
    // A responder that flagged an error without our JSON body: the headers are all there is.
    throw new ApiError(headerCode, msg.headers?.get(ServiceErrorHeader) || `error ${headerCode}`);
  }
  if (body === undefined || typeof body !== "object" || body === null) {
    throw new ApiError("bad_reply", `reply on ${subject} is not a JSON object`);
  }
  return body as T;
}
