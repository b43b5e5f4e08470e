import { createHash, type X509Certificate } from "node:crypto";
import { readCertFields } from "./cert-fields.ts";

/**
 * The names corral puts in certificates (ARCHITECTURE.md, "Identity"). A CN holds at most 64
 * bytes (X.509 ub-common-name), so a name that would not fit, or whose parts could be confused
 * with each other (a dot inside an id), becomes a hash of its parts: still one name per input.
 */
export const CN_MAX_BYTES = 64;
export const AGENT_URI_PREFIX = "urn:corral:agent:";

/** A part that reads unambiguously between dots. */
const PLAIN_PART = /^[A-Za-z0-9_-]+$/;

function nameFor(parts: string[], suffix: string): string {
  const readable = [...parts, suffix].join(".");
  if (parts.every((p) => PLAIN_PART.test(p)) && Buffer.byteLength(readable) <= CN_MAX_BYTES) return readable;
  // NUL cannot appear in an id read from config or an event, so the joined parts stay distinct.
  const digest = createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 40);
  return `h-${digest}.${suffix}`;
}

/** The CN of an agent's certificate: `<agentId>.<poolId>.agent.corral`, or `h-<hash>.agent.corral`. */
export function canonicalAgentName(poolId: string, agentId: string): string {
  return nameFor([agentId, poolId], "agent.corral");
}

/** The CN of a daemon instance's client certificate, the one agentd pins. */
export function controlPlaneName(instance: string): string {
  return nameFor([instance], "cp.corral");
}

/** The URI SAN that names an agent in its certificate. */
export function agentUri(agentId: string): string {
  return `${AGENT_URI_PREFIX}${agentId}`;
}

/** What an agent id read from a certificate may hold: the characters corral's ids use. */
const AGENT_ID = /^[A-Za-z0-9._:-]{1,200}$/;

export type AgentIdFromCert =
  | { ok: true; agentId: string }
  | { ok: false; reason: "no_san" | "malformed_san" | "empty_san" };

/**
 * The agent a certificate names: its one `urn:corral:agent:<id>` URI SAN. No such URI is
 * `no_san`; two of them, an unparsable extension or an id with other characters is
 * `malformed_san`; the prefix alone is `empty_san`.
 */
export function agentIdFromCert(cert: X509Certificate): AgentIdFromCert {
  const fields = readCertFields(cert.raw);
  if (!fields.ok) return { ok: false, reason: "malformed_san" };
  const [uri, ...more] = fields.uris.filter((u) => u.startsWith(AGENT_URI_PREFIX));
  if (uri === undefined) return { ok: false, reason: "no_san" };
  if (more.length > 0) return { ok: false, reason: "malformed_san" };
  const agentId = uri.slice(AGENT_URI_PREFIX.length);
  if (agentId === "") return { ok: false, reason: "empty_san" };
  if (!AGENT_ID.test(agentId)) return { ok: false, reason: "malformed_san" };
  return { ok: true, agentId };
}

/** A certificate's SHA-256 thumbprint over its DER bytes, lowercase hex. */
export function thumbprintOf(der: Buffer): string {
  return createHash("sha256").update(der).digest("hex");
}
