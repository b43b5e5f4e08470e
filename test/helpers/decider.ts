import assert from "node:assert/strict";
import { type AnyMachineSnapshot, type AnyStateMachine, initialTransition, transition } from "xstate";
import type { DataInputOf, EventType } from "../../src/events/catalogue.ts";
import { eventDef, validateData } from "../../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../../src/events/envelope.ts";

/** Builds envelopes for one aggregate with a controlled clock (ids are sequential for readability). */
export function eventsFor(ref: AggregateRef) {
  let n = 0;
  return <T extends EventType>(type: T, data: DataInputOf<T>, at: number): Envelope => {
    const def = eventDef(type);
    if (!def) throw new Error(type);
    n++;
    return { id: `${ref.id}-${n}`, type, v: def.v, aggregate: ref, at, data: validateData(type, data) };
  };
}

export function fold(machine: AnyStateMachine, events: readonly Envelope[]): AnyMachineSnapshot {
  let s = initialTransition(machine)[0];
  for (const e of events) s = transition(machine, s, e)[0];
  return s;
}

/**
 * Emmett-style decider tests for machines: given(history).when(event) then either the new
 * state and the effects it asks for, or a rejection (nothing would be stored).
 */
export function given(machine: AnyStateMachine, history: readonly Envelope[]) {
  const before = fold(machine, history);
  return {
    before,
    when(event: Envelope) {
      const [after, actions] = transition(machine, before, event);
      const accepted = after !== before || actions.length > 0;
      return {
        after,
        actions,
        thenState(value: unknown, context: Record<string, unknown> = {}, effects?: string[]) {
          assert.ok(accepted, `expected ${event.type} to be accepted in ${JSON.stringify(before.value)}`);
          assert.deepEqual(after.value, value);
          for (const [k, v] of Object.entries(context)) {
            assert.deepEqual((after.context as Record<string, unknown>)[k], v, `context.${k}`);
          }
          if (effects)
            assert.deepEqual(
              actions.map((a) => a.type),
              effects,
            );
          return this;
        },
        thenRejected() {
          assert.ok(!accepted, `expected ${event.type} to be rejected in ${JSON.stringify(before.value)}`);
        },
      };
    },
  };
}
