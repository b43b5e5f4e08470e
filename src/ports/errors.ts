import { formatRange, type PortRange } from "./range.ts";

/** Not enough free ports in the range; nothing stays reserved for the owner afterwards. */
export class PortsExhaustedError extends Error {
  override name = "PortsExhaustedError";
  /** What the failed-spawn event records. */
  readonly code = "ports_exhausted";
  constructor(
    readonly owner: string,
    readonly range: PortRange,
    readonly needed: number,
    /** Free ports found (less than needed). */
    readonly available: number,
    /** Ports in the range held or being allocated for other owners in this process. */
    readonly heldByOwners: number,
    /** Ports in the range the probe found held by other programs on this machine. */
    readonly heldByOthers: number,
  ) {
    super(
      `no free ports for ${JSON.stringify(owner)} in ${formatRange(range)}: needed ${needed}, ` +
        `available ${available} (${heldByOwners} held by other owners, ${heldByOthers} in use by other programs)`,
    );
  }
}

/** The owner's allocation was superseded by a newer allocate / release / restore for it. */
export class PortAllocationCancelledError extends Error {
  override name = "PortAllocationCancelledError";
  constructor(readonly owner: string) {
    super(`port allocation for ${JSON.stringify(owner)} was superseded by a later allocate/release/restore`);
  }
}

/** restore() asked for ports another owner holds: the replayed facts contradict each other. */
export class PortConflictError extends Error {
  override name = "PortConflictError";
  constructor(
    readonly owner: string,
    /** port → the owner that already holds it */
    readonly conflicts: ReadonlyMap<number, string>,
  ) {
    const list = [...conflicts].map(([port, by]) => `${port} (held by ${JSON.stringify(by)})`).join(", ");
    super(`cannot restore ports for ${JSON.stringify(owner)}: ${list}`);
  }
}
