/** What an event caused by another needs of it: its id and the chain it belongs to. */
export interface Cause {
  id: string;
  correlationId?: string;
}

/**
 * The envelope fields of an event written in response to `cause`: caused by it, and correlated
 * with the chain it belongs to (its correlation, else its own id: it began the chain). Nothing
 * when there is no cause. `corral trace` follows these (src/cli/trace.ts).
 */
export function causedBy(cause?: Cause): {
  causationId?: string;
  correlationId?: string;
} {
  return cause ? { causationId: cause.id, correlationId: cause.correlationId ?? cause.id } : {};
}
