import { assign, setup } from "xstate";
import type { EventOfKind } from "../src/events/catalogue.ts";
import { defineAggregate } from "./aggregate.ts";

/**
 * The control plane's connection to one agent's agentd (aggregate kind `session`, id = the agent's
 * id). The dialer (src/cp/session/dialer.ts) does the I/O and records what happened; this machine
 * only says which facts fit, so a replay tells each connection's story.
 *
 *   idle → connecting → connected → broken → connecting …
 *              ↓            ↓          ↓
 *            failed ←───────┴──────────┘        (failed → connecting on a later dial)
 *
 * A SessionConnecting starts a dial cycle from any state, for the session's generation or a newer
 * one: after a daemon restart the stream may still say "connected" for a connection that died
 * with the old process. A newer generation starts afresh; an older one is refused. Every other
 * fact must name the current generation. No effects and no deadlines: the dialer's waits come
 * from the seed on SessionConnecting (machines/backoff.ts).
 */

type SessionEvent = EventOfKind<"session">;

export interface SessionContext {
  /** The agent instance's generation this session is for; 0 before the first dial. */
  generation: number;
  /** host:port dialled in the current cycle. */
  address: string | null;
  /** Seeds the cycle's backoff waits (backoffSchedule). */
  seed: number | null;
  /** Attempts the last connected or failed cycle took. */
  attempts: number;
  peerCN: string | null;
  thumbprint: string | null;
  chain: string | null;
  /** Why the session last broke or failed. */
  reason: string | null;
  /** Cycles begun in this generation (a re-dial after a break counts). */
  cycles: number;
}

const initial: SessionContext = {
  generation: 0,
  address: null,
  seed: null,
  attempts: 0,
  peerCN: null,
  thumbprint: null,
  chain: null,
  reason: null,
  cycles: 0,
};

const connecting = {
  guard: "currentOrNewer" as const,
  target: "#session.connecting" as const,
  actions: { type: "beginCycle" as const, params: ({ event }: { event: SessionEvent }) => event.data },
};

const failed = {
  guard: "thisGeneration" as const,
  target: "#session.failed" as const,
  actions: { type: "end" as const, params: ({ event }: { event: SessionEvent }) => event.data },
};

export const sessionMachine = setup({
  types: { context: {} as SessionContext, events: {} as SessionEvent },
  actions: {
    beginCycle: assign(({ context }, p: SessionEvent["data"]) => {
      if (!("seed" in p)) return {};
      const fresh = p.generation > context.generation;
      return {
        ...(fresh ? initial : { peerCN: null, thumbprint: null, chain: null, attempts: 0 }),
        generation: p.generation,
        address: p.address,
        seed: p.seed,
        reason: null,
        cycles: (fresh ? 0 : context.cycles) + 1,
      };
    }),
    connect: assign((_, p: SessionEvent["data"]) =>
      "chain" in p
        ? { attempts: p.attempts, peerCN: p.peerCN, thumbprint: p.thumbprint, chain: p.chain }
        : {},
    ),
    end: assign((_, p: SessionEvent["data"]) => ({
      reason: "reason" in p ? p.reason : null,
      ...("attempts" in p ? { attempts: p.attempts } : {}),
    })),
  },
  guards: {
    thisGeneration: ({ context, event }) => event.data.generation === context.generation,
    currentOrNewer: ({ context, event }) => event.data.generation >= context.generation,
  },
}).createMachine({
  id: "session",
  initial: "idle",
  context: initial,
  on: { SessionConnecting: connecting },
  states: {
    idle: {},
    connecting: {
      on: {
        SessionConnected: {
          guard: "thisGeneration",
          target: "connected",
          actions: { type: "connect", params: ({ event }) => event.data },
        },
        SessionFailed: failed,
      },
    },
    connected: {
      on: {
        SessionBroken: {
          guard: "thisGeneration",
          target: "broken",
          actions: { type: "end", params: ({ event }) => event.data },
        },
        SessionFailed: failed,
      },
    },
    broken: { on: { SessionFailed: failed } },
    failed: {},
  },
});

export type SessionState = "idle" | "connecting" | "connected" | "broken" | "failed";

export const sessionAggregate = defineAggregate({
  kind: "session",
  machine: sessionMachine,
  version: 1,
  effects: [],
});
