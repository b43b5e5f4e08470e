import type { Logger } from "pino";
import { type AnyMachineSnapshot, initialTransition } from "xstate";
import type { AggregateDef } from "../../machines/aggregate.ts";
import { step } from "../../machines/step.ts";
import {
  type CorralEvent,
  createEvent,
  type DataInputOf,
  type EventType,
  eventDef,
} from "../events/catalogue.ts";
import { type AggregateKind, type AggregateRef, checkRef, refKey } from "../events/envelope.ts";
import { DecodeError, ForgedEventError } from "../events/errors.ts";
import { uuidv7 } from "../events/id.ts";
import { KeyedQueue } from "../keyed-queue.ts";
import { silentLogger } from "../log.ts";
import { ConcurrencyError } from "../store/errors.ts";
import type { EventStore } from "../store/event-store.ts";
import type { StoredRecord } from "../store/records.ts";
import type { RecoveryPoint, SnapshotStore } from "../store/snapshots.ts";
import { eventSubject, kindSubject, refOfSubject } from "../store/subjects.ts";
import { causedBy } from "./caused-by.ts";
import type { EffectContext, EffectHandlers } from "./effects.ts";
import { InvalidInputError, RejectedInputError } from "./errors.ts";
import { type Scheduler, TimerScheduler } from "./scheduler.ts";

/** An input to an actor: becomes the stored event if the machine accepts it. */
export interface Input<T extends EventType = EventType> {
  type: T;
  data: DataInputOf<T>;
  /** Event id; give one to make a retried request idempotent (default: a new UUIDv7). */
  id?: string;
  /** Event time in ms (default: the host's clock). */
  at?: number;
  causationId?: string;
  correlationId?: string;
}

/** The untyped shape of any input, for code that handles every type alike. */
export type AnyInput = Omit<Input, "type" | "data"> & { type: string; data: unknown };

export interface Accepted {
  seq: number;
  event: CorralEvent;
  value: unknown;
  context: unknown;
  status: string;
}

/** One actor's state as the host holds it; views.ts gives typed views per aggregate kind. */
export interface ActorView<C = unknown> {
  ref: AggregateRef;
  seq: number;
  value: unknown;
  context: C;
  status: string;
}

/** What `offer` answers: the input was stored, or the machine refused it (nothing stored). */
export type Offer = ({ accepted: true } & Accepted) | { accepted: false; rejection: RejectedInputError };

export type ChangeListener = (view: ActorView, event: CorralEvent) => void;

function viewOf(ref: AggregateRef, a: { snapshot: AnyMachineSnapshot; seq: number }): ActorView {
  return { ref, seq: a.seq, value: a.snapshot.value, context: a.snapshot.context, status: a.snapshot.status };
}

export interface ActorHostOptions {
  store: EventStore;
  /** Without it, actors are always rebuilt from their full history. */
  snapshots?: SnapshotStore;
  aggregates: readonly AggregateDef[];
  /** Effect handlers per aggregate kind, by action name. */
  effects?: Partial<Record<AggregateKind, EffectHandlers>>;
  /** Time and deadlines (default: the wall clock and Node timers). */
  scheduler?: Scheduler;
  /** Write a snapshot after this many events of one actor (default 100). */
  snapshotEvery?: number;
  /** Conflicts (another writer got there first) are retried this often, reloading each time. */
  maxConflictRetries?: number;
  log?: Logger;
  /** false: never deliver timer inputs (replay and debugging tools that must not change history). */
  timers?: boolean;
}

interface Actor {
  snapshot: AnyMachineSnapshot;
  seq: number;
  /** The last event folded in, when known (not after a snapshot load): the cause of resumed effects. */
  last?: CorralEvent;
  /** Events folded since the last snapshot write. */
  since: number;
}

/** Actors folded in a recovery, by key. */
type Folded = Map<string, { ref: AggregateRef; actor: Actor }>;

const BACKOFF_START_MS = 100;
const BACKOFF_FACTOR = 1.5;

