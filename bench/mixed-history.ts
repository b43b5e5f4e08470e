import { encodeEvent } from "../src/codec/msgpack.ts";
import { createEvent, type DataInputOf, type EventType } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { uuidv7 } from "../src/events/id.ts";
import type { EventKey } from "../src/store/event-mark.ts";
import type { PipelinedPublisher } from "../src/store/publisher.ts";
import { eventSubject } from "../src/store/subjects.ts";
import { poolConfig } from "../test/helpers/events.ts";
import { lifecycle, type Msg, type Step } from "./rebuild.ts";

/**
 * A history of pools that ran for a while, for `bench scale-events`: `lanes` agents live at once
 * across `pools` pools, each from spawn through connect, register and init to a few leases with
 * commands in them (the command lives of bench/rebuild.ts), recycled now and then, then retired
 * and stopped or failed; a lane whose agent ended starts the next one. Lanes take turns, one step
 * each, so aggregates interleave in the stream as they do live. Every event is one the machines
 * accept (the bench checks the worldview ignored none).
 */

type Fact = { [T in EventType]: [AggregateRef, T, DataInputOf<T>] }[EventType];

const THUMB = "ab".repeat(32);
const FAR = 4_102_444_800_000; // deadlines nobody reaches: 2100-01-01

function* generation(id: string, g: number): Generator<Fact> {
  const a: AggregateRef = { kind: "agent", id };
  const s: AggregateRef = { kind: "session", id };
  yield [a, "AgentPortsAllocated", { generation: g, ports: [20_000 + (hash(id) % 40_000)] }];
  yield [a, "AgentCreated", { generation: g, instanceId: `${id}-${g}` }];
  yield [a, "AgentStarted", { generation: g }];
  yield [s, "SessionConnecting", { generation: g, address: "127.0.0.1:7070", seed: hash(id) }];
  yield [s, "SessionConnected", { generation: g, attempts: 1, peerCN: id, thumbprint: THUMB, chain: "ok" }];
  yield [a, "AgentRegistered", { generation: g, thumbprint: THUMB, peerCN: id }];
  yield [a, "InitStarted", { generation: g, stepCount: 1, deadline: FAR }];
  yield [a, "InitStepStarted", { generation: g, name: "git", index: 0, of: 1 }];
  yield [a, "InitStepCompleted", { generation: g, name: "git", index: 0, exitCode: 0, durationMs: 2_000 }];
  yield [a, "InitCompleted", { generation: g, durationMs: 2_100 }];
}

/** One lease of agent `id`: granted, maybe renewed, commands run in it, released. */
function* lease(
  id: string,
  pool: string,
  n: number,
  nextCommand: () => number,
  at: () => number,
): Generator<Fact> {
  const a: AggregateRef = { kind: "agent", id };
  const leaseId = `${id}.${uuidv7(at())}`;
  const expiresAt = at() + 60_000;
  yield [a, "AgentLeased", { leaseId, poolId: pool, holder: `ci-${n % 13}`, ttlMs: 60_000, expiresAt }];
  if (n % 4 === 0) yield [a, "AgentLeaseRenewed", { leaseId, expiresAt: expiresAt + 60_000 }];
  for (let k = 0; k < 1 + (n % 3); k++) {
    const i = nextCommand();
    const c: AggregateRef = { kind: "command", id: `cmd-${i}` };
    for (const [type, data] of lifecycle(i, false) as Step[]) {
      const d = type === "CommandCreated" ? { ...data, agentId: id } : data;
      yield [c, type, d] as Fact;
    }
  }
  yield [a, "AgentReleased", { leaseId }];
}

