import { type webcrypto, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import * as pkijs from "pkijs";
import { writeFileAtomic } from "./atomic-file.ts";
import { buildCertificate, type CertSpec } from "./build-cert.ts";
import { type CaKey, loadOrCreateCaKey } from "./ca-key.ts";
import { generateKeyPair, privateKeyPem, toPem } from "./keys.ts";
import { agentUri, canonicalAgentName, controlPlaneName, thumbprintOf } from "./names.ts";
import type { ExtKeyUsageName } from "./oids.ts";

/** A certificate corral issued and the key that goes with it (the key only ever to its holder). */
export type IssuedCert = {
  certPem: string;
  keyPem: string;
  /** SHA-256 of the certificate's DER, lowercase hex (`thumbprintOf`). */
  thumbprint: string;
  /** When it stops being valid, epoch ms. */
  notAfter: number;
};

export type CustomCertSpec = { cn: string; uris: string[]; eku: ExtKeyUsageName[]; validityMs: number };

export interface CorralCa {
  /** The CA certificate, PEM: what every peer trusts. */
  readonly certPem: string;
  /** The daemon instance's client certificate: EKU clientAuth, CN `controlPlaneName(instance)`. */
  issueControlPlane(instance: string, options?: { validityMs?: number }): Promise<IssuedCert>;
  /** An agent's server certificate: EKU serverAuth, CN `canonicalAgentName`, URI SAN `agentUri`. */
  issueAgent(request: { poolId: string; agentId: string; validityMs?: number }): Promise<IssuedCert>;
  /** Any CN, URIs and EKUs: for tests that forge an identity with a real signature. */
  issueCustom(spec: CustomCertSpec): Promise<IssuedCert>;
}

export const CA_KEY_FILE = "ca.key";
export const CA_CERT_FILE = "ca.crt";
export const CONTROL_PLANE_VALIDITY_MS = 7 * 24 * 3600_000;
export const AGENT_VALIDITY_MS = 24 * 3600_000;
const CA_VALIDITY_MS = 10 * 365 * 24 * 3600_000;
/** Backdated so a peer whose clock runs a little behind already accepts a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60_000;

export class CaError extends Error {
  override name = "CaError";
}

/**
 * The CA in `dir`: `ca.key` (mode 0600) and `ca.crt`, made on first start and reused after.
 * The key is the CA's identity; the certificate is made from it when missing or expired, so two
 * daemons starting at once agree on the key and either one's certificate verifies the same chains.
 */
export async function loadOrCreateCa(dir: string): Promise<CorralCa> {
  const root = resolve(dir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const key = await loadOrCreateCaKey(join(root, CA_KEY_FILE));
  const certFile = join(root, CA_CERT_FILE);
  let certPem = readCaCert(certFile, key.spkiDer);
  if (certPem === undefined) {
    certPem = await selfSign(key);
    writeFileAtomic(certFile, certPem, 0o644);
  }
  return new FileCa(certPem, key.signingKey);
}

/** The CA certificate in `file` when it is there, unexpired and made for `spkiDer`'s key. */
function readCaCert(file: string, spkiDer: Buffer): string | undefined {
  let pem: string;
  let cert: X509Certificate;
  try {
    pem = readFileSync(file, "utf8");
    cert = new X509Certificate(pem);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CaError(`cannot read the CA certificate ${file}: ${(err as Error).message}`);
  }
  const certSpki = cert.publicKey.export({ type: "spki", format: "der" });
  if (!certSpki.equals(spkiDer)) throw new CaError(`the CA certificate ${file} is not for the key beside it`);
  if (!cert.ca) throw new CaError(`the CA certificate ${file} is not a CA certificate`);
  return Date.parse(cert.validTo) > Date.now() ? pem : undefined;
}

async function selfSign(key: CaKey): Promise<string> {
  const now = Date.now();
  // Named after its key, so a re-made certificate has the same subject and two CAs never share one.
  const cn = `corral CA ${thumbprintOf(key.spkiDer).slice(0, 16)}`;
  const spec: CertSpec = {
    cn,
    uris: [],
    eku: [],
    isCa: true,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + CA_VALIDITY_MS),
    publicKey: key.publicKey,
  };
  return toPem("CERTIFICATE", await buildCertificate(spec, { cert: "self", key: key.signingKey }));
}

class FileCa implements CorralCa {
  readonly #caCert: pkijs.Certificate;
  readonly #signingKey: webcrypto.CryptoKey;

  constructor(
    readonly certPem: string,
    signingKey: webcrypto.CryptoKey,
  ) {
    this.#caCert = pkijs.Certificate.fromBER(new X509Certificate(certPem).raw);
    this.#signingKey = signingKey;
  }

  issueControlPlane(instance: string, options: { validityMs?: number } = {}): Promise<IssuedCert> {
    return this.issueCustom({
      cn: controlPlaneName(instance),
      uris: [],
      eku: ["clientAuth"],
      validityMs: options.validityMs ?? CONTROL_PLANE_VALIDITY_MS,
    });
  }

  issueAgent(request: { poolId: string; agentId: string; validityMs?: number }): Promise<IssuedCert> {
    return this.issueCustom({
      cn: canonicalAgentName(request.poolId, request.agentId),
      uris: [agentUri(request.agentId)],
      eku: ["serverAuth"],
      validityMs: request.validityMs ?? AGENT_VALIDITY_MS,
    });
  }

  async issueCustom(spec: CustomCertSpec): Promise<IssuedCert> {
    if (!Number.isSafeInteger(spec.validityMs) || spec.validityMs <= 0) {
      throw new CaError(`validityMs must be a positive whole number of ms, got ${spec.validityMs}`);
    }
    const now = Date.now();
    const notAfter = now + spec.validityMs;
    const keys = await generateKeyPair();
    const der = await buildCertificate(
      {
        ...spec,
        isCa: false,
        notBefore: new Date(now - CLOCK_SKEW_MS),
        notAfter: new Date(notAfter),
        publicKey: keys.publicKey,
      },
      { cert: this.#caCert, key: this.#signingKey },
    );
    return {
      certPem: toPem("CERTIFICATE", der),
      keyPem: await privateKeyPem(keys.privateKey),
      thumbprint: thumbprintOf(Buffer.from(der)),
      // X.509 times have whole seconds: this is what a peer reads back.
      notAfter: Math.floor(notAfter / 1000) * 1000,
    };
  }
}
