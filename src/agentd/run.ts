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

export function runProcess(spec: RunSpec, onOutput?: (stream: OutputStream, data: Uint8Array) => void) {
  return new Promise<RunResult>((resolve) => {
    const started = performance.now();
    const tails = { stdout: new Tail(TAIL_BYTES), stderr: new Tail(TAIL_BYTES) };
    const timers: NodeJS.Timeout[] = [];
    let outcome: RunOutcome = "exited";
    let settled = false;
    const finish = (exitCode: number, signal: string | null, message?: string) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      spec.signal?.removeEventListener("abort", onAbort);
      resolve({
        outcome,
        exitCode,
        signal,
        durationMs: Math.round(performance.now() - started),
        stdoutTail: tails.stdout.bytes(),
        stderrTail: tails.stderr.bytes(),
        truncated: tails.stdout.truncated || tails.stderr.truncated,
        ...(message === undefined ? {} : { message }),
      });
    };
    let exited = false;
    let child: ChildProcessWithoutNullStreams | undefined;
    const stop = (why: RunOutcome) => {
      if (outcome !== "exited" || exited || !child) return;
      outcome = why;
      signalGroup(child, "SIGTERM");
      timers.push(setTimeout(() => child && signalGroup(child, "SIGKILL"), spec.killGraceMs));
    };
    const onAbort = () => stop("cancelled");
    try {
      child = spawnDetached(spec);
    } catch (err) {
      // Arguments spawn itself refuses (a NUL byte in one).
      outcome = "spawn_failed";
      return finish(127, null, err instanceof Error ? err.message : String(err));
    }
    const proc = child;
    if (spec.signal?.aborted) onAbort();
    spec.signal?.addEventListener("abort", onAbort, { once: true });
    if (spec.timeoutMs !== undefined) timers.push(setTimeout(() => stop("timeout"), spec.timeoutMs));

    proc.on("error", (err) => {
      // Emitted without a pid when the process never started (no such file, bad cwd).
      if (proc.pid !== undefined) return;
      outcome = "spawn_failed";
      // A missing cwd fails as ENOENT of the program: say which it was.
      finish(127, null, existsSync(spec.cwd) ? err.message : `cwd ${spec.cwd} does not exist`);
    });
    for (const name of ["stdout", "stderr"] as const) {
      proc[name].on("data", (data: Buffer) => {
        tails[name].push(data);
        onOutput?.(name, data);
      });
    }
    proc.stdin.on("error", () => {}); // EPIPE: the command did not read all of its stdin
    proc.stdin.end(spec.stdin);
    proc.on("exit", (code, signal) => {
      exited = true;
      // A stopped run may leave the rest of its group behind the leader: they go at once.
      if (outcome !== "exited") signalGroup(proc, "SIGKILL");
      const exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
      const closed = new Promise<void>((r) => proc.once("close", () => r()));
      const late = new Promise<void>((r) => timers.push(setTimeout(r, CLOSE_WAIT_MS)));
      void Promise.race([closed, late]).then(() => {
        proc.stdout.destroy();
        proc.stderr.destroy();
        finish(exitCode, signal);
      });
    });
  });
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
