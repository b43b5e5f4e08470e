import { assign, setup } from "xstate";
import type { EventOfKind } from "../src/events/catalogue.ts";
import { defineAggregate, type EffectIntent } from "./aggregate.ts";

/**
 * One agent of a pool. An agent keeps its id across recycles: each recycle stops its instance
 * (container or process) and starts a new generation, until maxRecycles retires it.
 *
 *   requested → creating → starting → ready (idle ⇄ leased) → draining → stopping → stopped
 *        ↑__________ recycling ←_______________|                                 failed (any live state)
 *
 * Each step before ready has a deadline; a step's effect reports the next fact. Between
 * starting and ready a later issue adds connect / register / init.
 */

type AgentEvent = EventOfKind<"agent">;

export interface AgentContext {
  poolId: string;
  runtime: "docker" | "process";
  /** Instance generation: 1 at creation, +1 per recycle. */
  generation: number;
  ports: number[];
  instanceId: string | null;
  leaseId: string | null;
  /** Leases over the agent's whole life. */
  leasesServed: number;
  /** Leases of the current generation: what maxLeases limits (a recycle starts afresh). */
  generationLeases: number;
  recycles: number;
  /** When the agent was requested (from its first event, never a clock). */
  createdAt: number;
  /** When the current generation became ready (for maxAge). */
  readyAt: number | null;
  deadline: number | null;
  stopReason: string | null;
  error: { phase: string; code: string; message: string } | null;
}

export interface InstanceParams {
  poolId: string;
  generation: number;
  ports: number[];
  instanceId: string | null;
}

const instance = ({ context }: { context: AgentContext }): InstanceParams => ({
  poolId: context.poolId,
  generation: context.generation,
  ports: context.ports,
  instanceId: context.instanceId,
});

const fail = (phase: string) => ({
  target: "#agent.failed" as const,
  actions: [
    {
      type: "failWith" as const,
      params: ({ event }: { event: AgentEvent }) =>
        event.type === "AgentFailed"
          ? event.data
          : { phase, code: "timeout", message: `${phase} did not finish before its deadline` },
    },
  ],
});

