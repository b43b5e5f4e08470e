import { AGENTS_IN_IMAGE, HELLO_AGENT_PATH } from "./builtin-agents.ts";
import { NODE_IMAGE } from "./docker-image.ts";
import type { AgentTemplate, RuntimeKind } from "./types.ts";

/**
 * A template that runs hello-agent: as `node hello-agent.mjs` locally, or from inside NODE_IMAGE,
 * which carries node and the agent (nothing of the host is bound in).
 */
export function helloAgentTemplate(kind: RuntimeKind, opts: { image?: string } = {}): AgentTemplate {
  // A local process listens on the host itself: loopback only, as docker publishes by default.
  if (kind === "process") {
    return { command: [process.execPath, HELLO_AGENT_PATH], env: { CORRAL_LISTEN_HOST: "127.0.0.1" } };
  }
  return { image: opts.image ?? NODE_IMAGE, command: ["node", `${AGENTS_IN_IMAGE}/hello-agent.mjs`] };
}
