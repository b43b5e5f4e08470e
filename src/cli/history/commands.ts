import type { Command } from "commander";
import { natsUrl } from "../../nats/connect.ts";
import { stdout } from "../output.ts";

/**
 * Replay debugging from the command line: replay, diff, timeline, trace. As in main.ts, the
 * modules that do the work are imported inside the actions, so `--help` stays fast.
 */

function urlOf(cmd: Command): string {
  return (cmd.optsWithGlobals() as { nats?: string }).nats ?? natsUrl();
}

async function refArg(text: string) {
  const [{ parseRef }, { CliError, EXIT }] = await Promise.all([
    import("../../events/envelope.ts"),
    import("../exit.ts"),
  ]);
  try {
    return parseRef(text);
  } catch (err) {
    throw new CliError(`${(err as Error).message} (such as agent/build-0192… or pool/build)`, EXIT.usage);
  }
}

function replayCommand(program: Command): void {
  program
    .command("replay")
    .summary("step through one aggregate's events folded by its machine")
    .description(
      "fold one aggregate's events through its own machine (effects off): per event, the state it led to and what changed",
    )
    .argument("<kind/id>", "the aggregate: agent/<id>, pool/<name> or command/<id>")
    .option("--to <when>", "stop at a stream seq, an ISO time or a duration ago (5m)")
    .option("--json", "one JSON object per step")
    .option("-i, --interactive", "step forward and back with the arrow keys (q quits)")
    .action(
      async (text: string, opts: { to?: string; json?: boolean; interactive?: boolean }, cmd: Command) => {
        const ref = await refArg(text);
        const [{ replay, replaySteps }, { parseMoment }, { withStore }] = await Promise.all([
          import("../replay.ts"),
          import("./moment.ts"),
          import("../session.ts"),
        ]);
        const to = opts.to === undefined ? undefined : parseMoment(opts.to, "--to");
        const json = opts.json === true;
        if (!opts.interactive) {
          await withStore({ url: urlOf(cmd) }, (store) => replay(store, { ref, to, json }, stdout));
          return;
        }
        const [{ checkTerminal, stepThrough }, { formatStep }] = await Promise.all([
          import("./interactive.ts"),
          import("./replay-format.ts"),
        ]);
        const term = { input: process.stdin, output: process.stdout };
        checkTerminal(term);
        const steps = await withStore({ url: urlOf(cmd) }, (store) => replaySteps(store, { ref, to, json }));
        const at = await stepThrough(text, steps, term);
        stdout.write(
          `left at step ${at + 1}/${steps.length}: ${formatStep(steps[at] as (typeof steps)[number]).trim()}\n`,
        );
      },
    );
}

function diffCommand(program: Command): void {
  program
    .command("diff")
    .summary("what changed in the worldview between two moments")
    .description("agents, leases, host ports and pools: what changed between two moments of the stream")
    .argument("<a>", "a stream seq (0: before the first event), an ISO time, a duration ago (5m) or now")
    .argument("<b>", "the later moment, alike")
    .option("--json", "one line of JSON")
    .action(async (a: string, b: string, opts: { json?: boolean }, cmd: Command) => {
      const [{ diff }, { parseMoment }, { withStore }] = await Promise.all([
        import("../diff.ts"),
        import("./moment.ts"),
        import("../session.ts"),
      ]);
      const moments = { a: parseMoment(a, "<a>"), b: parseMoment(b, "<b>"), json: opts.json === true };
      await withStore({ url: urlOf(cmd) }, (store) => diff(store, moments, stdout));
    });
}

function timelineCommand(program: Command): void {
  program
    .command("timeline")
    .summary("an agent's phases, or a pool's spawn and recycle history")
    .description(
      "agent/<id>: each phase, when it began, how long it lasted and what ended it; pool/<name>: its decisions",
    )
    .argument("<kind/id>", "agent/<id> or pool/<name>")
    .option("--json", "one line of JSON")
    .action(async (text: string, opts: { json?: boolean }, cmd: Command) => {
      const ref = await refArg(text);
      const [{ timeline }, { withStore }] = await Promise.all([
        import("../timeline.ts"),
        import("../session.ts"),
      ]);
      await withStore({ url: urlOf(cmd) }, (store) =>
        timeline(store, { ref, json: opts.json === true }, stdout),
      );
    });
}

function traceCommand(program: Command): void {
  program
    .command("trace")
    .summary("every event a request or event caused, as a tree")
    .description("every event an event, correlation, lease or command caused, across aggregates, as a tree")
    .argument("<id>", "an event id, a correlation id, a lease id, a command id, or kind/id")
    .option("--json", "one line of JSON (the trees nested)")
    .action(async (query: string, opts: { json?: boolean }, cmd: Command) => {
      const [{ trace, parseTraceQuery }, { withStore }] = await Promise.all([
        import("../trace.ts"),
        import("../session.ts"),
      ]);
      parseTraceQuery(query); // what cannot be traced is said before connecting, as for the other commands
      await withStore({ url: urlOf(cmd) }, (store) =>
        trace(store, { query, json: opts.json === true }, stdout),
      );
    });
}

export function historyCommands(program: Command): void {
  replayCommand(program);
  diffCommand(program);
  timelineCommand(program);
  traceCommand(program);
}
