import { createEvent, type DataInputOf, type EventType } from "../../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../../src/events/envelope.ts";
import { uuidv7 } from "../../src/events/id.ts";
import type { EventStore } from "../../src/store/event-store.ts";

/** How a seeded event links to the ones before it: the event (by name) that caused it, a correlation. */
export interface Link {
  cause?: string;
  correlationId?: string;
}

/**
 * A stream seeded by hand for the history commands' tests, each event named: its stream sequence
 * (`seq`) and envelope (`ev`) by that name. An event caused by another carries its id as
 * causationId and its correlation (the cause's own id when it has none: the root's), as the
 * daemon writes them (src/cp/caused-by.ts).
 */
export class SeededStream {
  readonly seq: Record<string, number> = {};
  readonly ev: Record<string, Envelope> = {};
  private readonly lastOf = new Map<string, number>();

  constructor(private readonly store: () => EventStore) {}

  async put<T extends EventType>(
    name: string,
    ref: AggregateRef,
    type: T,
    data: DataInputOf<T>,
    at: number,
    link: Link = {},
  ): Promise<void> {
    const cause = link.cause === undefined ? undefined : this.ev[link.cause];
    if (link.cause !== undefined && !cause) throw new Error(`no seeded event named ${link.cause}`);
    const meta = {
      id: uuidv7(at),
      at,
      causationId: cause?.id,
      correlationId: link.correlationId ?? cause?.correlationId ?? cause?.id,
    };
    const e = createEvent(ref, type, data, meta);
    const { lastSeq } = await this.store().append(ref, [e], this.lastOf.get(`${ref.kind}/${ref.id}`) ?? 0);
    this.stored(name, ref, lastSeq, e);
  }

  /** An event stored at `seq` another way (a forger's publish): named, and the next append follows it. */
  stored(name: string, ref: AggregateRef, seq: number, e: Envelope): void {
    this.lastOf.set(`${ref.kind}/${ref.id}`, seq);
    this.seq[name] = seq;
    this.ev[name] = e;
  }
}
