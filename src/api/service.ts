import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Service, ServiceMsg } from "@nats-io/services";
import type { Logger } from "pino";
import type { z } from "zod";
import type { ControlPlane } from "../cp/control-plane.ts";
import { InvalidInputError, PoolError } from "../cp/errors.ts";
import { uuidv7 } from "../events/id.ts";
import { portEnv, portUrls } from "../ports/env.ts";
import { Svcm } from "../vendor/nats.ts";
import { type AcquireReply, type DaemonInfo, type ExecReply, subjects } from "./protocol.ts";
import {
  acquireRequest,
  cancelRequest,
  closeRequest,
  downRequest,
  type ExecRequest,
  execRequest,
  leaseRequest,
  renewRequest,
} from "./requests.ts";

const utf8 = new TextDecoder();

/** Every request body is small; a bigger one is refused before it is parsed. */
export const MAX_BODY_BYTES = 64 * 1024;
/** An error message quotes at most this much of what it was sent (zod names unknown keys). */
const MAX_MESSAGE_CHARS = 500;

class BadRequest extends PoolError {
  constructor(message: string) {
    super("bad_request", message);
  }
}

/**
 * The correlation a request's events carry: the caller's own, or a new one. The reply returns it,
 * so `corral trace <it>` shows what the request caused (src/cli/trace.ts).
 */
function correlationOf(req: { correlationId?: string }): string {
  return req.correlationId ?? uuidv7();
}

