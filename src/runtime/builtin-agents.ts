import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** corral's own agents (src/agents), shipped inside the node image so no host path is bound in. */
export const AGENTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "agents");

/** Where they sit inside the image. */
export const AGENTS_IN_IMAGE = "/opt/corral/agents";

export const HELLO_AGENT_PATH = join(AGENTS_DIR, "hello-agent.mjs");

export function agentFiles(): { name: string; data: Buffer }[] {
  return readdirSync(AGENTS_DIR)
    .sort()
    .map((name) => ({ name, data: readFileSync(join(AGENTS_DIR, name)) }));
}

/** Changes whenever an agent does, so an image holding them is rebuilt under a new tag. */
export function agentsDigest(): string {
  const h = createHash("sha256");
  for (const f of agentFiles()) h.update(f.name).update("\0").update(f.data).update("\0");
  return h.digest("hex").slice(0, 8);
}
