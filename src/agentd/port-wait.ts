import { createConnection } from "node:net";

/**
 * Waits until something accepts TCP connections on 127.0.0.1:`port` — the agent's own server,
 * seen from inside its instance, so no proxy in front can answer for it. `agent-ready` ends only
 * then: a leased agent's port answers.
 */
export async function waitForPort(
  port: number,
  opts: { timeoutMs: number; gaveUp: () => boolean },
): Promise<"answered" | "gave_up" | "timeout"> {
  const until = Date.now() + opts.timeoutMs;
  while (Date.now() < until) {
    if (opts.gaveUp()) return "gave_up";
    if (await accepts(port)) return "answered";
    await new Promise((r) => setTimeout(r, 50));
  }
  return "timeout";
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 400);
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/** The agent's first port, from the environment its command gets (src/ports/env.ts). */
export function firstPort(env: NodeJS.ProcessEnv): number | undefined {
  const port = Number(env.CORRAL_PORT_A);
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
}
