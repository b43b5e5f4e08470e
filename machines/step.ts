import {
  type AnyActorScope,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  createActor,
  type EventObject,
  type ExecutableActionsFrom,
} from "xstate";

/**
 * The pure step every fold and every live input takes: `machine.transition` with an inert actor
 * scope that collects the actions instead of running them — what xstate's own `transition` does,
 * except that `transition` builds a throwaway actor (computing the machine's initial state) on
 * every call, about half the cost of a step. One scope per machine is kept and reused instead:
 * safe because a step is synchronous and persisted machines spawn no children (ARCHITECTURE.md).
 */

const scopes = new WeakMap<AnyStateMachine, { scope: AnyActorScope; actions: unknown[] }>();

function scopeOf(machine: AnyStateMachine): { scope: AnyActorScope; actions: unknown[] } {
  let entry = scopes.get(machine);
  if (!entry) {
    const self = createActor(machine);
    const holder: { scope: AnyActorScope; actions: unknown[] } = { scope: undefined as never, actions: [] };
    holder.scope = {
      self,
      id: "",
      sessionId: "",
      system: self.system,
      logger: () => {},
      defer: () => {},
      emit: () => {},
      stopChild: () => {},
      actionExecutor: (action: unknown) => {
        holder.actions.push(action);
      },
    } as unknown as AnyActorScope;
    entry = holder;
    scopes.set(machine, entry);
  }
  return entry;
}

/**
 * `[next, actions]`, as xstate's `transition(machine, snapshot, event)` returns them: the next
 * snapshot (the identical object when the machine does not handle the event) and the named
 * actions with their params resolved, none of them run.
 */
export function step<M extends AnyStateMachine>(
  machine: M,
  snapshot: AnyMachineSnapshot,
  event: EventObject,
): [AnyMachineSnapshot, ExecutableActionsFrom<M>[]] {
  const entry = scopeOf(machine);
  const actions: unknown[] = [];
  entry.actions = actions;
  const next = machine.transition(snapshot as never, event as never, entry.scope) as AnyMachineSnapshot;
  return [next, actions as ExecutableActionsFrom<M>[]];
}
