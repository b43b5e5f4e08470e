import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { ActorHost, Offer } from "./actor-host.ts";
import { type Cause, causedBy } from "./caused-by.ts";
import { asAgentView } from "./views.ts";

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
  // Records only what is missing, read from the host's state: after a restart every ready agent is
  // dialled again (resume), and an input it would refuse costs a round trip to confirm the refusal.
  const run = async (agentId: string, generation: number, cause?: Cause) => {
    const ref = { kind: "agent" as const, id: agentId };
    const at = asAgentView(await host.get(ref));
    if (at.context.generation !== generation) return;
    let last = cause;
    if (at.value === "connecting") {
      const thumbprint = createHash("sha256").update(`simulated:${agentId}:${generation}`).digest("hex");
      const registered = await host.offer(ref, {
        type: "AgentRegistered",
        data: { generation, thumbprint, peerCN: "simulated" },
        ...causedBy(last),
      });
      last = eventOf(registered);
      if (!last) return; // moved on meanwhile
    } else if (at.value !== "initializing") return; // ready, or past it: nothing to record
    if (at.value !== "initializing" || at.context.init === null) {
      const started = await host.offer(ref, {
        type: "InitStarted",
        data: { generation, stepCount: 1, deadline: now() + 30_000 },
        ...causedBy(last),
      });
      last = eventOf(started);
      if (!last) return;
    }
    await host.offer(ref, {
      type: "InitCompleted",
      data: { generation, durationMs: 0 },
      ...causedBy(last),
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

/** The stored event of an accepted offer (a refused one stored nothing: its successor is refused too). */
function eventOf(offer: Offer): Cause | undefined {
  return offer.accepted ? offer.event : undefined;
}
