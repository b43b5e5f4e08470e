import { RuntimeError } from "./errors.ts";
import type { CreateSpec } from "./types.ts";

/** Why the spec cannot be created, or undefined. Checked before anything touches the runtime. */
export function validateSpec(spec: CreateSpec): string | undefined {
  if (!spec.instance) return "instance is required";
  if (!spec.poolId) return "poolId is required";
  if (!spec.agentId) return "agentId is required";
  if (!Number.isInteger(spec.generation) || spec.generation < 0) return "generation must be an integer ≥ 0";
  if (!Array.isArray(spec.template?.command) || spec.template.command.length === 0) {
    return "template.command must be a non-empty argv";
  }
  for (const p of spec.ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) return `not a port: ${p}`;
  }
  return undefined;
}

/** Refuses a spec a runtime of `instance` cannot create (`extra`: the runtime's own rule). */
export function checkSpec(spec: CreateSpec, instance: string, extra?: string): void {
  const invalid = validateSpec(spec) ?? extra;
  if (invalid) throw new RuntimeError("invalid_spec", invalid, { agentId: spec.agentId });
  if (spec.instance !== instance) {
    throw new RuntimeError(
      "invalid_spec",
      `spec.instance ${spec.instance} is not this runtime's (${instance})`,
    );
  }
}

/**
 * Who the agent is, as env — lowest precedence: template.env, then spec.env, override it.
 * hello-agent (and agentd) read these.
 */
export function identityEnv(spec: CreateSpec): Record<string, string> {
  return {
    CORRAL_INSTANCE: spec.instance,
    CORRAL_POOL: spec.poolId,
    CORRAL_AGENT_ID: spec.agentId,
    CORRAL_GENERATION: String(spec.generation),
  };
}
