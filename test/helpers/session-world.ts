import { assign, setup } from "xstate";
import { defineAggregate } from "../../machines/aggregate.ts";
import { sessionAggregate } from "../../machines/session.ts";
import { ActorHost } from "../../src/cp/actor-host.ts";
import { TimerScheduler } from "../../src/cp/scheduler.ts";
import { agentRecordsOf } from "../../src/cp/session/agent-record.ts";
import { createSessions, type Sessions, type SessionsDeps } from "../../src/cp/session/dialer.ts";
import { LiveRegistry } from "../../src/cp/session/live-registry.ts";
import type { ResolvedAgent } from "../../src/cp/session/register.ts";
import type { EventOfKind } from "../../src/events/catalogue.ts";
import type { AggregateRef } from "../../src/events/envelope.ts";
import { type CorralCa, type IssuedCert, loadOrCreateCa } from "../../src/identity/ca.ts";
import { controlPlaneName } from "../../src/identity/names.ts";
import type { TlsIdentity } from "../../src/identity/tls.ts";
import { EventStore } from "../../src/store/event-store.ts";
import { startTestNats } from "./nats.ts";
import { type PeerOptions, startPeer, type TestPeer } from "./session-peer.ts";
import { onTeardown, tempDir } from "./teardown.ts";

/**
 * The agent side of an agent, as far as sessions need it: it exists in a pool with a generation
 * and takes its registration verdicts. machines/agent.ts grows these phases (issue 9); this
 * stand-in keeps the session tests about sessions.
 */
const agentMachine = setup({
  types: {
    context: {} as {
      poolId: string;
      generation: number;
      registered: string | null;
      untrusted: string | null;
    },
    events: {} as EventOfKind<"agent">,
  },
  guards: {
    thisGeneration: ({ context, event }) =>
      "generation" in event.data && event.data.generation === context.generation,
  },
}).createMachine({
  id: "agent",
  initial: "new",
  context: { poolId: "", generation: 0, registered: null, untrusted: null },
  states: {
    new: {
      on: {
        AgentRequested: {
          target: "live",
          actions: assign(({ event }) => ({ poolId: event.data.poolId, generation: 1 })),
        },
      },
    },
    live: {
      on: {
        AgentRegistered: {
          guard: "thisGeneration",
          actions: assign(({ event }) => ({ registered: event.data.thumbprint, untrusted: null })),
        },
        AgentUntrusted: {
          guard: "thisGeneration",
          actions: assign(({ event }) => ({ untrusted: event.data.reason })),
        },
        AgentStopped: { target: "stopped" },
      },
    },
    stopped: { type: "final" },
  },
});

const agentAggregate = defineAggregate({ kind: "agent", machine: agentMachine, version: 1, effects: [] });

export interface SessionWorld {
  host: ActorHost;
  store: EventStore;
  registry: LiveRegistry;
  ca: CorralCa;
  tls: TlsIdentity;
  controlPlaneCN: string;
  /** Where the runtime says each agent is (what `resolve` answers). */
  targets: Map<string, ResolvedAgent>;
  /** A new agent in pool `p`, generation 1. */
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
    effects: { session: {}, agent: {} },
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
      await host.send(
        { kind: "agent", id },
        { type: "AgentRequested", data: { poolId, runtime: "process", deadline: 0 } },
      );
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
