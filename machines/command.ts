import { and, assign, setup } from "xstate";
import type { EventOf, EventOfKind } from "../src/events/catalogue.ts";
import { defineAggregate } from "./aggregate.ts";

/**
 * A command for one agent: pending → sent → acked → completed | failed, plus
 * cancelled. Each live state has a deadline in context; the host's scheduler delivers
 * CommandTimedOut when it passes. A timeout before the agent acknowledged retries (back to
 * pending, dispatched again) until maxRetries; after the ack it fails, since the agent may
 * already be executing and a second dispatch could run the command twice.
 */

type CommandEvent = EventOfKind<"command">;

type Timeouts = EventOf<"CommandCreated">["data"]["timeouts"];

export interface CommandContext {
  agentId: string;
  action: string;
  payload: Record<string, unknown>;
  maxRetries: number;
  timeouts: Timeouts;
  /** Dispatch attempt in progress (1 for the first). Acks for another attempt are stale. */
  attempt: number;
  retries: number;
  /** When the current state times out (ms), null in final states. */
  deadline: number | null;
  createdAt: number;
  finishedAt: number | null;
  result: unknown;
  error: string | null;
}

export interface DispatchParams {
  agentId: string;
  action: string;
  payload: Record<string, unknown>;
  attempt: number;
}

const dispatchParams = ({ context }: { context: CommandContext }): DispatchParams => ({
  agentId: context.agentId,
  action: context.action,
  payload: context.payload,
  attempt: context.attempt,
});

export const commandMachine = setup({
  types: {
    context: {} as CommandContext,
    events: {} as CommandEvent,
  },
  actions: {
    /** Effect: hand the command to the agent; the runner reports CommandSent. */
    dispatch: (_, _params: DispatchParams) => {},
    /** Effect: tell the agent to stop working on it. */
    cancelOnAgent: (_, _params: { agentId: string }) => {},
    init: assign((_, p: { data: EventOf<"CommandCreated">["data"]; at: number }) => ({
      agentId: p.data.agentId,
      action: p.data.action,
      payload: p.data.payload,
      maxRetries: p.data.maxRetries,
      timeouts: p.data.timeouts,
      attempt: 1,
      createdAt: p.at,
      deadline: p.at + p.data.timeouts.pending,
    })),
    arm: assign((_, p: { deadline: number }) => ({ deadline: p.deadline })),
    retry: assign(({ context }, p: { at: number }) => ({
      attempt: context.attempt + 1,
      retries: context.retries + 1,
      deadline: p.at + context.timeouts.pending,
    })),
    finish: assign((_, p: { at: number; result?: unknown; error?: string }) => ({
      deadline: null,
      finishedAt: p.at,
      result: p.result ?? null,
      error: p.error ?? null,
    })),
  },
  guards: {
    currentAttempt: ({ context, event }) =>
      (event.type === "CommandSent" || event.type === "CommandAcked") &&
      event.data.attempt === context.attempt,
    /** Only the deadline currently armed counts; an older timer firing late is stale. */
    dueNow: ({ context, event }) =>
      event.type === "CommandTimedOut" && event.data.deadline === context.deadline,
    canRetry: ({ context }) => context.retries < context.maxRetries,
  },
}).createMachine({
  id: "command",
  initial: "new",
  context: {
    agentId: "",
    action: "",
    payload: {},
    maxRetries: 0,
    timeouts: { pending: 0, sent: 0, acked: 0 },
    attempt: 0,
    retries: 0,
    deadline: null,
    createdAt: 0,
    finishedAt: null,
    result: null,
    error: null,
  },
  states: {
    new: {
      on: {
        CommandCreated: {
          target: "pending",
          actions: { type: "init", params: ({ event }) => ({ data: event.data, at: event.at }) },
        },
      },
    },
    pending: {
      entry: { type: "dispatch", params: dispatchParams },
      on: {
        CommandSent: {
          guard: "currentAttempt",
          target: "sent",
          actions: {
            type: "arm",
            params: ({ context, event }) => ({ deadline: event.at + context.timeouts.sent }),
          },
        },
        CommandTimedOut: [
          {
            guard: and(["dueNow", "canRetry"]),
            target: "pending",
            reenter: true,
            actions: { type: "retry", params: ({ event }) => ({ at: event.at }) },
          },
          {
            guard: "dueNow",
            target: "failed",
            actions: {
              type: "finish",
              params: ({ event }) => ({ at: event.at, error: "not sent before the deadline" }),
            },
          },
        ],
        CommandCancelled: {
          target: "cancelled",
          actions: { type: "finish", params: ({ event }) => ({ at: event.at, error: event.data.reason }) },
        },
      },
    },
    sent: {
      on: {
        CommandAcked: {
          guard: "currentAttempt",
          target: "acked",
          actions: {
            type: "arm",
            params: ({ context, event }) => ({ deadline: event.at + context.timeouts.acked }),
          },
        },
        CommandTimedOut: [
          {
            guard: and(["dueNow", "canRetry"]),
            target: "pending",
            reenter: true,
            actions: { type: "retry", params: ({ event }) => ({ at: event.at }) },
          },
          {
            guard: "dueNow",
            target: "failed",
            actions: {
              type: "finish",
              params: ({ event }) => ({ at: event.at, error: "not acknowledged before the deadline" }),
            },
          },
        ],
        CommandCompleted: {
          target: "completed",
          actions: { type: "finish", params: ({ event }) => ({ at: event.at, result: event.data.result }) },
        },
        CommandFailed: {
          target: "failed",
          actions: { type: "finish", params: ({ event }) => ({ at: event.at, error: event.data.error }) },
        },
        CommandCancelled: {
          target: "cancelled",
          actions: [
            { type: "cancelOnAgent", params: ({ context }) => ({ agentId: context.agentId }) },
            { type: "finish", params: ({ event }) => ({ at: event.at, error: event.data.reason }) },
          ],
        },
      },
    },
    acked: {
      on: {
        CommandCompleted: {
          target: "completed",
          actions: { type: "finish", params: ({ event }) => ({ at: event.at, result: event.data.result }) },
        },
        CommandFailed: {
          target: "failed",
          actions: { type: "finish", params: ({ event }) => ({ at: event.at, error: event.data.error }) },
        },
        CommandTimedOut: {
          guard: "dueNow",
          target: "failed",
          actions: {
            type: "finish",
            params: ({ event }) => ({ at: event.at, error: "no completion before the deadline" }),
          },
        },
        CommandCancelled: {
          target: "cancelled",
          actions: [
            { type: "cancelOnAgent", params: ({ context }) => ({ agentId: context.agentId }) },
            { type: "finish", params: ({ event }) => ({ at: event.at, error: event.data.reason }) },
          ],
        },
      },
    },
    completed: { type: "final" },
    failed: { type: "final" },
    cancelled: { type: "final" },
  },
});

export const commandAggregate = defineAggregate({
  kind: "command",
  machine: commandMachine,
  version: 1,
  effects: ["dispatch", "cancelOnAgent"],
  // After a restart a live command is dispatched again: one pending goes out once, one sent or
  // acked is re-attached (the agent runs a command id at most once; src/cp/exec/dispatcher.ts).
  resume: (snapshot) =>
    snapshot.matches("pending") || snapshot.matches("sent") || snapshot.matches("acked")
      ? [{ type: "dispatch", params: dispatchParams({ context: snapshot.context }) }]
      : [],
  timer: (snapshot) => {
    const deadline = snapshot.context.deadline;
    return deadline === null
      ? null
      : { at: deadline, input: { type: "CommandTimedOut", data: { deadline } } };
  },
});
