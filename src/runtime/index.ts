import type Docker from "dockerode";
import type { Logger } from "../log.ts";
import { dockerClient, dockerUnavailableReason } from "./detect.ts";
import { DockerRuntime } from "./docker.ts";
import { RuntimeError } from "./errors.ts";
import { ProcessRuntime } from "./process.ts";
import type { Runtime, RuntimeKind } from "./types.ts";

export { HELLO_AGENT_PATH } from "./builtin-agents.ts";
export { detectDocker, dockerClient, dockerUnavailableReason } from "./detect.ts";
export { DockerRuntime, type DockerRuntimeOptions } from "./docker.ts";
export { ensureNodeImage, NODE_IMAGE, nodeScript, SLEEP } from "./docker-image.ts";
export { RuntimeError, type RuntimeErrorCode } from "./errors.ts";
export { helloAgentTemplate } from "./hello.ts";
export {
  containerName,
  DEFAULT_STOP_GRACE_MS,
  LABEL_AGENT,
  LABEL_GENERATION,
  LABEL_INSTANCE,
  LABEL_MANAGED,
  LABEL_POOL,
  LABELS,
} from "./labels.ts";
export { ProcessRuntime, type ProcessRuntimeOptions } from "./process.ts";
export type * from "./types.ts";

export interface CreateRuntimeOptions {
  /** The corral daemon instance: owns (and only ever touches) agents labelled with it. */
  instance: string;
  log?: Logger;
  /** docker: the client (default: from DOCKER_HOST / the default socket). */
  docker?: Docker;
  /** docker: full re-list period, default 10 s. */
  relistMs?: number;
  /** process: default `.corral/process/<instance>`. */
  stateDir?: string;
  /** process: /proc + state-file poll period, default 500 ms. */
  pollMs?: number;
}

/**
 * A runtime that is already watching: its live view holds what exists, so `isRunning` is
 * meaningful as soon as this resolves. "auto" picks docker when an engine answers within ~1 s,
 * else process. docker with no reachable engine rejects with `engine_unreachable`.
 */
export async function createRuntime(
  kind: RuntimeKind | "auto",
  opts: CreateRuntimeOptions,
): Promise<Runtime> {
  let chosen: RuntimeKind = kind === "auto" ? "process" : kind;
  if (kind === "auto") {
    const why = await dockerUnavailableReason(opts.docker ? { docker: opts.docker } : {});
    if (why === undefined) chosen = "docker";
    else opts.log?.info({ reason: why }, "no docker engine: agents run as local processes");
  }
  if (chosen === "process") {
    const rt = new ProcessRuntime(opts);
    await rt.ready();
    return rt;
  }
  let docker: Docker;
  try {
    docker = opts.docker ?? dockerClient();
  } catch (err) {
    throw new RuntimeError(
      "engine_unreachable",
      `bad docker configuration: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
  if (kind === "docker") {
    const why = await dockerUnavailableReason({ docker });
    if (why !== undefined) throw new RuntimeError("engine_unreachable", why);
  }
  const rt = new DockerRuntime({ ...opts, docker });
  try {
    await rt.ready();
  } catch (err) {
    await rt.close();
    throw err;
  }
  return rt;
}
