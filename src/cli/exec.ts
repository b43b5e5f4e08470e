import type { Command } from "commander";
import type { CorralClient } from "../api/client.ts";
import type { ExecReply } from "../api/protocol.ts";
import { natsUrl } from "../nats/connect.ts";
import { CliError, EXIT } from "./exit.ts";
import { parser } from "./lazy-parsers.ts";
import { leaseRef } from "./lease-tokens.ts";

/**
 * `corral exec <lease> -- argv…`: runs a command in the leased agent, streams its output to our
 * stdout and stderr as it comes, and exits with its exit code (as `docker exec` does). The modules
 * that do the work are imported inside the action, as in main.ts.
 */

/** Raw bytes out: the command's output is not ours to re-encode. */
export interface ByteOut {
  write(data: Uint8Array | string): void;
}

export interface ExecCliOptions {
  token?: string;
  timeout?: string;
  cwd?: string;
  env?: string[];
  stdin?: boolean;
  json?: boolean;
}

/** What `--stdin` may send: the request body, JSON-escaped, stays under the API's 64 KiB. */
export const MAX_STDIN_BYTES = 48 * 1024;

export function execCommand(program: Command): void {
  program
    .command("exec")
    .summary("run a command in a leased agent, like docker exec")
    .description(
      "run a command in a leased agent: its output streams here as it comes, and corral exits with its exit code",
    )
    .argument("<lease>", "lease id (as `corral acquire` printed it)", parser("parseLeaseId"))
    .argument("<argv...>", "the command and its arguments, after --")
    .option("--token <token>", "the lease token (default: the one `corral acquire` kept for this user)")
    .option(
      "--timeout <duration>",
      "stop the command after this long (default 10m; 124 is its exit code then)",
    )
    .option("--cwd <dir>", "working directory in the agent (default: its home)")
    .option(
      "-e, --env <name=value>",
      "an environment variable (repeatable; kept on the event stream)",
      collect,
    )
    .option("-i, --stdin", `send our stdin to the command (at most ${MAX_STDIN_BYTES / 1024} KiB of UTF-8)`)
    .option("--json", "no streaming: print the reply (exit code, output tails) as one line of JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  corral exec $lease -- node -e 'console.log(1)'\n" +
        "  git diff | corral exec $lease -i -- git apply\n",
    )
    .action(async (leaseId: string, argv: string[], opts: ExecCliOptions, cmd: Command) => {
      const { withClient } = await import("./pool-session.ts");
      const url = (cmd.optsWithGlobals() as { nats?: string }).nats ?? natsUrl();
      const code = await withClient({ url }, (client) =>
        exec(client, leaseId, argv, opts, { out: process.stdout, err: process.stderr }),
      );
      if (code !== EXIT.ok) {
        // Our exit code is the command's: leave once what it printed has gone out.
        await new Promise((r) => process.stdout.write("", r));
        process.exit(code);
      }
    });
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Runs the command; resolves to its exit code. */
export async function exec(
  client: CorralClient,
  leaseId: string,
  argv: string[],
  opts: ExecCliOptions,
  io: { out: ByteOut; err: ByteOut },
): Promise<number> {
  const { lease, pool } = leaseRef(leaseId, opts.token);
  const reply: ExecReply = await client.exec(lease, {
    pool,
    argv,
    cwd: opts.cwd,
    env: opts.env?.length ? envOf(opts.env) : undefined,
    stdin: opts.stdin ? await readStdin() : undefined,
    timeoutMs: opts.timeout === undefined ? undefined : await durationOf(opts.timeout),
    onOutput: opts.json ? undefined : (stream, data) => (stream === "stdout" ? io.out : io.err).write(data),
    onDaemonStopped: () =>
      io.err.write(
        "corral: the daemon stopped before the command ended; waiting for the next one to finish it\n",
      ),
  });
  if (opts.json) io.out.write(`${JSON.stringify(reply)}\n`);
  else if (reply.timedOut) {
    io.err.write(`corral: the command ran out of time after ${reply.durationMs} ms and was stopped\n`);
  }
  return reply.exitCode;
}

function envOf(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const name = eq > 0 ? pair.slice(0, eq) : "";
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new CliError(`--env ${JSON.stringify(pair)}: expected NAME=value`, EXIT.usage);
    }
    env[name] = pair.slice(eq + 1);
  }
  return env;
}

async function durationOf(text: string): Promise<number> {
  const { parseDuration } = await import("../config/duration.ts");
  const ms = parseDuration(text);
  if (ms === undefined || ms < 1) {
    throw new CliError(
      `--timeout ${JSON.stringify(text)}: expected a duration such as 30s or 5m`,
      EXIT.usage,
    );
  }
  return ms;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_STDIN_BYTES) {
      throw new CliError(`--stdin: more than ${MAX_STDIN_BYTES} bytes; exec takes at most that`, EXIT.usage);
    }
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new CliError("--stdin: not UTF-8 text (exec sends stdin as text)", EXIT.usage);
  }
}
