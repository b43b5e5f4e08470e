import type { InitStep, OpArgs, OpName } from "../../agentd/protocol.ts";
import {
  DEFAULT_POST_INIT_TIMEOUT_MS,
  DEFAULT_STEP_TIMEOUT_MS,
  type StoredInit,
} from "../../events/template-init.ts";
import type { InitKeys } from "./template.ts";

/**
 * The init plan of a pool template: the steps agentd runs before the agent is leased, in the
 * order config, git, ssh, post-init, agent-ready. A part the template does not configure is left
 * out; `agent-ready` (start the agent's own command) is always the last step. Pure: the same
 * template and keys always give the same plan.
 */

/** One built-in op of agentd with its arguments (protocol.ts `opArgs`). */
export type StepOp = { [O in OpName]: { op: O; args: OpArgs<O> } }[OpName];

export type PlanStep = {
  name: InitStep;
  /** How long the control plane waits for the step's answer before it cancels it. */
  timeoutMs: number;
} & (
  | { op: StepOp }
  /** The step cannot be sent (e.g. a key's content is not in this daemon's config): it fails. */
  | { fault: string }
);

export interface InitPlan {
  steps: PlanStep[];
}

/** The control plane waits this much longer than agentd's own post-init timeout, so agentd's answer (with stderr) comes first. */
export const POST_INIT_GRACE_MS = 5_000;

export function initPlan(init: StoredInit | undefined, keys: InitKeys = new Map()): InitPlan {
  const stepTimeout = init?.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  const steps: PlanStep[] = [];
  const add = (name: InitStep, body: { op: StepOp } | { fault: string }, timeoutMs = stepTimeout) =>
    steps.push({ name, timeoutMs, ...body });
  if (init?.config) add("config", { op: { op: "config", args: { files: init.config.files } } });
  if (init?.git) add("git", gitStep(init.git));
  if (init?.ssh) add("ssh", sshStep(init.ssh, keys));
  if (init?.postInit) {
    const timeoutMs = init.postInit.timeoutMs ?? DEFAULT_POST_INIT_TIMEOUT_MS;
    const args = { argv: init.postInit.argv, timeoutMs };
    add("post-init", { op: { op: "post-init", args } }, timeoutMs + POST_INIT_GRACE_MS);
  }
  add("agent-ready", { op: { op: "agent-ready", args: {} } });
  return { steps };
}

function gitStep(git: NonNullable<StoredInit["git"]>): { op: StepOp } {
  const dir = git.dir ?? repoDirName(git.repo);
  const args = {
    repo: git.repo,
    dir,
    ...(git.ref !== undefined && { ref: git.ref }),
    ...(git.mode === "worktree" && { mode: "worktree" as const }),
  };
  return { op: { op: "git", args } };
}

/** What `git clone <repo>` would name the directory, when that is a plain name; else "repo". */
export function repoDirName(repo: string): string {
  const base =
    repo
      .replace(/[/\\]+$/, "")
      .split(/[/\\:]/)
      .pop() ?? "";
  const name = base.endsWith(".git") ? base.slice(0, -4) : base;
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name) ? name : "repo";
}

function sshStep(ssh: NonNullable<StoredInit["ssh"]>, keys: InitKeys): { op: StepOp } | { fault: string } {
  const resolved: { name: string; content: string }[] = [];
  for (const k of ssh.keys ?? []) {
    const content = keys.get(k.sha256);
    // Never the content or its digest in the message: the name is enough to find it in corral.yaml.
    if (content === undefined)
      return { fault: `ssh key ${k.name}: its content is not in this daemon's config` };
    resolved.push({ name: k.name, content });
  }
  const args = {
    ...(ssh.knownHosts && { knownHosts: ssh.knownHosts }),
    ...(resolved.length > 0 && { keys: resolved }),
  };
  return { op: { op: "ssh", args } };
}
