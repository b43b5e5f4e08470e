import { assign, setup } from "xstate";
import type { EventOf, EventOfKind } from "../src/events/catalogue.ts";
import { namesAgent } from "../src/events/lease-id.ts";
import { defineAggregate, type EffectIntent } from "./aggregate.ts";

/**
 * One agent of a pool. An agent keeps its id across recycles: each recycle stops its instance
 * (container or process) and starts a new generation, until maxRecycles retires it.
 *
 *   requested → creating → starting → connecting → initializing → ready (idle ⇄ leased → expired)
 *        ↑__________ recycling ←____________________________________________|        → draining → stopping → stopped
 *                                                                          failed (any live state)
 *
 * Each step before ready has a deadline; a step's effect reports the next fact. `connecting`
 * dials the agent's agentd and registers its certificate (AgentRegistered); `initializing` runs
 * the init plan (Init* events). Only InitCompleted makes an agent leasable. An untrusted agent
 * (AgentUntrusted) is recycled from any of these phases, a lease it held ending with it.
 *
 * The lease is a phase of the agent, not an aggregate of its own: the agent is the consistency
 * boundary for "in at most one lease", and optimistic concurrency on its subject guarantees it.
 * Grant, renew, release, expiry and revoke are one event each on the agent, and each names the
 * lease it is for: a late expiry of lease L cannot touch the agent's next lease.
 */

type AgentEvent = EventOfKind<"agent">;

export interface AgentContext {
  poolId: string;
  runtime: "docker" | "process";
  /** Instance generation: 1 at creation, +1 per recycle. */
  generation: number;
  ports: number[];
  instanceId: string | null;
  lease: Lease | null;
  /** Leases over the agent's whole life. */
  leasesServed: number;
  /** Leases of the current generation: what maxLeases limits (a recycle starts afresh). */
  generationLeases: number;
  recycles: number;
  /** When the agent was requested (from its first event, never a clock). */
  createdAt: number;
  /** When the current generation became ready (for maxAge). */
  readyAt: number | null;
  /** When it last became idle (for idleTimeout); meaningful only while idle. */
  idleSince: number | null;
  deadline: number | null;
  /** The certificate this generation registered with (AgentRegistered): its identity until recycled. */
  identity: { thumbprint: string; peerCN: string } | null;
  /** Why this generation is not trusted (AgentUntrusted); it is being recycled. */
  untrusted: { reason: string; detail: string } | null;
  /** The init plan's progress while initializing: the step under way (or last done) and the count. */
  init: { step: string | null; index: number; of: number } | null;
  stopReason: string | null;
  error: { phase: string; code: string; message: string } | null;
}

