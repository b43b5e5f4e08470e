import type { ExecMsg } from "../../agentd/protocol.ts";
import { EXEC_REACH_MS } from "../../api/protocol.ts";
import type { ExecRequest } from "../../api/requests.ts";
import { z } from "../../vendor/zod.ts";
import type { Input } from "../actor-host.ts";

/**
 * An exec as the command aggregate stores it (CommandCreated, action "exec"): what agentd needs
 * to run it again after a restart, and the lease it ran under. Read back from our own stream, it
 * is parsed again so the dispatcher works on a typed view, never on a cast.
 */

export const EXEC_ACTION = "exec";
/** Time for agentd to acknowledge a sent command, and to report after its own timeout. */
const ACK_MS = 10_000;
const REPORT_GRACE_MS = 15_000;
/** A retry re-sends the same command id: agentd runs it at most once (src/agentd/protocol.ts). */
const MAX_RETRIES = 2;

const execPayload = z.object({
  leaseId: z.string(),
  argv: z.array(z.string()).min(1),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()).optional(),
  stdin: z.string().optional(),
  timeoutMs: z.number().int().positive(),
});
export type ExecPayload = z.infer<typeof execPayload>;

export function createdInput(agentId: string, req: ExecRequest): Input<"CommandCreated"> {
  const payload: ExecPayload = { leaseId: req.leaseId, argv: req.argv, timeoutMs: req.timeoutMs };
  if (req.cwd !== undefined) payload.cwd = req.cwd;
  if (req.env !== undefined) payload.env = req.env;
  if (req.stdin !== undefined) payload.stdin = req.stdin;
  return {
    type: "CommandCreated",
    data: {
      agentId,
      action: EXEC_ACTION,
      payload,
      maxRetries: MAX_RETRIES,
      // Each attempt waits its share of EXEC_REACH_MS for a session, so all of them wait that long.
      timeouts: {
        pending: EXEC_REACH_MS / (MAX_RETRIES + 1),
        sent: ACK_MS,
        acked: req.timeoutMs + REPORT_GRACE_MS,
      },
    },
  };
}

const utf8 = new TextEncoder();

/** The lease a stored exec ran under. */
export function leaseOfPayload(payload: Record<string, unknown>): string {
  return execPayload.parse(payload).leaseId;
}

/** The exec frame for a stored payload; throws naming the field if the payload is not an exec's. */
export function execMsg(commandId: string, payload: Record<string, unknown>): ExecMsg {
  const p = execPayload.parse(payload);
  const msg: ExecMsg = { t: "exec", id: commandId, argv: p.argv, timeoutMs: p.timeoutMs };
  if (p.cwd !== undefined) msg.cwd = p.cwd;
  if (p.env !== undefined) msg.env = p.env;
  if (p.stdin !== undefined) msg.stdin = utf8.encode(p.stdin);
  return msg;
}
