import { agentAggregate } from "../../machines/agent.ts";
import { sessionAggregate } from "../../machines/session.ts";
import { ActorHost } from "../../src/cp/actor-host.ts";
import { TimerScheduler } from "../../src/cp/scheduler.ts";
import { agentRecordsOf } from "../../src/cp/session/agent-record.ts";
import type { AgentSession } from "../../src/cp/session/agent-session.ts";
import { createSessions, type Sessions, type SessionsDeps } from "../../src/cp/session/dialer.ts";
import { LiveRegistry } from "../../src/cp/session/live-registry.ts";
import type { ResolvedAgent } from "../../src/cp/session/register.ts";
import type { AggregateRef } from "../../src/events/envelope.ts";
import { type CorralCa, type IssuedCert, loadOrCreateCa } from "../../src/identity/ca.ts";
import { controlPlaneName } from "../../src/identity/names.ts";
import type { TlsIdentity } from "../../src/identity/tls.ts";
import { EventStore } from "../../src/store/event-store.ts";
import { startTestNats } from "./nats.ts";
import { type PeerOptions, startPeer, type TestPeer } from "./session-peer.ts";
import { onTeardown, tempDir } from "./teardown.ts";

/** The agent's effects do nothing here: each test records the agent's facts itself. */
const quietAgent = Object.fromEntries(agentAggregate.effects.map((name) => [name, () => {}]));

export interface SessionWorld {
  host: ActorHost;
  store: EventStore;
  registry: LiveRegistry;
  ca: CorralCa;
  tls: TlsIdentity;
  controlPlaneCN: string;
  /** Where the runtime says each agent is (what `resolve` answers). */
  targets: Map<string, ResolvedAgent>;
  /** A new agent in pool `p`, generation 1, started: its agent machine is `connecting`. */
  newAgent(poolId?: string): Promise<string>;
  /** An agentd for `agentId` with a certificate the CA issued for it (or `cert`). */
  peerFor(agentId: string, over?: Partial<PeerOptions> & { cert?: IssuedCert }): Promise<TestPeer>;
  sessions(over?: Partial<SessionsDeps>): Sessions;
  typesOf(ref: AggregateRef): Promise<string[]>;
  eventsOf(ref: AggregateRef): Promise<{ type: string; data: Record<string, unknown> }[]>;
}

let agents = 0;

export async function sessionWorld(): Promise<SessionWorld> {
  const nats = await startTestNats();
  const store = await EventStore.open(await nats.connect());
  const scheduler = new TimerScheduler();
  const host = new ActorHost({
    store,
    aggregates: [sessionAggregate, agentAggregate],
    effects: { session: {}, agent: quietAgent },
    scheduler,
  });
  const registry = new LiveRegistry();
  registry.attach(host);
  await registry.rebuild(store);
  const ca = await loadOrCreateCa(tempDir("session-ca-"));
  const cp = await ca.issueControlPlane("test");
  const tls: TlsIdentity = { certPem: cp.certPem, keyPem: cp.keyPem, caPem: ca.certPem };
  const controlPlaneCN = controlPlaneName("test");
  const targets = new Map<string, ResolvedAgent>();
  const all: Sessions[] = [];
  onTeardown("session world", async () => {
    await Promise.all(all.map((s) => s.close()));
    await host.close(1000);
    store.close();
  });
  const eventsOf = async (ref: AggregateRef) =>
    (await store.readAggregate(ref)).map((r) => ({
      type: r.event?.type ?? "?",
      data: (r.event?.data ?? {}) as Record<string, unknown>,
    }));
  return {
    host,
    store,
    registry,
    ca,
    tls,
    controlPlaneCN,
    targets,
    async newAgent(poolId = "p") {
      const id = `agent-${++agents}`;
      const ref = { kind: "agent", id } as const;
      const deadline = Date.now() + 3_600_000;
      await host.send(ref, { type: "AgentRequested", data: { poolId, runtime: "process", deadline } });
      await host.send(ref, { type: "AgentPortsAllocated", data: { generation: 1, ports: [] } });
      await host.send(ref, { type: "AgentCreated", data: { generation: 1, instanceId: `i-${id}` } });
      await host.send(ref, { type: "AgentStarted", data: { generation: 1 } });
      return id;
    },
    async peerFor(agentId, over = {}) {
      const poolId = over.poolId ?? "p";
      const cert = over.cert ?? (await ca.issueAgent({ poolId, agentId }));
      const peer = await startPeer({
        certPem: cert.certPem,
        keyPem: cert.keyPem,
        caPem: ca.certPem,
        controlPlaneCN,
        poolId,
        agentId,
        ...over,
      });
      targets.set(agentId, { address: peer.address, labels: { poolId, agentId, generation: 1 } });
      return peer;
    },
    sessions(over = {}) {
      const s = createSessions({
        offer: (ref, input) => host.offer(ref, input),
        resolve: async (id) => targets.get(id) ?? null,
        agentOf: agentRecordsOf(host),
        registry,
        tls,
        scheduler,
        options: {
          handshakeTimeoutMs: 5_000,
          registerTimeoutMs: 5_000,
          backoff: { startMs: 5, capMs: 20, giveUpMs: 200 },
          redialDelayMs: 10,
        },
        ...over,
      });
      all.push(s);
      return s;
    },
    typesOf: async (ref) => (await eventsOf(ref)).map((e) => e.type),
    eventsOf,
  };
}

/** A bound for a loaded machine, not a speed claim: a met condition returns at once. */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 20_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not in time: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every session `sessions` makes ready, in the order they come (filled as they do). */
export function readySessions(sessions: Sessions): AgentSession[] {
  const ready: AgentSession[] = [];
  sessions.onReady((s) => {
    ready.push(s);
  });
  return ready;
}
