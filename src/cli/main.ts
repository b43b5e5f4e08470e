import { Command, CommanderError } from "commander";
import { NatsUnreachableError, natsUrl } from "../nats/connect.ts";
import type { AggregateFilter, Since } from "./args.ts";
import { execCommand } from "./exec.ts";
import { CliError, EXIT } from "./exit.ts";
import { listEveryCommand } from "./help.ts";
import { historyCommands } from "./history/commands.ts";
import { loadParsers, NeedParsers, parser } from "./lazy-parsers.ts";
import { natsAuthFlags } from "./nats-flags.ts";
import { stdout } from "./output.ts";
import { poolCommands } from "./pool-commands.ts";
import { corralVersion } from "./version.ts";

/**
 * The `corral` command line. Command modules are imported inside their actions, so `--help`, a
 * usage error or an unreachable NATS answer without loading the store, xstate or the demo.
 */

interface GlobalOpts {
  nats?: string;
}

function urlOf(cmd: Command): string {
  return (cmd.optsWithGlobals() as GlobalOpts).nats ?? natsUrl();
}

/** Runs `fn` with an AbortSignal that Ctrl-C (or SIGTERM) aborts: following ends cleanly, exit 0. */
async function untilInterrupted(fn: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await fn(ac.signal);
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}

interface TailCliOpts {
  follow?: boolean;
  aggregate?: AggregateFilter;
  type?: string[];
  since?: Since;
  last?: number;
  json?: boolean;
}

function eventsCommand(program: Command): void {
  const events = program.command("events").description("read the event stream");

  events
    .command("tail")
    .summary("print the last events, or those since a point; -f follows")
    .description("print the last events (default 20), or those since a point, then optionally follow")
    .option("-f, --follow", "keep printing new events until Ctrl-C")
    .option(
      "-a, --aggregate <kind/id>",
      "only one aggregate (command/abc) or one kind (command)",
      parser("parseAggregate"),
    )
    .option("-t, --type <type>", "only these event types (repeatable, or a comma list)", parser("parseTypes"))
    .option(
      "-s, --since <when>",
      "from a stream seq (120), a time ago (90s, 5m, 2h, 1d) or an ISO time",
      (v) => parser("parseSince")(v),
    )
    .option("-n, --last <n>", "how many of the newest events to show (default 20)", parser("parseCount"))
    .option("--json", "one JSON object per line")
    .addHelpText(
      "after",
      "\nExamples:\n  corral events tail -n 50\n  corral events tail --follow --aggregate command/demo-build\n" +
        "  corral events tail --since 5m --type CommandFailed,CommandTimedOut --json",
    )
    .action(async (opts: TailCliOpts, cmd: Command) => {
      const [{ tail }, { recordPrinter }, { withStore }] = await Promise.all([
        import("./events-tail.ts"),
        import("./output.ts"),
        import("./session.ts"),
      ]);
      const printer = recordPrinter(stdout, opts.json === true);
      await withStore({ url: urlOf(cmd), reconnect: opts.follow === true }, (store) =>
        untilInterrupted((signal) =>
          tail(
            store,
            {
              subject: opts.aggregate?.subject,
              types: opts.type,
              since: opts.since,
              last: opts.last,
              follow: opts.follow === true,
            },
            printer,
            signal,
          ),
        ),
      );
    });

  events
    .command("show")
    .description("print one stored event in full")
    .argument("<seq>", "stream sequence number", parser("parseSeq"))
    .option("--json", "one line of JSON")
    .action(async (seq: number, opts: { json?: boolean }, cmd: Command) => {
      const [{ show }, { withStore }] = await Promise.all([
        import("./events-show.ts"),
        import("./session.ts"),
      ]);
      await withStore({ url: urlOf(cmd) }, (store) => show(store, seq, opts.json === true, stdout));
    });
}

function worldviewCommand(program: Command): void {
  program
    .command("worldview")
    .summary("the worldview folded from the stream, now or --at a seq")
    .description("the worldview folded from the stream: pools, agents, sessions, commands")
    .option("--at <seq>", "as it was right after this stream sequence (time travel)", parser("parseSeq"))
    .option("--json", "one line of JSON")
    .action(async (opts: { at?: number; json?: boolean }, cmd: Command) => {
      const [{ worldview }, { withStore }] = await Promise.all([
        import("./worldview.ts"),
        import("./session.ts"),
      ]);
      await withStore({ url: urlOf(cmd) }, (store) =>
        worldview(store, { at: opts.at, json: opts.json === true }, stdout),
      );
    });
}

