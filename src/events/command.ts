import { z } from "../vendor/zod.ts";
import { defineEvent } from "./define.ts";

/** Commands sent to an agent: pending → sent → acked → completed | failed. */

const id = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "1-128 characters of A-Z a-z 0-9 _ -");
const ms = z.number().int().positive().max(86_400_000);

export const CommandCreated = defineEvent({
  type: "CommandCreated",
  v: 1,
  kind: "command",
  doc: "A command was queued for an agent.",
  schema: z.object({
    agentId: id,
    action: z.string().min(1).max(200),
    payload: z.record(z.string(), z.unknown()).default({}),
    maxRetries: z.number().int().min(0).max(100).default(3),
    timeouts: z
      .object({
        /** time to hand the command to the agent */
        pending: ms.default(5_000),
        /** time for the agent to acknowledge */
        sent: ms.default(10_000),
        /** time for the agent to finish after acknowledging */
        acked: ms.default(60_000),
      })
      .default({ pending: 5_000, sent: 10_000, acked: 60_000 }),
  }),
});

export const CommandSent = defineEvent({
  type: "CommandSent",
  v: 1,
  kind: "command",
  doc: "The command was delivered to the agent's inbox (attempt n).",
  schema: z.object({ attempt: z.number().int().min(1) }),
});

export const CommandAcked = defineEvent({
  type: "CommandAcked",
  v: 1,
  kind: "command",
  doc: "The agent acknowledged the command.",
  schema: z.object({ attempt: z.number().int().min(1) }),
});

export const CommandCompleted = defineEvent({
  type: "CommandCompleted",
  v: 1,
  kind: "command",
  doc: "The agent finished the command.",
  schema: z.object({ result: z.unknown().optional() }),
});

export const CommandFailed = defineEvent({
  type: "CommandFailed",
  v: 1,
  kind: "command",
  doc: "The agent reported that the command failed.",
  schema: z.object({ error: z.string().min(1), code: z.string().optional() }),
});

export const CommandTimedOut = defineEvent({
  type: "CommandTimedOut",
  v: 1,
  kind: "command",
  doc: "The deadline of the command's current state passed (delivered by the scheduler).",
  schema: z.object({ deadline: z.number().int().nonnegative() }),
});

export const CommandCancelled = defineEvent({
  type: "CommandCancelled",
  v: 1,
  kind: "command",
  doc: "The command was cancelled before it finished.",
  schema: z.object({ reason: z.string().min(1) }),
});

export const commandEvents = [
  CommandCreated,
  CommandSent,
  CommandAcked,
  CommandCompleted,
  CommandFailed,
  CommandTimedOut,
  CommandCancelled,
] as const;
