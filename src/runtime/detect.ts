import Docker from "dockerode";
import { engineMessage } from "./errors.ts";

export interface DetectOptions {
  /** A client to probe; default: one built from DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH. */
  docker?: Docker;
  /** Default 1000. */
  timeoutMs?: number;
}

/** A dockerode client configured the way the `docker` CLI would be (DOCKER_HOST, TLS env). */
export function dockerClient(opts?: Docker.DockerOptions): Docker {
  return new Docker(opts);
}

/** Why the engine cannot be used, or undefined when it answers a ping in time. */
export async function dockerUnavailableReason(opts: DetectOptions = {}): Promise<string | undefined> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  let docker: Docker;
  try {
    docker = opts.docker ?? dockerClient();
  } catch (err) {
    return `bad docker configuration (DOCKER_HOST=${process.env.DOCKER_HOST ?? ""}): ${engineMessage(err)}`;
  }
  const where = process.env.DOCKER_HOST ?? "the default socket (/var/run/docker.sock)";
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => {
      abort.abort();
      resolve(`docker engine at ${where} did not answer a ping within ${timeoutMs} ms`);
    }, timeoutMs);
  });
  // The engine API takes an abort signal; @types/dockerode's ping() does not declare it.
  const pingable = docker as unknown as { ping(opts: { abortSignal: AbortSignal }): Promise<unknown> };
  const ping = pingable.ping({ abortSignal: abort.signal }).then(
    () => undefined,
    (err: unknown) => `docker engine at ${where} is unreachable: ${engineMessage(err)}`,
  );
  try {
    return await Promise.race([ping, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when a Docker engine answers a ping within ~1 s (respects DOCKER_HOST). */
export async function detectDocker(opts: DetectOptions = {}): Promise<boolean> {
  return (await dockerUnavailableReason(opts)) === undefined;
}
