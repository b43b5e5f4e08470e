import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";

// Linux /proc readers for the process runtime. On a system without /proc (macOS) liveness falls
// back to kill(pid, 0), which cannot tell a reused PID from ours: documented, not hidden.

export const HAVE_PROC = existsSync("/proc/self/stat");

export interface ProcStat {
  /** R, S, D, Z (zombie), X (dead), T, … */
  state: string;
  ppid: number;
  pgrp: number;
  /** Field 22: start time in clock ticks since boot. With the pid, it names one process for good. */
  startTime: number;
}

export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may itself contain spaces and ")": split after the last.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3; field N is rest[N - 3].
  const startTime = Number(rest[19]);
  if (!rest[0] || !Number.isFinite(startTime)) return undefined;
  return { state: rest[0], ppid: Number(rest[1]), pgrp: Number(rest[2]), startTime };
}

/**
 * True when `pid` is a live process and, given a start time, the very process that had it then.
 * Zombies count as dead: an orphan whose reaper (PID 1) does not reap would otherwise live forever.
 */
export function isAlive(pid: number, startTime?: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (HAVE_PROC) {
    const st = readProcStat(pid);
    if (!st || st.state === "Z" || st.state === "X") return false;
    return startTime === undefined || st.startTime === startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Liveness checks for the acquire path, which asks on every grant: each pid's /proc stat file is
 * kept open and re-read with one pread, instead of open + read + close each time. A descriptor of
 * a process that has gone reads ESRCH even if its pid was reused, so it stays tied to one process.
 * Zombies count as dead, as in isAlive.
 */
export class ProcLiveness {
  private readonly fds = new Map<number, number>();
  private readonly buf = Buffer.alloc(1024);

  alive(pid: number): boolean {
    if (!HAVE_PROC) return isAlive(pid);
    let fd = this.fds.get(pid);
    if (fd === undefined) {
      try {
        fd = openSync(`/proc/${pid}/stat`, "r");
      } catch {
        return false;
      }
      this.fds.set(pid, fd);
    }
    let n: number;
    try {
      n = readSync(fd, this.buf, 0, this.buf.length, 0);
    } catch {
      this.forget(pid);
      return false;
    }
    const text = this.buf.toString("latin1", 0, n);
    const state = text[text.lastIndexOf(")") + 2];
    if (state === undefined || state === "Z" || state === "X") {
      this.forget(pid);
      return false;
    }
    return true;
  }

  /** Closes the descriptors of every pid not in `pids` (processes that are no longer ours). */
  keepOnly(pids: ReadonlySet<number>): void {
    for (const pid of this.fds.keys()) if (!pids.has(pid)) this.forget(pid);
  }

  close(): void {
    for (const pid of [...this.fds.keys()]) this.forget(pid);
  }

  private forget(pid: number): void {
    const fd = this.fds.get(pid);
    if (fd === undefined) return;
    this.fds.delete(pid);
    try {
      closeSync(fd);
    } catch {
      // already closed: nothing to release
    }
  }
}

export interface EnvLeader {
  pid: number;
  startTime: number;
  /** The value of the key searched for. */
  value: string;
  env: Map<string, string>;
  argv: string[];
}

/** Live process-group leaders whose environment has `key` set, with its value (Linux only). */
export function leadersWithEnv(key: string): EnvLeader[] {
  if (!HAVE_PROC) return [];
  const out: EnvLeader[] = [];
  const prefix = `${key}=`;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    let raw: string;
    try {
      raw = readFileSync(`/proc/${pid}/environ`, "utf8");
    } catch {
      continue; // gone, or not ours to read
    }
    if (!raw.includes(prefix)) continue;
    const st = readProcStat(pid);
    if (!st || st.pgrp !== pid || st.state === "Z" || st.state === "X") continue;
    const env = new Map<string, string>();
    for (const kv of raw.split("\0")) {
      const eq = kv.indexOf("=");
      if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
    const value = env.get(key);
    if (value === undefined) continue;
    let argv: string[] = [];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
    } catch {
      // gone meanwhile: its argv stays unknown
    }
    out.push({ pid, startTime: st.startTime, value, env, argv });
  }
  return out;
}

/** Live members of a process group and their summed resident memory (best effort). */
export function groupUsage(pgid: number): { pids: number; rssBytes: number } | undefined {
  if (!HAVE_PROC) return undefined;
  let pids = 0;
  let rssBytes = 0;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readProcStat(Number(name));
    if (!st || st.pgrp !== pgid || st.state === "Z") continue;
    pids++;
    rssBytes += rssOf(Number(name));
  }
  return { pids, rssBytes };
}

function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Whether process group `pgid` (our agent's, led by pid `pgid` started at `startTime`) can
 * still only be ours: its leader is still there (alive or an unreaped zombie), or no process
 * holds that pid at all — Linux does not hand out a pid while a group of that id has members.
 * False when a stranger now holds the pid, or when we cannot tell (no /proc).
 */
export function groupIsOurs(pgid: number, startTime: number | undefined): boolean {
  if (!HAVE_PROC || startTime === undefined) return false;
  const st = readProcStat(pgid);
  return st === undefined || st.startTime === startTime;
}

/** Signal a whole process group; false when nobody was there (ESRCH). */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

export interface Descendant {
  pid: number;
  startTime: number;
  pgrp: number;
}

/**
 * Every live process below `pid` in the parent tree (Linux only): what it started, in whatever
 * process group. Taken while `pid` lives — once it dies its children belong to PID 1.
 */
export function descendantsOf(pid: number): Descendant[] {
  if (!HAVE_PROC) return [];
  const children = new Map<number, Descendant[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readProcStat(Number(name));
    if (!st || st.state === "Z" || st.state === "X") continue;
    const d = { pid: Number(name), startTime: st.startTime, pgrp: st.pgrp };
    children.set(st.ppid, [...(children.get(st.ppid) ?? []), d]);
  }
  const out: Descendant[] = [];
  const todo = [pid];
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    for (const d of children.get(next) ?? []) {
      out.push(d);
      todo.push(d.pid);
    }
  }
  return out;
}
