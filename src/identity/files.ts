import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import type { IssuedCert } from "./ca.ts";

export const AGENT_CERT_FILE = "agent.crt";
export const AGENT_KEY_FILE = "agent.key";
export const AGENT_CA_FILE = "ca.crt";

export type IdentityFiles = { certFile: string; keyFile: string; caFile: string };

/**
 * An agent's identity as agentd reads it: its certificate, its key (mode 0600) and the CA it
 * trusts, each written whole (a docker runtime mounts `dir` read-only; the process runtime uses a
 * dir inside the agent's work dir). Writing again replaces them, for a renewed certificate.
 */
export function writeIdentityFiles(dir: string, issued: IssuedCert, caPem: string): IdentityFiles {
  const root = resolve(dir);
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const files: IdentityFiles = {
    certFile: join(root, AGENT_CERT_FILE),
    keyFile: join(root, AGENT_KEY_FILE),
    caFile: join(root, AGENT_CA_FILE),
  };
  writeFileAtomic(files.caFile, caPem, 0o644);
  writeFileAtomic(files.keyFile, issued.keyPem, 0o600);
  writeFileAtomic(files.certFile, issued.certPem, 0o644);
  return files;
}
