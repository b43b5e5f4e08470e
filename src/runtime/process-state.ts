import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** One process agent as recorded on disk: enough for a restarted daemon to find and adopt it. */
export interface ProcessRecord {
  v: 1;
  id: string;
  instance: string;
  poolId: string;
  agentId: string;
  generation: number;
  name: string;
  /** argv, argv[0] resolved to an absolute path at create time. */
  command: string[];
  /** The full environment the agent gets (the file is 0600: it may hold secrets). */
  env: Record<string, string>;
  cwd: string;
  logPath: string;
  stopGraceMs: number;
  /** What we last did to it. "running" is checked against /proc before anyone believes it. */
  state: "created" | "running" | "exited" | "removing";
  createdAt: number;
  pid?: number;
  /** /proc/<pid>/stat field 22 at spawn: a reused pid has another start time. */
  procStart?: number;
  startedAt?: number;
  exitedAt?: number;
  exitCode?: number;
  /** With agentd: the dir it writes agentd.json (and its own state) to. */
  agentdState?: string;
  /** With agentd: the copy of its identity in the agent's work dir, removed with the record. */
  identityDir?: string;
}

/**
 * `<root>/instances/<id>.json` (written via temp + rename, so a reader never sees half a file),
 * `<root>/logs/`, `<root>/work/`. Synchronous on purpose: the files are tiny, and a read-modify-
 * write that never yields cannot interleave with another one in this process.
 */
export class StateDir {
  readonly instancesDir: string;
  readonly logsDir: string;
  readonly workDir: string;

  constructor(readonly root: string) {
    this.instancesDir = join(root, "instances");
    this.logsDir = join(root, "logs");
    this.workDir = join(root, "work");
  }

  ensure(): void {
    for (const d of [this.instancesDir, this.logsDir, this.workDir])
      mkdirSync(d, { recursive: true, mode: 0o700 });
  }

  read(id: string): ProcessRecord | undefined {
    if (!/^[\w.-]+$/.test(id)) return undefined; // never a path out of the directory
    return parse(join(this.instancesDir, `${id}.json`));
  }

  write(rec: ProcessRecord): void {
    const path = join(this.instancesDir, `${rec.id}.json`);
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, path);
  }

  delete(id: string): void {
    rmSync(join(this.instancesDir, `${id}.json`), { force: true });
  }

  readAll(): ProcessRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.instancesDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err; // LESSONS: a failed read must fail loudly, never look like "nothing exists"
    }
    const out: ProcessRecord[] = [];
    for (const n of names) {
      if (!n.endsWith(".json")) continue;
      const rec = parse(join(this.instancesDir, n));
      if (rec) out.push(rec);
    }
    return out;
  }
}

function parse(path: string): ProcessRecord | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const rec = JSON.parse(text) as ProcessRecord;
    return rec?.v === 1 && typeof rec.id === "string" ? rec : undefined;
  } catch {
    return undefined; // not ours (or hand-edited into nonsense): ignored, never deleted
  }
}