/**
 * Hosts event-sourced XState actors. For each input: fold the actor's state with `transition`
 * (pure), store the resulting event with optimistic concurrency, and only after JetStream has
 * acknowledged it run the machine's actions as effects. Effects report back as new inputs.
 * Timers are deadlines in context, turned into inputs by the scheduler.
 */
export class ActorHost {
  private readonly store: EventStore;
  private readonly snapshots: SnapshotStore | undefined;
  private readonly defs = new Map<AggregateKind, AggregateDef>();
  private readonly effects: Partial<Record<AggregateKind, EffectHandlers>>;
  private readonly clock: () => number;
  private readonly snapshotEvery: number;
  private readonly maxConflictRetries: number;
  private readonly log: Logger;
  private readonly timers: boolean;
  private readonly actors = new Map<string, Actor>();
  private readonly queue = new KeyedQueue();
  private readonly scheduler: Scheduler;
  private readonly background = new Set<Promise<unknown>>();
  private readonly listeners = new Set<ChangeListener>();
  private readonly initials = new Map<AggregateKind, AnyMachineSnapshot>();
  private closed = false;
  private forgedSeen = 0;
  /** The sequence each live actor's snapshot in KV is as of, when known: a recovery point skips those current. */
  private readonly storedSeqs = new Map<string, number>();

  constructor(opts: ActorHostOptions) {
    this.store = opts.store;
    this.snapshots = opts.snapshots;
    this.effects = opts.effects ?? {};
    this.scheduler = opts.scheduler ?? new TimerScheduler();
    this.clock = this.scheduler.now;
    this.snapshotEvery = opts.snapshotEvery ?? 100;
    this.maxConflictRetries = opts.maxConflictRetries ?? 3;
    this.log = opts.log ?? silentLogger;
    this.timers = opts.timers ?? true;
    for (const def of opts.aggregates) {
      if (this.defs.has(def.kind)) throw new Error(`aggregate kind ${def.kind} is registered twice`);
      const missing = def.effects.filter((name) => !this.effects[def.kind]?.[name]);
      if (missing.length > 0)
        throw new Error(`no effect handler for ${def.kind} action(s): ${missing.join(", ")}`);
      this.defs.set(def.kind, def);
    }
  }

  /**
   * Delivers an input. Resolves once the resulting event is stored (effects are then started, not
   * awaited). Throws InvalidInputError or RejectedInputError without storing anything.
   */
  async send<T extends EventType>(ref: AggregateRef, input: Input<T>): Promise<Accepted> {
    if (this.closed) throw new Error("actor host is closed");
    const def = this.defOf(ref);
    const env = this.build(ref, input);
    const key = refKey(ref);
    return this.queue.run(key, async () => {
      for (let conflicts = 0; ; conflicts++) {
        // Not cached: assume a brand-new actor (no reads). If it exists after all, the append
        // conflicts and we reload; this keeps creation — the hot path — at one round trip.
        let actor = this.actors.get(key);
        const guessedNew = !actor;
        actor ??= this.fresh(def);
        let [next, actions] = step(def.machine, actor.snapshot, env);
        if (next === actor.snapshot && actions.length === 0 && guessedNew) {
          actor = await this.load(ref, def);
          [next, actions] = step(def.machine, actor.snapshot, env);
        }
        if (next === actor.snapshot && actions.length === 0) {
          // A cached state could be stale (another writer): confirm before refusing.
          if (
            !guessedNew &&
            conflicts < this.maxConflictRetries &&
            (await this.store.lastSeqOf(ref)) !== actor.seq
          ) {
            this.actors.set(key, await this.load(ref, def));
            continue;
          }
          this.actors.set(key, actor);
          throw new RejectedInputError(ref, env.type, actor.snapshot.value);
        }
        let seq: number;
        try {
          const appended = await this.store.append(ref, [env], actor.seq);
          seq = appended.lastSeq;
          if (appended.duplicates > 0) {
            // This exact event (same id) was stored before: a retried request. Answer as the
            // first time did; its effects ran (or recovery re-drives them) then, not now.
            const current = await this.load(ref, def);
            this.remember(ref, def, current);
            const s = current.snapshot;
            return { seq, event: env, value: s.value, context: s.context, status: s.status };
          }
        } catch (err) {
          // Whatever happened, our copy may be stale now: rebuild it on the next input.
          this.actors.delete(key);
          if (err instanceof ConcurrencyError && conflicts < this.maxConflictRetries) {
            if (!guessedNew || conflicts > 0) {
              await delay(BACKOFF_START_MS * BACKOFF_FACTOR ** conflicts);
            }
            this.actors.set(key, await this.load(ref, def));
            continue;
          }
          throw err;
        }
        const updated: Actor = { snapshot: next, seq, since: actor.since + 1, last: env };
        this.remember(ref, def, updated);
        this.notify(viewOf(ref, updated), env);
        this.runEffects(ref, env, seq, next, actions);
        return { seq, event: env, value: next.value, context: next.context, status: next.status };
      }
    });
  }

