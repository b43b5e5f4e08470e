import type { InstanceParams } from "../../machines/agent.ts";
import type { PoolConfig } from "../events/pool.ts";
import type { PortAllocator } from "../ports/allocator.ts";
import { portEnv } from "../ports/env.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Input } from "./actor-host.ts";
import type { Cause } from "./caused-by.ts";
import type { EffectContext, EffectHandlers } from "./effects.ts";
import { agentContextOf } from "./views.ts";

export interface AgentEffectDeps {
  /** The daemon instance: every runtime resource carries it as a label. */
  instance: string;
  runtimeFor(kind: PoolConfig["runtime"]): Runtime;
  /** The pool's configuration from the daemon's own config file (never from the stream). */
  configOf(poolId: string): PoolConfig | null;
  ports: PortAllocator;
  clock: () => number;
  /**
   * Issues this generation's certificate and writes it where the runtime delivers it read-only
   * (`src/identity/`); returns that directory and the control plane's CN agentd pins.
   */
  issueIdentity(p: {
    poolId: string;
    agentId: string;
    generation: number;
  }): Promise<{ identityDir: string; cpCN: string } | undefined>;
  /** Forgets the identity files of every generation of an agent that ended. */
  dropIdentity(agentId: string): void;
  /** Dials the agent's agentd (deduplicated: `src/cp/session/`), which registers it and runs its init plan. */
  dial(agentId: string, generation: number, cause?: Cause): void;
  /** Ends the agent's session on purpose before its instance goes: records nothing, dials nothing. */
  hangUp(agentId: string): Promise<void>;
}

/** Reports a fact to the agent itself. */
async function report(ctx: EffectContext, input: Input): Promise<void> {
  await ctx.offer(ctx.aggregate, input);
}

async function fail(ctx: EffectContext, phase: string, err: unknown): Promise<void> {
  const code = (err as { code?: string }).code ?? "error";
  ctx.log.warn({ err, agent: ctx.aggregate.id, phase }, "agent step failed");
  await report(ctx, {
    type: "AgentFailed",
    data: { phase, code: String(code), message: (err as Error).message ?? String(err) },
  });
}

/**
 * The agent machine's effects. Each one is idempotent — after a crash the step an agent was in
 * is run again — and reports its outcome as the agent's next event.
 */
export function agentEffects(deps: AgentEffectDeps): EffectHandlers {
  const runtimeOf = (ctx: EffectContext) => deps.runtimeFor(agentContextOf(ctx).runtime);

  /** Removes every instance of this agent (all generations): stop with grace, then remove. */
  const removeAll = async (ctx: EffectContext, p: InstanceParams) => {
    // The instance is going on purpose: its session ending is no news (no SessionBroken, no re-dial).
    await deps.hangUp(ctx.aggregate.id);
    const runtime = runtimeOf(ctx);
    const grace = deps.configOf(p.poolId)?.template.stopGraceMs;
    const found = await runtime.list({ agentId: ctx.aggregate.id });
    const ids = new Set(found.map((i) => i.id));
    if (p.instanceId) ids.add(p.instanceId);
    for (const id of ids) {
      await runtime.stop(id, grace);
      await runtime.remove(id);
    }
    deps.ports.release(ctx.aggregate.id);
  };

  /** Removes every instance and, once the agent has ended, its identity files. */
  const removeAllAndForget = async (ctx: EffectContext, p: InstanceParams) => {
    await removeAll(ctx, p);
    deps.dropIdentity(ctx.aggregate.id);
  };

  return {
    allocatePorts: async (p: InstanceParams, ctx) => {
      const config = deps.configOf(p.poolId);
      try {
        const ports = config?.ports
          ? await deps.ports.allocate(ctx.aggregate.id, config.ports, config.ports.perAgent)
          : [];
        await report(ctx, { type: "AgentPortsAllocated", data: { generation: p.generation, ports } });
      } catch (err) {
        await fail(ctx, "requested", err);
      }
    },

    createInstance: async (p: InstanceParams, ctx) => {
      const config = deps.configOf(p.poolId);
      const runtime = runtimeOf(ctx);
      try {
        if (!config)
          throw Object.assign(new Error(`pool ${p.poolId} has no configuration`), { code: "no_config" });
        // After a crash the instance may exist already: adopt it instead of making a second one.
        const existing = (await runtime.list({ agentId: ctx.aggregate.id })).find(
          (i) => i.generation === p.generation,
        );
        const instance =
          existing ??
          (await runtime.create({
            // A certificate of its own per generation, issued only for an instance made now.
            agentd: await deps.issueIdentity({
              poolId: p.poolId,
              agentId: ctx.aggregate.id,
              generation: p.generation,
            }),
            instance: deps.instance,
            poolId: p.poolId,
            agentId: ctx.aggregate.id,
            generation: p.generation,
            template: config.template,
            ports: p.ports,
            bind: config.ports?.bind,
            env: {
              CORRAL_AGENT_ID: ctx.aggregate.id,
              CORRAL_POOL: p.poolId,
              CORRAL_GENERATION: String(p.generation),
              ...portEnv(p.ports, config.ports?.hostUrl),
            },
          }));
        const created = await ctx.offer(ctx.aggregate, {
          type: "AgentCreated",
          data: { generation: p.generation, instanceId: instance.id },
        });
        // The agent moved on while its instance was being made (drained by a close, failed): its
        // stop listed instances before this one existed, so nobody else would remove it.
        if (!created.accepted && !existing) {
          await runtime.stop(instance.id, config.template.stopGraceMs);
          await runtime.remove(instance.id);
        }
      } catch (err) {
        await fail(ctx, "creating", err);
      }
    },

    startInstance: async (p: InstanceParams, ctx) => {
      const runtime = runtimeOf(ctx);
      try {
        const id = p.instanceId as string;
        const current = await runtime.inspect(id);
        if (!current) throw Object.assign(new Error(`instance ${id} is gone`), { code: "not_found" });
        if (current.state !== "running") await runtime.start(id);
        // Running is all this step knows: agentd answering, its registration and the init plan
        // come next (connecting, initializing), and only their end makes the agent leasable.
        await report(ctx, { type: "AgentStarted", data: { generation: p.generation } });
      } catch (err) {
        await fail(ctx, "starting", err);
      }
    },

    recycleInstance: async (p: InstanceParams, ctx) => {
      try {
        await removeAll(ctx, p);
        const timeout = deps.configOf(p.poolId)?.startTimeoutMs ?? 60_000;
        await report(ctx, {
          type: "AgentRecycled",
          data: { generation: p.generation + 1, deadline: deps.clock() + timeout },
        });
      } catch (err) {
        await fail(ctx, "recycling", err);
      }
    },

    stopInstance: async (p: InstanceParams, ctx) => {
      try {
        await removeAllAndForget(ctx, p);
        await report(ctx, { type: "AgentStopped", data: {} });
      } catch (err) {
        await fail(ctx, "stopping", err);
      }
    },

    cleanupInstance: async (p: InstanceParams, ctx) => {
      // Final state: nothing to report. If this fails, the reconciler reaps by label at next start.
      await removeAllAndForget(ctx, p);
    },

    dialAgent: async (p: { generation: number }, ctx) => {
      deps.dial(ctx.aggregate.id, p.generation, ctx.event); // the session's story follows it
    },
  };
}
