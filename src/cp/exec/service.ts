import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { type CommandContext, commandAggregate } from "../../../machines/command.ts";
import type { ExecReply } from "../../api/protocol.ts";
import type { ExecRequest } from "../../api/requests.ts";
import type { AggregateRef } from "../../events/envelope.ts";
import { uuidv7 } from "../../events/id.ts";
import { silentLogger } from "../../log.ts";
import type { EventStore } from "../../store/event-store.ts";
import type { SnapshotStore } from "../../store/snapshots.ts";
import { ActorHost, type ActorView } from "../actor-host.ts";
import { PoolError } from "../errors.ts";
import type { Scheduler } from "../scheduler.ts";
import { type AgentView, asAgentView } from "../views.ts";
import { ExecDispatcher } from "./dispatcher.ts";
import { CommandExistsError } from "./errors.ts";
import { leasedAgent } from "./lease-check.ts";
import { OutputPublisher } from "./output.ts";
import { createdInput, leaseOfPayload } from "./payload.ts";
import { AgentQueues } from "./queue.ts";
import { type ExecOutcome, endOf, outcomeOf } from "./reply.ts";
import type { ExecSessions } from "./session-port.ts";

export interface ExecDeps {
  /** Where live output is published: the connection the API replies on (output.ts). */
  nc: NatsConnection;
  store: EventStore;
  snapshots?: SnapshotStore;
  sessions: ExecSessions;
  /**
   * The control plane's host of the agents: whose lease is live (with its token hash), and when
   * a lease ends (its commands are cancelled then).
   */
  agents: Pick<ActorHost, "get" | "onChange">;
  /** Commands of agents this daemon runs (recovered at start); default: all. */
  ownsAgent?(agentId: string): boolean;
  /** Commands waiting or running per agent (default 16). */
  queueCapacity?: number;
  /** The command host's own (closed with it); default: the wall clock and Node timers. */
  scheduler?: Scheduler;
  log?: Logger;
}

export interface Exec {
  /** Runs a command in the agent the lease holds; resolves once it ended (README, "The API"). */
  run(pool: string, req: ExecRequest): Promise<ExecReply>;
  /** Rebuilds the live commands from the stream and sends each again (run at most once by agentd). */
  start(): Promise<{ recovered: number; resumed: number }>;
  close(): Promise<void>;
  /** The host of the command aggregates. */
  readonly host: ActorHost;
}

type CommandView = ActorView<CommandContext>;

function asCommandView(view: ActorView): CommandView {
  if (view.ref.kind !== "command") throw new TypeError(`${view.ref.kind}/${view.ref.id} is not a command`);
  return view as CommandView;
}

/**
 * Commands run in agents (issue 9, item 6): the exec endpoint's work, the command aggregates'
 * host and the dispatcher between them and the agents' sessions.
 */
export function createExec(deps: ExecDeps): Exec {
  const log = deps.log ?? silentLogger;
  const queues = new AgentQueues(deps.queueCapacity);
  const output = new OutputPublisher(deps.nc, log);
  const dispatcher = new ExecDispatcher({ sessions: deps.sessions, queues, output, log });
  const host = new ActorHost({
    store: deps.store,
    snapshots: deps.snapshots,
    aggregates: [commandAggregate],
    effects: { command: dispatcher.effects() },
    scheduler: deps.scheduler,
    log,
  });
  const waiters = new Map<string, (o: ExecOutcome) => void>();

  // A final command leaves its queue, publishes its end marker, then answers its caller.
  host.onChange((view) => {
    if (view.ref.kind !== "command" || view.status !== "done") return;
    const command = asCommandView(view);
    queues.remove(command.ref.id);
    const outcome = outcomeOf(command, dispatcher.takeResult(command.ref.id));
    output.end(command.ref.id, endOf(outcome));
    waiters.get(command.ref.id)?.(outcome);
    waiters.delete(command.ref.id);
  });

  const agentView = async (agentId: string): Promise<AgentView> =>
    asAgentView(await deps.agents.get({ kind: "agent", id: agentId }));
  const cancel = (commandId: string, reason: string) =>
    host
      .offer({ kind: "command", id: commandId }, { type: "CommandCancelled", data: { reason } })
      .catch((err: unknown) => {
        log.error({ err, command: commandId }, "command not cancelled");
      });

  // A command ends with its lease: once the agent holds another lease (or none), its commands
  // under the old one are cancelled: never sent if they wait, stopped by agentd if they run.
  deps.agents.onChange((view) => {
    if (view.ref.kind !== "agent") return;
    const holds = asAgentView(view).context.lease?.id;
    for (const c of queues.of(view.ref.id)) {
      if (c.leaseId === undefined || c.leaseId === holds || c.cancelling) continue;
      c.cancelling = true;
      void cancel(c.id, `its lease ${c.leaseId} ended`);
    }
  });

  /** After a restart: a live command whose lease ended while no daemon ran is cancelled, not resumed. */
  async function cancelOrphans(commands: ActorView[]): Promise<void> {
    for (const v of commands.map(asCommandView)) {
      const leaseId = leaseOfPayload(v.context.payload);
      if ((await agentView(v.context.agentId)).context.lease?.id !== leaseId) {
        await cancel(v.ref.id, `its lease ${leaseId} ended`);
      }
    }
  }

  const owned = (v: ActorView) => (deps.ownsAgent ?? (() => true))(asCommandView(v).context.agentId);

  return {
    host,
    async run(pool, req) {
      const agentId = await leasedAgent(pool, req.leaseId, req.leaseToken, agentView);
      const commandId = req.commandId ?? uuidv7();
      if (queues.has(commandId)) throw new CommandExistsError(commandId);
      queues.reserve(agentId, commandId, req.leaseId);
      const ended = new Promise<ExecOutcome>((resolve) => waiters.set(commandId, resolve));
      const ref: AggregateRef = { kind: "command", id: commandId };
      try {
        const offer = await host.offer(ref, createdInput(agentId, req));
        if (!offer.accepted) throw new CommandExistsError(commandId);
      } catch (err) {
        waiters.delete(commandId);
        queues.remove(commandId);
        throw err;
      }
      const outcome = await ended;
      if ("error" in outcome) throw outcome.error;
      return outcome.reply;
    },
    async start() {
      const recovered = await host.recover("command", owned);
      await cancelOrphans(recovered);
      return { recovered: recovered.length, resumed: host.resume("command", owned) };
    },
    async close() {
      dispatcher.close();
      const stopping = new PoolError(
        "shutting_down",
        "the daemon is stopping; the command goes on in its agent",
      );
      for (const answer of waiters.values()) answer({ error: stopping });
      waiters.clear();
      await host.close();
    },
  };
}
