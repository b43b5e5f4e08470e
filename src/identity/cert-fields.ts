import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { OID } from "./oids.ts";

/**
 * The fields corral reads from a certificate, parsed from its DER bytes with the same library
 * that writes them. Node's `X509Certificate.subject` and `.subjectAltName` are display strings
 * (escaped, joined): a peer's certificate is untrusted input, so it is parsed, not split.
 */
export type CertFields = {
  ok: true;
  /** Every CN in the subject (a well-formed corral certificate has exactly one). */
  commonNames: string[];
  /** Every URI in the subject alternative names. */
  uris: string[];
  /** The extended key usage OIDs; empty when the extension is absent. */
  extKeyUsages: string[];
};

export type CertFieldsResult = CertFields | { ok: false; reason: string };

export function readCertFields(der: Uint8Array): CertFieldsResult {
  let cert: pkijs.Certificate;
  try {
    cert = pkijs.Certificate.fromBER(der);
  } catch (err) {
    return { ok: false, reason: `not a certificate: ${(err as Error).message}` };
  }
  const commonNames: string[] = [];
  for (const tv of cert.subject.typesAndValues) {
    if (tv.type !== OID.commonName) continue;
    // Every directory string type (UTF8String, PrintableString, …) is a BaseStringBlock.
    if (!(tv.value instanceof asn1js.BaseStringBlock))
      return { ok: false, reason: "the subject CN is not a string" };
    commonNames.push(tv.value.getValue());
  }
  const uris: string[] = [];
  const extKeyUsages: string[] = [];
  for (const ext of cert.extensions ?? []) {
    const parsed = ext.parsedValue;
    if (ext.extnID === OID.subjectAltName) {
      if (!(parsed instanceof pkijs.AltName))
        return { ok: false, reason: "the subject alt name does not parse" };
      for (const name of parsed.altNames) if (name.type === 6) uris.push(String(name.value));
    } else if (ext.extnID === OID.extKeyUsage) {
      if (!(parsed instanceof pkijs.ExtKeyUsage))
        return { ok: false, reason: "the extended key usage does not parse" };
      extKeyUsages.push(...parsed.keyPurposes);
    }
  }
  return { ok: true, commonNames, uris, extKeyUsages };
}
