/**
 * Exit codes of the corral CLI. Scripts branch on these, so they are part of the interface:
 * 0 ok, 1 runtime failure, 2 usage error, 3 NATS not reachable.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  natsUnreachable: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure with a message meant for the user as-is (no stack trace) and a chosen exit code. */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failure,
  ) {
    super(message);
  }
}
