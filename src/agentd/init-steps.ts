import { resolve } from "node:path";
import type { AgentCommand } from "./agent-command.ts";
import type { InitMarkers } from "./markers.ts";
import { configOp, gitOp, type OpContext, sshOp } from "./ops.ts";
import { firstPort, waitForPort } from "./port-wait.ts";
import type { OpArgs, OpMsg, ResultMsg } from "./protocol.ts";
import { errorResult, resultOf } from "./results.ts";
import { type OnOutput, runProcess, succeeded } from "./run.ts";

/**
 * The init plan's steps as agentd runs them (`op` messages): each idempotent, each success
 * recorded by its marker so `hello-ack.initDone` tells a control plane that reconnects or
 * restarts what already ran (LESSONS.md, Init plan).
 */

/** post-init may install things: it gets longer than an exec's usual budget (LESSONS.md, Init plan). */
const POST_INIT_TIMEOUT_MS = 600_000;
/** agent-ready waits this long for the agent's first port (the control plane waits 30 s for the step). */
const AGENT_READY_PORT_WAIT_MS = 25_000;

export interface InitStepsOptions {
  home: string;
  env: NodeJS.ProcessEnv;
  killGraceMs: number;
  markers: InitMarkers;
  command: AgentCommand;
}

export class InitSteps {
  constructor(private readonly opts: InitStepsOptions) {}

  async run(msg: OpMsg, signal: AbortSignal, onOutput: OnOutput): Promise<ResultMsg> {
    const { home, env, killGraceMs } = this.opts;
    const result = await this.result(msg, { home, env, killGraceMs, signal, onOutput });
    if (result.t === "done" && result.exitCode === 0) this.opts.markers.mark(msg.op);
    return result;
  }

  private async result(msg: OpMsg, ctx: OpContext): Promise<ResultMsg> {
    switch (msg.op) {
      case "config":
        return resultOf(msg.id, configOp(msg.args, ctx), "config");
      case "git":
        return resultOf(msg.id, await gitOp(msg.args, ctx), "git");
      case "ssh":
        return resultOf(msg.id, await sshOp(msg.args, ctx), "ssh");
      case "post-init":
        return this.postInit(msg.id, msg.args, ctx);
      case "agent-ready":
        return this.agentReady(msg.id);
    }
  }

  /**
   * Starts the agent's command (once in agentd's life) and, when the agent has ports, answers
   * only once its first port accepts connections: a leased agent's server must answer.
   */
  private async agentReady(id: string): Promise<ResultMsg> {
    const { command, env } = this.opts;
    const started = await command.start();
    if (!started.ok) return errorResult(id, started.code, started.message);
    const port = firstPort(env);
    if (port === undefined) return resultOf(id, succeeded(0));
    const gaveUp = () => !command.status().commandRunning;
    const waited = await waitForPort(port, { timeoutMs: AGENT_READY_PORT_WAIT_MS, gaveUp });
    if (waited === "answered") return resultOf(id, succeeded(0));
    return waited === "gave_up"
      ? errorResult(id, "command_exited", `the agent's command ended before port ${port} answered`)
      : errorResult(id, "not_listening", `nothing accepted connections on port ${port} in time`);
  }

  /** Runs once: after one success its marker answers every later post-init. */
  private async postInit(id: string, args: OpArgs<"post-init">, ctx: OpContext): Promise<ResultMsg> {
    if (this.opts.markers.has("post-init")) return resultOf(id, succeeded(0));
    const spec = {
      argv: args.argv,
      cwd: resolve(ctx.home, args.cwd ?? "."),
      env: { ...ctx.env, ...args.env },
      timeoutMs: args.timeoutMs ?? POST_INIT_TIMEOUT_MS,
      killGraceMs: ctx.killGraceMs,
      signal: ctx.signal,
    };
    return resultOf(id, await runProcess(spec, ctx.onOutput), "post-init");
  }
}