/** Agent `n`'s whole life in `pool`. */
function* agentLife(n: number, pool: string, nextCommand: () => number, at: () => number): Generator<Fact> {
  const id = `${pool}-a${n}`;
  const a: AggregateRef = { kind: "agent", id };
  const p: AggregateRef = { kind: "pool", id: pool };
  yield [p, "PoolAgentSpawned", { agentId: id, reason: n % 5 ? "warm" : "demand" }];
  yield [a, "AgentRequested", { poolId: pool, runtime: "process", deadline: FAR }];
  if (n % 23 === 0) {
    yield [a, "AgentFailed", { phase: "creating", code: "spawn-error", message: "no such image" }];
    return;
  }
  yield* generation(id, 1);
  const gens = n % 4 === 0 ? 2 : 1;
  for (let g = 1; g <= gens; g++) {
    for (let l = 0; l < 3 + (n % 5); l++) yield* lease(id, pool, n + l, nextCommand, at);
    if (g < gens) {
      yield [p, "PoolAgentRecycled", { agentId: id, reason: "max-leases" }];
      yield [a, "AgentRecycleRequested", { reason: "max-leases", deadline: FAR }];
      yield [a, "AgentRecycled", { generation: g + 1, deadline: FAR }];
      yield* generation(id, g + 1);
    }
  }
  yield [p, "PoolAgentRetired", { agentId: id, reason: "idle-timeout" }];
  yield [a, "AgentDrainRequested", { reason: "idle-timeout", deadline: FAR }];
  if (n % 17 === 0) yield [a, "AgentFailed", { phase: "stopping", code: "stop-error", message: "timed out" }];
  else yield [a, "AgentStopped", {}];
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** `count` encoded events (all pools created first), in order, built as the actor host builds them. */
export function* mixedHistory(count: number, opts: { lanes?: number; pools?: number } = {}): Generator<Msg> {
  const lanes = opts.lanes ?? 1_000;
  const pools = Array.from({ length: opts.pools ?? 8 }, (_, i) => `pool${i}`);
  const t0 = Date.now() - 86_400_000;
  let made = 0;
  let commands = 0;
  let agents = 0;
  const at = () => t0 + made * 5;
  const encode = ([ref, type, data]: Fact): Msg => {
    const e = createEvent(ref, type, data, { id: uuidv7(at()), at: at() });
    made++;
    return { subject: eventSubject(ref), id: e.id, bytes: encodeEvent(e) };
  };
  for (const pool of pools) {
    if (made >= count) return;
    yield encode([
      { kind: "pool", id: pool },
      "PoolCreated",
      { config: poolConfig({ max: lanes }), instance: "bench" },
    ]);
  }
  const nextCommand = () => commands++;
  const newLife = () => {
    const n = agents++;
    return agentLife(n, pools[n % pools.length] as string, nextCommand, at);
  };
  const running = Array.from({ length: lanes }, newLife);
  while (made < count) {
    for (let k = 0; k < running.length && made < count; k++) {
      let step = running[k]?.next();
      if (!step || step.done) {
        running[k] = newLife();
        step = running[k]?.next();
      }
      if (step && !step.done) yield encode(step.value);
    }
  }
}

/**
 * Publishes `msgs` with the pipelined publisher, a bounded number in flight, each with the
 * concurrency check and the mark a real append gives it: its subject's previous sequence, known
 * here because one connection publishes them in order to an empty stream.
 */
export async function publishHistory(
  pub: PipelinedPublisher,
  msgs: Iterator<Msg>,
  key: EventKey,
  onProgress?: (n: number) => void,
): Promise<number> {
  const IN_FLIGHT = 4_000;
  const last = new Map<string, number>();
  let seq = 0;
  let failed: unknown;
  const lane = async () => {
    for (let r = msgs.next(); !r.done && !failed; r = msgs.next()) {
      const m = r.value;
      const prev = last.get(m.subject) ?? 0;
      last.set(m.subject, ++seq);
      if (seq % 50_000 === 0) onProgress?.(seq);
      try {
        await pub.publish(m.subject, m.bytes, m.id, prev, key.mark(m.subject, m.bytes, prev));
      } catch (err) {
        failed = err;
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  if (failed) throw failed;
  return seq;
}
