import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { findNatsServer } from "./binary.ts";

export interface NatsServerOptions {
  /** Port to listen on; 0 or unset picks a free one. */
  port?: number;
  /** JetStream store directory (kept across restarts of the same handle). */
  storeDir: string;
  /** Write the server's log here instead of discarding it. */
  logFile?: string;
  /**
   * Run in a process group of its own, so the Ctrl-C a terminal sends to our group does not reach
   * it (`corral start` stops it last, after its agents), under a watchdog that stops it when this
   * process exits in any way, SIGKILL included.
   */
  ownGroup?: boolean;
  binary?: string;
  /** A nats-server config file (e.g. local-auth.ts's CORRAL_NATS_CONF); the flags above still win. */
  configFile?: string;
  /** Added to the server's environment (a config file reads `$NAME` from it). */
  env?: Record<string, string>;
}

export class NatsServerNotFoundError extends Error {
  override name = "NatsServerNotFoundError";
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) if (p.exitCode === null) p.kill("SIGKILL");
});

/**
 * Stops `proc` (SIGTERM: JetStream flushes its store) once this process is gone. The watchdog is a
 * shell in a group of its own reading a pipe from us: the kernel closes our end however we exit,
 * its read returns, and it signals the server. It is ended with the server, so it never signals
 * a pid the system has handed to someone else.
 */
function watch(proc: ChildProcess, pid: number): void {
  const dog = spawn("/bin/sh", ["-c", `read _; kill -TERM ${pid}`], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
  });
  dog.on("error", () => {}); // no shell: the server is only stopped by us, as before
  dog.unref();
  (dog.stdin as Socket | null)?.unref(); // the pipe must not keep this process alive
  proc.once("exit", () => dog.kill("SIGKILL"));
}

/**
 * A real `nats-server -js` child process on loopback. Tests get their own on a free port with a
 * temp store; `stop`/`kill`/`start` let them take the server away and bring it back.
 */
export class NatsServer {
  private proc: ChildProcess | undefined;
  port = 0;

  constructor(private readonly opts: NatsServerOptions) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  static async start(opts: NatsServerOptions): Promise<NatsServer> {
    const s = new NatsServer(opts);
    await s.start();
    return s;
  }

  async start(): Promise<void> {
    if (this.proc && this.proc.exitCode === null) return;
    if (!this.port) this.port = this.opts.port || (await freePort());
    mkdirSync(this.opts.storeDir, { recursive: true });
    const bin = this.opts.binary ?? findNatsServer() ?? "nats-server";
    const out = this.opts.logFile ? openSync(this.opts.logFile, "a") : "ignore";
    const args = ["-js", "-a", "127.0.0.1", "-p", String(this.port), "-sd", this.opts.storeDir];
    if (this.opts.configFile) args.push("-c", this.opts.configFile);
    const ownGroup = this.opts.ownGroup ?? false;
    const env = this.opts.env ? { ...process.env, ...this.opts.env } : process.env;
    const proc = spawn(bin, args, { stdio: ["ignore", out, out], detached: ownGroup, env });
    const failed = new Promise<never>((_, reject) => {
      proc.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.code === "ENOENT"
            ? new NatsServerNotFoundError(`${bin} is not on PATH`)
            : new Error(`cannot start ${bin}: ${err.message}`),
        ),
      );
      proc.once("exit", (code) => reject(new Error(`${bin} exited with code ${code} before it was ready`)));
    });
    failed.catch(() => {});
    this.proc = proc;
    if (!ownGroup) live.add(proc);
    else if (proc.pid !== undefined) watch(proc, proc.pid); // undefined: it failed to start
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const ready = await Promise.race([tcpOpen(this.port), failed]);
      if (ready) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    proc.kill("SIGKILL");
    throw new Error(`${bin} did not listen on ${this.port} within 10 s`);
  }

  /** Graceful stop (SIGTERM), waiting for the process to end. */
  stop(): Promise<void> {
    return this.signal("SIGTERM");
  }

  /** Abrupt death, as in a crash. */
  kill(): Promise<void> {
    return this.signal("SIGKILL");
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill(sig);
    await exited;
    live.delete(p);
  }

  static storeDirUnder(dir: string): string {
    return join(dir, "jetstream");
  }
}