function parse<S extends z.ZodType>(schema: S, msg: ServiceMsg): z.output<S> {
  let raw: unknown = {};
  if (msg.data.length > MAX_BODY_BYTES) {
    throw new BadRequest(`request body is ${msg.data.length} bytes, more than ${MAX_BODY_BYTES}`);
  }
  if (msg.data.length > 0) {
    try {
      raw = JSON.parse(utf8.decode(msg.data));
    } catch {
      throw new BadRequest("request body is not JSON");
    }
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const text = r.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
    throw new BadRequest(text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}…` : text);
  }
  return r.data;
}

export interface ApiOptions {
  log: Logger;
  /** This daemon's instance: names its `down` subject and its queue group. */
  instance: string;
  /** Pool metrics and details for `.status` (from the worldview). */
  status(pool: string): Promise<unknown>;
  /** Instances that run an open pool, as the stream says: whom a gathering client waits for. */
  instances(): Promise<string[]>;
  /** Runs commands in leased agents (src/cp/exec/); without it, exec answers `unsupported`. */
  exec?: { run(pool: string, req: ExecRequest): Promise<ExecReply> };
  /** `corral down`: close every pool and stop every agent (the daemon exits after replying). */
  onDown?(): Promise<void>;
  version?: string;
}

/**
 * corral's NATS service (NATS micro, so `nats micro ls/info/stats` discovers it). Every endpoint
 * answers JSON; errors are `{ error: { code, message } }` plus the micro error headers.
 *
 * Who answers: a pool's endpoints and `down` are on subjects only this daemon serves (its pools,
 * its instance), in a queue group of this instance alone — never one shared with another daemon,
 * so no request reaches the wrong one. `pools.list` has no queue group: every daemon answers and
 * the client gathers the replies. A request without a reply subject is dropped, never acted on
 * (no lease to nobody, no `down` from a stray publish).
 */
export async function startApi(nc: NatsConnection, cp: ControlPlane, opts: ApiOptions): Promise<Service> {
  const svc = await new Svcm(nc).add({
    name: "corral",
    version: opts.version ?? "0.1.0",
    description: "corral control plane: warm pools of coding agents",
    metadata: { instance: opts.instance },
    queue: "", // none by default; each endpoint below says which it needs
  });
  const ownQueue = `corral-${opts.instance}`;
  const waiting = new Map<string, AbortController>();

  const endpoint = (
    name: string,
    subject: string,
    handle: (msg: ServiceMsg) => Promise<unknown>,
    queue: string = ownQueue,
  ) => {
    svc.addEndpoint(name, {
      subject,
      queue,
      handler: (err, msg) => {
        if (err) {
          opts.log.error({ err, endpoint: name }, "endpoint subscription failed");
          return;
        }
        if (!msg.reply) {
          opts.log.warn({ endpoint: name, subject: msg.subject }, "request without a reply subject dropped");
          return;
        }
        handle(msg).then(
          (reply) => msg.respond(JSON.stringify(reply)),
          (e: unknown) => {
            // Every refusal an operation expects is a PoolError with its code (README, The API);
            // anything else (a refusal no operation handles included) is a defect: internal.
            const known = e instanceof PoolError || e instanceof InvalidInputError;
            const code = e instanceof PoolError ? e.code : known ? "bad_request" : "internal";
            // A defect's own message may name internals (hosts, paths): it goes to the log only.
            const message = known
              ? ((e as Error).message ?? String(e))
              : `internal error in ${name}; the daemon's log has the details`;
            if (!known) opts.log.error({ err: e, endpoint: name }, "request failed");
            msg.respondError(
              code === "internal" ? 500 : 400,
              message,
              JSON.stringify({ error: { code, message } }),
            );
          },
        );
      },
    });
  };

  // One set of endpoints per pool, on the pool's own subjects: only the daemon that runs a pool
  // answers for it, so several daemons (instances) can share one NATS.
  for (const pool of cp.poolNames()) {
    endpoint(`acquire-${pool}`, subjects.acquire(pool), async (msg) => {
      const req = parse(acquireRequest, msg);
      // Only an acquire with a requestId can be cancelled: the others need no signal.
      const abort = req.requestId ? new AbortController() : undefined;
      if (req.requestId && abort) waiting.set(req.requestId, abort);
      const correlationId = correlationOf(req);
      try {
        const g = await cp.pool(pool).acquire({
          timeoutMs: req.timeoutMs,
          holder: req.holder,
          ttlMs: req.ttlMs,
          signal: abort?.signal,
          correlationId,
        });
        const hostUrl = cp.pool(pool).config?.ports?.hostUrl;
        const reply: AcquireReply = {
          leaseId: g.leaseId,
          leaseToken: g.leaseToken,
          pool: g.pool,
          agentId: g.agentId,
          generation: g.generation,
          ports: g.ports,
          urls: portUrls(g.ports, hostUrl),
          env: portEnv(g.ports, hostUrl),
          expiresAt: new Date(g.expiresAt).toISOString(),
          ttlMs: g.ttlMs,
          reach: { runtime: g.runtime, instanceId: g.instanceId, host: "127.0.0.1" },
          correlationId,
        };
        return reply;
      } finally {
        if (req.requestId) waiting.delete(req.requestId);
      }
    });
    endpoint(`cancel-${pool}`, subjects.cancel(pool), async (msg) => {
      const { requestId } = parse(cancelRequest, msg);
      const abort = waiting.get(requestId);
      abort?.abort();
      return { requestId, cancelled: abort !== undefined };
    });
    endpoint(`release-${pool}`, subjects.release(pool), async (msg) => {
      const req = parse(leaseRequest, msg);
      const correlationId = correlationOf(req);
      return {
        ...(await cp.pool(pool).release(req.leaseId, req.leaseToken, correlationId)),
        pool,
        correlationId,
      };
    });
    endpoint(`renew-${pool}`, subjects.renew(pool), async (msg) => {
      const req = parse(renewRequest, msg);
      const correlationId = correlationOf(req);
      const r = await cp.pool(pool).renew(req.leaseId, req.leaseToken, req.ttlMs, correlationId);
      return { leaseId: r.leaseId, expiresAt: new Date(r.expiresAt).toISOString(), correlationId };
    });
    endpoint(`exec-${pool}`, subjects.exec(pool), async (msg) => {
      const req = parse(execRequest, msg);
      if (!opts.exec) throw new PoolError("unsupported", "this daemon does not run commands in agents");
      return opts.exec.run(pool, { ...req, correlationId: correlationOf(req) });
    });
    endpoint(`status-${pool}`, subjects.status(pool), async () => opts.status(pool));
    endpoint(`close-${pool}`, subjects.close(pool), async (msg) => {
      const req = parse(closeRequest, msg);
      const correlationId = correlationOf(req);
      await cp.pool(pool).close({ reason: "api", revokeLeases: req.revokeLeases, correlationId });
      return { pool, state: "closed", correlationId };
    });
  }
  endpoint(
    "pools",
    subjects.poolsList,
    async () => ({
      instance: opts.instance,
      pools: await Promise.all(cp.poolNames().map((name) => opts.status(name))),
      instances: await opts.instances(),
    }),
    "",
  );
  endpoint("down", subjects.down(opts.instance), async (msg) => {
    const { instance } = parse(downRequest, msg);
    if (instance !== opts.instance) {
      throw new BadRequest(`instance: ${JSON.stringify(instance)} is not this daemon's (${opts.instance})`);
    }
    if (!opts.onDown) throw new PoolError("unsupported", "this daemon cannot be stopped over the API");
    await opts.onDown();
    return { stopped: true };
  });
  const info: DaemonInfo = {
    instance: opts.instance,
    pid: process.pid,
    host: hostname(),
    since: new Date().toISOString(),
    version: opts.version ?? "0.1.0",
    pools: cp.poolNames(),
  };
  endpoint("info", subjects.info(opts.instance), async () => info);
  // Subscriptions go out buffered: without a round trip, a client told "corral is up" could
  // still get "no responders" from a server that has not seen them yet.
  await nc.flush();
  return svc;
}
