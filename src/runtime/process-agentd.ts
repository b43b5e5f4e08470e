import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AGENT_CA_FILE, AGENT_CERT_FILE, AGENT_KEY_FILE } from "../identity/files.ts";
import { parseAgentdJson } from "./agentd-launch.ts";
import { RuntimeError } from "./errors.ts";
import { type Descendant, isAlive, signalGroup } from "./proc.ts";

const IDENTITY_FILES = [AGENT_CERT_FILE, AGENT_KEY_FILE, AGENT_CA_FILE];

/**
 * Copies the identity agentd reads into `dest` (replacing what was there), each file mode 0400:
 * read-only, and for this user alone. A missing file is an invalid spec naming it.
 */
export function copyIdentity(source: string, dest: string): void {
  const missing = IDENTITY_FILES.filter((f) => !existsSync(join(source, f)));
  if (missing.length > 0) {
    throw new RuntimeError("invalid_spec", `agentd.identityDir ${source} lacks ${missing.join(", ")}`);
  }
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true, mode: 0o700 });
  for (const f of IDENTITY_FILES) {
    copyFileSync(join(source, f), join(dest, f));
    chmodSync(join(dest, f), 0o400);
  }
}

/**
 * The port agentd wrote to `<stateDir>/agentd.json`, when that file is whole and names `pid` (a
 * file an earlier agentd of the same record left names another pid).
 */
export function agentdPort(stateDir: string, pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(stateDir, "agentd.json"), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const written = parseAgentdJson(text);
  return written?.pid === pid ? written.port : undefined;
}

/**
 * What agentd started that outlived it in process groups of their own (a command it ran detached):
 * SIGKILLed, each only while it is still the process seen before (same start time). Returns those
 * signalled: a SIGKILL takes effect when the kernel next runs the process, not at once.
 */
export function killSurvivors(below: Iterable<Descendant>): Descendant[] {
  const signalled: Descendant[] = [];
  for (const d of below) {
    if (!isAlive(d.pid, d.startTime)) continue;
    try {
      if (d.pgrp === d.pid) signalGroup(d.pid, "SIGKILL");
      else process.kill(d.pid, "SIGKILL");
      signalled.push(d);
    } catch {
      // EPERM: not ours to signal after all
    }
  }
  return signalled;
}
