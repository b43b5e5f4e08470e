export interface StopSignals {
  /** Resolves with the first SIGINT or SIGTERM: time for an orderly stop. */
  requested: Promise<NodeJS.Signals>;
  /** Stops listening (the command is done). */
  dispose(): void;
}

/**
 * Ctrl-C and SIGTERM for the commands that run until stopped (`corral start`, `corral up`). The
 * first asks for an orderly stop. A second one exits at once — the way out of a stop that hangs —
 * saying what may be left running (`leftBehind`), with the shell's exit code for the signal.
 */
export function stopSignals(leftBehind: () => string): StopSignals {
  let first: NodeJS.Signals | undefined;
  let resolve: (sig: NodeJS.Signals) => void = () => {};
  const requested = new Promise<NodeJS.Signals>((r) => {
    resolve = r;
  });
  const on = (sig: NodeJS.Signals) => {
    if (first === undefined) {
      first = sig;
      resolve(sig);
      return;
    }
    process.stderr.write(`\ncorral: ${sig} again, exiting without finishing the stop. ${leftBehind()}\n`);
    process.exit(sig === "SIGINT" ? 130 : 143);
  };
  process.on("SIGINT", on);
  process.on("SIGTERM", on);
  return {
    requested,
    dispose() {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
    },
  };
}
