import type { ControlPlane } from "../cp/control-plane.ts";
import { ConcurrencyError } from "../store/errors.ts";
import type { CorralMetrics } from "./definitions.ts";

/**
 * Times the calls the actor host makes to its store's `append`, and the API's calls to each
 * pool's `acquire`, by wrapping those two methods on this control plane's own instances (a
 * hook: neither class changes, nothing else shares the instances). Returns the undo.
 */
export function timeCalls(cp: ControlPlane, m: CorralMetrics): () => void {
  const undo: (() => void)[] = [];
  const store = cp.store;
  const append = store.append;
  store.append = async function (this: typeof store, ref, events, expectedSeq) {
    const end = m.append.startTimer({ kind: ref.kind });
    try {
      const r = await append.call(this, ref, events, expectedSeq);
      end({ outcome: "ok" });
      return r;
    } catch (err) {
      end({ outcome: err instanceof ConcurrencyError ? "conflict" : "error" });
      throw err;
    }
  };
  undo.push(() => {
    store.append = append;
  });
  for (const name of cp.poolNames()) {
    const pool = cp.pool(name);
    const acquire = pool.acquire;
    pool.acquire = async function (this: typeof pool, opts) {
      const end = m.acquire.startTimer({ pool: name });
      try {
        const grant = await acquire.call(this, opts);
        end({ outcome: "granted" });
        return grant;
      } catch (err) {
        end({ outcome: outcomeOf(err) });
        throw err;
      }
    };
    undo.push(() => {
      pool.acquire = acquire;
    });
  }
  return () => {
    for (const u of undo) u();
  };
}

/** A pool error's code when it is one of the few an acquire ends with; anything else is "error". */
const OUTCOMES = new Set(["timeout", "cancelled", "pool_closed", "shutting_down", "bad_request"]);

function outcomeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && OUTCOMES.has(code) ? code : "error";
}
