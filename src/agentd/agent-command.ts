import { type ChildProcess, spawn } from "node:child_process";
import type { CommandStatus } from "./protocol.ts";

/**
 * The agent's own program, from agentd's environment (CORRAL_AGENT_COMMAND), never from the
 * peer. agentd starts it at most once in its life: `agent-ready` sent again, after a reconnect or
 * by a control plane that restarted, finds it running (or ended) and starts nothing. Its end is
 * not restarted here: recycling an agent is the control plane's decision, so the exit is reported
 * (hello-ack, heartbeat) and kept.
 */

export type StartResult =
  | { ok: true; already: boolean }
  | { ok: false; code: "no_command" | "spawn_failed" | "command_exited"; message: string };

export interface AgentCommandOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  killGraceMs: number;
  /** Where its stdout and stderr go: agentd's own (the container's log), or nowhere. */
  output: "inherit" | "ignore";
}

export class AgentCommand {
  private child: ChildProcess | undefined;
  private starting: Promise<StartResult> | undefined;
  private exit: { exitCode: number | null; signal: string | null } | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly argv: string[] | undefined,
    private readonly opts: AgentCommandOptions,
  ) {}

  status(): CommandStatus {
    return {
      commandRunning: this.child !== undefined && this.exit === undefined,
      commandStarts: this.starting ? 1 : 0,
      ...(this.exit ? { commandExit: this.exit } : {}),
    };
  }

  async start(): Promise<StartResult> {
    if (this.starting) {
      const first = await this.starting;
      if (!first.ok) return first;
      if (this.exit)
        return { ok: false, code: "command_exited", message: `the agent's command ${describe(this.exit)}` };
      return { ok: true, already: true };
    }
    const [file, ...args] = this.argv ?? [];
    if (file === undefined) return { ok: false, code: "no_command", message: "agentd has no agent command" };
    this.starting = this.spawn(file, args);
    return this.starting;
  }

  /** SIGTERM to its process group, SIGKILL after the grace; resolves once it has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || this.exit) return;
    signalGroup(child, "SIGTERM");
    const timer = setTimeout(() => signalGroup(child, "SIGKILL"), this.opts.killGraceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private spawn(file: string, args: string[]): Promise<StartResult> {
    return new Promise((resolve) => {
      let child: ChildProcess;
      try {
        child = spawn(file, args, {
          cwd: this.opts.cwd,
          env: this.opts.env,
          stdio: ["ignore", this.opts.output, this.opts.output],
          detached: true, // its own process group: stop() reaches what it started
        });
      } catch (err) {
        this.exit = { exitCode: 127, signal: null };
        return resolve({ ok: false, code: "spawn_failed", message: errorText(err) });
      }
      this.child = child;
      this.exited = new Promise((done) => {
        child.once("exit", (code, signal) => {
          this.exit = { exitCode: code, signal };
          done();
        });
      });
      child.once("spawn", () => resolve({ ok: true, already: false }));
      child.once("error", (err) => {
        if (child.pid !== undefined) return;
        this.exit = { exitCode: 127, signal: null };
        resolve({ ok: false, code: "spawn_failed", message: errorText(err) });
      });
    });
  }
}

function describe(exit: { exitCode: number | null; signal: string | null }): string {
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // gone already
  }
}
