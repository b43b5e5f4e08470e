// What one test run leaves behind. The runner (scripts/test.js) marks everything it starts: every
// child inherits CORRAL_TEST_RUN=<run id> and a TMPDIR under one run root (agent processes keep
// TMPDIR only; containers get the run id as a label, see src/runtime/labels.ts). Afterwards
// anything still carrying a mark is a survivor: it is killed and named, and the run fails.
// Only marked things are touched — never by name, never another run's.
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

export const RUN_ENV = "CORRAL_TEST_RUN";
export const RUN_LABEL = "corral.test-run";
const ROOT_PREFIX = "corral-test-run-";

/** Starts a run: its id, its temp root, and the environment every child must inherit. */
export async function startRun() {
  await sweepDeadRuns();
  const root = mkdtempSync(join(tmpdir(), `${ROOT_PREFIX}${process.pid}-`));
  shareTsxCache(tmpdir(), root);
  const id = root.slice(root.lastIndexOf(ROOT_PREFIX) + ROOT_PREFIX.length);
  // XDG_STATE_HOME too: what the CLI keeps for a user (lease tokens) stays in the run, not in
  // the home of whoever runs the suite.
  return { id, root, env: { [RUN_ENV]: id, TMPDIR: root, XDG_STATE_HOME: join(root, "state") } };
}

/**
 * Kills and names whatever of run `run` is still there, removes its temp root, and returns how
 * many survivors there were.
 */
export async function finishRun(run) {
  const procs = await settled(() => markedProcesses({ env: `${RUN_ENV}=${run.id}`, tmpRoot: run.root }));
  for (const p of procs) kill(p.pid);
  const containers = await removeContainers(`${RUN_LABEL}=${run.id}`);
  rmSync(run.root, { recursive: true, force: true });
  const lines = [
    ...procs.map((p) => `process ${p.pid}: ${p.argv.join(" ").slice(0, 200)}`),
    ...containers.map((c) => `container ${c}`),
  ];
  if (lines.length > 0) {
    console.error(`\nThe run left ${lines.length} behind (now killed):\n  ${lines.join("\n  ")}`);
  }
  return lines.length;
}

/**
 * Live processes whose environment carries `env` (KEY=value) or a TMPDIR at or under `tmpRoot`,
 * except this one. Linux (/proc) only: elsewhere none are found.
 */
export function markedProcesses({ env, tmpRoot }) {
  const out = [];
  let names = [];
  try {
    names = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const pid = Number(name);
    let vars;
    try {
      if (/^\S+ \(.*\) [ZX] /s.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) continue; // exited
      vars = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    } catch {
      continue; // gone, or not ours to read
    }
    const tmp = vars.find((v) => v.startsWith("TMPDIR="))?.slice(7);
    const marked =
      (env !== undefined && vars.includes(env)) ||
      (tmp !== undefined && (tmp === tmpRoot || tmp.startsWith(`${tmpRoot}/`)));
    if (!marked) continue;
    let argv = [];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
    } catch {
      // gone meanwhile: named by its pid alone
    }
    out.push({ pid, argv });
  }
  return out;
}

/**
 * tsx keeps its compile cache in <tmpdir>/tsx-<uid>: a new TMPDIR would start it cold in every
 * process that runs TypeScript. A link keeps the one cache (removing the dir leaves its target).
 */
export function shareTsxCache(fromDir, toDir) {
  const name = `tsx-${process.geteuid?.() ?? userInfo().username}`;
  try {
    symlinkSync(join(fromDir, name), join(toDir, name));
  } catch {
    // no link, no harm: a cold cache
  }
}

/** Kills one process for good; false when it was already gone. */
export function kill(pid) {
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

/** What `find` still finds after a short grace: a process exiting right now is not a survivor. */
export async function settled(find) {
  let found = find();
  for (let i = 0; i < 20 && found.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    found = find();
  }
  return found;
}

/**
 * Removes the containers with `label` (key or key=value) that `pick` selects, and names them. No
 * engine there: there are none. One that does not answer is named too — it may hide some.
 */
async function removeContainers(label, pick = () => true) {
  try {
    const { default: Docker } = await import("dockerode");
    const docker = new Docker();
    const listed = await withTimeout(
      docker.listContainers({ all: true, filters: { label: [label] } }),
      30_000,
    );
    const rows = listed.filter(pick);
    await Promise.all(rows.map((r) => docker.getContainer(r.Id).remove({ force: true, v: true })));
    return rows.map(
      (r) =>
        `${(r.Names[0] ?? r.Id).replace(/^\//, "")} (${r.Image}, ${r.State}, instance ${r.Labels["corral.instance"]})`,
    );
  } catch (err) {
    if (/ENOENT|ECONNREFUSED/.test(String(err))) return [];
    return [`(could not list or remove the containers labelled ${label}: ${err.message ?? err})`];
  }
}

function withTimeout(promise, ms) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * What earlier runs left when their runner was killed before it could clean up: their runner's pid
 * is in their temp root's name and their run id, and no longer alive.
 */
async function sweepDeadRuns() {
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(new RegExp(`^${ROOT_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (!pid || alive(pid)) continue;
    const root = join(tmpdir(), name);
    for (const p of markedProcesses({ tmpRoot: root })) {
      if (kill(p.pid)) console.error(`killed process ${p.pid} of a killed earlier run: ${p.argv.join(" ")}`);
    }
    rmSync(root, { recursive: true, force: true });
  }
  const dead = (r) => {
    const runner = Number(/^(\d+)-/.exec(r.Labels[RUN_LABEL] ?? "")?.[1]);
    return runner > 0 && !alive(runner);
  };
  for (const c of await removeContainers(RUN_LABEL, dead))
    console.error(`removed container ${c} of a killed earlier run`);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === "EPERM";
  }
}
