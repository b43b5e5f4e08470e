import { assign, setup } from "xstate";
import type { EventOf, EventOfKind } from "../src/events/catalogue.ts";
import { defineAggregate } from "./aggregate.ts";

/**
 * A lease: granted → released | expired | revoked. The holder renews before expiresAt; a holder
 * that dies stops renewing, the lease expires, and its agent is recycled (state unknown).
 */

type LeaseEvent = EventOfKind<"lease">;

export interface LeaseContext {
  poolId: string;
  agentId: string;
  holder: string;
  ttlMs: number;
  grantedAt: number;
  expiresAt: number;
  endedAt: number | null;
  endReason: string | null;
}

export const leaseMachine = setup({
  types: { context: {} as LeaseContext, events: {} as LeaseEvent },
  actions: {
    /** Effect: the agent's state is unknown now; the pool recycles it. */
    recycleAgent: (_, _p: { poolId: string; agentId: string }) => {},
    grant: assign((_, p: EventOf<"LeaseGranted">["data"] & { at: number }) => ({
      poolId: p.poolId,
      agentId: p.agentId,
      holder: p.holder,
      ttlMs: p.ttlMs,
      grantedAt: p.at,
      expiresAt: p.expiresAt,
    })),
    renew: assign((_, p: { expiresAt: number }) => ({ expiresAt: p.expiresAt })),
    end: assign((_, p: { at: number; reason: string }) => ({ endedAt: p.at, endReason: p.reason })),
  },
  guards: {
    dueNow: ({ context, event }) =>
      event.type === "LeaseExpired" && event.data.deadline === context.expiresAt,
    extends: ({ context, event }) =>
      event.type === "LeaseRenewed" && event.data.expiresAt > context.expiresAt,
  },
}).createMachine({
  id: "lease",
  initial: "new",
  context: {
    poolId: "",
    agentId: "",
    holder: "",
    ttlMs: 0,
    grantedAt: 0,
    expiresAt: 0,
    endedAt: null,
    endReason: null,
  },
  states: {
    new: {
      on: {
        LeaseGranted: {
          target: "granted",
          actions: { type: "grant", params: ({ event }) => ({ ...event.data, at: event.at }) },
        },
      },
    },
    granted: {
      on: {
        LeaseRenewed: { guard: "extends", actions: { type: "renew", params: ({ event }) => event.data } },
        LeaseReleased: {
          target: "released",
          actions: { type: "end", params: ({ event }) => ({ at: event.at, reason: "released" }) },
        },
        LeaseExpired: {
          guard: "dueNow",
          target: "expired",
          actions: [
            { type: "end", params: ({ event }) => ({ at: event.at, reason: "expired" }) },
            {
              type: "recycleAgent",
              params: ({ context }) => ({ poolId: context.poolId, agentId: context.agentId }),
            },
          ],
        },
        LeaseRevoked: {
          target: "revoked",
          actions: { type: "end", params: ({ event }) => ({ at: event.at, reason: event.data.reason }) },
        },
      },
    },
    released: { type: "final" },
    expired: { type: "final" },
    revoked: { type: "final" },
  },
});

export const leaseAggregate = defineAggregate({
  kind: "lease",
  machine: leaseMachine,
  version: 1,
  effects: ["recycleAgent"],
  timer: (s) =>
    s.value === "granted"
      ? { at: s.context.expiresAt, input: { type: "LeaseExpired", data: { deadline: s.context.expiresAt } } }
      : null,
});