export const agentMachine = setup({
  types: { context: {} as AgentContext, events: {} as AgentEvent },
  actions: {
    // Effects (run by the control plane after the event is stored):
    allocatePorts: (_, _p: InstanceParams) => {},
    createInstance: (_, _p: InstanceParams) => {},
    startInstance: (_, _p: InstanceParams) => {},
    recycleInstance: (_, _p: InstanceParams) => {},
    stopInstance: (_, _p: InstanceParams) => {},
    cleanupInstance: (_, _p: InstanceParams) => {},
    // Context updates:
    request: assign(
      (_, p: { poolId: string; runtime: "docker" | "process"; at: number; deadline: number }) => ({
        poolId: p.poolId,
        runtime: p.runtime,
        generation: 1,
        createdAt: p.at,
        deadline: p.deadline,
      }),
    ),
    setPorts: assign((_, p: { ports: number[] }) => ({ ports: p.ports })),
    setInstance: assign((_, p: { instanceId: string }) => ({ instanceId: p.instanceId })),
    becomeReady: assign((_, p: { at: number }) => ({ readyAt: p.at, deadline: null })),
    lease: assign(({ context }, p: { leaseId: string }) => ({
      leaseId: p.leaseId,
      leasesServed: context.leasesServed + 1,
      generationLeases: context.generationLeases + 1,
    })),
    unlease: assign({ leaseId: null }),
    arm: assign((_, p: { deadline: number }) => ({ deadline: p.deadline })),
    stopBecause: assign((_, p: { reason: string; deadline: number }) => ({
      stopReason: p.reason,
      deadline: p.deadline,
    })),
    nextGeneration: assign(({ context }, p: { generation: number; deadline: number }) => ({
      generation: p.generation,
      recycles: context.recycles + 1,
      generationLeases: 0,
      ports: [],
      instanceId: null,
      leaseId: null,
      readyAt: null,
      deadline: p.deadline,
    })),
    finish: assign({ deadline: null, leaseId: null }),
    failWith: assign((_, p: { phase: string; code: string; message: string }) => ({
      error: p,
      deadline: null,
      leaseId: null,
    })),
  },
  guards: {
    thisGeneration: ({ context, event }) =>
      "generation" in event.data && event.data.generation === context.generation,
    nextGeneration: ({ context, event }) =>
      event.type === "AgentRecycled" && event.data.generation === context.generation + 1,
    thisLease: ({ context, event }) => "leaseId" in event.data && event.data.leaseId === context.leaseId,
    dueNow: ({ context, event }) =>
      event.type === "AgentTimedOut" && event.data.deadline === context.deadline,
  },
}).createMachine({
  id: "agent",
  initial: "new",
  context: {
    poolId: "",
    runtime: "process",
    generation: 0,
    ports: [],
    instanceId: null,
    leaseId: null,
    leasesServed: 0,
    generationLeases: 0,
    recycles: 0,
    createdAt: 0,
    readyAt: null,
    deadline: null,
    stopReason: null,
    error: null,
  },
  states: {
    new: {
      on: {
        AgentRequested: {
          target: "requested",
          actions: {
            type: "request",
            params: ({ event }) => ({ ...event.data, at: event.at }),
          },
        },
      },
    },
    requested: {
      entry: { type: "allocatePorts", params: instance },
      on: {
        AgentPortsAllocated: {
          guard: "thisGeneration",
          target: "creating",
          actions: { type: "setPorts", params: ({ event }) => ({ ports: event.data.ports }) },
        },
        AgentDrainRequested: {
          target: "stopping",
          actions: { type: "stopBecause", params: ({ event }) => event.data },
        },
        AgentTimedOut: { guard: "dueNow", ...fail("requested") },
        AgentFailed: fail("requested"),
      },
    },
    creating: {
      entry: { type: "createInstance", params: instance },
      on: {
        AgentCreated: {
          guard: "thisGeneration",
          target: "starting",
          actions: { type: "setInstance", params: ({ event }) => ({ instanceId: event.data.instanceId }) },
        },
        AgentDrainRequested: {
          target: "stopping",
          actions: { type: "stopBecause", params: ({ event }) => event.data },
        },
        AgentTimedOut: { guard: "dueNow", ...fail("creating") },
        AgentFailed: fail("creating"),
      },
    },
    starting: {
      entry: { type: "startInstance", params: instance },
      on: {
        AgentStarted: {
          guard: "thisGeneration",
          target: "ready",
          actions: { type: "becomeReady", params: ({ event }) => ({ at: event.at }) },
        },
        AgentDrainRequested: {
          target: "stopping",
          actions: { type: "stopBecause", params: ({ event }) => event.data },
        },
        AgentTimedOut: { guard: "dueNow", ...fail("starting") },
        AgentFailed: fail("starting"),
      },
    },
    ready: {
      initial: "idle",
      states: {
        idle: {
          on: {
            AgentLeased: { target: "leased", actions: { type: "lease", params: ({ event }) => event.data } },
            AgentDrainRequested: {
              target: "#agent.stopping",
              actions: { type: "stopBecause", params: ({ event }) => event.data },
            },
          },
        },
        leased: {
          on: {
            AgentReleased: { guard: "thisLease", target: "idle", actions: "unlease" },
            AgentDrainRequested: {
              target: "#agent.draining",
              actions: { type: "stopBecause", params: ({ event }) => event.data },
            },
          },
        },
      },
      on: {
        AgentRecycleRequested: {
          target: "recycling",
          actions: [{ type: "stopBecause", params: ({ event }) => event.data }, "unlease"],
        },
        AgentFailed: fail("ready"),
      },
    },
    draining: {
      on: {
        AgentReleased: { guard: "thisLease", target: "stopping", actions: "unlease" },
        // The lease expired: nobody will release it.
        AgentRecycleRequested: { target: "stopping", actions: "unlease" },
        AgentTimedOut: { guard: "dueNow", target: "stopping", actions: "unlease" },
        AgentFailed: fail("draining"),
      },
    },
    recycling: {
      entry: { type: "recycleInstance", params: instance },
      on: {
        AgentRecycled: {
          guard: "nextGeneration",
          target: "requested",
          actions: {
            type: "nextGeneration",
            params: ({ event }) => event.data,
          },
        },
        AgentDrainRequested: {
          target: "stopping",
          actions: { type: "stopBecause", params: ({ event }) => event.data },
        },
        AgentTimedOut: { guard: "dueNow", ...fail("recycling") },
        AgentFailed: fail("recycling"),
      },
    },
    stopping: {
      entry: { type: "stopInstance", params: instance },
      on: {
        AgentStopped: { target: "stopped", actions: "finish" },
        AgentTimedOut: { guard: "dueNow", ...fail("stopping") },
        AgentFailed: fail("stopping"),
      },
    },
    stopped: { type: "final" },
    failed: { type: "final", entry: { type: "cleanupInstance", params: instance } },
  },
});

const RESUME: Record<string, EffectIntent["type"]> = {
  requested: "allocatePorts",
  creating: "createInstance",
  starting: "startInstance",
  recycling: "recycleInstance",
  stopping: "stopInstance",
};

export const agentAggregate = defineAggregate({
  kind: "agent",
  machine: agentMachine,
  version: 1,
  effects: [
    "allocatePorts",
    "createInstance",
    "startInstance",
    "recycleInstance",
    "stopInstance",
    "cleanupInstance",
  ],
  timer: (s) => {
    const deadline = s.context.deadline;
    return deadline === null ? null : { at: deadline, input: { type: "AgentTimedOut", data: { deadline } } };
  },
  resume: (s) => {
    const step = typeof s.value === "string" ? RESUME[s.value] : undefined;
    return step ? [{ type: step, params: instance({ context: s.context }) }] : [];
  },
});

/** Where an agent is, in the words the pool and the worldview use. */
export type AgentPhase =
  | "starting"
  | "idle"
  | "leased"
  | "draining"
  | "recycling"
  | "stopping"
  | "stopped"
  | "failed";

export function agentPhase(value: unknown): AgentPhase {
  if (typeof value === "object" && value !== null && "ready" in value) {
    return (value as { ready: string }).ready === "leased" ? "leased" : "idle";
  }
  switch (value) {
    case "new":
    case "requested":
    case "creating":
    case "starting":
      return "starting";
    case "draining":
    case "recycling":
    case "stopping":
    case "stopped":
    case "failed":
      return value;
    default:
      return "starting";
  }
}
