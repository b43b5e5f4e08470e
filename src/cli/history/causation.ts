import type { CorralEvent } from "../../events/catalogue.ts";

/** One event in a causation tree, with the events it caused (by their causationId), in stream order. */
export interface TraceNode {
  seq: number;
  time: number;
  event: CorralEvent;
  children: TraceNode[];
}

/**
 * The events of a trace, by id, each linked to the event that caused it. A cause is stored before
 * what it causes (effects run after their event is stored: ARCHITECTURE.md, "Persist, then
 * act"), so one pass in stream order links them all.
 */
export class CausationIndex {
  readonly byId = new Map<string, TraceNode>();
  readonly nodes: TraceNode[] = [];

  add(seq: number, time: number, event: CorralEvent): TraceNode {
    const node: TraceNode = { seq, time, event, children: [] };
    this.nodes.push(node);
    this.byId.set(event.id, node);
    const cause = event.causationId === undefined ? undefined : this.byId.get(event.causationId);
    cause?.children.push(node);
    return node;
  }

  /**
   * The trees grown from `seeds` (each seed and everything it caused): the roots are the seeds
   * not caused by anything else in those trees, in stream order.
   */
  forest(seeds: readonly TraceNode[]): { roots: TraceNode[]; size: number; aggregates: number } {
    const inTree = new Set<TraceNode>();
    const stack = [...seeds];
    while (stack.length > 0) {
      const n = stack.pop() as TraceNode;
      if (inTree.has(n)) continue;
      inTree.add(n);
      stack.push(...n.children);
    }
    const roots = seeds
      .filter((s) => {
        const cause = s.event.causationId === undefined ? undefined : this.byId.get(s.event.causationId);
        return !cause || !inTree.has(cause);
      })
      .filter((s, i, all) => all.indexOf(s) === i)
      .sort((a, b) => a.seq - b.seq);
    const aggregates = new Set([...inTree].map((n) => `${n.event.aggregate.kind}/${n.event.aggregate.id}`));
    return { roots, size: inTree.size, aggregates: aggregates.size };
  }
}
