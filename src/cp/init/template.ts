import { createHash } from "node:crypto";
import type { FileConfig, InitSpec } from "../../config/schema.ts";
import type { StoredInit } from "../../events/template-init.ts";

/**
 * From corral.yaml's `template.init` to the form PoolCreated stores, and the secrets kept apart.
 * A pool's SSH keys reach the stream as `{name, sha256}` only; their contents stay in the daemon's
 * memory (`InitKeys`, by digest) and go to agentd only over the session.
 */

/** SSH private keys by the SHA-256 (hex) of their content. */
export type InitKeys = ReadonlyMap<string, string>;

export function keyDigest(content: string): string {
  return createHash("sha256").update(content, "utf8").digest("hex");
}

/** The stored form of a config file's init: durations in ms, key contents replaced by digests. */
export function storedInit(spec: InitSpec): StoredInit {
  const { ssh, postInit, stepTimeout, ...rest } = spec;
  return {
    ...rest,
    ...(ssh && {
      ssh: {
        ...(ssh.knownHosts && { knownHosts: ssh.knownHosts }),
        ...(ssh.keys && { keys: ssh.keys.map((k) => ({ name: k.name, sha256: keyDigest(k.content) })) }),
      },
    }),
    ...(postInit && {
      postInit: {
        argv: postInit.argv,
        ...(postInit.timeout !== undefined && { timeoutMs: postInit.timeout }),
      },
    }),
    ...(stepTimeout !== undefined && { stepTimeoutMs: stepTimeout }),
  };
}

/** Every SSH key of every pool in the config, by digest. */
export function initKeysOf(cfg: FileConfig): InitKeys {
  const keys = new Map<string, string>();
  for (const pool of Object.values(cfg.pools)) {
    for (const k of pool.template?.init?.ssh?.keys ?? []) keys.set(keyDigest(k.content), k.content);
  }
  return keys;
}
