import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { AGENT_CA_FILE, AGENT_CERT_FILE, AGENT_KEY_FILE } from "../identity/files.ts";
import type { TlsIdentity } from "../identity/tls.ts";

/**
 * agentd's configuration, all from its environment (the runtime sets it: docker.ts or
 * process.ts). Each failure names the variable or file that was wrong, never a key's content.
 */
export interface AgentdConfig {
  identity: TlsIdentity;
  controlPlaneCN: string;
  host: string;
  port: number;
  stateDir: string;
  home: string;
  agentId: string;
  poolId: string;
  agentCommand?: string[];
  heartbeatMs?: number;
  killGraceMs?: number;
}

export class AgentdConfigError extends Error {
  override name = "AgentdConfigError";
}

export function configFromEnv(env: NodeJS.ProcessEnv): AgentdConfig {
  const dir = required(env, "CORRAL_AGENTD_DIR");
  const { host, port } = parseListen(required(env, "CORRAL_AGENTD_LISTEN"));
  const agentCommand = parseCommand(env.CORRAL_AGENT_COMMAND);
  const heartbeatMs = optionalMs(env, "CORRAL_AGENTD_HEARTBEAT_MS");
  const killGraceMs = optionalMs(env, "CORRAL_AGENTD_GRACE_MS");
  return {
    identity: {
      certPem: readIdentityFile(dir, AGENT_CERT_FILE),
      keyPem: readIdentityFile(dir, AGENT_KEY_FILE),
      caPem: readIdentityFile(dir, AGENT_CA_FILE),
    },
    controlPlaneCN: required(env, "CORRAL_AGENTD_CP_CN"),
    host,
    port,
    stateDir: required(env, "CORRAL_AGENTD_STATE"),
    home: env.HOME || homedir(),
    agentId: required(env, "CORRAL_AGENT_ID"),
    poolId: required(env, "CORRAL_POOL"),
    ...(agentCommand ? { agentCommand } : {}),
    ...(heartbeatMs ? { heartbeatMs } : {}),
    ...(killGraceMs ? { killGraceMs } : {}),
  };
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new AgentdConfigError(`${name} is not set`);
  return value;
}

/** `host:port` (IPv6 as `[::1]:port`); port 0 lets the system choose. */
export function parseListen(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(":");
  const host = value.slice(0, at).replace(/^\[(.*)\]$/, "$1");
  const portText = value.slice(at + 1);
  const port = Number(portText);
  if (at <= 0 || host === "" || !/^\d+$/.test(portText) || port > 65535) {
    throw new AgentdConfigError(
      `CORRAL_AGENTD_LISTEN must be host:port (0-65535), got "${value.slice(0, 100)}"`,
    );
  }
  return { host, port };
}

function parseCommand(value: string | undefined): string[] | undefined {
  if (value === undefined || value === "") return undefined;
  let argv: unknown;
  try {
    argv = JSON.parse(value);
  } catch {
    throw new AgentdConfigError("CORRAL_AGENT_COMMAND must be a JSON array of strings (not JSON)");
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new AgentdConfigError("CORRAL_AGENT_COMMAND must be a non-empty JSON array of strings");
  }
  return argv;
}

function optionalMs(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const value = env[name];
  if (value === undefined || value === "") return undefined;
  if (!/^\d+$/.test(value) || Number(value) <= 0) {
    throw new AgentdConfigError(`${name} must be a positive number of milliseconds`);
  }
  return Number(value);
}

function readIdentityFile(dir: string, name: string): string {
  const path = join(dir, name);
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unreadable";
    throw new AgentdConfigError(
      `cannot read ${path} (${code}); CORRAL_AGENTD_DIR holds the agent's identity`,
    );
  }
}

/**
 * What the agent's command and execs see of agentd's environment: everything but agentd's own
 * settings. CORRAL_RUNTIME_ID stays: the process runtime finds what agentd started by it (a child
 * that outlives its agentd is killed at the next start, src/runtime/process.ts adoptStrays).
 */
export function agentEnvOf(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith("CORRAL_AGENTD_") || k === "CORRAL_AGENT_COMMAND") continue;
    out[k] = v;
  }
  return out;
}
