import type { Runtime, RuntimeKind } from "../../runtime/types.ts";
import type { ActorHost } from "../actor-host.ts";
import { asAgentView } from "../views.ts";
import type { ResolvedAgent } from "./register.ts";

/**
 * The dialer's `resolve` from the runtimes: the agent's current instance (its context names the
 * runtime and the instance id), where its agentd listens (`Runtime.endpoint`) and the labels the
 * runtime keeps on it (`Runtime.inspect`), which the register checks compare with the peer's
 * claims. Null when the instance is not running or has no agentd endpoint yet.
 */
export function runtimeResolver(
  host: Pick<ActorHost, "get">,
  runtimes: Partial<Record<RuntimeKind, Pick<Runtime, "inspect" | "endpoint">>>,
): (agentId: string) => Promise<ResolvedAgent | null> {
  return async (agentId) => {
    const { context } = asAgentView(await host.get({ kind: "agent", id: agentId }));
    const runtime = runtimes[context.runtime];
    if (!runtime || context.instanceId === null) return null;
    const [instance, endpoint] = await Promise.all([
      runtime.inspect(context.instanceId),
      runtime.endpoint(context.instanceId),
    ]);
    if (instance?.state !== "running" || !endpoint) return null;
    const host6 = endpoint.host.includes(":") ? `[${endpoint.host}]` : endpoint.host;
    return {
      address: `${host6}:${endpoint.port}`,
      labels: { poolId: instance.poolId, agentId: instance.agentId, generation: instance.generation },
    };
  };
}
