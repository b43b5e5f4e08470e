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
import { type Cause, causedBy } from "../caused-by.ts";
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
  return new ExecService(deps);
}

class ExecService implements Exec {
  readonly host: ActorHost;
  private readonly log: Logger;
  private readonly queues: AgentQueues;
  private readonly output: OutputPublisher;
  private readonly dispatcher: ExecDispatcher;
  /** Callers waiting for their command to end, by command id. */
  private readonly waiters = new Map<string, (o: ExecOutcome) => void>();

  constructor(private readonly deps: ExecDeps) {
    this.log = deps.log ?? silentLogger;
    this.queues = new AgentQueues(deps.queueCapacity);
    this.output = new OutputPublisher(deps.nc, this.log);
    this.dispatcher = new ExecDispatcher({
      sessions: deps.sessions,
      queues: this.queues,
      output: this.output,
      log: this.log,
    });
    this.host = new ActorHost({
      store: deps.store,
      snapshots: deps.snapshots,
      aggregates: [commandAggregate],
      effects: { command: this.dispatcher.effects() },
      scheduler: deps.scheduler,
      log: this.log,
    });
    this.host.onChange((view) => {
      if (view.ref.kind === "command" && view.status === "done") this.ended(asCommandView(view));
    });
    deps.agents.onChange((view, event) => {
      if (view.ref.kind === "agent") this.leaseMayHaveEnded(asAgentView(view), event);
    });
  }

  async run(pool: string, req: ExecRequest): Promise<ExecReply> {
    const agentId = await leasedAgent(pool, req.leaseId, req.leaseToken, (id) => this.agentView(id));
    const commandId = req.commandId ?? uuidv7();
    if (this.queues.has(commandId)) throw new CommandExistsError(commandId);
    this.queues.reserve(agentId, commandId, req.leaseId);
    const ended = new Promise<ExecOutcome>((resolve) => this.waiters.set(commandId, resolve));
    const ref: AggregateRef = { kind: "command", id: commandId };
    try {
      // The request's correlation (src/api/service.ts): `corral trace` follows the command's events.
      const offer = await this.host.offer(ref, {
        ...createdInput(agentId, req),
        correlationId: req.correlationId,
      });
      if (!offer.accepted) throw new CommandExistsError(commandId);
    } catch (err) {
      this.waiters.delete(commandId);
      this.queues.remove(commandId);
      throw err;
    }
    const outcome = await ended;
    if ("error" in outcome) throw outcome.error;
    return req.correlationId ? { ...outcome.reply, correlationId: req.correlationId } : outcome.reply;
  }

  async start(): Promise<{ recovered: number; resumed: number }> {
    const owned = (v: ActorView) => (this.deps.ownsAgent ?? (() => true))(asCommandView(v).context.agentId);
    const recovered = await this.host.recover("command", owned);
    // A live command whose lease ended while no daemon ran is cancelled, not resumed.
    for (const v of recovered.map(asCommandView)) {
      const leaseId = leaseOfPayload(v.context.payload);
      const agent = await this.agentView(v.context.agentId);
      if (agent.context.lease?.id !== leaseId) await this.cancel(v.ref.id, `its lease ${leaseId} ended`);
    }
    return { recovered: recovered.length, resumed: this.host.resume("command", owned) };
  }

  async close(): Promise<void> {
    this.dispatcher.close();
    const stopping = new PoolError(
      "shutting_down",
      "the daemon is stopping; the command goes on in its agent",
    );
    for (const answer of this.waiters.values()) answer({ error: stopping });
    this.waiters.clear();
    await this.host.close();
  }

  /** A final command leaves its queue, publishes its end marker, then answers its caller. */
  private ended(command: CommandView): void {
    const id = command.ref.id;
    this.queues.remove(id);
    const outcome = outcomeOf(command, this.dispatcher.takeResult(id));
    this.output.end(id, endOf(outcome));
    this.waiters.get(id)?.(outcome);
    this.waiters.delete(id);
  }

  /**
   * A command ends with its lease: once its agent holds another lease (or none), the commands
   * under the old one are cancelled — never sent if they wait, stopped by agentd if they run.
   */
  private leaseMayHaveEnded(agent: AgentView, cause: Cause): void {
    const holds = agent.context.lease?.id;
    for (const c of this.queues.of(agent.ref.id)) {
      if (c.leaseId === undefined || c.leaseId === holds || c.cancelling) continue;
      c.cancelling = true;
      void this.cancel(c.id, `its lease ${c.leaseId} ended`, cause);
    }
  }

  /** `cause`: the agent's event that ended the lease (none for one that ended while no daemon ran). */
  private async cancel(commandId: string, reason: string, cause?: Cause): Promise<void> {
    const ref: AggregateRef = { kind: "command", id: commandId };
    const input = { type: "CommandCancelled" as const, data: { reason }, ...causedBy(cause) };
    await this.host.offer(ref, input).catch((err: unknown) => {
      this.log.error({ err, command: commandId }, "command not cancelled");
    });
  }

  private async agentView(agentId: string): Promise<AgentView> {
    return asAgentView(await this.deps.agents.get({ kind: "agent", id: agentId }));
  }
}
