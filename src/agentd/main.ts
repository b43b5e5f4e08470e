#!/usr/bin/env node
// agentd's entry point: the docker runtime's container entrypoint, the process runtime's parent
// of the agent. Runs as `node dist/src/agentd/main.js` (npm run build) or
// `node --import tsx src/agentd/main.ts`. Configuration: config.ts; protocol: protocol.ts.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createLogger } from "../log.ts";
import { Agentd } from "./agentd.ts";
import { agentEnvOf, configFromEnv } from "./config.ts";
import { writeFileAtomic } from "./files.ts";
import { listenTls } from "./server.ts";

const log = createLogger({ name: "agentd" });

async function main(): Promise<void> {
  const config = configFromEnv(process.env);
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const agentd = new Agentd({
    agentId: config.agentId,
    poolId: config.poolId,
    stateDir: config.stateDir,
    home: config.home,
    env: agentEnvOf(process.env),
    ...(config.agentCommand ? { agentCommand: config.agentCommand } : {}),
    ...(config.heartbeatMs ? { heartbeatMs: config.heartbeatMs } : {}),
    ...(config.killGraceMs ? { killGraceMs: config.killGraceMs } : {}),
    log,
  });
  const listener = await listenTls(agentd, config, log);
  // Where the runtime finds the port when it asked for any (port 0); written whole or not at all.
  const portFile = join(config.stateDir, "agentd.json");
  writeFileAtomic(portFile, `${JSON.stringify({ port: listener.port, pid: process.pid })}\n`, 0o644);
  log.info({ port: listener.port, agentId: config.agentId, pool: config.poolId }, "agentd: listening");

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "agentd: stopping");
    const closed = listener.close();
    await agentd.close(); // the agent's command and running execs, each after its grace
    await closed;
    rmSync(portFile, { force: true });
    log.info("agentd: stopped");
    log.flush(() => process.exit(0));
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => void stop(signal));
}

main().catch((err: unknown) => {
  log.fatal({ err: err instanceof Error ? err.message : String(err) }, "agentd: cannot start");
  process.exitCode = 2;
});
