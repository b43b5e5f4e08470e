import { z } from "../vendor/zod.ts";

/**
 * A pool template's init plan (`template.init`) as PoolCreated stores it: what the control plane
 * asks each agent's agentd to do before the agent is leased (src/cp/init/plan.ts). Every part is
 * optional. SSH private keys are secrets: the stream names each by its SHA-256 only; the content
 * comes from the daemon's own config (src/cp/init/template.ts), never from an event.
 */

/** A path under the agent's home: relative, no `..` (agentd checks it again after resolving). */
export const homePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "must be relative to the home, no '..'");

/** One line of a file (known_hosts): no line breaks. */
export const fileLine = z
  .string()
  .min(1)
  .max(16 * 1024)
  .refine((l) => !/[\r\n]/.test(l), "must be one line");

/** A key file's name in ~/.ssh: a plain file name. */
export const keyName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "must be a plain file name");

/** An argument git must not read as an option. */
const gitArg = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((r) => !r.startsWith("-"), "must not start with '-'");

export const configFileSchema = z.strictObject({
  path: homePath,
  content: z.string().max(1024 * 1024),
  mode: z.number().int().min(0).max(0o7777).optional(),
});

export const gitSchema = z.strictObject({
  repo: gitArg(4096),
  ref: gitArg(256).optional(),
  /** Where under the home (default: the repo's base name without `.git`). */
  dir: homePath.optional(),
  mode: z.enum(["clone", "worktree"]).default("clone"),
});

export const postInitSchema = z.strictObject({
  argv: z.array(z.string().max(64 * 1024)).min(1),
  /** Default DEFAULT_POST_INIT_TIMEOUT_MS. */
  timeoutMs: z.number().int().positive().max(86_400_000).optional(),
});

export const storedInitSchema = z.strictObject({
  config: z.strictObject({ files: z.array(configFileSchema).min(1).max(1000) }).optional(),
  git: gitSchema.optional(),
  ssh: z
    .strictObject({
      knownHosts: z.array(fileLine).max(1000).optional(),
      keys: z
        .array(z.strictObject({ name: keyName, sha256: z.string().regex(/^[0-9a-f]{64}$/, "SHA-256, hex") }))
        .max(100)
        .optional(),
    })
    .optional(),
  postInit: postInitSchema.optional(),
  /** Each step's timeout but post-init's (default DEFAULT_STEP_TIMEOUT_MS). */
  stepTimeoutMs: z.number().int().positive().max(86_400_000).optional(),
});

export type StoredInit = z.output<typeof storedInitSchema>;

export const DEFAULT_STEP_TIMEOUT_MS = 30_000;
export const DEFAULT_POST_INIT_TIMEOUT_MS = 600_000;
