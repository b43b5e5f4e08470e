import type { CorralEvent } from "../../events/catalogue.ts";
import type { CheckpointStore } from "../../projections/checkpoints.ts";
import {
  agentOfThumbprint,
  type Registration,
  type RegistryState,
  type RegistryView,
  registrationOf,
  registrySlice,
} from "../../projections/registry.ts";
import { type Worldview, worldviewProjection } from "../../projections/worldview.ts";
import type { EventStore } from "../../store/event-store.ts";
import { kindSubject } from "../../store/subjects.ts";
import type { ActorHost } from "../actor-host.ts";

const handled = new Set<string>(registrySlice.handles);

/**
 * The dialer's copy of the registry projection (src/projections/registry.ts), kept current by the
 * same reducer: rebuilt from the stream's agent events at start, then fed every event this host
 * stores (`ActorHost.onChange` calls listeners before `offer` returns, so a registration the
 * dialer just recorded is visible to its next check). The daemon is the single writer of its
 * agents, so nothing it must see is stored elsewhere.
 */
export class LiveRegistry {
  private state: RegistryState = registrySlice.init();
  /** Stream sequence the state includes; events at or below it are not applied twice. */
  private seq = 0;
  private buffered: { event: CorralEvent; seq: number }[] | null = null;

  /** Follows `host` from now on; call before `rebuild` so nothing falls between the two. */
  attach(host: Pick<ActorHost, "onChange">): () => void {
    return host.onChange((view, event) => {
      if (this.buffered) this.buffered.push({ event, seq: view.seq });
      else this.apply(event, view.seq);
    });
  }

  /**
   * Folds the agent events in the stream, then what `attach` saw meanwhile: from the worldview's
   * checkpoint when `checkpoints` holds one of this version (its registry, as of its sequence),
   * else from the first event. A checkpoint stands in for events only when marked (checkpoints.ts).
   */
  async rebuild(store: EventStore, checkpoints?: CheckpointStore): Promise<void> {
    this.buffered = [];
    try {
      const saved = await checkpoints?.get<Worldview>(worldviewProjection.name);
      const usable = saved?.version === worldviewProjection.version && saved.state.registry !== undefined;
      const fresh = usable ? registrySlice.load(saved.state.registry) : registrySlice.init();
      let seq = usable ? saved.seq : 0;
      // Decoded as the worldview reads them: only the fields its slices (the registry among them) read.
      const range = { filter: kindSubject("agent"), fromSeq: seq + 1, decode: worldviewProjection.decode };
      for await (const batch of store.read(range)) {
        for (const r of batch) {
          seq = r.seq;
          if (r.event && handled.has(r.event.type)) registrySlice.reduce(fresh, r.event as never, r);
        }
      }
      this.state = fresh;
      this.seq = Math.max(this.seq, seq);
    } finally {
      const later = this.buffered ?? [];
      this.buffered = null;
      for (const { event, seq } of later) this.apply(event, seq);
    }
  }

  /**
   * Starts from a registry view the daemon already has (its worldview's `registry`, folded up to
   * stream sequence `seq`) instead of reading the stream again. Call it before the host takes
   * input: an event stored earlier and after `seq` would be lost.
   */
  load(view: RegistryView, seq: number): void {
    this.state = registrySlice.load(view);
    this.seq = seq;
  }

  /** Applies one stored event (its stream sequence `seq`). */
  apply(event: CorralEvent, seq: number): void {
    if (seq <= this.seq || !handled.has(event.type)) return;
    this.seq = seq;
    registrySlice.reduce(this.state, event as never, { seq, time: event.at });
  }

  registrationOf(agentId: string): Registration | undefined {
    return registrationOf(this.state, agentId);
  }

  agentOfThumbprint(thumbprint: string): string | undefined {
    return agentOfThumbprint(this.state, thumbprint);
  }
}
