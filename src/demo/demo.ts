import { commandAggregate } from "../../machines/command.ts";
import { ActorHost } from "../cp/actor-host.ts";
import { commandEffects, reportToInput } from "../cp/command-effects.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { NatsAuth } from "../nats/auth.ts";
import { connectNats } from "../nats/connect.ts";
import { EventStore } from "../store/event-store.ts";
import type { Integrity } from "../store/integrity.ts";
import { SNAPSHOT_BUCKET, SnapshotStore } from "../store/snapshots.ts";
import { DemoAgents } from "./agents.ts";

export interface DemoResult {
  commands: { id: string; agentId: string; state: string }[];
}

/**
 * Creates four commands for three pretend agents and drives them through the actor host until
 * each one is final: completed, completed after a retry, failed, and cancelled.
 */
export async function runDemo(opts: {
  natsUrl: string;
  natsAuth?: NatsAuth;
  /** The writer key to mark its events with (store/integrity.ts); default: unmarked. */
  integrity?: Integrity;
  log?: Logger;
  timeoutMs?: number;
}): Promise<DemoResult> {
  const log = opts.log ?? silentLogger;
  const nc = await connectNats(opts.natsUrl, { name: "corral-demo", auth: opts.natsAuth, role: "daemon" });
  const store = await EventStore.open(nc, { integrity: opts.integrity });
  const snapshots = await SnapshotStore.open(nc, SNAPSHOT_BUCKET, 1, undefined, store.identity);
  let host: ActorHost | undefined;
  const agents = new DemoAgents((report) => {
    const { ref, input } = reportToInput(report);
    host?.offer(ref, input).catch((err: unknown) => log.warn({ err }, "agent report not recorded"));
  });
  host = new ActorHost({
    store,
    snapshots,
    aggregates: [commandAggregate],
    effects: { command: commandEffects(agents) },
    log,
  });
  try {
    const run = Date.now().toString(36);
    const timeouts = { pending: 500, sent: 300, acked: 2_000 };
    const plan = [
      { id: `demo-${run}-build`, agentId: "agent-ok", action: "npm run build" },
      { id: `demo-${run}-test`, agentId: "agent-flaky", action: "npm test" },
      { id: `demo-${run}-lint`, agentId: "agent-broken", action: "npm run lint" },
      { id: `demo-${run}-deploy`, agentId: "agent-ok", action: "deploy", cancel: true },
    ];
    for (const c of plan) {
      await host.send(
        { kind: "command", id: c.id },
        { type: "CommandCreated", data: { agentId: c.agentId, action: c.action, timeouts } },
      );
      log.info({ command: c.id, agent: c.agentId }, `created ${c.action}`);
      if (c.cancel)
        await host.send(
          { kind: "command", id: c.id },
          { type: "CommandCancelled", data: { reason: "changed my mind" } },
        );
    }
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    const states = async () =>
      Promise.all(
        plan.map(async (c) => ({ ...c, view: await (host as ActorHost).get({ kind: "command", id: c.id }) })),
      );
    let current = await states();
    while (current.some((c) => c.view.status !== "done") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      current = await states();
    }
    const commands = current.map((c) => ({ id: c.id, agentId: c.agentId, state: String(c.view.value) }));
    for (const c of commands) log.info({ command: c.id }, `${c.state}`);
    return { commands };
  } finally {
    await host.close();
    store.close();
    await nc.close();
  }
}
