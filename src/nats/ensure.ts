import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import type { Logger } from "../log.ts";
import { NatsUnreachableError, natsAnswers, natsUrl } from "./connect.ts";
import { freePort, NatsServer, NatsServerNotFoundError } from "./server.ts";

/** What to tell someone who has no NATS at all: every line is a complete way to get one. */
export const HOW_TO_GET_NATS = [
  "corral needs a NATS server with JetStream (2.9 or newer). Any one of:",
  "  Debian/Ubuntu:  sudo apt-get install nats-server",
  "  macOS:          brew install nats-server",
  "  Docker:         docker run -p 4222:4222 nats:2.9 -js",
  "  or point corral at an existing server: NATS_URL=nats://host:4222",
].join("\n");

export interface EnsureNatsOptions {
  /** Where to look first; default NATS_URL or nats://127.0.0.1:4222. */
  url?: string;
  /** Local state; the server's JetStream store goes to <dataDir>/nats, its log to <dataDir>/nats.log. */
  dataDir?: string;
  log?: Logger;
}

export interface EnsuredNats {
  url: string;
  /** Set when we started the server ourselves. */
  started?: NatsServer;
  /** The JetStream store directory of the server we started. */
  storeDir?: string;
  /** Stops the server if we started it (its data stays); otherwise does nothing. */
  stop(): Promise<void>;
}

/** Only start a server of our own when the URL names this machine: a remote URL that is down is an error. */
function loopbackPort(url: string): number | undefined {
  if (url.includes(",")) return undefined;
  try {
    const u = new URL(url.includes("://") ? url : `nats://${url}`);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    if (!["127.0.0.1", "localhost", "::1", "0.0.0.0"].includes(host)) return undefined;
    return u.port ? Number(u.port) : 4222;
  } catch {
    return undefined;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const srv = createServer();
    srv.once("error", () => done(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => done(true)));
  });
}

/**
 * Finds NATS for `corral start`: whatever answers at the URL, else a `nats-server -js` of our own
 * (preferring the URL's port, normally 4222, so other terminals find it with no configuration).
 * Throws NatsUnreachableError — with instructions when nats-server is missing — otherwise.
 */
export async function ensureNats(opts: EnsureNatsOptions = {}): Promise<EnsuredNats> {
  const url = opts.url ?? natsUrl();
  const log = opts.log;
  if (await natsAnswers(url)) {
    log?.info({ url }, "using the NATS server at %s", url);
    return { url, stop: async () => {} };
  }
  const preferred = loopbackPort(url);
  if (preferred === undefined) {
    throw new NatsUnreachableError(
      url,
      new Error("nothing answers there (corral only starts a local server)"),
    );
  }
  const dataDir = resolve(opts.dataDir ?? ".corral");
  mkdirSync(dataDir, { recursive: true });
  const port = (await portFree(preferred)) ? preferred : await freePort();
  const logFile = join(dataDir, "nats.log");
  const storeDir = join(dataDir, "nats");
  let server: NatsServer;
  try {
    server = await NatsServer.start({ port, storeDir, logFile });
  } catch (err) {
    if (err instanceof NatsServerNotFoundError) {
      throw new NatsUnreachableError(
        url,
        new Error(`nothing answers and nats-server is not on PATH.\n${HOW_TO_GET_NATS}`),
      );
    }
    throw new NatsUnreachableError(
      url,
      new Error(`could not start nats-server (see ${logFile}): ${(err as Error).message}`),
    );
  }
  log?.info({ url: server.url, storeDir, logFile }, "started nats-server on port %d", port);
  return {
    url: server.url,
    started: server,
    storeDir,
    stop: async () => {
      await server.stop();
      log?.info({ storeDir }, "stopped nats-server; its data stays in %s", storeDir);
    },
  };
}
