import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { stopProcess, trackProcess } from "./teardown.ts";

const ROOT = join(import.meta.dirname, "..", "..");

/** A random block of `size` ports in 20000-29999 (tests on one machine must not share ports). */
export function portBlock(size: number): string {
  const low = 20_000 + Math.floor(Math.random() * ((10_000 - size) / size)) * size;
  return `${low}-${low + size - 1}`;
}

export function writeConfig(dir: string, config: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "corral.yaml");
  writeFileSync(file, stringify(config));
  return file;
}

export interface DaemonProcess {
  proc: ChildProcess;
  logs: string[];
  /** Resolves with the exit code (or signal). */
  exited: Promise<number | NodeJS.Signals | null>;
}

/**
 * `corral up --config <file>` as a child process (so a test can SIGKILL it), resolved once it
 * logs "corral is up". Its JSON log lines are kept for assertions and failure messages. One that
 * does not come up is killed; one still running at the end of the file, stopped by the teardown
 * (its agents are the test's to remove: a stopped daemon leaves them, by design).
 */
export async function spawnDaemon(
  configFile: string,
  natsUrl: string,
  timeoutMs = 60_000,
): Promise<DaemonProcess> {
  // CORRAL_DAEMON_NODE_ARGS="--cpu-prof" profiles the daemon (NODE_OPTIONS refuses that flag).
  const nodeArgs = process.env.CORRAL_DAEMON_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  const proc = spawn(
    process.execPath,
    [...nodeArgs, join(ROOT, "bin", "corral.js"), "up", "--config", configFile],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        NATS_URL: natsUrl,
        NO_COLOR: "1",
        CORRAL_LOG_LEVEL: process.env.CORRAL_LOG_LEVEL ?? "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  trackProcess(proc, `corral up --config ${configFile}`);
  const logs: string[] = [];
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) =>
    proc.once("exit", (code, signal) => resolve(code ?? signal)),
  );
  const up = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`daemon not up in ${timeoutMs} ms:\n${logs.join("\n")}`)),
      timeoutMs,
    );
    let buf = "";
    const onData = (chunk: Buffer) => {
      buf += chunk.toString();
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        if (line.includes('"corral is up"')) {
          clearTimeout(timer);
          resolve();
        }
        nl = buf.indexOf("\n");
      }
    };
    proc.stderr?.on("data", onData);
    proc.stdout?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited (${code}) before it was up:\n${logs.join("\n")}`));
    });
  });
  await up.catch(async (err) => {
    await stopProcess(proc, { signal: "SIGKILL" });
    throw err;
  });
  // A daemon that dies on its own (not SIGKILLed by a test, not a clean exit) shows why.
  void exited.then((code) => {
    if (code !== 0 && code !== "SIGKILL" && code !== "SIGTERM") {
      process.stderr.write(
        `\n--- corral up exited (${code}); its last log lines:\n${logs.slice(-40).join("\n")}\n`,
      );
    }
  });
  return { proc, logs, exited };
}

export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 30_000,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
