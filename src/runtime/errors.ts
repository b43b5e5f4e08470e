export type RuntimeErrorCode =
  | "not_found" // start() of an id the runtime does not know
  | "image_missing" // docker: the template's image is not on the engine (we never pull)
  | "executable_missing" // process: argv[0] is not an executable file / not on PATH
  | "engine_unreachable" // docker: no answer from the engine socket / host
  | "create_failed"
  | "start_failed"
  | "stop_failed"
  | "remove_failed"
  | "engine_error" // the engine answered with an error we have no better name for (list, inspect, stats)
  | "port_in_use" // a published host port is taken (start fails)
  | "already_exists" // docker: a container with this agent's name exists (details.existingId)
  | "not_owned" // the id exists but belongs to another corral instance (or none): hands off
  | "invalid_spec"
  | "agentd_missing" // neither a fresh build nor the sources (with tsx) of agentd are in corral's package
  | "image_unavailable"; // ensureNodeImage: this host's node cannot make a working image for this engine

/** Every failure a runtime reports; `code` is the stable, machine-readable part. */
export class RuntimeError extends Error {
  override name = "RuntimeError";
  constructor(
    readonly code: RuntimeErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Node's socket errors that mean "nobody is listening there". */
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOENT", "EACCES", "ETIMEDOUT", "EHOSTUNREACH", "ECONNRESET"]);

export function isUnreachable(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && UNREACHABLE.has(code);
}

/** HTTP status of a dockerode error (docker-modem puts it on `statusCode`). */
export function statusOf(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof s === "number" ? s : undefined;
}

/** The engine's own message (`{"message": …}` body) rather than docker-modem's generic prefix. */
export function engineMessage(err: unknown): string {
  const json = (err as { json?: { message?: unknown } } | undefined)?.json;
  if (json && typeof json.message === "string") return json.message;
  return err instanceof Error ? err.message : String(err);
}
