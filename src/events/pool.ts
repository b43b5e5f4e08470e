import { z } from "../vendor/zod.ts";
import { defineEvent } from "./define.ts";
import { storedInitSchema } from "./template-init.ts";

/** Pools: config, and every spawn / retire / recycle decision the supervisor makes. */

const ms = z.number().int().nonnegative();
/** The daemon instance that runs the pool: one writer per pool. */
const instance = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "1-64 characters of A-Z a-z 0-9 _ -");
const agentId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "1-128 characters of A-Z a-z 0-9 _ -");

export const templateSchema = z.object({
  image: z.string().min(1).optional(),
  command: z.array(z.string()).min(1),
  env: z.record(z.string(), z.string()).default({}),
  workdir: z.string().optional(),
  mounts: z
    .array(
      z.object({ source: z.string().min(1), target: z.string().min(1), readOnly: z.boolean().optional() }),
    )
    .default([]),
  limits: z
    .object({
      memoryMb: z.number().int().positive().optional(),
      cpus: z.number().positive().optional(),
      pids: z.number().int().positive().optional(),
    })
    .default({}),
  stopGraceMs: ms.default(2_000),
  /** What agentd does before the agent is leased (template-init.ts); ssh keys only by digest. */
  init: storedInitSchema.optional(),
});

/** A pool's configuration as stored (durations already in ms, port range parsed). */
export const poolConfigSchema = z
  .object({
    runtime: z.enum(["docker", "process"]),
    min: z.number().int().min(0),
    /** Hard cap on agents, whatever the demand. */
    max: z.number().int().min(1),
    /** Idle agents to keep ready. */
    warm: z.number().int().min(0),
    idleTimeoutMs: ms,
    recycle: z.object({
      maxAgeMs: ms.optional(),
      maxLeases: z.number().int().positive().optional(),
      maxRecycles: z.number().int().min(0).optional(),
    }),
    maintenanceIntervalMs: z.number().int().min(100),
    /** Lease time-to-live; the holder renews before it runs out. */
    leaseTtlMs: z.number().int().min(100),
    /** The longest TTL an acquire or renew may ask for (absent in older events: DEFAULT_MAX_LEASE_TTL_MS). */
    maxLeaseTtlMs: z.number().int().min(100).optional(),
    /** Time for an agent to be created and started before it counts as failed. */
    startTimeoutMs: z.number().int().min(100),
    ports: z
      .object({
        low: z.number().int().min(1).max(65535),
        high: z.number().int().min(1).max(65535),
        perAgent: z.number().int().min(1),
        hostUrl: z.string().optional(),
        /** Host address docker publishes the ports on (absent: 127.0.0.1, loopback only). */
        bind: z.string().optional(),
      })
      .optional(),
    template: templateSchema,
  })
  .refine((c) => c.min <= c.max, { message: "min must be <= max", path: ["min"] })
  .refine((c) => c.warm <= c.max, { message: "warm must be <= max", path: ["warm"] });

export type PoolConfig = z.output<typeof poolConfigSchema>;

/** A pool's cap on lease TTLs when its config names none (`maxLeaseTtl` in corral.yaml). */
export const DEFAULT_MAX_LEASE_TTL_MS = 3_600_000;

export const PoolCreated = defineEvent({
  type: "PoolCreated",
  v: 1,
  kind: "pool",
  doc: "A pool was configured for the first time.",
  schema: z.object({ config: poolConfigSchema, instance }),
});

export const PoolReconfigured = defineEvent({
  type: "PoolReconfigured",
  v: 1,
  kind: "pool",
  doc: "The pool's configuration changed (applies to agents spawned from now on).",
  schema: z.object({ config: poolConfigSchema, instance }),
});

export const PoolAgentSpawned = defineEvent({
  type: "PoolAgentSpawned",
  v: 1,
  kind: "pool",
  doc: "The supervisor decided to start a new agent.",
  schema: z.object({ agentId, reason: z.enum(["min", "warm", "demand", "replace"]) }),
});

export const PoolAgentRetired = defineEvent({
  type: "PoolAgentRetired",
  v: 1,
  kind: "pool",
  doc: "The supervisor decided to stop an agent for good.",
  schema: z.object({
    agentId,
    reason: z.enum(["idle-timeout", "scale-down", "max-recycles", "closing", "unhealthy"]),
  }),
});

export const PoolAgentRecycled = defineEvent({
  type: "PoolAgentRecycled",
  v: 1,
  kind: "pool",
  doc: "The supervisor decided to recycle an agent: stop its instance, start a replacement.",
  schema: z.object({ agentId, reason: z.enum(["max-leases", "max-age", "lease-expired", "unhealthy"]) }),
});

export const PoolSpawnFailed = defineEvent({
  type: "PoolSpawnFailed",
  v: 2,
  kind: "pool",
  doc: "An agent could not be started; the pool spawns nothing before retryAt (backoff by streak).",
  schema: z.object({
    agentId,
    code: z.string().min(1),
    message: z.string(),
    streak: z.number().int().min(1),
    retryAt: z.number().int(),
  }),
});

export const PoolOrphanRemoved = defineEvent({
  type: "PoolOrphanRemoved",
  v: 1,
  kind: "pool",
  doc: "At start, an instance of this daemon that no live agent owns was found; then removed.",
  schema: z.object({
    instanceId: z.string().min(1),
    agentId: z.string(),
    generation: z.number().int().min(0),
    runtime: z.enum(["docker", "process"]),
  }),
});

export const PoolCloseRequested = defineEvent({
  type: "PoolCloseRequested",
  v: 1,
  kind: "pool",
  doc: "No new leases; agents are drained and stopped.",
  schema: z.object({ reason: z.string().default("requested") }),
});

export const PoolClosed = defineEvent({
  type: "PoolClosed",
  v: 1,
  kind: "pool",
  doc: "Every agent of the pool has stopped.",
  schema: z.object({}),
});

export const PoolReopened = defineEvent({
  type: "PoolReopened",
  v: 1,
  kind: "pool",
  doc: "A closed pool was opened again (by `corral up`).",
  schema: z.object({ config: poolConfigSchema, instance }),
});

export const poolEvents = [
  PoolCreated,
  PoolReconfigured,
  PoolAgentSpawned,
  PoolAgentRetired,
  PoolAgentRecycled,
  PoolSpawnFailed,
  PoolOrphanRemoved,
  PoolCloseRequested,
  PoolClosed,
  PoolReopened,
] as const;