  /**
   * Sends an input that the machine may refuse — the one way to do so. A refusal is expected
   * (the actor moved on) and logged at debug; any other failure is thrown.
   */
  async offer<T extends EventType>(ref: AggregateRef, input: Input<T>): Promise<Offer> {
    try {
      return { accepted: true, ...(await this.send(ref, input)) };
    } catch (err) {
      if (!(err instanceof RejectedInputError)) throw err;
      this.log.debug({ aggregate: refKey(ref), input: input.type, state: err.state }, "input refused");
      return { accepted: false, rejection: err };
    }
  }

  /** The actor's current state (loaded from snapshot + events if not in memory). */
  async get(ref: AggregateRef): Promise<ActorView> {
    const def = this.defOf(ref);
    const key = refKey(ref);
    return this.queue.run(key, async () => {
      const actor = this.actors.get(key) ?? (await this.load(ref, def));
      return {
        ref,
        seq: actor.seq,
        value: actor.snapshot.value,
        context: actor.snapshot.context,
        status: actor.snapshot.status,
      };
    });
  }

  /**
   * Rebuilds every actor of a kind from the stream (after a restart), re-arms their timers, and
   * re-runs the effect of any step an actor was in the middle of (`resume`; effects are
   * idempotent). Actors in a final state are not kept. Returns the live actors loaded. With
   * `point` (and a recovery point of that name written by `writeRecoveryPoint`), it starts from the
   * point's snapshots and folds only the events after it; without one, the kind's whole history.
   */
  async recover(
    kind: AggregateKind,
    which: (view: ActorView) => boolean = () => true,
    opts: { point?: string } = {},
  ): Promise<ActorView[]> {
    const def = this.defs.get(kind);
    if (!def) throw new InvalidInputError(`no aggregate kind ${kind} in this host`);
    const point = opts.point ? await this.readPoint(kind, opts.point) : undefined;
    const folded = point ? await this.foldFromPoint(def, point) : await this.foldSince(def, new Map(), 0);
    return this.keep(def, folded, which);
  }

  /**
   * Loads the named actors of a kind one by one (snapshot, then the events on each one's own
   * subject) instead of folding the kind's whole stream: for a few actors in a long stream (a
   * daemon's pools). Keeps the live ones, as `recover` does.
   */
  async recoverEach(kind: AggregateKind, ids: readonly string[]): Promise<ActorView[]> {
    const def = this.defs.get(kind);
    if (!def) throw new InvalidInputError(`no aggregate kind ${kind} in this host`);
    const folded: Folded = new Map();
    await inBatches([...new Set(ids)], async (id) => {
      const ref = { kind, id };
      const actor = await this.load(ref, def);
      if (actor.seq > 0) folded.set(refKey(ref), { ref, actor }); // none stored: no actor
    });
    return this.keep(def, folded, () => true);
  }

  /** The ids the recovery point `name` of `kind` lists; undefined when there is none. */
  async recoveryPointIds(kind: AggregateKind, name: string): Promise<string[] | undefined> {
    return (await this.readPoint(kind, name))?.ids;
  }

