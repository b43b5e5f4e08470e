import { assign, setup } from "xstate";
import type { EventOf, EventOfKind } from "../src/events/catalogue.ts";
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
  /** When the last spawn failed (its event's time): an agent ready since then ends the streak. */
  lastSpawnFailureAt: number | null;
  /** Spawn failures in a row, as the supervisor counted them when recording the last one. */
  failureStreak: number;
  /** No spawn before this (backoff after failures); 0 when not paused. */
  spawnPausedUntil: number;
  /** Instances found at start that no live agent owned, removed. */
  orphansRemoved: number;
}

export interface SpawnParams {
  agentId: string;
  poolId: string;
  runtime: PoolConfig["runtime"];
  deadline: number;
}

const spawnFailed = {
  actions: {
    type: "spawnFailed" as const,
    params: ({ event }: { event: EventOf<"PoolSpawnFailed"> }) => ({ ...event.data, at: event.at }),
  },
};

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
    spawnFailed: assign(
      ({ context }, p: { code: string; message: string; streak: number; retryAt: number; at: number }) => ({
        spawnFailures: context.spawnFailures + 1,
        lastSpawnFailure: `${p.code}: ${p.message}`,
        lastSpawnFailureAt: p.at,
        failureStreak: p.streak,
        spawnPausedUntil: p.retryAt,
      }),
    ),
    orphanRemoved: assign(({ context }) => ({ orphansRemoved: context.orphansRemoved + 1 })),
  },
  guards: {
    exists: ({ context }) => context.config !== null,
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
    lastSpawnFailureAt: null,
    failureStreak: 0,
    spawnPausedUntil: 0,
    orphansRemoved: 0,
  },
  on: {
    // Recorded at start, before the instance is removed; in any state but new (no pool yet).
    PoolOrphanRemoved: { guard: "exists", actions: "orphanRemoved" },
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
        PoolSpawnFailed: spawnFailed,
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
        PoolSpawnFailed: spawnFailed,
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
  version: 2,
  effects: ["spawnAgent", "retireAgent", "recycleAgent"],
});
