import { createConnection } from "node:net";
import type { Logger } from "pino";
import type { PoolConfig } from "../events/pool.ts";
import { CheckpointStore } from "../projections/checkpoints.ts";
import type { Runtime, RuntimeKind } from "../runtime/types.ts";
import type { EventStore } from "../store/event-store.ts";
import type { ActorHost } from "./actor-host.ts";
import type { AgentIdentities } from "./agent-identities.ts";
import { runInitPlan } from "./init/executor.ts";
import { initPlan } from "./init/plan.ts";
import type { InitKeys } from "./init/template.ts";
import type { Scheduler } from "./scheduler.ts";
import { agentRecordsOf } from "./session/agent-record.ts";
import type { AgentSession } from "./session/agent-session.ts";
import { createSessions, type SessionOptions, type Sessions } from "./session/dialer.ts";
import { LiveRegistry } from "./session/live-registry.ts";
import type { ResolvedAgent } from "./session/register.ts";
import { asAgentView } from "./views.ts";

export interface AgentSessionsDeps {
  host: ActorHost;
  store: EventStore;
  identities: AgentIdentities;
  runtimeFor(kind: RuntimeKind): Runtime | undefined;
  /** The pool's configuration from the daemon's own config file (never from the stream). */
  configOf(poolId: string): PoolConfig | null;
  /** SSH keys of the config's init plans, by digest (the stream holds digests only). */
  initKeys: InitKeys;
  scheduler: Scheduler;
  log: Logger;
  options?: Partial<SessionOptions>;
}

/** The daemon's sessions to its agents, with the registry they check against: `start` before the first dial. */
export interface AgentSessions extends Sessions {
  start(): Promise<void>;
}

/**
 * How a running agent becomes leasable (ARCHITECTURE.md, "Sessions, identity and init"): the
 * dialer (src/cp/session/) reaches its agentd where the runtime says it listens, registers its
 * certificate against the registry, then — while the agent is initializing — runs the pool's init
 * plan over the session (src/cp/init/). InitCompleted makes it ready.
 */
export function agentSessions(deps: AgentSessionsDeps): AgentSessions {
  const { host, log } = deps;
  const registry = new LiveRegistry();
  registry.attach(host);
  const agentOf = agentRecordsOf(host);

  const resolve = async (agentId: string): Promise<ResolvedAgent | null> => {
    const view = asAgentView(await host.get({ kind: "agent", id: agentId }));
    const { instanceId, runtime: kind } = view.context;
    const runtime = deps.runtimeFor(kind);
    if (!runtime || !instanceId) return null;
    const instance = await runtime.inspect(instanceId);
    // Only a running instance is dialled: a stopped one keeps a stale address.
    if (instance?.state !== "running") return null;
    const endpoint = await endpointOf(runtime, instanceId);
    if (!endpoint) return null;
    const labels = { poolId: instance.poolId, agentId: instance.agentId, generation: instance.generation };
    return { address: `${endpoint.host}:${endpoint.port}`, labels };
  };

  const sessions = createSessions({
    offer: (ref, input) => host.offer(ref, input),
    resolve,
    agentOf,
    registry,
    tls: deps.identities.tls,
    scheduler: deps.scheduler,
    log,
    options: deps.options,
  });

  /** Only an agent that is initializing runs its plan; a ready one was only re-dialled. */
  sessions.onReady(async (session: AgentSession) => {
    const view = asAgentView(await host.get({ kind: "agent", id: session.agentId }));
    if (view.value !== "initializing" || view.context.generation !== session.generation) return;
    const config = deps.configOf(view.context.poolId);
    if (!config) return; // a pool no longer configured is being closed: its agents stop
    const plan = initPlan(config.template.init, deps.initKeys);
    const outcome = await runInitPlan({
      session,
      plan,
      offer: host.offer.bind(host),
      clock: deps.scheduler,
      log,
    });
    log.debug({ agent: session.agentId, generation: session.generation, ...outcome }, "init plan ran");
  });

  // The registry is folded on from the worldview's checkpoint, when the daemon kept one (not from
  // every agent event ever stored); none yet (a first start): from the first event.
  const start = async () => {
    const checkpoints = await CheckpointStore.open(deps.store.nc, {
      create: false,
      stream: deps.store.identity,
    }).catch(() => undefined);
    await registry.rebuild(deps.store, checkpoints);
  };
  return Object.assign(sessions, { start });
}

/** How long a running instance's agentd may take to listen (node starting in a busy container). */
const ENDPOINT_WAIT_MS = 15_000;

/**
 * The instance's agentd endpoint once something accepts connections there, waiting briefly for an
 * agentd that is still starting: a refused connection would otherwise spend the dial's backoff
 * (seconds per attempt) on a start-up of a second or two. Past the wait the dial tries anyway.
 */
async function endpointOf(runtime: Runtime, instanceId: string) {
  const until = Date.now() + ENDPOINT_WAIT_MS;
  for (;;) {
    const endpoint = await runtime.endpoint(instanceId);
    if (endpoint && (await accepts(endpoint.host, endpoint.port))) return endpoint;
    if (Date.now() >= until) return endpoint;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A TCP connect, closed at once (agentd logs it as a refused handshake: one line per start). */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 500);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