  /** Caches the folded actors that are live and `which` keeps, unless a newer input landed meanwhile. */
  private async keep(
    def: AggregateDef,
    folded: Folded,
    which: (view: ActorView) => boolean,
  ): Promise<ActorView[]> {
    const views: ActorView[] = [];
    for (const { ref, actor } of folded.values()) {
      // Only live actors this host is responsible for (their timers would otherwise fire here).
      if (actor.snapshot.status !== "active" || !which(viewOf(ref, actor))) continue;
      const key = refKey(ref);
      const kept = await this.queue.run(key, async () => {
        const cached = this.actors.get(key);
        if (cached && cached.seq >= actor.seq) return false; // a newer input landed meanwhile
        this.remember(ref, def, { ...actor, since: 0 });
        return true;
      });
      if (kept) views.push(viewOf(ref, actor));
    }
    return views;
  }

  /**
   * Writes the recovery point `name` for `kind`: the stream's last sequence L, then a snapshot of
   * every live actor of the kind whose stored one is not current, each read behind any input under
   * way for it — so every event of it at or before L is in its snapshot (an append that got a
   * sequence up to L was queued before this read). The next `recover` with this point folds only
   * what is stored after L. A point stays valid as events are added (they are the tail it folds);
   * writing one while inputs flow is safe, and bounds that tail.
   */
  async writeRecoveryPoint(kind: AggregateKind, name: string): Promise<void> {
    const def = this.defs.get(kind);
    if (!def || !this.snapshots) return;
    const snapshots = this.snapshots;
    const seq = await this.store.lastSeq();
    const live = [...this.actors.keys()].filter((key) => key.startsWith(`${kind}/`));
    const ids: string[] = [];
    await inBatches(live, async (key) => {
      const actor = await this.queue.run(key, () => this.actors.get(key));
      if (!actor) return; // it ended meanwhile: not live at the point
      const ref = parseKey(key);
      ids.push(ref.id);
      if (this.storedSeqs.get(key) === actor.seq) return;
      const { value, context } = actor.snapshot;
      await snapshots.put(ref, { seq: actor.seq, version: def.version, value, context });
      this.storedSeqs.set(key, actor.seq);
    });
    await snapshots.putPoint(`${kind}.${name}`, { seq, ids });
  }

  /**
   * Re-runs the effect of the step each live actor of `kind` is in the middle of (its
   * definition's `resume`): after a crash, the event may be stored and its effect never run.
   * Effects must therefore be idempotent.
   */
  resume(kind: AggregateKind, which: (view: ActorView) => boolean = () => true): number {
    const def = this.defs.get(kind);
    if (!def?.resume) return 0;
    let n = 0;
    for (const [key, actor] of this.actors) {
      if (!key.startsWith(`${kind}/`) || !which(viewOf(parseKey(key), actor))) continue;
      const intents = def.resume(actor.snapshot);
      if (intents.length === 0) continue;
      n++;
      this.runEffects(parseKey(key), actor.last, actor.seq, actor.snapshot, intents);
    }
    return n;
  }

  /**
   * Calls `listener` after every event this host stores (before its effects run), with the
   * actor's new state. The control plane keeps its in-memory views current this way.
   */
  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One actor's state if it is held in memory (a live one), without loading it: O(1). */
  cached(ref: AggregateRef): ActorView | undefined {
    const a = this.actors.get(refKey(ref));
    return a && viewOf(ref, a);
  }

  /** Actors currently held in memory (live ones). */
  liveActors(kind?: AggregateKind): ActorView[] {
    const out: ActorView[] = [];
    for (const [key, a] of this.actors) {
      const ref = parseKey(key);
      if (kind && ref.kind !== kind) continue;
      out.push({
        ref,
        seq: a.seq,
        value: a.snapshot.value,
        context: a.snapshot.context,
        status: a.snapshot.status,
      });
    }
    return out;
  }

  /** Records without a valid writer mark, or replayed away from where it was made, met so far (never folded). */
  get forged(): number {
    return this.forgedSeen;
  }

