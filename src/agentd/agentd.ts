import { resolve } from "node:path";
import type { Duplex } from "node:stream";
import { KeyedQueue } from "../keyed-queue.ts";
import { type Logger, silentLogger } from "../log.ts";
import { AgentCommand } from "./agent-command.ts";
import { Connection } from "./connection.ts";
import { InitSteps } from "./init-steps.ts";
import { InitMarkers } from "./markers.ts";
import {
  DEFAULT_HEARTBEAT_MS,
  type ExecMsg,
  type FromAgent,
  PROTOCOL_VERSION,
  type ResultMsg,
  type ToAgent,
} from "./protocol.ts";
import { errorResult, ResultCache, resultOf } from "./results.ts";
import { type OnOutput, runProcess } from "./run.ts";

/**
 * agentd's engine, apart from TLS: it serves any Duplex (main.ts hands it each TLS connection
 * the control plane opened, tests a plain socket). It runs execs and the init plan's ops, each
 * under its command id at most once (protocol.ts), and the agent's own command once.
 */

export interface AgentdOptions {
  agentId: string;
  poolId: string;
  /** Init markers live here (and main.ts writes agentd.json). */
  stateDir: string;
  /** The agent's home: ops write under it; execs run in it unless they name a cwd. */
  home: string;
  /** The agent's own program (agent-ready starts it). */
  agentCommand?: string[];
  /** Environment of execs, ops and the agent's command (an exec's `env` adds to it). */
  env?: NodeJS.ProcessEnv;
  heartbeatMs?: number;
  /** Between SIGTERM and SIGKILL, for a timeout, a cancel or a stop. */
  killGraceMs?: number;
  /** Where the agent's command writes: agentd's own stdout/stderr (default), or nowhere. */
  commandOutput?: "inherit" | "ignore";
  log?: Logger;
}

interface Running {
  /** The newest connection that asked for it: its output and result go there. */
  conn: Connection | undefined;
  abort: AbortController;
  done: Promise<void>;
}

type Work = (signal: AbortSignal, onOutput: OnOutput) => Promise<ResultMsg>;

export class Agentd {
  readonly markers: InitMarkers;
  readonly command: AgentCommand;
  private readonly conns = new Set<Connection>();
  private readonly running = new Map<string, Running>();
  private readonly results = new ResultCache();
  /** Ops of one kind run one at a time (two git ops on one dir must not both clone). */
  private readonly steps = new KeyedQueue();
  private readonly init: InitSteps;
  private readonly log: Logger;
  private readonly env: NodeJS.ProcessEnv;
  private readonly killGraceMs: number;
  private readonly started = performance.now();
  private closing = false;

  constructor(private readonly opts: AgentdOptions) {
    this.log = opts.log ?? silentLogger;
    this.env = opts.env ?? process.env;
    this.killGraceMs = opts.killGraceMs ?? 5000;
    this.markers = new InitMarkers(opts.stateDir);
    this.command = new AgentCommand(opts.agentCommand, {
      cwd: opts.home,
      env: this.env,
      killGraceMs: this.killGraceMs,
      output: opts.commandOutput ?? "inherit",
    });
    this.init = new InitSteps({
      home: opts.home,
      env: this.env,
      killGraceMs: this.killGraceMs,
      markers: this.markers,
      command: this.command,
    });
  }

  /** Serves one connection until it closes. */
  handle(stream: Duplex): void {
    if (this.closing) {
      stream.destroy();
      return;
    }
    const conn = new Connection(
      stream,
      (c, msg) => this.dispatch(c, msg),
      (c) => this.conns.delete(c),
      this.log,
    );
    this.conns.add(conn);
  }

  /** Stops everything: running commands and the agent's command (each after its grace), then connections. */
  async close(): Promise<void> {
    this.closing = true;
    for (const r of this.running.values()) r.abort.abort();
    await Promise.all([this.command.stop(), ...[...this.running.values()].map((r) => r.done)]);
    for (const c of this.conns) c.end();
  }

