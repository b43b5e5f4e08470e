import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "../vendor/zod.ts";
import { RuntimeError } from "./errors.ts";
import { DEFAULT_STOP_GRACE_MS } from "./labels.ts";
import type { AgentdSpec, CreateSpec } from "./types.ts";

/** The port agentd listens on inside a container (not published: dialled at the container's IP). */
export const AGENTD_PORT = 7070;

/** corral's package root: the nearest directory above this file holding package.json. */
export const PACKAGE_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

/** From src/runtime or dist/src/runtime alike (dist/ holds no package.json). */
function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) return join(from, "..", "..");
  }
}

const BUILT_ENTRY = join("dist", "src", "agentd", "main.js");
const SOURCE_ENTRY = join("src", "agentd", "main.ts");

let chosen: string[] | undefined;

/** agentd's node arguments for this daemon: decided once, like the daemon's own start. */
export function agentdArgs(): string[] {
  chosen ??= chooseAgentdArgs(PACKAGE_ROOT, process.env.CORRAL_FROM_SOURCE === "1");
  return chosen;
}

/**
 * agentd's node arguments, relative to the package root `root`. As bin/corral.js decides: the
 * build in dist/ when it exists and is not older than the sources (unless `fromSource`), else the
 * sources through tsx's loader, which must be inside `root` (a container sees nothing else).
 */
export function chooseAgentdArgs(root: string, fromSource: boolean): string[] {
  if (!fromSource && buildIsFresh(root)) return [BUILT_ENTRY];
  if (!existsSync(join(root, SOURCE_ENTRY))) {
    throw new RuntimeError("agentd_missing", `neither a build nor the sources of agentd are in ${root}`);
  }
  const loader = fileURLToPath(import.meta.resolve("tsx"));
  const rel = relative(root, loader);
  if (rel.startsWith("..")) {
    throw new RuntimeError("agentd_missing", `tsx (${loader}) is outside corral's package root ${root}`);
  }
  return ["--import", rel, SOURCE_ENTRY];
}

/** The same test as bin/corral.js: the build exists and no source file is newer. */
function buildIsFresh(root: string): boolean {
  const main = join(root, BUILT_ENTRY);
  if (!existsSync(main)) return false;
  const builtAt = statSync(main).mtimeMs;
  for (const dir of ["src", "machines"].filter((d) => existsSync(join(root, d)))) {
    for (const e of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
      if (e.isFile() && statSync(join(e.parentPath, e.name)).mtimeMs > builtAt) return false;
    }
  }
  return true;
}

/** `args` with the entry and loader paths under `root` (the host's, or the container's mount). */
export function rootedArgs(args: string[], root: string): string[] {
  return args.map((a) => (a.startsWith("-") ? a : `${root}${sep}${a}`.replaceAll(sep, "/")));
}

/** agentd's environment (src/agentd/main.ts reads it), on top of the agent's own. */
export function agentdEnv(
  spec: CreateSpec & { agentd: AgentdSpec },
  where: { identityDir: string; listen: string; stateDir: string; command: string[] },
): Record<string, string> {
  const stopGrace = spec.template.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  return {
    CORRAL_AGENTD_DIR: where.identityDir,
    CORRAL_AGENTD_CP_CN: spec.agentd.cpCN,
    CORRAL_AGENTD_LISTEN: where.listen,
    CORRAL_AGENTD_STATE: where.stateDir,
    CORRAL_AGENT_COMMAND: JSON.stringify(where.command),
    // agentd's own grace for the command fits inside the runtime's for agentd, so a stop ends
    // the command gracefully before anything is SIGKILLed.
    CORRAL_AGENTD_GRACE_MS: String(Math.max(100, Math.floor(stopGrace * 0.75))),
  };
}

/** Why an agentd spec cannot be used, or undefined. */
export function invalidAgentd(a: AgentdSpec): string | undefined {
  if (typeof a.identityDir !== "string" || !a.identityDir.startsWith("/")) {
    return "agentd.identityDir must be an absolute path";
  }
  if (!existsSync(a.identityDir)) return `agentd.identityDir ${a.identityDir} does not exist`;
  if (typeof a.cpCN !== "string" || a.cpCN.length === 0) return "agentd.cpCN is required";
  return undefined;
}

const agentdJson = z.object({
  port: z.number().int().min(1).max(65535),
  pid: z.number().int().positive(),
});

/** The endpoint a process agentd wrote, or undefined when the text is not {port, pid}. */
export function parseAgentdJson(text: string): { port: number; pid: number } | undefined {
  try {
    const parsed = agentdJson.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // half a file, or not JSON: not written yet as far as a dialer is concerned
  }
}