  /** Resolves when every effect and snapshot write started so far has finished. */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /**
   * Stops timers, lets effects under way finish (they may still report, up to `graceMs`), then
   * refuses further input. What did not finish is resumed by the next host's recovery.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.scheduler.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.closed = true;
  }

  // --- internals -------------------------------------------------------------------------------

  private defOf(ref: AggregateRef): AggregateDef {
    try {
      checkRef(ref);
    } catch (err) {
      throw new InvalidInputError((err as Error).message);
    }
    const def = this.defs.get(ref.kind);
    if (!def) throw new InvalidInputError(`no aggregate kind ${ref.kind} in this host`);
    return def;
  }

  /** The event this input would become; fails with the bad field named, before any I/O. */
  private build(ref: AggregateRef, input: AnyInput): CorralEvent {
    const def = eventDef(input.type);
    if (!def) throw new InvalidInputError(`unknown event type ${JSON.stringify(input.type)}`);
    if (def.kind !== ref.kind) {
      throw new InvalidInputError(
        `${input.type} is a ${def.kind} event; it cannot be sent to ${refKey(ref)}`,
      );
    }
    const at = input.at ?? this.clock();
    const { causationId, correlationId } = input;
    try {
      return createEvent(ref, input.type as EventType, input.data, {
        id: input.id ?? uuidv7(at),
        at,
        causationId,
        correlationId,
      });
    } catch (err) {
      throw new InvalidInputError(err instanceof DecodeError ? err.message : String(err));
    }
  }

  private fresh(def: AggregateDef): Actor {
    // Snapshots are immutable: one initial snapshot per machine serves every new actor.
    let initial = this.initials.get(def.kind);
    if (!initial) {
      initial = initialTransition(def.machine)[0];
      this.initials.set(def.kind, initial);
    }
    return { snapshot: initial, seq: 0, since: 0 };
  }

  private async readPoint(kind: AggregateKind, name: string): Promise<RecoveryPoint | undefined> {
    try {
      return await this.snapshots?.getPoint(`${kind}.${name}`);
    } catch (err) {
      this.log.warn({ err, kind, point: name }, "recovery point unreadable; replaying the full history");
      return undefined;
    }
  }

  /**
   * Folds the kind's events after `fromSeq` onto `folded` (actors already as of their own `seq`).
   * A subject met for the first time whose first event a new actor refuses (or that is marked as
   * following an earlier one) began before `fromSeq`: it is loaded on its own afterwards.
   */
  private async foldSince(def: AggregateDef, folded: Folded, fromSeq: number): Promise<Folded> {
    // The sequence of each subject's last message (of any kind): what a marked event must follow.
    const lastOn = new Map<string, number>();
    for (const { ref, actor } of folded.values()) lastOn.set(eventSubject(ref), actor.seq);
    const older = new Map<string, AggregateRef>();
    for await (const batch of this.store.read({ filter: kindSubject(def.kind), fromSeq: fromSeq + 1 })) {
      for (const r of batch) {
        if (older.has(r.subject)) continue;
        const before = lastOn.get(r.subject);
        if (before !== undefined && r.seq <= before) continue; // in the snapshot already
        const ref = fromSeq > 0 && before === undefined ? this.olderActor(def, r) : undefined;
        if (ref) {
          older.set(r.subject, ref);
          continue;
        }
        lastOn.set(r.subject, r.seq);
        this.foldRecord(def, folded, r, before ?? 0);
      }
    }
    for (const ref of older.values()) folded.set(refKey(ref), { ref, actor: await this.load(ref, def) });
    return folded;
  }

  /** The actor of `r`, when `r` cannot be its first event (it began before the tail being read). */
  private olderActor(def: AggregateDef, r: StoredRecord): AggregateRef | undefined {
    if (r.error) return undefined;
    const [next] = step(def.machine, this.fresh(def).snapshot, r.event);
    const first = (r.prev === undefined || r.prev === 0) && next !== this.fresh(def).snapshot;
    return first ? undefined : r.event.aggregate;
  }