  private dispatch(conn: Connection, msg: ToAgent): void {
    if (!conn.helloDone && msg.t !== "hello" && msg.t !== "ping") {
      conn.send({
        t: "error",
        id: "id" in msg ? msg.id : "",
        code: "hello_first",
        message: "send hello first",
      });
      return;
    }
    switch (msg.t) {
      case "hello":
        this.hello(conn, msg.v, msg.agentId);
        break;
      case "ping":
        conn.send({ t: "pong" });
        break;
      case "register-required":
        conn.send({ t: "register", poolId: this.opts.poolId, agentId: this.opts.agentId });
        break;
      case "welcome":
        this.log.info("agentd: registered with the control plane");
        break;
      case "refused":
        this.log.warn("agentd: the control plane refused the registration");
        break;
      case "exec":
        this.track(conn, msg.id, (signal, onOutput) => this.exec(msg, signal, onOutput));
        break;
      case "op":
        this.track(conn, msg.id, (signal, onOutput) =>
          this.steps.run(msg.op, () => this.init.run(msg, signal, onOutput)),
        );
        break;
      case "cancel":
        this.cancel(conn, msg.id);
        break;
    }
  }

  private hello(conn: Connection, v: number, agentId: string): void {
    if (v !== PROTOCOL_VERSION) {
      conn.send({
        t: "error",
        id: "",
        code: "unsupported_version",
        message: `protocol v${v}, agentd speaks v1`,
      });
      conn.end();
      return;
    }
    conn.helloDone = true;
    // The control plane compares the hello-ack with what it expected; agentd only notes it.
    if (agentId !== this.opts.agentId)
      this.log.warn({ expected: agentId }, "agentd: hello names another agent");
    conn.send({
      t: "hello-ack",
      agentId: this.opts.agentId,
      poolId: this.opts.poolId,
      initDone: this.markers.done(),
      ...this.command.status(),
    });
    // Commands whose connection is gone go on streaming here: a control plane that restarted.
    for (const r of this.running.values()) if (!r.conn?.open) r.conn = conn;
    conn.startHeartbeat(this.opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, () => this.heartbeat());
  }

  private heartbeat(): FromAgent {
    const cpu = process.cpuUsage();
    return {
      t: "heartbeat",
      rssBytes: process.memoryUsage.rss(),
      cpuUserMs: Math.round(cpu.user / 1000),
      cpuSystemMs: Math.round(cpu.system / 1000),
      uptimeMs: Math.round(performance.now() - this.started),
      ...this.command.status(),
    };
  }

  /**
   * Runs `work` under command id `id` at most once: the cached result if it ran (replayed), the
   * running one moved to this connection if it runs, else it starts now.
   */
  private track(conn: Connection, id: string, work: Work): void {
    const cached = this.results.get(id);
    const live = this.running.get(id);
    if (cached) conn.send({ ...cached, replayed: true });
    else if (live) {
      live.conn = conn;
      conn.send({ t: "ack", id });
    } else if (this.closing) conn.send(errorResult(id, "shutting_down", "agentd is stopping"));
    else this.start(conn, id, work);
  }

  private start(conn: Connection, id: string, work: Work): void {
    const abort = new AbortController();
    const entry: Running = { conn, abort, done: Promise.resolve() };
    this.running.set(id, entry);
    conn.send({ t: "ack", id });
    let dropped = 0;
    const onOutput: OnOutput = (stream, data) => {
      if (entry.conn?.congested) dropped += data.length;
      else entry.conn?.send({ t: "out", id, stream, data });
    };
    entry.done = work(abort.signal, onOutput)
      .catch((err: unknown) => errorResult(id, "op_failed", err instanceof Error ? err.message : String(err)))
      .then((result) => {
        this.results.set(result);
        this.running.delete(id);
        this.log.info(
          {
            id,
            result: result.t === "done" ? result.exitCode : result.code,
            ...(dropped ? { dropped } : {}),
          },
          "agentd: command ended",
        );
        entry.conn?.send(result);
      });
  }

  private async exec(msg: ExecMsg, signal: AbortSignal, onOutput: OnOutput): Promise<ResultMsg> {
    const r = await runProcess(
      {
        argv: msg.argv,
        cwd: resolve(this.opts.home, msg.cwd ?? "."),
        env: { ...this.env, ...msg.env },
        ...(msg.stdin ? { stdin: msg.stdin } : {}),
        ...(msg.timeoutMs ? { timeoutMs: msg.timeoutMs } : {}),
        killGraceMs: this.killGraceMs,
        signal,
      },
      onOutput,
    );
    return resultOf(msg.id, r);
  }

  private cancel(conn: Connection, id: string): void {
    const live = this.running.get(id);
    if (live) live.abort.abort();
    else conn.send(errorResult(id, "not_running", `${id} is not running`));
  }
}
