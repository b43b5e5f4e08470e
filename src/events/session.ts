import { z } from "../vendor/zod.ts";
import { defineEvent } from "./define.ts";

/**
 * The control plane's connection to one agent's agentd (aggregate kind `session`, id = the agent's
 * id). The dialer records facts; policy acts on them (ARCHITECTURE.md, "Sessions"). An
 * intentional close (the daemon stopping) records nothing.
 */

const generation = z.number().int().min(1);
const attempts = z.number().int().min(0);
/** A short classification; the underlying error is in the log, not on the stream. */
const reason = z.string().min(1).max(200);

export const SessionConnecting = defineEvent({
  type: "SessionConnecting",
  v: 1,
  kind: "session",
  doc: "A dial cycle to the agent's agentd began; `seed` fixes its backoff jitter, so a replay knows each wait.",
  schema: z.object({
    generation,
    address: z.string().min(1).max(300),
    seed: z.number().int().min(0).max(0xffffffff),
  }),
});

export const SessionConnected = defineEvent({
  type: "SessionConnected",
  v: 1,
  kind: "session",
  doc: "mTLS and hello succeeded. The peer's CN and thumbprint are recorded as seen; the dial never aborts on cert grounds.",
  schema: z.object({
    generation,
    attempts,
    peerCN: z.string().max(256).nullable(),
    thumbprint: z
      .string()
      .regex(/^[0-9a-f]{64}$/, "SHA-256, lowercase hex")
      .nullable(),
    /** "ok", or why the peer's chain did not verify against the corral CA (e.g. no certs). */
    chain: z.string().min(1).max(200),
  }),
});

export const SessionFailed = defineEvent({
  type: "SessionFailed",
  v: 1,
  kind: "session",
  doc: "A dial cycle ended without a session (gave up, instance gone, fd-leak-ceiling).",
  schema: z.object({ generation, reason, attempts }),
});

export const SessionBroken = defineEvent({
  type: "SessionBroken",
  v: 1,
  kind: "session",
  doc: "An established session ended without the control plane asking (peer closed, transport error).",
  schema: z.object({ generation, reason }),
});

export const sessionEvents = [SessionConnecting, SessionConnected, SessionFailed, SessionBroken] as const;