  /** One record of a recovery fold: folded, or skipped (and counted) when unreadable or forged. */
  private foldRecord(def: AggregateDef, folded: Folded, r: StoredRecord, before: number): void {
    if (!r.error && r.prev !== undefined && r.prev !== before) {
      this.countReplayed(r, before);
      this.noteForged(r, folded);
      return;
    }
    if (r.error) {
      // Recovery must not stop on a poison message; loading that one actor later fails loudly.
      this.log.warn(
        { seq: r.seq, subject: r.subject, reason: r.error.reason },
        "skipping unreadable event in recovery",
      );
      if (r.error instanceof ForgedEventError) this.noteForged(r, folded);
      return;
    }
    const key = refKey(r.event.aggregate);
    const entry = folded.get(key) ?? { ref: r.event.aggregate, actor: this.fresh(def) };
    const [next] = step(def.machine, entry.actor.snapshot, r.event);
    entry.actor = { snapshot: next, seq: r.seq, since: entry.actor.since + 1, last: r.event };
    folded.set(key, entry);
  }

  /** The point's actors from their snapshots (one that is missing or stale: loaded in full), then the tail. */
  private async foldFromPoint(def: AggregateDef, point: RecoveryPoint): Promise<Folded> {
    const folded: Folded = new Map();
    await inBatches(point.ids, async (id) => {
      const ref = { kind: def.kind, id };
      const snap = await this.snapshots?.get(ref).catch(() => undefined);
      const actor =
        snap && snap.version === def.version
          ? {
              snapshot: def.machine.resolveState({ value: snap.value, context: snap.context } as never),
              seq: snap.seq,
              since: 0,
            }
          : await this.load(ref, def);
      if (snap && snap.seq === actor.seq) this.storedSeqs.set(refKey(ref), snap.seq);
      folded.set(refKey(ref), { ref, actor });
    });
    return this.foldSince(def, folded, point.seq);
  }

  /** Latest snapshot (if its version matches) plus the events after it, folded without effects. */
  private async load(ref: AggregateRef, def: AggregateDef): Promise<Actor> {
    let actor = this.fresh(def);
    const snap = await this.snapshots?.get(ref).catch((err: unknown) => {
      this.log.warn({ err, aggregate: refKey(ref) }, "snapshot read failed; replaying full history");
      return undefined;
    });
    if (snap && snap.version === def.version) {
      actor = {
        snapshot: def.machine.resolveState({ value: snap.value, context: snap.context } as never),
        seq: snap.seq,
        since: 0,
      };
    }
    for (const r of await this.store.readAggregate(ref, actor.seq)) {
      if (!r.error && r.prev !== undefined && r.prev !== actor.seq) {
        // A real event copied to where it was not appended (its mark names another position).
        this.countReplayed(r, actor.seq);
        actor = { ...actor, seq: r.seq };
        continue;
      }
      if (r.error instanceof ForgedEventError) {
        // Not ours, so not its history: never folded. Its sequence is still the subject's last one,
        // which the next append must name (or every append would conflict forever).
        this.countForged(r);
        actor = { ...actor, seq: r.seq };
        continue;
      }
      // An actor's own history must be readable: skipping an event would silently corrupt it.
      if (r.error) throw r.error;
      const [next] = step(def.machine, actor.snapshot, r.event);
      actor = { snapshot: next, seq: r.seq, since: actor.since + 1, last: r.event };
    }
    return actor;
  }

  /**
   * A forged record met in recovery: counted, and (for an actor already seen) its sequence taken as
   * the subject's last one, as load() does. A forged first event creates no actor.
   */
  private noteForged(r: StoredRecord, folded: Folded): void {
    if (r.error) this.forgedSeen++; // a replay was counted by countReplayed
    const ref = refOfSubject(r.subject);
    const entry = ref && folded.get(refKey(ref));
    if (entry) entry.actor = { ...entry.actor, seq: r.seq };
  }

