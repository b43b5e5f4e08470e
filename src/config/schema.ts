import { DEFAULT_MAX_LEASE_TTL_MS } from "../events/pool.ts";
import { configFileSchema, fileLine, gitSchema, keyName } from "../events/template-init.ts";
import { MetricsAddressError, parseMetricsAddress } from "../metrics/address.ts";
import { PortConfigError, parsePortConfig } from "../ports/range.ts";
import { z } from "../vendor/zod.ts";
import { parseDuration } from "./duration.ts";
import { natsSettings } from "./nats.ts";

/** corral.yaml as people write it: durations like "5m", port ranges like "8000-9000". */

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(v)} is not a duration (use e.g. 500ms, 30s, 5m, 2h)`,
    });
    return z.NEVER;
  }
  return ms;
});

const ports = z.unknown().transform((v, ctx) => {
  try {
    const p = parsePortConfig(v, "");
    return {
      low: p.low,
      high: p.high,
      perAgent: p.perAgent,
      ...(p.hostUrl ? { hostUrl: p.hostUrl } : {}),
      ...(p.bind ? { bind: p.bind } : {}),
    };
  } catch (err) {
    if (!(err instanceof PortConfigError)) throw err;
    ctx.addIssue({ code: "custom", message: err.detail, path: err.field.split(".").filter(Boolean) });
    return z.NEVER;
  }
});

const mountObject = z
  .object({ source: z.string().min(1), target: z.string().min(1), readOnly: z.boolean().optional() })
  .strict();

/** "SOURCE:TARGET[:ro|rw]" or { source, target, readOnly }; one message for either form. */
const mount = z.unknown().transform((v, ctx) => {
  if (typeof v === "string") {
    const [source, target, mode, ...rest] = v.split(":");
    if (!source || !target || rest.length > 0 || (mode && mode !== "ro" && mode !== "rw")) {
      ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} is not SOURCE:TARGET[:ro|rw]` });
      return z.NEVER;
    }
    return { source, target, readOnly: mode === "ro" };
  }
  const r = mountObject.safeParse(v);
  if (!r.success) {
    for (const i of r.error.issues) ctx.addIssue({ code: "custom", message: i.message, path: i.path });
    if (typeof v !== "object" || v === null)
      ctx.addIssue({
        code: "custom",
        message: 'expected "SOURCE:TARGET[:ro|rw]" or { source, target, readOnly }',
      });
    return z.NEVER;
  }
  return r.data;
});

/** A file mode: a number, or octal digits in a string ("0600"; YAML reads a bare 0600 as decimal 600). */
const fileMode = z.union([
  z.number().int().min(0).max(0o7777),
  z
    .string()
    .regex(/^0?[0-7]{3,4}$/, 'must be octal digits like "0644"')
    .transform((m) => Number.parseInt(m, 8)),
]);

/** The init plan (src/cp/init/plan.ts). SSH key contents stay in this config: never in an event. */
const init = z
  .object({
    config: z
      .object({
        files: z
          .array(configFileSchema.extend({ mode: fileMode.optional() }))
          .min(1)
          .max(1000),
      })
      .strict()
      .optional(),
    git: gitSchema.optional(),
    ssh: z
      .object({
        knownHosts: z.array(fileLine).max(1000).optional(),
        keys: z
          .array(
            z
              .object({
                name: keyName,
                content: z
                  .string()
                  .min(1)
                  .max(64 * 1024),
              })
              .strict(),
          )
          .max(100)
          .refine((keys) => new Set(keys.map((k) => k.name)).size === keys.length, "two keys with one name")
          .optional(),
      })
      .strict()
      .optional(),
    postInit: z
      .object({ argv: z.array(z.string().max(64 * 1024)).min(1), timeout: duration.optional() })
      .strict()
      .optional(),
    /** Each step's timeout but post-init's. */
    stepTimeout: duration.optional(),
  })
  .strict();

const template = z
  .object({
    image: z.string().min(1).optional(),
    command: z.array(z.string()).min(1),
    env: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
    workdir: z.string().optional(),
    mounts: z.array(mount).default([]),
    limits: z
      .object({
        memoryMb: z.number().int().positive().optional(),
        cpus: z.number().positive().optional(),
        pids: z.number().int().positive().optional(),
      })
      .strict()
      .default({}),
    stopGrace: duration.default(2_000),
    init: init.optional(),
  })
  .strict();

const pool = z
  .object({
    runtime: z.enum(["auto", "docker", "process"]).default("auto"),
    min: z.number().int().min(0).default(0),
    max: z.number().int().min(1).default(10),
    warm: z.number().int().min(0).default(1),
    idleTimeout: duration.default(300_000),
    recycle: z
      .object({
        maxAge: duration.optional(),
        maxLeases: z.number().int().positive().optional(),
        maxRecycles: z.number().int().min(0).optional(),
      })
      .strict()
      .default({}),
    maintenanceInterval: duration.default(5_000),
    leaseTtl: duration.default(60_000),
    /** The longest TTL an acquire or renew may ask for. */
    maxLeaseTtl: duration.default(DEFAULT_MAX_LEASE_TTL_MS),
    startTimeout: duration.default(60_000),
    ports: ports.optional(),
    /** Omitted: the built-in hello agent (answers HTTP on CORRAL_PORT_A with its id). */
    template: template.optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.min > p.max)
      ctx.addIssue({ code: "custom", path: ["min"], message: `min (${p.min}) must be <= max (${p.max})` });
    if (p.warm > p.max)
      ctx.addIssue({ code: "custom", path: ["warm"], message: `warm (${p.warm}) must be <= max (${p.max})` });
    if (p.leaseTtl > p.maxLeaseTtl)
      ctx.addIssue({
        code: "custom",
        path: ["leaseTtl"],
        message: `leaseTtl (${p.leaseTtl} ms) must be <= maxLeaseTtl (${p.maxLeaseTtl} ms)`,
      });
  });

const poolName = /^[A-Za-z0-9_-]{1,64}$/;

/** host:port for `corral up`'s Prometheus endpoint (as `--metrics`). */
const metricsAddress = z.string().transform((v, ctx) => {
  try {
    return parseMetricsAddress(v);
  } catch (err) {
    if (!(err instanceof MetricsAddressError)) throw err;
    ctx.addIssue({ code: "custom", message: err.message });
    return z.NEVER;
  }
});

export const configSchema = z
  .object({
    /** Names this daemon's containers/processes (label corral.instance); one daemon per instance. */
    instance: z.string().regex(poolName, "1-64 characters of A-Z a-z 0-9 _ -").default("default"),
    stateDir: z.string().min(1).default(".corral"),
    nats: natsSettings.optional(),
    /** `corral up` serves Prometheus text on GET /metrics here (`--metrics` wins; src/metrics/). */
    metrics: metricsAddress.optional(),
    pools: z
      .record(z.string(), pool, { error: "expected a map of pool name to pool settings" })
      .superRefine((p, ctx) => {
        if (Object.keys(p).length === 0)
          ctx.addIssue({ code: "custom", message: "at least one pool is needed" });
        for (const name of Object.keys(p)) {
          if (!poolName.test(name))
            ctx.addIssue({
              code: "custom",
              message: `pool name ${JSON.stringify(name)}: use 1-64 characters of A-Z a-z 0-9 _ -`,
            });
        }
      }),
  })
  .strict();

export type FileConfig = z.output<typeof configSchema>;
export type PoolSpec = FileConfig["pools"][string];
export type TemplateSpec = z.output<typeof template>;
export type InitSpec = z.output<typeof init>;
