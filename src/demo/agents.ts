import type { AgentChannel, AgentReport } from "../cp/command-effects.ts";

type Behaviour = "completes" | "flaky" | "fails";

/**
 * Three pretend agents, in-process, for the demo: one completes, one ignores the first delivery
 * of each command (so the deadline retries it), one acknowledges and then fails.
 */
export class DemoAgents implements AgentChannel {
  static readonly behaviours: Record<string, Behaviour> = {
    "agent-ok": "completes",
    "agent-flaky": "flaky",
    "agent-broken": "fails",
  };

  constructor(private readonly report: (r: AgentReport) => void) {}

  async deliver(agentId: string, cmd: { commandId: string; action: string; attempt: number }): Promise<void> {
    const behaviour = DemoAgents.behaviours[agentId];
    if (!behaviour) throw new Error(`no agent ${agentId}`);
    if (behaviour === "flaky" && cmd.attempt === 1) return; // swallowed: no ack, the deadline retries
    setTimeout(() => this.report({ commandId: cmd.commandId, kind: "ack", attempt: cmd.attempt }), 20);
    setTimeout(() => {
      if (behaviour === "fails")
        this.report({ commandId: cmd.commandId, kind: "fail", error: `${cmd.action}: exit status 2` });
      else this.report({ commandId: cmd.commandId, kind: "done", result: { output: `${cmd.action} ok` } });
    }, 60);
  }

  async cancel(): Promise<void> {}
}
