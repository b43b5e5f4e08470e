import { z } from "../vendor/zod.ts";
import { defineEvent } from "./define.ts";
import { LEASE_ID } from "./lease-id.ts";

/** One agent: its instances (generations) in a runtime, its ports, its leases (a lease is a phase of its agent). */

const id = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "1-128 characters of A-Z a-z 0-9 _ -");
const generation = z.number().int().min(1);
const leaseId = z.string().regex(LEASE_ID, "<agent id>.<uuid>, as the acquire reply gave it");

export const AgentRequested = defineEvent({
  type: "AgentRequested",
  v: 1,
  kind: "agent",
  doc: "The pool asked for this agent; next it gets its host ports.",
  schema: z.object({ poolId: id, runtime: z.enum(["docker", "process"]), deadline: z.number().int() }),
});

export const AgentPortsAllocated = defineEvent({
  type: "AgentPortsAllocated",
  v: 1,
  kind: "agent",
  doc: "Host ports were reserved for this generation (released when it stops, fails or is recycled).",
  schema: z.object({ generation, ports: z.array(z.number().int().min(1).max(65535)) }),
});

export const AgentCreated = defineEvent({
  type: "AgentCreated",
  v: 1,
  kind: "agent",
  doc: "The runtime created the instance (container or process record), not yet started.",
  schema: z.object({ generation, instanceId: z.string().min(1) }),
});

export const AgentStarted = defineEvent({
  type: "AgentStarted",
  v: 1,
  kind: "agent",
  doc: "The instance runs and answers: the agent is ready for leases.",
  schema: z.object({ generation }),
});

export const AgentLeased = defineEvent({
  type: "AgentLeased",
  v: 2,
  kind: "agent",
  doc: "A lease was granted on this agent: the acquire's one event. The lease id carries the agent id.",
  schema: z.object({
    leaseId,
    poolId: id,
    holder: z.string().max(200).default(""),
    ttlMs: z.number().int().positive(),
    expiresAt: z.number().int(),
    /** SHA-256 (base64url) of the lease token the acquire reply carried; the token itself is never stored. */
    tokenHash: z
      .string()
      .regex(/^[A-Za-z0-9_-]{43}$/, "SHA-256, base64url")
      .optional(),
  }),
});

export const AgentLeaseRenewed = defineEvent({
  type: "AgentLeaseRenewed",
  v: 1,
  kind: "agent",
  doc: "The holder extended its lease to expiresAt (a renewal must extend it).",
  schema: z.object({ leaseId, expiresAt: z.number().int() }),
});

export const AgentReleased = defineEvent({
  type: "AgentReleased",
  v: 2,
  kind: "agent",
  doc: "The holder gave the agent back; it is idle again (or stops, if it was draining).",
  schema: z.object({ leaseId }),
});

export const AgentLeaseExpired = defineEvent({
  type: "AgentLeaseExpired",
  v: 1,
  kind: "agent",
  doc: "The holder did not renew in time; the agent's state is unknown, so the pool renews it.",
  schema: z.object({ leaseId, deadline: z.number().int() }),
});

export const AgentLeaseRevoked = defineEvent({
  type: "AgentLeaseRevoked",
  v: 1,
  kind: "agent",
  doc: "corral ended the lease (the pool is closing); the agent is idle, or stops if draining.",
  schema: z.object({ leaseId, reason: z.string().min(1) }),
});

export const AgentRecycleRequested = defineEvent({
  type: "AgentRecycleRequested",
  v: 1,
  kind: "agent",
  doc: "Stop this instance and start a new generation (state unknown, limits reached, unhealthy).",
  schema: z.object({ reason: z.string().min(1), deadline: z.number().int() }),
});

export const AgentRecycled = defineEvent({
  type: "AgentRecycled",
  v: 1,
  kind: "agent",
  doc: "The old instance is gone and its ports released; a new generation is requested.",
  schema: z.object({ generation, deadline: z.number().int() }),
});

export const AgentDrainRequested = defineEvent({
  type: "AgentDrainRequested",
  v: 1,
  kind: "agent",
  doc: "No new leases; stop once the current lease (if any) ends.",
  schema: z.object({ reason: z.string().min(1), deadline: z.number().int() }),
});

export const AgentStopped = defineEvent({
  type: "AgentStopped",
  v: 1,
  kind: "agent",
  doc: "The instance was stopped and removed; its ports are released.",
  schema: z.object({}),
});

export const AgentFailed = defineEvent({
  type: "AgentFailed",
  v: 1,
  kind: "agent",
  doc: "The agent failed (spawn error, died, timed out); its instance is removed and ports released.",
  schema: z.object({ phase: z.string().min(1), code: z.string().min(1), message: z.string() }),
});

