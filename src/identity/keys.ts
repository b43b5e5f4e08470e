import { createPrivateKey, webcrypto } from "node:crypto";

/**
 * Keys are ECDSA P-256 through Node's WebCrypto: a key pair takes well under a millisecond,
 * where an RSA key would take tens (ARCHITECTURE.md, "Identity").
 */
const EC_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;

export type KeyPair = { publicKey: webcrypto.CryptoKey; privateKey: webcrypto.CryptoKey };

export async function generateKeyPair(): Promise<KeyPair> {
  return await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
}

/** A private key as PKCS#8 PEM, the form `node:tls` and openssl read. */
export async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return toPem("PRIVATE KEY", der);
}

/** A signing key from PEM; throws (without echoing the key) when it is not a P-256 key. */
export async function importSigningKey(pem: string): Promise<webcrypto.CryptoKey> {
  const key = createPrivateKey(pem);
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== "ec" || curve !== "prime256v1") {
    throw new Error(`expected an ECDSA P-256 key, found ${key.asymmetricKeyType} ${curve ?? ""}`.trim());
  }
  const der = key.export({ format: "der", type: "pkcs8" });
  return await webcrypto.subtle.importKey("pkcs8", der, EC_P256, false, ["sign"]);
}

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
