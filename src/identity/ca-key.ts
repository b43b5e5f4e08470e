import { createPrivateKey, createPublicKey, webcrypto } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { createFileExclusive } from "./atomic-file.ts";
import { generateKeyPair, importSigningKey, privateKeyPem } from "./keys.ts";

/**
 * The CA's key, as the process holds it: a WebCrypto key that cannot be exported, so the key's
 * bytes exist only in `ca.key` (mode 0600) and are never logged or handed on.
 */
export type CaKey = {
  signingKey: webcrypto.CryptoKey;
  publicKey: webcrypto.CryptoKey;
  /** The public key as SubjectPublicKeyInfo DER: what the CA certificate must hold. */
  spkiDer: Buffer;
};

export class CaKeyError extends Error {
  override name = "CaKeyError";
}

/** The key in `file`, made there first when there is none (the first of two racing starts wins). */
export async function loadOrCreateCaKey(file: string): Promise<CaKey> {
  let pem = readCaKeyPem(file);
  if (pem === undefined) {
    const fresh = await privateKeyPem((await generateKeyPair()).privateKey);
    pem = createFileExclusive(file, fresh, 0o600) ? fresh : readCaKeyPem(file);
    if (pem === undefined) throw new CaKeyError(`the CA key ${file} vanished while it was being made`);
  }
  try {
    const signingKey = await importSigningKey(pem);
    const spkiDer = createPublicKey(createPrivateKey(pem)).export({ type: "spki", format: "der" });
    const publicKey = await webcrypto.subtle.importKey("spki", spkiDer, signingKey.algorithm, true, [
      "verify",
    ]);
    return { signingKey, publicKey, spkiDer };
  } catch (err) {
    // The message of a key parser never holds the key itself, only what it expected.
    throw new CaKeyError(`the CA key ${file} is not usable: ${(err as Error).message}`);
  }
}

/** The PEM in `file`; undefined when there is no such file. Refuses one others may read. */
function readCaKeyPem(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CaKeyError(`cannot read the CA key ${file}: ${(err as Error).message}`);
  }
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if (process.platform !== "win32" && (mode & 0o077) !== 0) {
      throw new CaKeyError(
        `the CA key ${file} is readable by others (mode ${mode.toString(8)}); chmod 600 it`,
      );
    }
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}
