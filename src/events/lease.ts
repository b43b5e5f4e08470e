import { z } from "zod";
import { defineEvent } from "./define.ts";

/** A lease: one holder's use of one agent, kept alive by renewing before its TTL runs out. */

const id = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "1-128 characters of A-Z a-z 0-9 _ -");

export const LeaseGranted = defineEvent({
  type: "LeaseGranted",
  v: 1,
  kind: "lease",
  doc: "An agent was leased to a holder until expiresAt (unless renewed).",
  schema: z.object({
    poolId: id,
    agentId: id,
    holder: z.string().max(200).default(""),
    ttlMs: z.number().int().positive(),
    expiresAt: z.number().int(),
  }),
});

export const LeaseRenewed = defineEvent({
  type: "LeaseRenewed",
  v: 1,
  kind: "lease",
  doc: "The holder renewed the lease.",
  schema: z.object({ expiresAt: z.number().int() }),
});

export const LeaseReleased = defineEvent({
  type: "LeaseReleased",
  v: 1,
  kind: "lease",
  doc: "The holder gave the agent back.",
  schema: z.object({}),
});

export const LeaseExpired = defineEvent({
  type: "LeaseExpired",
  v: 1,
  kind: "lease",
  doc: "The holder did not renew in time; the agent is recycled (its state is unknown).",
  schema: z.object({ deadline: z.number().int() }),
});

export const LeaseRevoked = defineEvent({
  type: "LeaseRevoked",
  v: 1,
  kind: "lease",
  doc: "corral ended the lease (agent failed, pool closed, or inconsistency found in recovery).",
  schema: z.object({ reason: z.string().min(1) }),
});

export const leaseEvents = [LeaseGranted, LeaseRenewed, LeaseReleased, LeaseExpired, LeaseRevoked] as const;
