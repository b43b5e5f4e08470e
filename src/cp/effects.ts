import type { Logger } from "pino";
import type { CorralEvent } from "../events/catalogue.ts";
import type { AggregateRef } from "../events/envelope.ts";
import type { Input, Offer } from "./actor-host.ts";

/** What an effect sees: the fact that caused it (already stored) and a way to report back. */
export interface EffectContext {
  aggregate: AggregateRef;
  /** The stored event whose transition produced this action (absent when resumed from a snapshot). */
  event?: CorralEvent;
  /** Its stream sequence. */
  seq: number;
  /** The actor's context after the transition. */
  context: unknown;
  /**
   * Effects report outcomes as new inputs (to this or another aggregate), caused by `event`.
   * A refusal means the actor moved on meanwhile (stopped, failed): expected, not an error.
   */
  offer(ref: AggregateRef, input: Input): Promise<Offer>;
  log: Logger;
}

// biome-ignore lint/suspicious/noExplicitAny: params are typed by each machine's action definitions
export type EffectHandler = (params: any, ctx: EffectContext) => void | Promise<void>;

/** Effect handlers by action name. Effects are the only code in corral that touches the world. */
export type EffectHandlers = Record<string, EffectHandler>;
