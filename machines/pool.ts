import { assign, setup } from "xstate";
import type { EventOfKind } from "../src/events/catalogue.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { defineAggregate } from "./aggregate.ts";

/**
 * A pool's own record: its configuration, whether it is open, and every decision its supervisor
 * makes (spawn, retire, recycle), each one turned into an input for the agent it concerns.
 * Which decisions to make is `planPool` (pool-plan.ts); this machine only records them.
 */

type PoolEvent = EventOfKind<"pool">;

export interface PoolContext {
  config: PoolConfig | null;
  /** The daemon instance that runs this pool. */
  instance: string;
  createdAt: number;
  closeReason: string | null;
  spawnFailures: number;
  lastSpawnFailure: string | null;
}

export interface SpawnParams {
  agentId: string;
  poolId: string;
  runtime: PoolConfig["runtime"];
  deadline: number;
}

export const poolMachine = setup({
  types: { context: {} as PoolContext, events: {} as PoolEvent },
  actions: {
    // Effects: each decision becomes an input to the agent it concerns.
    spawnAgent: (_, _p: SpawnParams) => {},
    retireAgent: (_, _p: { agentId: string; reason: string; deadline: number }) => {},
    recycleAgent: (_, _p: { agentId: string; reason: string; deadline: number }) => {},
    configure: assign((_, p: { config: PoolConfig; instance: string }) => ({
      config: p.config,
      instance: p.instance,
      closeReason: null,
    })),
    created: assign((_, p: { at: number }) => ({ createdAt: p.at })),
    closing: assign((_, p: { reason: string }) => ({ closeReason: p.reason })),
    spawnFailed: assign(({ context }, p: { code: string; message: string }) => ({
      spawnFailures: context.spawnFailures + 1,
      lastSpawnFailure: `${p.code}: ${p.message}`,
    })),
  },
}).createMachine({
  id: "pool",
  initial: "new",
  context: {
    config: null,
    instance: "",
    createdAt: 0,
    closeReason: null,
    spawnFailures: 0,
    lastSpawnFailure: null,
  },
  states: {
    new: {
      on: {
        PoolCreated: {
          target: "open",
          actions: [
            { type: "configure", params: ({ event }) => event.data },
            { type: "created", params: ({ event }) => ({ at: event.at }) },
          ],
        },
      },
    },
    open: {
      on: {
        PoolReconfigured: { actions: { type: "configure", params: ({ event }) => event.data } },
        PoolAgentSpawned: {
          actions: {
            type: "spawnAgent",
            params: ({ context, event }) => ({
              agentId: event.data.agentId,
              poolId: event.aggregate.id,
              runtime: (context.config as PoolConfig).runtime,
              deadline: event.at + (context.config as PoolConfig).startTimeoutMs,
            }),
          },
        },
        PoolAgentRecycled: {
          actions: {
            type: "recycleAgent",
            params: ({ context, event }) => ({
              ...event.data,
              deadline: event.at + (context.config as PoolConfig).startTimeoutMs,
            }),
          },
        },
        PoolCloseRequested: {
          target: "closing",
          actions: { type: "closing", params: ({ event }) => event.data },
        },
        PoolAgentRetired: {
          actions: {
            type: "retireAgent",
            params: ({ context, event }) => ({
              ...event.data,
              deadline: event.at + (context.config as PoolConfig).leaseTtlMs,
            }),
          },
        },
        PoolSpawnFailed: { actions: { type: "spawnFailed", params: ({ event }) => event.data } },
      },
    },
    closing: {
      // Retirements and failed spawns are recorded while closing too.
      on: {
        PoolClosed: "closed",
        PoolAgentRetired: {
          actions: {
            type: "retireAgent",
            params: ({ context, event }) => ({
              ...event.data,
              deadline: event.at + (context.config as PoolConfig).leaseTtlMs,
            }),
          },
        },
        PoolSpawnFailed: { actions: { type: "spawnFailed", params: ({ event }) => event.data } },
      },
    },
    closed: {
      on: {
        PoolReopened: { target: "open", actions: { type: "configure", params: ({ event }) => event.data } },
      },
    },
  },
});

export const poolAggregate = defineAggregate({
  kind: "pool",
  machine: poolMachine,
  version: 1,
  effects: ["spawnAgent", "retireAgent", "recycleAgent"],
});
