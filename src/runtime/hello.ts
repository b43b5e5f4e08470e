import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NODE_IMAGE } from "./docker-image.ts";
import type { AgentTemplate, RuntimeKind } from "./types.ts";

/** The built-in agent on the host (src/agents/hello-agent.mjs). */
export const HELLO_AGENT_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "agents",
  "hello-agent.mjs",
);

/** Where the agents directory appears inside a container. */
const AGENTS_IN_CONTAINER = "/opt/corral/agents";

/**
 * A template that runs hello-agent: as `node hello-agent.mjs` locally, or with the node of
 * NODE_IMAGE and the agents directory bound in read-only.
 */
export function helloAgentTemplate(kind: RuntimeKind, opts: { image?: string } = {}): AgentTemplate {
  if (kind === "process") return { command: [process.execPath, HELLO_AGENT_PATH] };
  return {
    image: opts.image ?? NODE_IMAGE,
    command: ["node", `${AGENTS_IN_CONTAINER}/hello-agent.mjs`],
    mounts: [{ source: dirname(HELLO_AGENT_PATH), target: AGENTS_IN_CONTAINER, readOnly: true }],
  };
}
