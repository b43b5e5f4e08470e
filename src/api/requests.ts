import { isValidId } from "../events/envelope.ts";
import { LEASE_ID } from "../events/lease-id.ts";
import { z } from "../vendor/zod.ts";
import { DEFAULT_ACQUIRE_TIMEOUT_MS, DEFAULT_EXEC_TIMEOUT_MS, MAX_EXEC_TIMEOUT_MS } from "./protocol.ts";

/** The request bodies of the pool API (protocol.ts), as the daemon checks them. */

/**
 * Names the chain of events a request starts (their correlationId: `corral trace <id>` finds them);
 * default: a new one, returned in the reply. An id as events use: a subject token.
 */
const correlationId = z.string().refine(isValidId, "1-128 characters of A-Z a-z 0-9 _ -").optional();

export const acquireRequest = z
  .object({
    /** How long to wait for a free agent (ms). */
    timeoutMs: z.number().int().min(0).max(600_000).default(DEFAULT_ACQUIRE_TIMEOUT_MS),
    /** Who holds the lease (free text, shown by status). */
    holder: z.string().max(200).optional(),
    /** Lease TTL (ms); default: the pool's. */
    ttlMs: z.number().int().min(100).max(86_400_000).optional(),
    /** Lets the caller cancel this acquire while it waits (`.cancel` with the same id). */
    requestId: z.string().min(1).max(128).optional(),
    correlationId,
  })
  .strict();

const leaseId = z.string().regex(LEASE_ID, "a lease id as acquire returned it (<agent id>.<uuid>)");
/** Any string: a wrong one is refused as lease_token_invalid by the broker, not as a bad request. */
const leaseToken = z.string().min(1, "the lease token acquire returned").max(256);
export const leaseRequest = z.object({ leaseId, leaseToken, correlationId }).strict();
export const renewRequest = z
  .object({ leaseId, leaseToken, ttlMs: z.number().int().min(100).max(86_400_000).optional(), correlationId })
  .strict();
export const cancelRequest = z.object({ requestId: z.string().min(1).max(128) }).strict();
export const closeRequest = z.object({ revokeLeases: z.boolean().default(false), correlationId }).strict();
/** Names the instance again: a stray or garbled message on the down subject stops nothing. */
export const downRequest = z.object({ instance: z.string().min(1).max(64) }).strict();

/** A command id a client picks (to subscribe to its output first): a lowercase UUID. */
export const COMMAND_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const argText = z.string().max(16 * 1024);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
/** Run a command in the leased agent (agentd's exec); the whole body stays under the API's cap. */
export const execRequest = z
  .object({
    leaseId,
    leaseToken,
    argv: z.array(argText).min(1, "at least the program to run").max(1024),
    /** Working directory in the agent (default: agentd's: the agent's home). */
    cwd: z.string().min(1).max(4096).optional(),
    /** Added to agentd's environment. Stored on the event stream as given: no secrets here. */
    env: z
      .record(z.string(), argText)
      .superRefine((e, ctx) => {
        const names = Object.keys(e);
        if (names.length > 256) ctx.addIssue({ code: "custom", message: "at most 256 variables" });
        const bad = names.find((n) => !ENV_NAME.test(n));
        if (bad !== undefined) {
          ctx.addIssue({
            code: "custom",
            message: `${JSON.stringify(bad.slice(0, 64))} is not a variable name`,
          });
        }
      })
      .optional(),
    /** Written to the command's stdin (UTF-8), which is then closed. */
    stdin: z.string().optional(),
    timeoutMs: z.number().int().min(1).max(MAX_EXEC_TIMEOUT_MS).default(DEFAULT_EXEC_TIMEOUT_MS),
    /** Names the command (and its output subject); default: a new one. Used once only. */
    commandId: z.string().regex(COMMAND_ID, "a lowercase UUID, new for each command").optional(),
    correlationId,
  })
  .strict();
export type ExecRequest = z.output<typeof execRequest>;