/** The lease the agent is in (leased, or draining until it ends). */
export interface Lease {
  id: string;
  holder: string;
  ttlMs: number;
  grantedAt: number;
  expiresAt: number;
  /** Hash of the lease token (AgentLeased.tokenHash): the broker checks release and renew against it. */
  tokenHash?: string;
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

const renewal = ({ event }: { event: AgentEvent }) => ({
  expiresAt: event.type === "AgentLeaseRenewed" ? event.data.expiresAt : 0,
});

const dial = {
  type: "dialAgent" as const,
  params: ({ context }: { context: AgentContext }) => ({ generation: context.generation }),
};

/** A security verdict, not a request: it recycles the agent even under a holder (the lease ends). */
const distrust = {
  guard: "thisGeneration" as const,
  target: "#agent.recycling" as const,
  actions: {
    type: "distrust" as const,
    params: ({ event }: { event: AgentEvent }) =>
      event.type === "AgentUntrusted" ? event.data : { reason: "", detail: "" },
  },
};

const backToIdle = {
  type: "backToIdle" as const,
  params: ({ event }: { event: AgentEvent }) => ({ at: event.at }),
};

/** Only an idle agent or one whose lease expired is recycled: never one under a holder. */
const recycle = {
  target: "#agent.recycling" as const,
  actions: { type: "stopBecause" as const, params: ({ event }: { event: AgentEvent }) => stopData(event) },
};

function stopData(event: AgentEvent): { reason: string; deadline: number } {
  return event.type === "AgentRecycleRequested" || event.type === "AgentDrainRequested"
    ? event.data
    : { reason: event.type, deadline: 0 };
}

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
    dialAgent: (_, _p: { generation: number }) => {},
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
    becomeReady: assign((_, p: { at: number }) => ({ readyAt: p.at, idleSince: p.at, deadline: null })),
    register: assign((_, p: { thumbprint: string; peerCN: string }) => ({
      identity: { thumbprint: p.thumbprint, peerCN: p.peerCN },
    })),
    distrust: assign((_, p: { reason: string; detail: string }) => ({
      untrusted: { reason: p.reason, detail: p.detail },
      stopReason: `untrusted: ${p.reason}`,
      lease: null,
      idleSince: null,
    })),
    startInit: assign((_, p: { stepCount: number; deadline: number }) => ({
      init: { step: null, index: 0, of: p.stepCount },
      deadline: p.deadline,
    })),
    initStep: assign(({ context }, p: { name: string; index: number }) => ({
      init: { step: p.name, index: p.index, of: context.init?.of ?? p.index + 1 },
    })),
    backToIdle: assign((_, p: { at: number }) => ({ lease: null, idleSince: p.at })),
    lease: assign(({ context }, p: EventOf<"AgentLeased">["data"] & { at: number }) => ({
      lease: {
        id: p.leaseId,
        holder: p.holder,
        ttlMs: p.ttlMs,
        grantedAt: p.at,
        expiresAt: p.expiresAt,
        ...(p.tokenHash ? { tokenHash: p.tokenHash } : {}),
      },
      idleSince: null,
      leasesServed: context.leasesServed + 1,
      generationLeases: context.generationLeases + 1,
    })),
    renew: assign(({ context }, p: { expiresAt: number }) => ({
      lease: context.lease && { ...context.lease, expiresAt: p.expiresAt },
    })),
    unlease: assign({ lease: null }),
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
      identity: null,
      untrusted: null,
      init: null,
      lease: null,
      readyAt: null,
      idleSince: null,
      deadline: p.deadline,
    })),
    finish: assign({ deadline: null, lease: null }),
    failWith: assign((_, p: { phase: string; code: string; message: string }) => ({
      error: p,
      deadline: null,
      lease: null,
    })),
  },
  guards: {
    thisGeneration: ({ context, event }) =>
      "generation" in event.data && event.data.generation === context.generation,
    nextGeneration: ({ context, event }) =>
      event.type === "AgentRecycled" && event.data.generation === context.generation + 1,
    /** A lease id names its agent (lease-id.ts): a grant must name this agent and its pool. */
    namesThisAgent: ({ context, event }) =>
      event.type === "AgentLeased" &&
      namesAgent(event.data.leaseId, event.aggregate.id) &&
      event.data.poolId === context.poolId,
    thisLease: ({ context, event }) =>
      "leaseId" in event.data && context.lease !== null && event.data.leaseId === context.lease.id,
    extendsLease: ({ context, event }) =>
      event.type === "AgentLeaseRenewed" &&
      context.lease !== null &&
      event.data.leaseId === context.lease.id &&
      event.data.expiresAt > context.lease.expiresAt,
    leaseDue: ({ context, event }) =>
      event.type === "AgentLeaseExpired" &&
      context.lease !== null &&
      event.data.leaseId === context.lease.id &&
      event.data.deadline === context.lease.expiresAt,
    dueNow: ({ context, event }) =>
      event.type === "AgentTimedOut" && event.data.deadline === context.deadline,
    /** Init steps are taken in order: a step started or completed must be the plan's next one. */
    inPlan: ({ context, event }) =>
      "generation" in event.data &&
      event.data.generation === context.generation &&
      context.init !== null &&
      "index" in event.data &&
      event.data.index < context.init.of,
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
    lease: null,
    leasesServed: 0,
    generationLeases: 0,
    recycles: 0,
    createdAt: 0,
    readyAt: null,
    idleSince: null,
    deadline: null,
    identity: null,
    untrusted: null,
    init: null,
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
        AgentStarted: { guard: "thisGeneration", target: "connecting" },
        AgentDrainRequested: {
          target: "stopping",
          actions: { type: "stopBecause", params: ({ event }) => event.data },
        },
        AgentTimedOut: { guard: "dueNow", ...fail("starting") },
        AgentFailed: fail("starting"),
      },
    },
    connecting: {
      // The dial is deduplicated: after a restart it is simply asked again (resume).
      entry: dial,
      on: {
        AgentRegistered: {
          guard: "thisGeneration",
          target: "initializing",
          actions: { type: "register", params: ({ event }) => event.data },
        },
        AgentUntrusted: distrust,
        AgentDrainRequested: {
          target: "stopping",
          actions: { type: "stopBecause", params: ({ event }) => event.data },
        },
        AgentTimedOut: { guard: "dueNow", ...fail("connecting") },
        AgentFailed: fail("connecting"),
      },
    },
    initializing: {
      on: {
        InitStarted: {
          guard: "thisGeneration",
          actions: { type: "startInit", params: ({ event }) => event.data },
        },
        InitStepStarted: {
          guard: "inPlan",
          actions: { type: "initStep", params: ({ event }) => event.data },
        },
        InitStepCompleted: {
          guard: "inPlan",
          actions: { type: "initStep", params: ({ event }) => event.data },
        },
        // A failed step is recorded before InitFailed (or, session_lost, before the next session's re-run).
        InitStepFailed: {
          guard: "inPlan",
          actions: { type: "initStep", params: ({ event }) => event.data },
        },
        InitCompleted: {
          guard: "thisGeneration",
          target: "ready",
          actions: { type: "becomeReady", params: ({ event }) => ({ at: event.at }) },
        },
        InitFailed: {
          guard: "thisGeneration",
          target: "failed",
          actions: {
            type: "failWith",
            params: ({ event }) => ({
              phase: "initializing",
              code: `init_${event.data.reason}`,
              message: `init step ${event.data.step} failed: ${event.data.detail}`,
            }),
          },
        },
        AgentUntrusted: distrust,
        AgentDrainRequested: {
          target: "stopping",
          actions: { type: "stopBecause", params: ({ event }) => event.data },
        },
        AgentTimedOut: { guard: "dueNow", ...fail("initializing") },
        AgentFailed: fail("initializing"),
      },
    },
    ready: {
      initial: "idle",
      states: {
        idle: {
          on: {
            AgentLeased: {
              guard: "namesThisAgent",
              target: "leased",
              actions: { type: "lease", params: ({ event }) => ({ ...event.data, at: event.at }) },
            },
            AgentDrainRequested: {
              target: "#agent.stopping",
              actions: { type: "stopBecause", params: ({ event }) => event.data },
            },
            AgentRecycleRequested: recycle,
          },
        },
        leased: {
          on: {
            AgentLeaseRenewed: { guard: "extendsLease", actions: { type: "renew", params: renewal } },
            AgentReleased: { guard: "thisLease", target: "idle", actions: backToIdle },
            AgentLeaseRevoked: { guard: "thisLease", target: "idle", actions: backToIdle },
            // Its holder may have left it in any state: the pool renews it (recycle or retire).
            AgentLeaseExpired: { guard: "leaseDue", target: "expired", actions: "unlease" },
            AgentDrainRequested: {
              target: "#agent.draining",
              actions: { type: "stopBecause", params: ({ event }) => event.data },
            },
          },
        },
        expired: {
          on: {
            AgentRecycleRequested: recycle,
            AgentDrainRequested: {
              target: "#agent.stopping",
              actions: { type: "stopBecause", params: ({ event }) => event.data },
            },
          },
        },
      },
      on: {
        AgentUntrusted: distrust,
        AgentFailed: fail("ready"),
      },
    },
    draining: {
      // Waits for the lease to end, however it ends, or for the drain deadline.
      on: {
        AgentLeaseRenewed: { guard: "extendsLease", actions: { type: "renew", params: renewal } },
        AgentReleased: { guard: "thisLease", target: "stopping", actions: "unlease" },
        AgentLeaseRevoked: { guard: "thisLease", target: "stopping", actions: "unlease" },
        AgentLeaseExpired: { guard: "leaseDue", target: "stopping", actions: "unlease" },
        AgentTimedOut: { guard: "dueNow", target: "stopping", actions: "unlease" },
        AgentUntrusted: {
          guard: "thisGeneration",
          target: "stopping",
          actions: { type: "distrust", params: ({ event }) => event.data },
        },
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

/** Phases whose agentd the control plane keeps a session with: re-dialled after a restart. */
const SESSION_PHASES = new Set(["connecting", "initializing", "ready", "draining"]);

export const agentAggregate = defineAggregate({
  kind: "agent",
  machine: agentMachine,
  version: 3,
  effects: [
    "allocatePorts",
    "createInstance",
    "startInstance",
    "recycleInstance",
    "stopInstance",
    "cleanupInstance",
    "dialAgent",
  ],
  timer: (s) => {
    const { deadline, lease } = s.context;
    // A lease is held only while leased or draining; whichever deadline comes first fires.
    if (lease && (deadline === null || lease.expiresAt <= deadline)) {
      const data = { leaseId: lease.id, deadline: lease.expiresAt };
      return { at: lease.expiresAt, input: { type: "AgentLeaseExpired", data } };
    }
    return deadline === null ? null : { at: deadline, input: { type: "AgentTimedOut", data: { deadline } } };
  },
  resume: (s) => {
    const name = typeof s.value === "string" ? s.value : Object.keys(s.value)[0];
    if (name !== undefined && SESSION_PHASES.has(name)) {
      return [{ type: "dialAgent", params: { generation: s.context.generation } }];
    }
    const step = name === undefined ? undefined : RESUME[name];
    return step ? [{ type: step, params: instance({ context: s.context }) }] : [];
  },
});

/** Where an agent is, in the words the pool and the worldview use. */
export type AgentPhase =
  | "starting"
  | "idle"
  | "leased"
  | "expired"
  | "draining"
  | "recycling"
  | "stopping"
  | "stopped"
  | "failed";

export function agentPhase(value: unknown): AgentPhase {
  if (typeof value === "object" && value !== null && "ready" in value) {
    const sub = (value as { ready: string }).ready;
    return sub === "leased" || sub === "expired" ? sub : "idle";
  }
  switch (value) {
    case "new":
    case "requested":
    case "creating":
    case "starting":
    case "connecting":
    case "initializing":
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
