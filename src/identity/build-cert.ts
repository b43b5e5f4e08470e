import { createHash, randomBytes, type webcrypto } from "node:crypto";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { CN_MAX_BYTES } from "./names.ts";
import { type ExtKeyUsageName, OID } from "./oids.ts";

/** What a certificate says about its subject. */
export type CertSpec = {
  cn: string;
  uris: string[];
  eku: ExtKeyUsageName[];
  /** A CA signs certificates and nothing else; a leaf signs TLS handshakes. */
  isCa: boolean;
  notBefore: Date;
  notAfter: Date;
  publicKey: webcrypto.CryptoKey;
};

/** Who signs: a CA certificate and its key, or `self` for the CA's own certificate. */
export type Signer = { cert: pkijs.Certificate | "self"; key: webcrypto.CryptoKey };

/** The DER bytes of a certificate for `spec`, signed by `signer` (ECDSA with SHA-256). */
export async function buildCertificate(spec: CertSpec, signer: Signer): Promise<Uint8Array> {
  if (Buffer.byteLength(spec.cn) > CN_MAX_BYTES || spec.cn === "") {
    throw new Error(`a certificate CN holds 1 to ${CN_MAX_BYTES} bytes, got ${Buffer.byteLength(spec.cn)}`);
  }
  const cert = new pkijs.Certificate();
  cert.version = 2; // v3: extensions
  cert.serialNumber = new asn1js.Integer({ valueHex: serialNumber() });
  cert.subject.typesAndValues.push(commonName(spec.cn));
  cert.notBefore.value = spec.notBefore;
  cert.notAfter.value = spec.notAfter;
  await cert.subjectPublicKeyInfo.importKey(spec.publicKey);
  const keyId = keyIdentifier(cert.subjectPublicKeyInfo);
  const issuer = signer.cert === "self" ? cert : signer.cert;
  cert.issuer = signer.cert === "self" ? cert.subject : signer.cert.subject;
  cert.extensions = [
    extension(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: spec.isCa }).toSchema()),
    extension(OID.keyUsage, true, keyUsage(spec.isCa)),
    extension(OID.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: keyId })),
    extension(
      OID.authorityKeyIdentifier,
      false,
      new pkijs.AuthorityKeyIdentifier({
        keyIdentifier: new asn1js.OctetString({ valueHex: keyIdentifier(issuer.subjectPublicKeyInfo) }),
      }).toSchema(),
    ),
  ];
  if (spec.eku.length > 0) {
    const keyPurposes = spec.eku.map((name) => OID[name]);
    cert.extensions.push(
      extension(OID.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes }).toSchema()),
    );
  }
  if (spec.uris.length > 0) {
    const altNames = spec.uris.map((uri) => new pkijs.GeneralName({ type: 6, value: uri }));
    cert.extensions.push(extension(OID.subjectAltName, false, new pkijs.AltName({ altNames }).toSchema()));
  }
  await cert.sign(signer.key, "SHA-256");
  return new Uint8Array(cert.toSchema().toBER(false));
}

function commonName(cn: string): pkijs.AttributeTypeAndValue {
  return new pkijs.AttributeTypeAndValue({
    type: OID.commonName,
    value: new asn1js.Utf8String({ value: cn }),
  });
}

function extension(extnID: string, critical: boolean, value: asn1js.BaseBlock): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER(false) });
}

/** 16 random bytes, positive and minimally encoded (the top bits 01). */
function serialNumber(): Uint8Array {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] as number) & 0x3f) | 0x40;
  return new Uint8Array(bytes);
}

/** RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of the public key's bits. */
function keyIdentifier(info: pkijs.PublicKeyInfo): Uint8Array {
  const bits = info.subjectPublicKey.valueBlock.valueHexView;
  return new Uint8Array(createHash("sha256").update(bits).digest().subarray(0, 20));
}

/** keyCertSign + cRLSign for a CA (bits 5, 6), digitalSignature for a leaf (bit 0). */
function keyUsage(isCa: boolean): asn1js.BitString {
  return isCa
    ? new asn1js.BitString({ valueHex: new Uint8Array([0x06]), unusedBits: 1 })
    : new asn1js.BitString({ valueHex: new Uint8Array([0x80]), unusedBits: 7 });
}
