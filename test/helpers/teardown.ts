import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { kill, markedProcesses, settled, shareTsxCache } from "../../scripts/survivors.js";

/**
 * The one teardown of a test file. Every process, container and temp dir a test starts is
 * registered here and undone after the file's last test, newest first — also when an assertion
 * failed or a test timed out. Then whatever still runs with this file's TMPDIR (every child
 * inherits it, agent processes too) escaped its registration: it is killed and named, and the
 * file fails. scripts/survivors.js does the same for the whole run.
 */

// Everything this file's tests create under tmpdir() — and every process they start — is marked
// by this directory; it is removed last.
const fileTmp = mkdtempSync(join(tmpdir(), `corral-file-${process.pid}-`));
shareTsxCache(tmpdir(), fileTmp);
process.env.TMPDIR = fileTmp;

interface Step {
  what: string;
  undo: () => unknown;
}
const steps = new Set<Step>();

/** Runs a registered undo now instead of at the end; once, however often it is called. */
export type Undo = () => Promise<void>;

/** Registers `undo` (named by `what` if it fails) for the end of this test file. */
export function onTeardown(what: string, undo: () => unknown): Undo {
  const step: Step = { what, undo };
  steps.add(step);
  let done: Promise<void> | undefined;
  return () => {
    done ??= (async () => {
      steps.delete(step);
      await undo();
    })();
    return done;
  };
}

/** A fresh directory under this file's temp dir (removed with it at the end). */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(fileTmp, prefix));
}

export interface StopOptions {
  /** What asks it to stop; default SIGTERM. SIGKILL follows after `graceMs` (default 10 s). */
  signal?: NodeJS.Signals;
  graceMs?: number;
  /** It leads its own process group (spawned detached): signal the whole group. */
  group?: boolean;
}

/** Stops `child` (if it still runs) at the end of the file, or when the returned Undo is called. */
export function trackProcess(child: ChildProcess, what: string, opts: StopOptions = {}): Undo {
  live.add(child);
  const undo = onTeardown(what, () => stopProcess(child, opts));
  child.once("exit", () => {
    live.delete(child);
    void undo(); // gone by itself: nothing left to do
  });
  return undo;
}

/** Signal, wait up to the grace, then SIGKILL; resolves once the process has exited. */
export async function stopProcess(child: ChildProcess, opts: StopOptions = {}): Promise<void> {
  const running = () => child.exitCode === null && child.signalCode === null;
  if (!running()) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  send(child, opts.signal ?? "SIGTERM", opts.group);
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), opts.graceMs ?? 10_000);
  });
  if (await Promise.race([exited.then(() => false), grace])) send(child, "SIGKILL", opts.group);
  clearTimeout(timer);
  await exited;
}

function send(child: ChildProcess, signal: NodeJS.Signals, group = false): void {
  try {
    if (group && child.pid !== undefined) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    // already gone
  }
}

// Last resort when the file's process ends without its after hook (an uncaught error).
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

async function teardownFile(): Promise<void> {
  const failures: string[] = [];
  for (const step of [...steps].reverse()) {
    steps.delete(step);
    try {
      await step.undo();
    } catch (err) {
      failures.push(`${step.what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const escaped = await settled(() => markedProcesses({ tmpRoot: fileTmp }));
  for (const p of escaped) {
    kill(p.pid);
    failures.push(`left running, now killed: pid ${p.pid} ${p.argv.join(" ").slice(0, 200)}`);
  }
  rmSync(fileTmp, { recursive: true, force: true });
  if (failures.length > 0) throw new Error(`teardown:\n  ${failures.join("\n  ")}`);
}

// Under the test runner the teardown is the file's last hook. Elsewhere (a bench borrowing these
// helpers) registering a hook would start a test run of its own: undo when the work is done.
if (process.env.NODE_TEST_CONTEXT) {
  after(teardownFile, { timeout: 180_000 });
} else {
  let done = false;
  process.on("beforeExit", () => {
    if (done) return;
    done = true;
    teardownFile().catch((err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    });
  });
}