  private countReplayed(r: StoredRecord, actual: number): void {
    this.forgedSeen++;
    this.log.warn(
      { seq: r.seq, subject: r.subject, reason: "replayed", markedAfter: r.prev, actuallyAfter: actual },
      "ignoring replayed event",
    );
  }

  private countForged(r: StoredRecord): void {
    this.forgedSeen++;
    this.log.warn(
      { seq: r.seq, subject: r.subject, reason: "forged", detail: r.error?.message },
      "ignoring forged event",
    );
  }

  /** Caches a live actor, arms its deadline, and writes a snapshot when one is due. */
  private remember(ref: AggregateRef, def: AggregateDef, actor: Actor): void {
    const key = refKey(ref);
    const done = actor.snapshot.status !== "active";
    if (done) {
      this.actors.delete(key);
      this.storedSeqs.delete(key);
    } else this.actors.set(key, actor);
    // A finished actor is rarely loaded again (only to refuse an input): no snapshot for it.
    if (this.snapshots && !done && actor.since >= this.snapshotEvery) {
      actor.since = 0;
      const snapshot = {
        seq: actor.seq,
        version: def.version,
        value: actor.snapshot.value,
        context: actor.snapshot.context,
      };
      this.track(
        this.snapshots.put(ref, snapshot).then(
          () => {
            if (this.actors.has(key)) this.storedSeqs.set(key, snapshot.seq);
          },
          (err: unknown) => this.log.warn({ err, aggregate: key }, "snapshot write failed"),
        ),
      );
    }
    const timer = done || !this.timers ? null : (def.timer?.(actor.snapshot) ?? null);
    if (!timer) {
      this.scheduler.disarm(key);
      return;
    }
    // The deadline passes in the state the last event left the actor in: that event is its cause.
    const cause = actor.last;
    this.scheduler.arm(key, timer.at, () => {
      const input = {
        ...timer.input,
        at: Math.max(this.clock(), timer.at),
        ...causedBy(cause),
      } as Input;
      this.track(
        this.send(ref, input).catch((err: unknown) => {
          if (err instanceof RejectedInputError) return; // stale: the actor moved on meanwhile
          if (this.closed) return;
          this.log.warn({ err, aggregate: key, input: input.type }, "timer input failed; retrying in 1 s");
          this.scheduler.arm(key, this.clock() + 1_000, () =>
            this.remember(ref, def, this.actors.get(key) ?? actor),
          );
        }),
      );
    });
  }

  private notify(view: ActorView, event: CorralEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(view, event);
      } catch (err) {
        this.log.error({ err, aggregate: refKey(view.ref) }, "change listener failed");
      }
    }
  }

  private runEffects(
    ref: AggregateRef,
    event: CorralEvent | undefined,
    seq: number,
    snapshot: AnyMachineSnapshot,
    actions: readonly { type: string; params?: unknown }[],
  ): void {
    for (const action of actions) {
      const handler = this.effects[ref.kind]?.[action.type];
      if (!handler) continue; // xstate built-ins (assign, raise...) carry no effect
      const ctx: EffectContext = {
        aggregate: ref,
        event,
        seq,
        context: snapshot.context,
        // Caused by this event; correlated with the request (or first event) its chain began with.
        offer: (r, i) => this.offer(r, { ...causedBy(event), ...i }),
        log: this.log,
      };
      this.track(
        (async () => {
          try {
            await handler(action.params, ctx);
          } catch (err) {
            const level = this.closed ? "debug" : "error"; // after close, reports are expected to fail
            this.log[level]({ err, aggregate: refKey(ref), action: action.type, seq }, "effect failed");
          }
        })(),
      );
    }
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }
}

function parseKey(key: string): AggregateRef {
  const slash = key.indexOf("/");
  return { kind: key.slice(0, slash) as AggregateKind, id: key.slice(slash + 1) };
}

/** Runs `fn` over `items`, at most 256 at a time (each a request or two to NATS). */
async function inBatches<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 256) await Promise.all(items.slice(i, i + 256).map(fn));
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
