import { PoolError } from "../errors.ts";

/** Errors of exec a client can get (README, "The API"); `code` is the stable part. */

/** Backpressure: the agent has as many commands waiting or running as its queue holds. */
export class QueueFullError extends PoolError {
  override name = "QueueFullError";
  constructor(agentId: string, capacity: number) {
    super(
      "queue_full",
      `agent ${agentId} already has ${capacity} commands waiting or running; try again when one has finished`,
    );
  }
}

/** A command id names one command for good: a second exec with it is refused, not run. */
export class CommandExistsError extends PoolError {
  override name = "CommandExistsError";
  constructor(commandId: string) {
    super("command_exists", `command ${commandId} already exists: use a new commandId for each exec`);
  }
}

/** The command's lease ended before the command did: it was never sent, or agentd stopped it. */
export class CommandCancelledError extends PoolError {
  override name = "CommandCancelledError";
  constructor(commandId: string, why: string) {
    super("command_cancelled", `command ${commandId} was cancelled: ${why}`);
  }
}

/** The command did not run to an exit code: agentd could not start it, or it was lost. */
export class CommandFailedError extends PoolError {
  override name = "CommandFailedError";
  constructor(commandId: string, why: string) {
    super("command_failed", `command ${commandId} failed: ${why}`);
  }
}
