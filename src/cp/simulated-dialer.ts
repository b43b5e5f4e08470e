import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { ActorHost } from "./actor-host.ts";
import { type Cause, causedBy } from "./caused-by.ts";

/** What the agent machine's `dialAgent` effect needs from whatever reaches agents. */
export interface Dialer {
  /**
   * Dials the agent's agentd unless a dial is in flight or connected; never throws. What it
   * records follows `cause` (the event that asked for the dial), each fact the one before it.
   */
  dial(agentId: string, generation: number, cause?: Cause): void;
  /** Ends one agent's session on purpose (its instance is gone): records nothing. */
  drop?(agentId: string): Promise<void>;
  /** Loads what dials check against; called once before anything is dialled. */
  start?(): Promise<void>;
  /** Intentional: records nothing. */
  close(): Promise<void>;
}

/**
 * For the simulated runtime only (tests and benchmarks: `src/runtime/simulated.ts`), which starts
 * nothing, so there is no agentd to dial. "Dialling" records at once what a healthy agent's session
 * would: registered (a thumbprint derived from its id and generation, named as simulated), then an
 * init plan of one step that completes. Never used with a runtime that starts something.
 */
export function simulatedDialer(host: ActorHost, now: () => number, log: Logger): Dialer {
  const inFlight = new Set<string>();
  const run = async (agentId: string, generation: number, cause?: Cause) => {
    const ref = { kind: "agent" as const, id: agentId };
    const thumbprint = createHash("sha256").update(`simulated:${agentId}:${generation}`).digest("hex");
    const registered = await host.offer(ref, {
      type: "AgentRegistered",
      data: { generation, thumbprint, peerCN: "simulated" },
      ...causedBy(cause),
    });
    // Refused: the agent registered before (a re-dial after a restart) or moved on.
    if (!registered.accepted) return;
    const started = await host.offer(ref, {
      type: "InitStarted",
      data: { generation, stepCount: 1, deadline: now() + 30_000 },
      ...causedBy(registered.event),
    });
    await host.offer(ref, {
      type: "InitCompleted",
      data: { generation, durationMs: 0 },
      ...causedBy(started.accepted ? started.event : registered.event),
    });
  };
  return {
    dial(agentId, generation, cause) {
      const key = `${agentId}:${generation}`;
      if (inFlight.has(key)) return;
      inFlight.add(key);
      void run(agentId, generation, cause)
        // Only when the host is closing: a restart re-dials (resume).
        .catch((err: unknown) => log.debug({ err, agentId }, "simulated dial stopped"))
        .finally(() => inFlight.delete(key));
    },
    async close() {},
  };
}
