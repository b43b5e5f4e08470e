import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { appendFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pathUnderHome, writeFileAtomic } from "./files.ts";
import type { OpArgs } from "./protocol.ts";
import { type OnOutput, type RunResult, runProcess, succeeded } from "./run.ts";

/**
 * The init plan's file and git steps. Each is idempotent: run again, it finds its work done and
 * changes nothing, so a control plane that lost track may simply send it again. A step that
 * cannot do its work throws an Error whose message names what was wrong (never a file's content).
 */

export interface OpContext {
  home: string;
  env: NodeJS.ProcessEnv;
  killGraceMs: number;
  signal: AbortSignal;
  onOutput: OnOutput;
}

export function configOp(args: OpArgs<"config">, ctx: OpContext): RunResult {
  const started = performance.now();
  for (const f of args.files) writeFileAtomic(pathUnderHome(ctx.home, f.path), f.content, f.mode ?? 0o644);
  return succeeded(performance.now() - started);
}

export async function sshOp(args: OpArgs<"ssh">, ctx: OpContext): Promise<RunResult> {
  const started = performance.now();
  // pathUnderHome makes the parent (.ssh); ssh wants it private.
  chmodSync(dirname(pathUnderHome(ctx.home, ".ssh/known_hosts")), 0o700);
  if (args.knownHosts) await appendMissingLines(pathUnderHome(ctx.home, ".ssh/known_hosts"), args.knownHosts);
  if (args.authorizedKeys) {
    await appendMissingLines(pathUnderHome(ctx.home, ".ssh/authorized_keys"), args.authorizedKeys);
  }
  for (const key of args.keys ?? []) {
    const path = pathUnderHome(ctx.home, `.ssh/${key.name}`);
    if (!existsSync(path) || readFileSync(path, "utf8") !== key.content)
      writeFileAtomic(path, key.content, 0o600);
    chmodSync(path, 0o600);
  }
  return succeeded(performance.now() - started);
}

/** Appends each line the file does not hold yet (mode 0600). */
async function appendMissingLines(path: string, lines: string[]): Promise<void> {
  const before = existsSync(path) ? readFileSync(path, "utf8") : "";
  const have = new Set(before.split("\n").map((l) => l.trim()));
  const missing = [...new Set(lines.map((l) => l.trim()))].filter((l) => !have.has(l));
  if (missing.length > 0) {
    const gap = before === "" || before.endsWith("\n") ? "" : "\n";
    await appendFile(path, `${gap}${missing.join("\n")}\n`, { mode: 0o600 });
  }
  chmodSync(path, 0o600);
}

/**
 * Clones `repo` into `dir` and checks out `ref`; nothing when `dir` already is a clone of `repo`.
 * The clone is made beside `dir` and moved into place, so a clone cut short never looks done.
 */
export async function gitOp(args: OpArgs<"git">, ctx: OpContext): Promise<RunResult> {
  if (args.mode === "worktree") return worktreeOp(args, ctx);
  const started = performance.now();
  const dir = pathUnderHome(ctx.home, args.dir);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    // Its own .git: inside another work tree (a home kept in git) `git -C` would read that one's.
    const origin = existsSync(join(dir, ".git"))
      ? await git(ctx, ["-C", dir, "config", "--get", "remote.origin.url"])
      : undefined;
    if (origin?.exitCode !== 0) throw new Error(`git: ${args.dir} exists and is not a clone`);
    if (Buffer.from(origin.stdoutTail).toString("utf8").trim() !== args.repo) {
      throw new Error(`git: ${args.dir} is a clone of another repository`);
    }
    return succeeded(performance.now() - started);
  }
  const tmp = `${dir}.clone-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    const clone = await git(ctx, [
      "clone",
      "--quiet",
      ...(args.ref ? ["--no-checkout"] : []),
      "--",
      args.repo,
      tmp,
    ]);
    if (clone.exitCode !== 0 || clone.outcome !== "exited") return clone;
    if (args.ref) {
      const checkout = await git(ctx, ["-C", tmp, "checkout", "--quiet", args.ref, "--"]);
      if (checkout.exitCode !== 0 || checkout.outcome !== "exited") return checkout;
    }
    if (existsSync(dir)) rmSync(dir, { recursive: true }); // empty (checked above): rename needs it gone
    renameSync(tmp, dir);
    return { ...clone, durationMs: Math.round(performance.now() - started) };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * `dir` as a worktree of the local repository `repo` (objects shared, nothing copied): added at
 * `ref` (detached), or nothing when `dir` already is a worktree of that repository.
 */
async function worktreeOp(args: OpArgs<"git">, ctx: OpContext): Promise<RunResult> {
  const started = performance.now();
  const dir = pathUnderHome(ctx.home, args.dir);
  const commonDir = async (at: string) => {
    const r = await git(ctx, ["-C", at, "rev-parse", "--path-format=absolute", "--git-common-dir"]);
    return r.exitCode === 0 ? Buffer.from(r.stdoutTail).toString("utf8").trim() : undefined;
  };
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    if (!existsSync(join(dir, ".git"))) throw new Error(`git: ${args.dir} exists and is not a worktree`);
    const [mine, theirs] = await Promise.all([commonDir(dir), commonDir(args.repo)]);
    if (mine === undefined || mine !== theirs) {
      throw new Error(`git: ${args.dir} is not a worktree of ${args.repo}`);
    }
    return succeeded(performance.now() - started);
  }
  const add = await git(ctx, [
    "-C",
    args.repo,
    "worktree",
    "add",
    "--quiet",
    "--detach",
    "--",
    dir,
    args.ref ?? "HEAD",
  ]);
  return { ...add, durationMs: Math.round(performance.now() - started) };
}

function git(ctx: OpContext, args: string[]): Promise<RunResult> {
  return runProcess(
    {
      argv: ["git", ...args],
      cwd: ctx.home,
      // Never wait on a password prompt: nobody is there to answer it.
      env: { ...ctx.env, GIT_TERMINAL_PROMPT: "0" },
      killGraceMs: ctx.killGraceMs,
      signal: ctx.signal,
    },
    ctx.onOutput,
  );
}
