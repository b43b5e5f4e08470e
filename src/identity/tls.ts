import { createHash, timingSafeEqual, type X509Certificate } from "node:crypto";
import type { ConnectionOptions, TLSSocket, TlsOptions } from "node:tls";
import { readCertFields } from "./cert-fields.ts";
import { CN_MAX_BYTES, thumbprintOf } from "./names.ts";
import { OID } from "./oids.ts";

/**
 * Both ends of the control channel (ARCHITECTURE.md, "Identity"). agentd is the TLS server and
 * strict: the handshake enforces the chain to the corral CA, then `checkControlPlanePeer` pins
 * the control plane's CN and EKU before a byte is read. The control plane is the client and
 * permissive: it never aborts on certificate grounds, it reports what it saw (`describeAgentPeer`)
 * so the registry can record an untrusted agent instead of losing sight of it.
 */

export type TlsIdentity = { certPem: string; keyPem: string; caPem: string };

/** Options for agentd's `tls.createServer`: a client certificate chaining to the CA is required. */
export function agentdServerOptions(identity: TlsIdentity & { controlPlaneCN: string }): TlsOptions {
  // The CN is pinned per connection (checkControlPlanePeer); a CN that no certificate can hold
  // would refuse every connection, so it fails here, at start.
  const bytes = Buffer.byteLength(identity.controlPlaneCN);
  if (bytes === 0 || bytes > CN_MAX_BYTES) {
    throw new Error(`controlPlaneCN must be 1 to ${CN_MAX_BYTES} bytes, got ${bytes}`);
  }
  return {
    cert: identity.certPem,
    key: identity.keyPem,
    ca: identity.caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
  };
}

export type PeerCheck = { ok: true } | { ok: false; reason: string };

/**
 * Whether the peer on an agentd connection is the control plane: a chain the handshake accepted,
 * exactly one CN equal to `controlPlaneCN` (compared in constant time) and the clientAuth EKU.
 */
export function checkControlPlanePeer(socket: TLSSocket, controlPlaneCN: string): PeerCheck {
  if (!socket.authorized)
    return { ok: false, reason: `chain: ${String(socket.authorizationError ?? "unknown")}` };
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return { ok: false, reason: "no certs" };
  const fields = readCertFields(cert.raw);
  if (!fields.ok) return { ok: false, reason: `leaf parse failed: ${fields.reason}` };
  const [cn, ...more] = fields.commonNames;
  if (cn === undefined || more.length > 0) {
    return { ok: false, reason: `${fields.commonNames.length} CNs, expected 1` };
  }
  if (!sameText(cn, controlPlaneCN)) return { ok: false, reason: "CN mismatch" };
  if (!fields.extKeyUsages.includes(OID.clientAuth)) return { ok: false, reason: "no clientAuth EKU" };
  return { ok: true };
}

/** Equal in time that does not depend on where they differ: both sides hashed to one length. */
function sameText(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Options for the control plane's `tls.connect` to an agentd. */
export function controlPlaneClientOptions(identity: TlsIdentity): ConnectionOptions {
  return {
    cert: identity.certPem,
    key: identity.keyPem,
    ca: identity.caPem,
    // The chain is judged by describeAgentPeer, the name by the registry (the agent's URI SAN):
    // an agent address is not a host name, so the default host name check would fail them all.
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
    minVersion: "TLSv1.3",
  };
}

export type AgentPeer =
  | { peerCN: string; thumbprint: string; chain: "ok" | (string & {}); cert: X509Certificate }
  | { peerCN: null; reason: "no certs" | "leaf parse failed" };

/**
 * What the control plane saw of an agentd: its CN, thumbprint and whether the chain verified to
 * the CA (`ok`, else openssl's error code, e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`).
 */
export function describeAgentPeer(socket: TLSSocket): AgentPeer {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return { peerCN: null, reason: "no certs" };
  const fields = readCertFields(cert.raw);
  const [cn, ...more] = fields.ok ? fields.commonNames : [];
  if (cn === undefined || more.length > 0) return { peerCN: null, reason: "leaf parse failed" };
  const chain = socket.authorized ? "ok" : String(socket.authorizationError ?? "unknown");
  return { peerCN: cn, thumbprint: thumbprintOf(cert.raw), chain, cert };
}
