import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stopProcess, tempDir, trackProcess } from "./teardown.ts";

export const root = fileURLToPath(new URL("../..", import.meta.url));
export const bin = join(root, "bin", "corral.js");

/**
 * Where the CLI runs: an empty directory of the test file's own, not the checkout, whose `.corral/`
 * (left by a developer's `npm start`) the CLI would read its event key and credentials from.
 */
let workDir: string | undefined;
const cliCwd = () => (workDir ??= tempDir("cli-cwd-"));

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs the real CLI as a subprocess, as a user would. Colour variables are cleared unless given;
 * `during` may act on it while it runs (e.g. send Ctrl-C). A run that `during` fails is stopped at
 * once; one still running at the end of the file is stopped by the teardown.
 */
export function corral(
  args: string[],
  env: Record<string, string | undefined> = {},
  during?: (kill: (signal: NodeJS.Signals) => void) => Promise<void>,
): Promise<Run> {
  const started = Date.now();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined, ...env };
  for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [bin, ...args], { cwd: cliCwd(), env: childEnv });
    trackProcess(p, `corral ${args.join(" ")}`);
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => {
      stdout += d;
    });
    p.stderr.on("data", (d) => {
      stderr += d;
    });
    let failed: { err: unknown } | undefined;
    p.on("error", reject);
    p.on("close", (code) =>
      failed ? reject(failed.err) : resolve({ code, stdout, stderr, ms: Date.now() - started }),
    );
    p.stdin.end();
    during?.((signal) => p.kill(signal)).catch((err: unknown) => {
      failed = { err };
      void stopProcess(p);
    });
  });
}
