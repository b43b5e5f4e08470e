import { createHash, timingSafeEqual, type X509Certificate } from "node:crypto";
import type { UNTRUSTED_REASONS } from "../../events/agent.ts";
import { agentIdFromCert, canonicalAgentName } from "../../identity/names.ts";
import type { Registration } from "../../projections/registry.ts";

/**
 * The register cross-checks (LESSONS.md, "Register and the registry"): pure functions of what the
 * dialer gathered, so each refusal has one named reason. The peer only ever hears "registration
 * rejected" (REFUSED_MESSAGE); the reason goes to the log and into AgentUntrusted.
 */

export type UntrustedReason = (typeof UNTRUSTED_REASONS)[number];

export type Verdict =
  | { ok: true; thumbprint: string; peerCN: string; idempotent: boolean }
  | { ok: false; reason: UntrustedReason; detail: string };

/** What the runtime says of an agent: where its agentd listens and the labels of its instance. */
export interface ResolvedAgent {
  /** host:port to dial (an IP address, as the runtime gives it). */
  address: string;
  labels: { poolId: string; agentId: string; generation: number };
}

/** The host's view of the agent a peer claims to be. */
export interface AgentRecord {
  poolId: string;
  generation: number;
  /** Not stopped or failed. */
  live: boolean;
}

export interface RegisterFacts {
  /** The agent this connection was dialled for. */
  dialled: { agentId: string; generation: number };
  peer: {
    cert: X509Certificate | null;
    peerCN: string | null;
    thumbprint: string | null;
    /** "ok" or why the chain did not verify. */
    chain: string;
    /** The remote end of the socket, host:port. */
    address: string;
  };
  /** What agentd's register message says it is. */
  claims: { poolId: string; agentId: string };
  /** The host's record of the claimed agent (null: none). */
  agent: AgentRecord | null;
  /** The runtime's answer for the claimed agent, asked at register time (null: no instance). */
  runtime: ResolvedAgent | null;
  /** Other live agents the runtime puts at the same address. */
  sharers: readonly string[];
  /** The claimed agent's registration, and the agent the peer's thumbprint is bound to. */
  registration: Registration | undefined;
  thumbprintOwner: string | undefined;
}

export type Classification =
  | { kind: "welcome"; thumbprint: string }
  | { kind: "register" }
  | { kind: "untrusted"; reason: UntrustedReason; detail: string };

/**
 * At hello: the same certificate the agent registered this generation is an idempotent welcome
 * (no event); another one is a replayed or substituted certificate; no registration asks agentd
 * to register (an untrusted verdict too: a successful re-register clears it).
 */
export function classifyAtHello(
  registration: Registration | undefined,
  generation: number,
  thumbprint: string | null,
): Classification {
  if (registration?.state !== "registered" || registration.generation !== generation)
    return { kind: "register" };
  const registered = registration.thumbprint ?? "";
  if (thumbprint !== null && sameText(registered, thumbprint)) return { kind: "welcome", thumbprint };
  return {
    kind: "untrusted",
    reason: "cert_thumbprint_mismatch",
    detail: "the agent is registered with another certificate",
  };
}

const refuse = (reason: UntrustedReason, detail: string): Verdict => ({ ok: false, reason, detail });

/** Every cross-check, in order: invalid input first, then the certificate, then the world. */
export function checkRegistration(f: RegisterFacts): Verdict {
  const { claims, peer, dialled } = f;
  if (claims.poolId === "" || claims.agentId === "") {
    return refuse("bad_register", `register needs poolId and agentId, got ${JSON.stringify(claims)}`);
  }
  if (peer.cert === null || peer.thumbprint === null || peer.peerCN === null) {
    return refuse("no_peer_cert", "the peer presented no readable certificate");
  }
  if (peer.chain !== "ok") return refuse("chain_invalid", `chain: ${peer.chain}`);
  if (f.thumbprintOwner !== undefined && f.thumbprintOwner !== dialled.agentId) {
    return refuse("thumbprint_in_use", `the certificate is registered to agent ${f.thumbprintOwner}`);
  }
  const san = agentIdFromCert(peer.cert);
  if (!san.ok) {
    return san.reason === "no_san"
      ? refuse("no_san", "no urn:corral:agent: URI SAN")
      : refuse("malformed_san", `URI SAN: ${san.reason}`);
  }
  if (san.agentId !== dialled.agentId || claims.agentId !== dialled.agentId) {
    return refuse(
      "san_mismatch",
      `dialled ${dialled.agentId}; the certificate names ${san.agentId}, the peer claims ${claims.agentId}`,
    );
  }
  if (!sameText(peer.peerCN, canonicalAgentName(claims.poolId, claims.agentId))) {
    return refuse("cn_mismatch", "the CN is not the canonical name of the claimed pool and agent");
  }
  return checkWorld(f, peer.thumbprint, peer.peerCN);
}

/** The claims against the host's record, the runtime, and the registry. */
function checkWorld(f: RegisterFacts, thumbprint: string, peerCN: string): Verdict {
  const { claims, agent, runtime, dialled } = f;
  if (agent === null || !agent.live) return refuse("unknown_agent", `no live agent ${claims.agentId}`);
  if (runtime === null) return refuse("unknown_agent", `the runtime has no instance of ${claims.agentId}`);
  const labels = runtime.labels;
  if (
    agent.poolId !== claims.poolId ||
    labels.poolId !== claims.poolId ||
    labels.agentId !== claims.agentId ||
    labels.generation !== agent.generation ||
    agent.generation !== dialled.generation
  ) {
    return refuse(
      "label_mismatch",
      `claims pool ${claims.poolId}; the agent is in pool ${agent.poolId} (generation ${agent.generation}), ` +
        `its instance is labelled pool ${labels.poolId}, agent ${labels.agentId}, generation ${labels.generation}`,
    );
  }
  if (!sameAddress(runtime.address, f.peer.address)) {
    return refuse(
      "address_mismatch",
      `the peer is at ${f.peer.address}, the agent's instance at ${runtime.address}`,
    );
  }
  if (f.sharers.length > 0) {
    return refuse("ambiguous_address", `${runtime.address} is also the address of ${f.sharers.join(", ")}`);
  }
  const registered = f.registration?.state === "registered" ? f.registration.thumbprint : undefined;
  if (registered !== undefined && !sameText(registered, thumbprint)) {
    return refuse("cert_thumbprint_mismatch", "the agent is registered with another certificate");
  }
  return { ok: true, thumbprint, peerCN, idempotent: registered !== undefined };
}

/** Equal in time that does not depend on where they differ: both hashed to one length first. */
export function sameText(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** host:port with an IPv4-mapped IPv6 address read as the IPv4 one. */
export function normalAddress(address: string): string {
  const at = address.lastIndexOf(":");
  let host = at < 0 ? address : address.slice(0, at);
  const port = at < 0 ? "" : address.slice(at + 1);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host.toLowerCase().startsWith("::ffff:") && host.includes(".")) host = host.slice(7);
  return `${host.toLowerCase()}:${port}`;
}

function sameAddress(a: string, b: string): boolean {
  return normalAddress(a) === normalAddress(b);
}
