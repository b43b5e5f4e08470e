import type { NatsConnection } from "@nats-io/nats-core";
import { type Service, type ServiceMsg, Svcm } from "@nats-io/services";
import type { Logger } from "pino";
import type { z } from "zod";
import type { ControlPlane } from "../cp/control-plane.ts";
import { InvalidInputError, PoolError, RejectedInputError } from "../cp/errors.ts";
import { portEnv, portUrls } from "../ports/env.ts";
import { type AcquireReply, subjects } from "./protocol.ts";
import { acquireRequest, cancelRequest, closeRequest, leaseRequest, renewRequest } from "./requests.ts";

const utf8 = new TextDecoder();

class BadRequest extends PoolError {
  constructor(message: string) {
    super("bad_request", message);
  }
}

function parse<S extends z.ZodType>(schema: S, msg: ServiceMsg): z.output<S> {
  let raw: unknown = {};
  if (msg.data.length > 0) {
    try {
      raw = JSON.parse(utf8.decode(msg.data));
    } catch {
      throw new BadRequest("request body is not JSON");
    }
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    throw new BadRequest(r.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "));
  }
  return r.data;
}

export interface ApiOptions {
  log: Logger;
  /** Pool metrics and details for `.status` (from the worldview). */
  status(pool: string): Promise<unknown>;
  /** `corral down`: close every pool and stop every agent (the daemon exits after replying). */
  onDown?(): Promise<void>;
  version?: string;
}

/**
 * corral's NATS service (NATS micro, so `nats micro ls/info/stats` discovers it). Every endpoint
 * answers JSON; errors are `{ error: { code, message } }` plus the micro error headers.
 */
export async function startApi(nc: NatsConnection, cp: ControlPlane, opts: ApiOptions): Promise<Service> {
  const svc = await new Svcm(nc).add({
    name: "corral",
    version: opts.version ?? "0.1.0",
    description: "corral control plane: warm pools of coding agents",
    queue: "corral",
  });
  const waiting = new Map<string, AbortController>();

  const endpoint = (name: string, subject: string, handle: (msg: ServiceMsg) => Promise<unknown>) => {
    svc.addEndpoint(name, {
      subject,
      handler: (err, msg) => {
        if (err) {
          opts.log.error({ err, endpoint: name }, "endpoint subscription failed");
          return;
        }
        handle(msg).then(
          (reply) => msg.respond(JSON.stringify(reply)),
          (e: unknown) => {
            const known =
              e instanceof PoolError || e instanceof InvalidInputError || e instanceof RejectedInputError;
            const code =
              e instanceof PoolError
                ? e.code
                : e instanceof RejectedInputError
                  ? "rejected"
                  : known
                    ? "bad_request"
                    : "internal";
            const message = (e as Error).message ?? String(e);
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
      try {
        const g = await cp.pool(pool).acquire({
          timeoutMs: req.timeoutMs,
          holder: req.holder,
          ttlMs: req.ttlMs,
          signal: abort?.signal,
        });
        const hostUrl = cp.pool(pool).config?.ports?.hostUrl;
        const reply: AcquireReply = {
          leaseId: g.leaseId,
          pool: g.pool,
          agentId: g.agentId,
          generation: g.generation,
          ports: g.ports,
          urls: portUrls(g.ports, hostUrl),
          env: portEnv(g.ports, hostUrl),
          expiresAt: new Date(g.expiresAt).toISOString(),
          ttlMs: g.ttlMs,
          reach: { runtime: g.runtime, instanceId: g.instanceId, host: "127.0.0.1" },
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
      const { leaseId } = parse(leaseRequest, msg);
      return { ...(await cp.pool(pool).release(leaseId)), pool };
    });
    endpoint(`renew-${pool}`, subjects.renew(pool), async (msg) => {
      const req = parse(renewRequest, msg);
      const r = await cp.pool(pool).renew(req.leaseId, req.ttlMs);
      return { leaseId: r.leaseId, expiresAt: new Date(r.expiresAt).toISOString() };
    });
    endpoint(`status-${pool}`, subjects.status(pool), async () => opts.status(pool));
    endpoint(`close-${pool}`, subjects.close(pool), async (msg) => {
      const { revokeLeases } = parse(closeRequest, msg);
      await cp.pool(pool).close({ reason: "api", revokeLeases });
      return { pool, state: "closed" };
    });
  }
  endpoint("pools", subjects.poolsList, async () => ({
    pools: await Promise.all(cp.poolNames().map((name) => opts.status(name))),
  }));
  endpoint("down", subjects.down, async () => {
    if (!opts.onDown) throw new PoolError("unsupported", "this daemon cannot be stopped over the API");
    await opts.onDown();
    return { stopped: true };
  });
  // Subscriptions go out buffered: without a round trip, a client told "corral is up" could
  // still get "no responders" from a server that has not seen them yet.
  await nc.flush();
  return svc;
}
