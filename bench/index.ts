// `npm run bench`: every benchmark, each against a nats-server of its own, printing its figures
// and their ratio to a baseline measured in the same run. `npm run bench -- rebuild` runs one.
// Each is imported only when asked for: `-- cli` loads none of the others (nor the test helpers).

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

const asked = process.argv.slice(2);
const unknown = asked.filter((name) => !(name in BENCHES));
if (unknown.length > 0) {
  console.error(`unknown bench ${unknown.join(", ")}; choose from ${Object.keys(BENCHES).join(", ")}`);
  process.exit(2);
}
for (const name of asked.length > 0 ? asked : Object.keys(BENCHES)) {
  console.log(`\n== ${name}`);
  await (BENCHES[name] as () => Promise<unknown>)();
}
