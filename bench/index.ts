// `npm run bench`: every benchmark, each against a nats-server of its own, printing its figures
// and their ratio to a baseline measured in the same run. `npm run bench -- rebuild` runs one.
// Each is imported only when asked for: `-- cli` loads none of the others (nor the test helpers).
// The fleet-scale runs (1M events, 10,000 agents; minutes each) run only when asked for:
// `npm run bench -- scale` runs both, `-- scale-events` or `-- scale-agents` one.

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
const everyday = Object.keys(BENCHES).filter((name) => !SCALE.includes(name));
for (const name of asked.length > 0 ? asked : everyday) {
  console.log(`\n== ${name}`);
  await (BENCHES[name] as () => Promise<unknown>)();
}