function daemonCommands(program: Command): void {
  const logger = async () => (await import("../log.ts")).createLogger({ name: "corral" });
  program
    .command("start")
    .summary("run corral here: a warm pool, live (npm start)")
    .description(
      "run corral here with a warm pool and show it live (what `npm start` runs); Ctrl-C stops it all",
    )
    .option("--data-dir <dir>", "local state (nats-server store and log, process agents)", ".corral")
    .option("-c, --config <file>", "pools to run (default: ./corral.yaml, else one built-in pool)")
    .action(async (opts: { dataDir: string; config?: string }, cmd: Command) => {
      const { startLocal } = await import("./daemon-commands.ts");
      const g = cmd.optsWithGlobals() as GlobalOpts;
      await startLocal({
        nats: g.nats,
        dataDir: opts.dataDir,
        config: opts.config,
        log: await logger(),
        out: stdout,
      });
    });
  program
    .command("up")
    .summary("run the control plane; agents outlive it")
    .description("run the control plane; agents outlive it and the next `corral up` adopts them")
    .option("-c, --config <file>", "corral.yaml (default: ./corral.yaml, else one built-in pool)")
    .option("--metrics <addr>", "serve Prometheus text on http://<addr>/metrics (e.g. 127.0.0.1:9464)")
    .action(async (opts: { config?: string; metrics?: string }, cmd: Command) => {
      const { up } = await import("./daemon-commands.ts");
      await up({
        config: opts.config,
        metrics: opts.metrics,
        nats: (cmd.optsWithGlobals() as GlobalOpts).nats,
        log: await logger(),
      });
    });
  program
    .command("down")
    .description("close every pool and stop every agent of this instance")
    .option("-c, --config <file>", "corral.yaml (default: ./corral.yaml, else one built-in pool)")
    .action(async (opts: { config?: string }, cmd: Command) => {
      const { down } = await import("./daemon-commands.ts");
      const nats = (cmd.optsWithGlobals() as GlobalOpts).nats;
      await down({ config: opts.config, nats, log: await logger(), out: stdout });
    });
  program
    .command("demo")
    .summary("the first demo: commands through the actor host")
    .description(
      "find or start a local nats-server, drive a few commands through the actor host, show the events",
    )
    .option("--data-dir <dir>", "local state (nats-server store and log)", ".corral")
    .action(async (opts: { dataDir: string }, cmd: Command) => {
      const { start } = await import("./start.ts");
      const g = cmd.optsWithGlobals() as GlobalOpts;
      await start({ url: g.nats, dataDir: opts.dataDir, out: stdout, log: await logger() });
    });
}

export function buildProgram(): Command {
  const program = new Command("corral")
    .description("corral: event-sourced control plane for pools of AI coding agents")
    .version(corralVersion())
    .option("--nats <url>", "NATS server URL (default: $NATS_URL, else nats://127.0.0.1:4222)")
    // Settings below are inherited by every subcommand created after them.
    .exitOverride()
    .showHelpAfterError("(add --help for usage)");
  natsAuthFlags(program); // --nats-creds, --nats-nkey, … (README "Security")
  listEveryCommand(program);
  eventsCommand(program);
  worldviewCommand(program);
  historyCommands(program); // replay, diff, timeline, trace: debugging from the stream
  daemonCommands(program);
  poolCommands(program); // acquire, release, renew, status, pool close: clients of the daemon API
  execCommand(program); // exec: a command in a leased agent
  return program;
}

function fail(message: string): void {
  process.stderr.write(`corral: ${message}\n`);
}

/** Parses and runs one command line; resolves to the process exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  // `corral events tail | head`: the reader went away; that is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(EXIT.ok);
  });
  try {
    try {
      await buildProgram().parseAsync([...argv]);
    } catch (err) {
      if (!(err instanceof NeedParsers)) throw err;
      await loadParsers(); // a value to check: parse again with the real parsers (see lazy-parsers.ts)
      await buildProgram().parseAsync([...argv]);
    }
    return EXIT.ok;
  } catch (err) {
    // Commander has already printed its message (or the help/version text).
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof NatsUnreachableError) {
      fail(
        `${err.message}\n${err.advice ?? "(start one with `npm start`, or point corral at one with NATS_URL or --nats)"}`,
      );
      return EXIT.natsUnreachable;
    }
    if (err instanceof CliError) {
      fail(err.message);
      return err.exitCode;
    }
    const e = err as Error;
    fail(process.env.CORRAL_DEBUG ? (e.stack ?? String(e)) : (e.message ?? String(e)));
    return EXIT.failure;
  }
}
