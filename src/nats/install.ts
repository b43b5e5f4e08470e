import { spawn, spawnSync } from "node:child_process";
import { findExecutable, findNatsServer } from "./binary.ts";

/** What decides how nats-server can be installed here (a parameter so tests can vary it). */
export interface InstallHost {
  platform: NodeJS.Platform;
  isRoot: boolean;
  /** Whether a command is on PATH. */
  has(command: string): boolean;
  /** Whether `sudo -n true` succeeds (sudo without a password prompt). */
  sudoWithoutPassword(): boolean;
  env: NodeJS.ProcessEnv;
}

function thisHost(): InstallHost {
  const has = (c: string) => findExecutable(c) !== undefined;
  return {
    platform: process.platform,
    isRoot: process.getuid?.() === 0,
    has,
    sudoWithoutPassword: () =>
      has("sudo") && spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0,
    env: process.env,
  };
}

export type InstallPlan =
  /** Run these, one after the other; `line` is how they are announced (one line). */
  (
    | { kind: "run"; steps: string[][]; env: Record<string, string>; line: string }
    /** Cannot (or must not) install, and why. */
    | { kind: "manual"; why: string }
  ) & {
    /** What a person would run instead, on this system. */
    commands: string[];
  };

const APT_ENV = { DEBIAN_FRONTEND: "noninteractive" };

/** apt, run as root or through passwordless sudo; brew on macOS; otherwise what a person should run. */
export function installPlan(host: InstallHost): InstallPlan {
  const optedOut = host.env.CORRAL_NO_INSTALL?.trim();
  const off = optedOut !== undefined && optedOut !== "" && optedOut !== "0";
  if (host.platform === "darwin") {
    const commands = ["brew install nats-server"];
    if (off) return { kind: "manual", why: "CORRAL_NO_INSTALL is set", commands };
    if (!host.has("brew")) {
      return { kind: "manual", why: "Homebrew is not installed (https://brew.sh)", commands };
    }
    if (host.isRoot) return { kind: "manual", why: "Homebrew does not run as root", commands };
    return {
      kind: "run",
      steps: [["brew", "install", "nats-server"]],
      env: {},
      line: "brew install nats-server",
      commands,
    };
  }
  if (host.platform === "linux" && host.has("apt-get")) {
    const commands = ["sudo apt-get update && sudo apt-get install -y nats-server"];
    if (off) return { kind: "manual", why: "CORRAL_NO_INSTALL is set", commands };
    const apt = [
      ["apt-get", "update", "-qq"],
      ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nats-server"],
    ];
    if (host.isRoot) {
      return {
        kind: "run",
        steps: apt,
        env: APT_ENV,
        line: apt.map((s) => s.join(" ")).join(" && "),
        commands,
      };
    }
    if (host.sudoWithoutPassword()) {
      // sudo drops most of the environment: env(1) carries DEBIAN_FRONTEND through.
      const steps = apt.map((s) => ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive", ...s]);
      return {
        kind: "run",
        steps,
        env: {},
        line: apt.map((s) => `sudo -n ${s.join(" ")}`).join(" && "),
        commands,
      };
    }
    return { kind: "manual", why: "not root and sudo asks for a password", commands };
  }
  return {
    kind: "manual",
    why: off ? "CORRAL_NO_INSTALL is set" : "no package manager corral knows (apt-get, brew)",
    commands: [
      "sudo apt-get install nats-server (Debian, Ubuntu)",
      "brew install nats-server (macOS)",
      "or a release binary from https://github.com/nats-io/nats-server/releases",
    ],
  };
}

type Obtained = { binary: string } | { missing: string; commands: string[] };

/**
 * nats-server's path, installing it first when it is missing and this host allows (saying so in
 * one line); otherwise why it is missing and the commands that would install it.
 */
export async function obtainNatsServer(
  host: InstallHost = thisHost(),
  say: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<Obtained> {
  const found = findNatsServer(host.env.PATH);
  if (found) return { binary: found };
  const plan = installPlan(host);
  if (plan.kind === "manual") {
    return { missing: `nats-server is not installed (${plan.why})`, commands: plan.commands };
  }
  say(`corral: nats-server is not installed; installing it: ${plan.line}`);
  const failed = await runPlan(plan, host.env);
  const binary = findNatsServer(host.env.PATH);
  if (binary) return { binary };
  return {
    missing: failed
      ? `nats-server is not installed and installing it failed: ${failed}`
      : "nats-server was installed but is not on PATH",
    commands: plan.commands,
  };
}

/** Runs a plan's steps; resolves to undefined when all succeed, else the failure and its output. */
async function runPlan(
  plan: Extract<InstallPlan, { kind: "run" }>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  for (const [cmd, ...args] of plan.steps) {
    const failure = await new Promise<string | undefined>((resolve) => {
      let output = "";
      const p = spawn(cmd as string, args, {
        env: { ...env, ...plan.env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      p.stdout.on("data", (d) => {
        output += d;
      });
      p.stderr.on("data", (d) => {
        output += d;
      });
      p.once("error", (err) => resolve(`${cmd}: ${err.message}`));
      p.once("close", (code, signal) => {
        if (code === 0) return resolve(undefined);
        const tail = output.trim().split("\n").slice(-5).join("\n");
        resolve(
          `\`${[cmd, ...args].join(" ")}\` ${signal ? `died of ${signal}` : `exited ${code}`}\n${tail}`,
        );
      });
    });
    if (failure) return failure;
  }
  return undefined;
}

/** How to proceed by hand: the commands for this system first, then the ways without installing. */
export function manualAdvice(commands: string[]): string {
  return [
    "Install it, then run this again:",
    ...commands.map((c) => `  ${c}`),
    "or run one in Docker:         docker run -p 4222:4222 nats:2.9 -js",
    "or use an existing server:    NATS_URL=nats://host:4222",
  ].join("\n");
}
