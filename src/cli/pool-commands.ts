import type { Command } from "commander";
import { natsUrl } from "../nats/connect.ts";
import { parser } from "./lazy-parsers.ts";
import { type Out, stdout } from "./output.ts";

/**
 * The pool commands (acquire, release, renew, status, pool close), clients of the daemon's API on
 * `corral.api.>`. As in main.ts, the modules that do the work are imported inside the actions, so
 * `--help` and usage errors answer without loading them.
 */

const stderr: Out = { write: (text) => process.stderr.write(text) };

function urlOf(cmd: Command): string {
  return (cmd.optsWithGlobals() as { nats?: string }).nats ?? natsUrl();
}

interface AcquireFlags {
  timeout?: number;
  ttl?: number;
  holder?: string;
  json?: boolean;
}

function acquireCommand(program: Command): void {
  program
    .command("acquire")
    .summary("lease an agent of a pool and print how to reach it")
    .description("lease an agent of a pool, waiting for one to be free; prints how to reach it")
    .argument("<pool>", "pool name", parser("parsePoolName"))
    .option(
      "--timeout <duration>",
      "how long to wait for a free agent (500ms, 30s, 5m; default 30s)",
      parser("parseAcquireTimeout"),
    )
    .option("--ttl <duration>", "lease lifetime unless renewed (default: the pool's)", parser("parseTtl"))
    .option("--holder <name>", "who holds the lease, shown by status (default: user@host)")
    .option("--json", "the lease as one line of JSON")
    .addHelpText(
      "after",
      "\nCtrl-C while waiting cancels the acquire on the daemon and exits 130.\n\nExamples:\n" +
        "  corral acquire default --timeout 5m --ttl 30m --holder ci-job-42\n" +
        "  lease=$(corral acquire default --json | jq -r .leaseId)\n\n" +
        "The lease token is printed once and kept for this user (mode 0600) under\n" +
        "$XDG_STATE_HOME/corral/leases (default ~/.local/state/corral/leases) until release.",
    )
    .action(async (pool: string, opts: AcquireFlags, cmd: Command) => {
      const [{ acquire }, { withClient, signalExitCode }] = await Promise.all([
        import("./pool-acquire.ts"),
        import("./pool-session.ts"),
      ]);
      const signal = await withClient({ url: urlOf(cmd) }, (client) =>
        acquire(
          client,
          pool,
          { timeoutMs: opts.timeout, ttlMs: opts.ttl, holder: opts.holder, json: opts.json === true },
          stdout,
          stderr,
        ),
      );
      // Interrupted: the acquire was cancelled and the connection closed; exit like a shell does.
      if (signal) process.exit(signalExitCode(signal));
    });
}

const TOKEN_HELP = "the lease token `corral acquire` printed (default: the one it kept for this user)";

function leaseCommands(program: Command): void {
  program
    .command("release")
    .description("give a leased agent back to its pool")
    .argument("<lease>", "lease id", parser("parseLeaseId"))
    .option("--token <token>", TOKEN_HELP)
    .option("--json", "the reply as one line of JSON")
    .action(async (leaseId: string, opts: { token?: string; json?: boolean }, cmd: Command) => {
      const [{ release }, { withClient }] = await Promise.all([
        import("./pool-actions.ts"),
        import("./pool-session.ts"),
      ]);
      await withClient({ url: urlOf(cmd) }, (client) =>
        release(client, leaseId, { token: opts.token, json: opts.json === true }, stdout),
      );
    });

  program
    .command("renew")
    .description("extend a lease before it expires")
    .argument("<lease>", "lease id", parser("parseLeaseId"))
    .option("--ttl <duration>", "new lifetime from now (default: the lease's TTL)", parser("parseTtl"))
    .option("--token <token>", TOKEN_HELP)
    .option("--json", "the reply as one line of JSON")
    .action(async (leaseId: string, opts: { ttl?: number; token?: string; json?: boolean }, cmd: Command) => {
      const [{ renew }, { withClient }] = await Promise.all([
        import("./pool-actions.ts"),
        import("./pool-session.ts"),
      ]);
      await withClient({ url: urlOf(cmd) }, (client) =>
        renew(client, leaseId, { ttlMs: opts.ttl, token: opts.token, json: opts.json === true }, stdout),
      );
    });
}

function statusCommand(program: Command): void {
  program
    .command("status")
    .description("state, metrics and agents of one pool, or of every pool")
    .argument("[pool]", "pool name (default: every pool)", parser("parsePoolName"))
    .option("--json", "one JSON object per pool per line")
    .option("-w, --watch", "refresh every second until Ctrl-C")
    .action(async (pool: string | undefined, opts: { json?: boolean; watch?: boolean }, cmd: Command) => {
      const [{ status }, { withClient, onInterrupt }] = await Promise.all([
        import("./pool-status.ts"),
        import("./pool-session.ts"),
      ]);
      const watch = opts.watch === true;
      const ac = new AbortController();
      // Ctrl-C ends --watch normally (exit 0), as it ends `events tail --follow`.
      const removeHandlers = watch ? onInterrupt(() => ac.abort()) : () => {};
      try {
        await withClient({ url: urlOf(cmd), reconnect: watch }, (client) =>
          status(client, pool, { json: opts.json === true, watch }, stdout, ac.signal),
        );
      } finally {
        removeHandlers();
      }
    });
}

function poolCommand(program: Command): void {
  const pool = program.command("pool").description("manage pools");
  pool
    .command("close")
    .summary("stop leasing from a pool and stop its agents")
    .description("stop leasing from a pool and stop its agents (waits until they have stopped)")
    .argument("<pool>", "pool name", parser("parsePoolName"))
    .option("--revoke-leases", "end current leases now instead of waiting for them")
    .option("--json", "the reply as one line of JSON")
    .action(async (name: string, opts: { revokeLeases?: boolean; json?: boolean }, cmd: Command) => {
      const [{ closePool }, { withClient }] = await Promise.all([
        import("./pool-actions.ts"),
        import("./pool-session.ts"),
      ]);
      await withClient({ url: urlOf(cmd) }, (client) =>
        closePool(
          client,
          name,
          { revokeLeases: opts.revokeLeases === true, json: opts.json === true },
          stdout,
        ),
      );
    });
}

export function poolCommands(program: Command): void {
  acquireCommand(program);
  leaseCommands(program);
  statusCommand(program);
  poolCommand(program);
}
