// `npm run bench`: every benchmark, each against a nats-server of its own, printing its figures
// and their ratio to a baseline measured in the same run. `npm run bench -- rebuild` runs one.
// Each is imported only when asked for: `-- cli` loads none of the others (nor the test helpers).
// The fleet-scale runs (1M events, 10,000 agents; minutes each) run only when asked for:
// `npm run bench -- scale` runs both, `-- scale-events` or `-- scale-agents` one.

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * The CLI and agentd that benches start run dist/ (bin/corral.js), and fall back to the sources
 * through tsx when dist/ is missing or older than them — several times slower to start, which
 * would be measured instead. So a stale build is rebuilt first, saying so.
 */
function ensureBuild(): void {
  const at = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
  const probe = spawnSync(process.execPath, [at("bin/corral.js"), "--version"], { encoding: "utf8" });
  if (!/running the sources through tsx/.test(probe.stderr)) return;
  console.log("bench: dist/ is missing or older than the sources; building it first (npm run build)");
  if (spawnSync(process.execPath, [at("scripts/build.js")], { stdio: "inherit" }).status !== 0) {
    console.error("bench: the build failed");
    process.exit(1);
  }
}

const BENCHES: Record<string, () => Promise<unknown>> = {
  append: async () => (await import("./append.ts")).benchAppend(),
  rebuild: async () => (await import("./rebuild.ts")).benchRebuild(),
  acquire: async () => (await import("./acquire.ts")).benchAcquire(),
  cli: async () => (await import("./cli.ts")).benchCli(),
  history: async () => (await import("./history.ts")).benchHistory(),
  "agent-side": async () => (await import("./agent-side.ts")).benchAgentSide(),
  "scale-agents": async () => (await import("./scale-agents.ts")).benchScaleAgents(),
  "scale-events": async () => (await import("./scale-events.ts")).benchScaleEvents(),
};

const SCALE = ["scale-agents", "scale-events"];
const asked = process.argv.slice(2).flatMap((name) => (name === "scale" ? SCALE : [name]));
const unknown = asked.filter((name) => !(name in BENCHES));
if (unknown.length > 0) {
  console.error(
    `unknown bench ${unknown.join(", ")}; choose from ${Object.keys(BENCHES).join(", ")} or scale`,
  );
  process.exit(2);
}
ensureBuild();
const everyday = Object.keys(BENCHES).filter((name) => !SCALE.includes(name));
for (const name of asked.length > 0 ? asked : everyday) {
  console.log(`\n== ${name}`);
  await (BENCHES[name] as () => Promise<unknown>)();
}
