import type Docker from "dockerode";
import { ConfigError } from "../config/load.ts";
import type { FileConfig, PoolSpec } from "../config/schema.ts";
import { type PoolConfig, poolConfigSchema } from "../events/pool.ts";
import { ensureLocalImage, helloAgentTemplate, LOCAL_IMAGE } from "../runtime/index.ts";
import type { RuntimeKind } from "../runtime/types.ts";

export interface RuntimeAvailability {
  /** Set when a Docker engine answers. */
  docker?: Docker;
  /** Why there is none, for the error message. */
  dockerReason?: string;
}

/** Resolves "auto", fills in the built-in agent, and normalises a pool as its events store it. */
export async function resolvePools(
  cfg: FileConfig,
  file: string,
  env: RuntimeAvailability,
): Promise<Record<string, PoolConfig>> {
  const out: Record<string, PoolConfig> = {};
  const issues: string[] = [];
  for (const [name, spec] of Object.entries(cfg.pools)) {
    const runtime: RuntimeKind = spec.runtime === "auto" ? (env.docker ? "docker" : "process") : spec.runtime;
    if (runtime === "docker" && !env.docker) {
      issues.push(
        `pools.${name}.runtime: docker, but no Docker engine answers (${env.dockerReason ?? "unknown"}); use process or auto`,
      );
      continue;
    }
    const template = spec.template ? toTemplate(spec.template) : helloAgentTemplate(runtime);
    if (runtime === "docker" && !spec.template && env.docker) await ensureLocalImage(env.docker, LOCAL_IMAGE);
    out[name] = normalise(spec, runtime, template);
  }
  if (issues.length > 0) throw new ConfigError(file, issues);
  return out;
}

function toTemplate(t: NonNullable<PoolSpec["template"]>) {
  const { stopGrace, ...rest } = t;
  return { ...rest, stopGraceMs: stopGrace };
}

function normalise(spec: PoolSpec, runtime: RuntimeKind, template: object): PoolConfig {
  const raw = {
    runtime,
    min: spec.min,
    max: spec.max,
    warm: spec.warm,
    idleTimeoutMs: spec.idleTimeout,
    recycle: {
      maxAgeMs: spec.recycle.maxAge,
      maxLeases: spec.recycle.maxLeases,
      maxRecycles: spec.recycle.maxRecycles,
    },
    maintenanceIntervalMs: spec.maintenanceInterval,
    leaseTtlMs: spec.leaseTtl,
    startTimeoutMs: spec.startTimeout,
    ports: spec.ports,
    template,
  };
  // Through JSON first: no undefined-valued keys, so it compares equal to the stored config.
  return poolConfigSchema.parse(JSON.parse(JSON.stringify(raw)));
}