export const AgentTimedOut = defineEvent({
  type: "AgentTimedOut",
  v: 1,
  kind: "agent",
  doc: "The deadline of the agent's current step passed (delivered by the scheduler).",
  schema: z.object({ deadline: z.number().int() }),
});

// Identity and the init plan (ARCHITECTURE.md, "Sessions, identity and init"): after AgentStarted
// the control plane dials the agent's agentd, registers its certificate, then runs the init plan.

/** Why an agent is not trusted; the peer only ever hears "registration rejected". */
export const UNTRUSTED_REASONS = [
  "no_peer_cert",
  "chain_invalid",
  "no_san",
  "malformed_san",
  "san_mismatch",
  "cn_mismatch",
  "unknown_agent",
  "label_mismatch",
  "address_mismatch",
  "ambiguous_address",
  "cert_thumbprint_mismatch",
  "thumbprint_in_use",
  "bad_register",
  "register_timeout",
  "init_bypassed",
] as const;

const thumbprint = z.string().regex(/^[0-9a-f]{64}$/, "SHA-256, lowercase hex");
const stepName = z.enum(["config", "git", "ssh", "post-init", "agent-ready"]);
const stepIndex = z.number().int().min(0);
/** Human-readable diagnostic, with the last of the step's stderr: never more than 4 KiB. */
const detail = z.string().max(4096);

export const AgentRegistered = defineEvent({
  type: "AgentRegistered",
  v: 1,
  kind: "agent",
  doc: "The agent's certificate passed every register cross-check; its thumbprint is its identity for this generation.",
  schema: z.object({ generation, thumbprint, peerCN: z.string().min(1).max(256) }),
});

export const AgentUntrusted = defineEvent({
  type: "AgentUntrusted",
  v: 1,
  kind: "agent",
  doc: "An identity check failed (reason says which). The session stays open; the agent is never leased and is recycled.",
  schema: z.object({ generation, reason: z.enum(UNTRUSTED_REASONS), detail }),
});

export const InitStarted = defineEvent({
  type: "InitStarted",
  v: 1,
  kind: "agent",
  doc: "The init plan began (again after a reconnect: every step is idempotent); it must end by `deadline`.",
  schema: z.object({ generation, stepCount: z.number().int().min(1), deadline: z.number().int() }),
});

export const InitStepStarted = defineEvent({
  type: "InitStepStarted",
  v: 1,
  kind: "agent",
  doc: "One step of the init plan was sent to agentd.",
  schema: z.object({ generation, name: stepName, index: stepIndex, of: z.number().int().min(1) }),
});

export const InitStepCompleted = defineEvent({
  type: "InitStepCompleted",
  v: 1,
  kind: "agent",
  doc: "A step finished with exit code 0 (`skipped` when agentd said it had already run).",
  schema: z.object({
    generation,
    name: stepName,
    index: stepIndex,
    exitCode: z.number().int(),
    durationMs: z.number().int().min(0),
    skipped: z.boolean().default(false),
  }),
});

export const InitStepFailed = defineEvent({
  type: "InitStepFailed",
  v: 1,
  kind: "agent",
  doc: "A step failed: a non-zero exit, a timeout, an agentd error or a lost session. The plan stops here.",
  schema: z.object({
    generation,
    name: stepName,
    index: stepIndex,
    reason: z.enum(["exit_code", "timeout", "error", "session_lost"]),
    detail,
    exitCode: z.number().int().nullable(),
    durationMs: z.number().int().min(0),
  }),
});

export const InitCompleted = defineEvent({
  type: "InitCompleted",
  v: 1,
  kind: "agent",
  doc: "Every step succeeded: the agent is ready for leases.",
  schema: z.object({ generation, durationMs: z.number().int().min(0) }),
});

export const InitFailed = defineEvent({
  type: "InitFailed",
  v: 1,
  kind: "agent",
  doc: "The init plan failed at `step`; the agent fails and the pool replaces it.",
  schema: z.object({
    generation,
    step: stepName,
    reason: z.enum(["exit_code", "timeout", "error", "session_lost"]),
    detail,
  }),
});

export const agentEvents = [
  AgentRequested,
  AgentPortsAllocated,
  AgentCreated,
  AgentStarted,
  AgentLeased,
  AgentLeaseRenewed,
  AgentReleased,
  AgentLeaseExpired,
  AgentLeaseRevoked,
  AgentRecycleRequested,
  AgentRecycled,
  AgentDrainRequested,
  AgentStopped,
  AgentFailed,
  AgentTimedOut,
  AgentRegistered,
  AgentUntrusted,
  InitStarted,
  InitStepStarted,
  InitStepCompleted,
  InitStepFailed,
  InitCompleted,
  InitFailed,
] as const;
