import type Docker from "dockerode";
import { ConfigError } from "../config/load.ts";
import type { FileConfig, PoolSpec } from "../config/schema.ts";
import { storedInit } from "../cp/init/template.ts";
import { type PoolConfig, poolConfigSchema } from "../events/pool.ts";
import { ensureNodeImage, helloAgentTemplate } from "../runtime/index.ts";
import type { RuntimeKind } from "../runtime/types.ts";

export interface RuntimeAvailability {
  /** Set when a Docker engine answers. */
  docker?: Docker;
  /** Why there is none, for the error message. */
  dockerReason?: string;
  /** Says (once) which "auto" pools run as processes: no engine, or the built-in image cannot be made. */
  warn?: (line: string) => void;
}

/** Resolves "auto", fills in the built-in agent, and normalises a pool as its events store it. */
export async function resolvePools(
  cfg: FileConfig,
  file: string,
  env: RuntimeAvailability,
): Promise<Record<string, PoolConfig>> {
  const out: Record<string, PoolConfig> = {};
  const issues: string[] = [];
  const fellBack: string[] = [];
  let image: Promise<string | undefined> | undefined; // why the built-in image is unusable, if it is
  const imageProblem = (docker: Docker) => {
    image ??= ensureNodeImage(docker).then(
      () => undefined,
      (err: unknown) => (err as Error).message,
    );
    return image;
  };
  for (const [name, spec] of Object.entries(cfg.pools)) {
    let runtime: RuntimeKind = spec.runtime === "auto" ? (env.docker ? "docker" : "process") : spec.runtime;
    if (spec.runtime === "auto" && !env.docker) fellBack.push(name);
    if (runtime === "docker" && !env.docker) {
      issues.push(
        `pools.${name}.runtime: docker, but no Docker engine answers (${env.dockerReason ?? "unknown"}); use process or auto`,
      );
      continue;
    }
    if (runtime === "docker" && !spec.template && env.docker) {
      const problem = await imageProblem(env.docker);
      if (problem && spec.runtime === "auto") {
        runtime = "process";
        fellBack.push(name);
      } else if (problem) {
        issues.push(`pools.${name}.runtime: docker, but ${problem}; use process or auto, or give a template`);
        continue;
      }
    }
    const template = spec.template ? toTemplate(spec.template) : helloAgentTemplate(runtime);
    out[name] = normalise(spec, runtime, template);
  }
  if (fellBack.length > 0) {
    const why = env.docker ? await image : (env.dockerReason ?? "no Docker engine answers");
    env.warn?.(`${why}; agents of pool ${fellBack.join(", ")} run as local processes`);
  }
  if (issues.length > 0) throw new ConfigError(file, issues);
  return out;
}

function toTemplate(t: NonNullable<PoolSpec["template"]>) {
  const { stopGrace, init, ...rest } = t;
  // The stored form names SSH keys by digest only: their contents never reach the stream.
  return { ...rest, stopGraceMs: stopGrace, ...(init && { init: storedInit(init) }) };
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
    maxLeaseTtlMs: spec.maxLeaseTtl,
    startTimeoutMs: spec.startTimeout,
    ports: spec.ports,
    template,
  };
  // Through JSON first: no undefined-valued keys, so it compares equal to the stored config.
  return poolConfigSchema.parse(JSON.parse(JSON.stringify(raw)));
}
