import { type ChildProcess, type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { TAIL_BYTES } from "./protocol.ts";
import { Tail } from "./tail.ts";

/**
 * One process run for an exec or an init step: stdin in, output out as it comes, the last
 * TAIL_BYTES of each stream kept. A timeout or a cancel sends SIGTERM to the process group, then
 * SIGKILL after the grace, so what the command started goes with it.
 */

export interface RunSpec {
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  stdin?: Uint8Array;
  timeoutMs?: number;
  /** Between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** Aborting it cancels the run (outcome "cancelled"). */
  signal?: AbortSignal;
}

export type OutputStream = "stdout" | "stderr";
export type RunOutcome = "exited" | "timeout" | "cancelled" | "spawn_failed";

export interface RunResult {
  outcome: RunOutcome;
  /** The exit code; 128 + the signal's number when a signal ended it; 127 when it never started. */
  exitCode: number;
  signal: string | null;
  durationMs: number;
  stdoutTail: Uint8Array;
  stderrTail: Uint8Array;
  truncated: boolean;
  /** Why it never started (spawn_failed). */
  message?: string;
}

/** After the process exits, how long its pipes may stay open (a background child holding them). */
const CLOSE_WAIT_MS = 1000;

export function runProcess(spec: RunSpec, onOutput?: OnOutput): Promise<RunResult> {
  return new ProcessRun(spec, onOutput).result;
}

export type OnOutput = (stream: OutputStream, data: Uint8Array) => void;

class ProcessRun {
  readonly result: Promise<RunResult>;
  private resolve!: (r: RunResult) => void;
  private readonly started = performance.now();
  private readonly tails = { stdout: new Tail(TAIL_BYTES), stderr: new Tail(TAIL_BYTES) };
  private readonly timers: NodeJS.Timeout[] = [];
  private outcome: RunOutcome = "exited";
  private exited = false;
  private settled = false;
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly onAbort = () => this.stop("cancelled");

  constructor(
    private readonly spec: RunSpec,
    private readonly onOutput?: OnOutput,
  ) {
    this.result = new Promise((r) => {
      this.resolve = r;
    });
    try {
      this.child = spawnDetached(spec);
    } catch (err) {
      // Arguments spawn itself refuses (a NUL byte in one).
      this.failToStart(err instanceof Error ? err.message : String(err));
      return;
    }
    this.watch(this.child);
    if (spec.signal?.aborted) this.onAbort();
    else spec.signal?.addEventListener("abort", this.onAbort, { once: true });
    if (spec.timeoutMs !== undefined)
      this.timers.push(setTimeout(() => this.stop("timeout"), spec.timeoutMs));
  }

  private watch(proc: ChildProcessWithoutNullStreams): void {
    proc.on("error", (err) => {
      // Emitted without a pid when the process never started (no such file, bad cwd).
      if (proc.pid !== undefined) return;
      // A missing cwd fails as ENOENT of the program too: say which it was.
      if (!existsSync(this.spec.cwd)) this.failToStart(`cwd ${this.spec.cwd} does not exist`);
      else if ((err as NodeJS.ErrnoException).code === "ENOENT") this.failToStart(notFound(this.spec));
      else this.failToStart(err.message);
    });
    for (const name of ["stdout", "stderr"] as const) {
      proc[name].on("data", (data: Buffer) => {
        this.tails[name].push(data);
        this.onOutput?.(name, data);
      });
    }
    proc.stdin.on("error", () => {}); // EPIPE: the command did not read all of its stdin
    proc.stdin.end(this.spec.stdin);
    proc.on("exit", (code, signal) => this.onExit(proc, code, signal));
  }

  /** SIGTERM to the group now, SIGKILL after the grace. */
  private stop(why: RunOutcome): void {
    const child = this.child;
    if (this.outcome !== "exited" || this.exited || !child) return;
    this.outcome = why;
    signalGroup(child, "SIGTERM");
    this.timers.push(setTimeout(() => signalGroup(child, "SIGKILL"), this.spec.killGraceMs));
  }

  private onExit(
    proc: ChildProcessWithoutNullStreams,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    this.exited = true;
    // A stopped run may leave the rest of its group behind the leader: they go at once.
    if (this.outcome !== "exited") signalGroup(proc, "SIGKILL");
    const exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
    const closed = new Promise<void>((r) => proc.once("close", () => r()));
    const late = new Promise<void>((r) => this.timers.push(setTimeout(r, CLOSE_WAIT_MS)));
    void Promise.race([closed, late]).then(() => {
      proc.stdout.destroy();
      proc.stderr.destroy();
      this.finish(exitCode, signal);
    });
  }

  private failToStart(message: string): void {
    this.outcome = "spawn_failed";
    this.finish(127, null, message);
  }

  private finish(exitCode: number, signal: string | null, message?: string): void {
    if (this.settled) return;
    this.settled = true;
    for (const t of this.timers) clearTimeout(t);
    this.spec.signal?.removeEventListener("abort", this.onAbort);
    this.resolve({
      outcome: this.outcome,
      exitCode,
      signal,
      durationMs: Math.round(performance.now() - this.started),
      stdoutTail: this.tails.stdout.bytes(),
      stderrTail: this.tails.stderr.bytes(),
      truncated: this.tails.stdout.truncated || this.tails.stderr.truncated,
      ...(message === undefined ? {} : { message }),
    });
  }
}

/**
 * A program that is not there, said so with where it was looked for: corral's built-in image holds
 * node and nothing else (no shell), so `sh` or `ls` is the first thing a user tries there.
 */
function notFound(spec: RunSpec): string {
  const program = spec.argv[0] ?? "";
  if (program.includes("/")) return `${program}: no such file in the agent`;
  const path = spec.env?.PATH ?? process.env.PATH ?? "";
  return `${program}: no such program on the agent's PATH (${path}); its image may not have it`;
}

function spawnDetached(spec: RunSpec): ChildProcessWithoutNullStreams {
  const [file, ...args] = spec.argv;
  // Its own process group (detached), so a timeout signals everything the command started.
  return spawn(file!, args, { cwd: spec.cwd, env: spec.env, stdio: "pipe", detached: true });
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is gone already
  }
}

/** A result for a step that ran no process (or found its work done). */
export function succeeded(durationMs: number): RunResult {
  const none = new Uint8Array();
  const ms = Math.round(durationMs);
  return {
    outcome: "exited",
    exitCode: 0,
    signal: null,
    durationMs: ms,
    stdoutTail: none,
    stderrTail: none,
    truncated: false,
  };
}
